"""Fast inference for an encoder: batch norm folded into the convolutions, optionally run
by ONNX Runtime; rebuilt whenever the encoder's weights change."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lookalike.model.network import Encoder
from lookalike.model.preprocess import Preprocess, standardise, to_tensor
from lookalike.runtime import OnnxEncoder, export_onnx, onnx_available

RUNTIMES = ("auto", "onnx", "torch")
"""Where embeddings are computed: "auto" (ONNX Runtime when installed, else PyTorch)."""


def fold_batch_norm(encoder: Encoder) -> Encoder:
    """A copy in eval mode with each Conv-BN pair folded into one convolution (same outputs)."""
    fast = copy.deepcopy(encoder).eval()
    for module in fast.modules():
        if (
            isinstance(module, nn.Sequential)
            and len(module) == 3
            and isinstance(module[0], nn.Conv2d)
            and isinstance(module[1], nn.BatchNorm2d)
        ):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    return fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload,no-any-return]


class Inference:
    """The folded encoder (and its ONNX Runtime session) for one `Encoder`.

    Kept in step with the encoder's weights: during training, validation embeds with the
    model being trained. Not picklable state is never pickled (`Model.__getstate__`).
    """

    def __init__(self, encoder: Encoder, preprocess: Preprocess, runtime: str) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be auto, onnx or torch, not {runtime!r}")
        self.encoder, self.preprocess, self.runtime = encoder, preprocess, runtime
        self._fast: Encoder | None = None
        self._fast_key: tuple[tuple[int, int], ...] = ()
        self._onnx: OnnxEncoder | None = None
        self._onnx_key: tuple[object, ...] = ()
        self._exported: tuple[object, bytes] | None = None

    def _weights_key(self) -> tuple[tuple[int, int], ...]:
        """Changes whenever a weight or statistic is replaced or modified in place."""
        tensors = self.encoder.state_dict(keep_vars=True).values()
        return tuple((id(t), t._version) for t in tensors)

    def folded(self) -> Encoder:
        """The encoder with batch norm folded, rebuilt when its weights changed."""
        key = self._weights_key()
        if self._fast is None or key != self._fast_key:
            self._fast, self._fast_key = fold_batch_norm(self.encoder), key
        return self._fast

    def uses_onnx(self) -> bool:
        """Whether embeddings are computed by ONNX Runtime (see `runtime`)."""
        return self.runtime == "onnx" or (self.runtime == "auto" and onnx_available())

    def onnx_bytes(self) -> bytes:
        """The folded encoder exported to ONNX, for ONNX Runtime sessions."""
        encoder = self.folded()
        if self._exported is None or self._exported[0] != self._fast_key:
            self._exported = (self._fast_key, export_onnx(encoder, self.preprocess.input_size))
        return self._exported[1]

    def _session(self) -> OnnxEncoder:
        """The ONNX Runtime session, rebuilt when weights or thread count change."""
        key = (self._fast_key, torch.get_num_threads())
        if self._onnx is None or key != self._onnx_key:
            self._onnx = OnnxEncoder(self.onnx_bytes(), torch.get_num_threads())
            self._onnx_key = key
        return self._onnx

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Prepared uint8 NHWC inputs (at least one) -> float32 (N, D) unit vectors."""
        with torch.inference_mode():
            encoder = self.folded()
            if self.uses_onnx():
                return self._session()(standardise(batch, self.preprocess))
            return encoder(to_tensor(batch, self.preprocess)).numpy().astype(np.float32)
