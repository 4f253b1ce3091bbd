"""The Siamese twin network alone: a separable CNN, GeM pooling, L2-normalised output."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture hyper-parameters of the encoder (stored in every checkpoint)."""

    stem: int = 24
    widths: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 2, 2, 2)
    embed_dim: int = 128
    gem_p: float = 3.0
    stride_first: bool = True
    mirror_symmetric: bool = False
    """Every kernel is its own mirror image (`Encoder.symmetrise_`, kept so in training):
    the network is then mirror-equivariant and its pooled embedding of a mirrored picture
    is the picture's own, exactly where every strided layer gets an odd side (161 px for
    five: 161, 81, 41, 21, 11) and nearly otherwise."""


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _SeparableBlock(nn.Module):
    """Depthwise 3x3 then pointwise 1x1 convolution, with a residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.depthwise = _conv_bn(cin, cin, 3, stride, groups=cin)
        self.pointwise = _conv_bn(cin, cout, 1, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(self.depthwise(x))
        return x + y if self.residual else y


class GeM(nn.Module):
    """Generalised-mean pooling: between average (p=1) and max (p→∞), tolerant of crops."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class Encoder(nn.Module):
    """One twin of the Siamese network: image batch -> L2-normalised embeddings."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = [_conv_bn(3, config.stem, 3, 2)]
        cin = config.stem
        for stage, (width, depth) in enumerate(zip(config.widths, config.depths, strict=True)):
            for index in range(depth):
                stride = 2 if index == 0 and (stage > 0 or config.stride_first) else 1
                layers.append(_SeparableBlock(cin, width, stride))
                cin = width
        self.features = nn.Sequential(*layers)
        self.pool = GeM(config.gem_p)
        self.project = nn.Linear(cin, config.embed_dim)
        if config.mirror_symmetric:
            self.symmetrise_()

    @torch.no_grad()
    def symmetrise_(self) -> None:
        """Make every kernel its own mirror image (the mean of it and its left-right flip);
        a no-op for kernels already symmetric. Training calls it after each step."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size[1] > 1:
                module.weight.copy_((module.weight + module.weight.flip(-1)) / 2)

    @property
    def last_conv(self) -> nn.Module:
        """The last convolutional block (its output is what Grad-CAM explains)."""
        return self.features[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.pool(self.features(x))), dim=1)
