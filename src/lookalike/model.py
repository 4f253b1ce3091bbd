"""The Siamese encoder, its preprocessing, checkpoints and the similarity score."""

from __future__ import annotations

import copy
import hashlib
import io as _bytes_io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lookalike.errors import LookalikeError
from lookalike.io import load_image
from lookalike.records import Comparison, ModelStamp
from lookalike.runtime import OnnxEncoder, export_onnx, onnx_available
from lookalike.score import needs_verification, similarity_from_cosine
from lookalike.verify import (
    Keypoints,
    VerifyConfig,
    extract_keypoints,
    fuse_similarity,
    single_threaded_search,
    verified_inliers,
)

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint file layout; other versions are refused."""

DEFAULT_CHECKPOINT = Path(__file__).parent / "models" / "default.pt"


class CheckpointError(LookalikeError):
    """A checkpoint that is missing, corrupt or of an unknown format."""


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture hyper-parameters of the encoder (stored in every checkpoint)."""

    stem: int = 24
    widths: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 2, 2, 2)
    embed_dim: int = 128
    gem_p: float = 3.0
    stride_first: bool = True


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the encoder's input (stored in every checkpoint).

    The picture is decoded at reduced size, uniform borders are trimmed, it is squashed
    to `input_size` square and standardised by its own mean and spread, so brightness and
    contrast changes barely move it.
    """

    input_size: int = 128
    trim_borders: bool = True
    trim_tolerance: int = 12
    min_spread: float = 0.04
    decode_min_side: int = 0
    """Shortest side JPEGs are decoded at (reduced-size decoding); 0 = `input_size`."""

    @property
    def decode_side(self) -> int:
        """The side passed to `load_image(min_side=...)` when preparing encoder input."""
        return self.decode_min_side or self.input_size


@dataclass(frozen=True)
class Calibration:
    """How `min_similarity` was chosen."""

    min_similarity: float = 0.9
    method: str = "uncalibrated default"
    target_precision: float | None = None
    positives: int = 0
    negatives: int = 0


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

    @property
    def last_conv(self) -> nn.Module:
        """The last convolutional block (its output is what Grad-CAM explains)."""
        return self.features[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.pool(self.features(x))), dim=1)


def _trim_box(arr: np.ndarray, tolerance: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box inside a uniform border; the whole image if none."""
    h, w = arr.shape[:2]
    whole = (0, 0, w, h)
    if h < 8 or w < 8:
        return whole
    ring = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    # Twice the median is an integer (medians may end in .5), so the test stays exact in int16;
    # a per-channel maximum is far faster than a reduction over the short colour axis.
    twice = np.round(2 * np.median(ring, axis=0)).astype(np.int16)

    def off_colour(pixels: np.ndarray) -> np.ndarray:
        gap = np.abs(2 * pixels.astype(np.int16) - twice)
        return np.maximum(np.maximum(gap[..., 0], gap[..., 1]), gap[..., 2]) > 2 * tolerance

    # Most pictures have no border: when all four edges differ from the ring's colour
    # the box below would be the whole image, so skip the full pass (same result).
    if all(off_colour(edge).mean() > 0.02 for edge in (arr[0], arr[-1], arr[:, 0], arr[:, -1])):
        return whole
    differs = off_colour(arr)
    rows = np.flatnonzero(differs.mean(axis=1) > 0.02)
    cols = np.flatnonzero(differs.mean(axis=0) > 0.02)
    if rows.size == 0 or cols.size == 0:
        return whole
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (bottom - top) < 8 or (right - left) < 8:
        return whole
    if (bottom - top) * (right - left) > 0.97 * h * w:
        return whole
    return int(left), int(top), int(right), int(bottom)


def trim_box(image: Image.Image, preprocess: Preprocess) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) part of `image` that `prepare_image` squashes to input.

    Explanations map the encoder's view back onto the image with it.
    """
    if not preprocess.trim_borders:
        return (0, 0, image.width, image.height)
    return _trim_box(np.asarray(image.convert("RGB")), preprocess.trim_tolerance)


def prepare_image(image: Image.Image, preprocess: Preprocess) -> np.ndarray:
    """An RGB PIL image -> the encoder's uint8 input, `input_size` square, HWC."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if preprocess.trim_borders:
        box = _trim_box(np.asarray(image), preprocess.trim_tolerance)
        if box != (0, 0, image.width, image.height):
            image = image.crop(box)  # the same pixels as slicing the array, and no copy back
    size = preprocess.input_size
    resized = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8)


def load_prepared(path: str | os.PathLike[str], preprocess: Preprocess) -> np.ndarray:
    """Decode a file at reduced size and prepare it for the encoder (raises UnreadableImage)."""
    return prepare_image(load_image(path, min_side=preprocess.decode_side), preprocess)


def _statistics(pixels: np.ndarray, preprocess: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Each image's mean and sample standard deviation (at least `min_spread`), 0-255 scale."""
    flat = pixels.reshape(len(pixels), -1)
    count = flat.shape[1]
    # Exact integer sums: much faster than torch's std on one thread, and more precise.
    total = flat.sum(axis=1, dtype=np.int64).astype(np.float64)
    squares = np.einsum("ij,ij->i", flat, flat, dtype=np.int64).astype(np.float64)
    variance = np.maximum(squares - total * total / count, 0.0) / max(1, count - 1)
    spread = np.maximum(np.sqrt(variance), preprocess.min_spread * 255.0)
    shape = (-1, 1, 1, 1)
    mean = (total / count).astype(np.float32).reshape(shape)
    return mean, spread.astype(np.float32).reshape(shape)


def to_tensor(batch: np.ndarray, preprocess: Preprocess) -> torch.Tensor:
    """uint8 NHWC batch -> standardised float NCHW tensor in channels-last memory.

    Each image is standardised by its own mean and (sample) standard deviation, the
    latter at least `min_spread` on the 0-1 scale.
    """
    # np.require copies only read-only or non-contiguous input (torch warns on read-only).
    pixels = np.require(batch, requirements=["C", "W"])
    mean, spread = _statistics(pixels, preprocess)
    x = torch.from_numpy(pixels).float().sub_(torch.from_numpy(mean)).div_(torch.from_numpy(spread))
    # NHWC memory permuted to NCHW is exactly the channels-last layout.
    return x.permute(0, 3, 1, 2)


def standardise(batch: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """`to_tensor` in NumPy: uint8 NHWC -> standardised float32 NCHW (contiguous) array."""
    mean, spread = _statistics(batch, preprocess)
    # Transposed while still bytes, then converted once and scaled in place: the same
    # values as (x - mean) / spread, with a quarter of the memory traffic.
    x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)
    x -= mean
    x /= spread
    return x


@dataclass
class Model:
    """A trained Siamese encoder with its preprocessing and calibrated decision rule.

    >>> model = load_model()
    >>> model.compare("a.jpg", "b.jpg").duplicate
    """

    encoder: Encoder
    preprocess: Preprocess = field(default_factory=Preprocess)
    calibration: Calibration = field(default_factory=Calibration)
    model_id: str = "untrained"
    meta: dict[str, Any] = field(default_factory=dict)
    verify: VerifyConfig | None = None
    runtime: str = "auto"
    """"auto" (ONNX Runtime when installed, else PyTorch), "onnx" or "torch"."""

    def __post_init__(self) -> None:
        if self.runtime not in ("auto", "onnx", "torch"):
            raise ValueError(f"runtime must be auto, onnx or torch, not {self.runtime!r}")
        self.encoder.eval()
        self.encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._fast: Encoder | None = None
        self._fast_key: tuple[tuple[int, int], ...] = ()
        self._onnx: OnnxEncoder | None = None
        self._onnx_key: tuple[object, ...] = ()
        self._exported: tuple[object, bytes] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the inference caches (an ONNX Runtime session cannot be pickled)."""
        state = dict(self.__dict__)
        state.update(_fast=None, _fast_key=(), _onnx=None, _onnx_key=(), _exported=None)
        return state

    def _weights_key(self) -> tuple[tuple[int, int], ...]:
        """Changes whenever a weight or statistic is replaced or modified in place."""
        tensors = self.encoder.state_dict(keep_vars=True).values()
        return tuple((id(t), t._version) for t in tensors)

    def _inference_encoder(self) -> Encoder:
        """A copy with batch norm folded into the convolutions (same outputs, faster).

        Rebuilt when the encoder's weights change (during training, validation embeds
        with the model being trained).
        """
        key = self._weights_key()
        if self._fast is None or key != self._fast_key:
            fast = copy.deepcopy(self.encoder).eval()
            for module in fast.modules():
                if (
                    isinstance(module, nn.Sequential)
                    and len(module) == 3
                    and isinstance(module[0], nn.Conv2d)
                    and isinstance(module[1], nn.BatchNorm2d)
                ):
                    module[0] = fuse_conv_bn_eval(module[0], module[1])
                    module[1] = nn.Identity()
            self._fast = fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self._fast_key = key
        return self._fast

    @property
    def min_similarity(self) -> float:
        """The calibrated cut-off: pairs at or above it are duplicates."""
        return self.calibration.min_similarity

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Embed prepared uint8 NHWC inputs -> float32 (N, D) unit vectors."""
        if len(batch) == 0:
            return np.zeros((0, self.encoder.config.embed_dim), dtype=np.float32)
        with torch.inference_mode():
            encoder = self._inference_encoder()
            if self.uses_onnx():
                return self._onnx_encoder(encoder)(standardise(batch, self.preprocess))
            return encoder(to_tensor(batch, self.preprocess)).numpy().astype(np.float32)

    def _onnx_encoder(self, encoder: Encoder) -> OnnxEncoder:
        """The folded encoder in ONNX Runtime, rebuilt when weights or thread count change."""
        key = (self._fast_key, torch.get_num_threads())
        if self._onnx is None or key != self._onnx_key:
            self._onnx = OnnxEncoder(self.onnx_bytes(), torch.get_num_threads())
            self._onnx_key = key
        return self._onnx

    def uses_onnx(self) -> bool:
        """Whether embeddings are computed by ONNX Runtime (see `runtime`)."""
        return self.runtime == "onnx" or (self.runtime == "auto" and onnx_available())

    def onnx_bytes(self) -> bytes:
        """The encoder (batch norm folded) exported to ONNX, for ONNX Runtime sessions."""
        encoder = self._inference_encoder()
        if self._exported is None or self._exported[0] != self._fast_key:
            self._exported = (self._fast_key, export_onnx(encoder, self.preprocess.input_size))
        return self._exported[1]

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """Embed PIL images -> float32 (N, D) unit vectors."""
        chunks = [
            self.embed_arrays(
                np.stack([prepare_image(im, self.preprocess) for im in images[i : i + batch_size]])
            )
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks) if chunks else self.embed_arrays(np.zeros((0,)))

    def embed(self, paths: Iterable[str | os.PathLike[str]], batch_size: int = 64) -> np.ndarray:
        """Embed image files -> float32 (N, D); raises UnreadableImage on the first bad file."""
        paths = list(paths)
        chunks = []
        for i in range(0, len(paths), batch_size):
            prepared = [load_prepared(p, self.preprocess) for p in paths[i : i + batch_size]]
            chunks.append(self.embed_arrays(np.stack(prepared)))
        return np.concatenate(chunks) if chunks else self.embed_arrays(np.zeros((0,)))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Similarity of embedding rows a[i] and b[i] (or one against many), in [0, 1]."""
        cosine = np.sum(np.atleast_2d(a) * np.atleast_2d(b), axis=1)
        return np.asarray(similarity_from_cosine(cosine))

    def similarity_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Similarity of every row of `a` with every row of `b`: (len(a), len(b)) in [0, 1].

        Every scorer of embeddings (evaluation, scan, explain) goes through this method
        or `similarity`, so the score is defined in one place.
        """
        cosine = np.atleast_2d(a).astype(np.float32) @ np.atleast_2d(b).astype(np.float32).T
        return np.asarray(similarity_from_cosine(cosine), dtype=np.float32)

    def refine(
        self,
        load: Callable[[int], Image.Image],
        pairs: np.ndarray,
        similarities: np.ndarray,
        threads: int | None = None,
        cache: dict[tuple[int, bool], Keypoints] | None = None,
    ) -> np.ndarray:
        """Geometric verification of candidate pairs: their similarity after local matching
        (`match_counts` fused into `similarities`; unchanged without a verify config)."""
        scores = np.asarray(similarities, dtype=np.float64)
        if self.verify is None or len(pairs) == 0:
            return scores
        counts = self.match_counts(load, pairs, threads, cache)
        return fuse_similarity(scores, counts, self.verify)

    def match_counts(
        self,
        load: Callable[[int], Image.Image],
        pairs: np.ndarray,
        threads: int | None = None,
        cache: dict[tuple[int, bool], Keypoints] | None = None,
    ) -> np.ndarray:
        """Local-feature matches that verify each candidate pair (0: none that count).

        `pairs` (P, 2) holds image numbers, `load(n)` opens image n (once per image not in
        `cache`; the first image of a pair also gets mirrored keypoints). Callers pass only
        candidates: each image's nearest few neighbours with similarity >=
        `verify.candidate_min_similarity`.
        `cache` keeps keypoints by (image, mirrored) across calls; the caller bounds it.
        """
        if self.verify is None or len(pairs) == 0:
            return np.zeros(len(pairs))
        config = self.verify
        cache = {} if cache is None else cache

        firsts = set(np.asarray(pairs)[:, 0].tolist())

        def prime(n: int) -> None:
            # Runs once per image, before any match, so each image is decoded at most once.
            # Mirrored keypoints are matched for the first image of a pair: take both
            # sides from one decode (a mirrored match is tried for most pairs).
            missing = [
                m for m in ((False, True) if n in firsts else (False,)) if (n, m) not in cache
            ]
            if missing:
                image = load(n)
                for mirrored in missing:
                    cache[(n, mirrored)] = extract_keypoints(image, config, mirrored=mirrored)

        def inliers(pair: np.ndarray) -> int:
            a, b = int(pair[0]), int(pair[1])
            return verified_inliers(cache[(a, False)], cache[(a, True)], cache[(b, False)], config)

        from concurrent.futures import ThreadPoolExecutor

        images = np.unique(np.asarray(pairs).ravel())
        with ThreadPoolExecutor(
            threads or os.cpu_count() or 1, initializer=single_threaded_search
        ) as pool:
            list(pool.map(prime, images.tolist()))
            return np.array(list(pool.map(inliers, np.asarray(pairs))), dtype=np.float64)

    def compare(
        self,
        a: str | os.PathLike[str],
        b: str | os.PathLike[str],
        min_similarity: float | None = None,
    ) -> Comparison:
        """Decide whether two image files are copies of one picture."""
        cut = self.min_similarity if min_similarity is None else min_similarity
        emb = self.embed([a, b])
        score = float(self.similarity(emb[0], emb[1])[0])
        if self.verify is not None and needs_verification(score, self.verify):
            paths = [a, b]
            side = self.verify.side
            score = float(
                self.refine(
                    lambda n: load_image(paths[n], min_side=side),
                    np.array([[0, 1]]),
                    np.array([score]),
                    threads=1,
                )[0]
            )
        return Comparison(Path(a), Path(b), score, score >= cut, cut, self.model_id)

    def stamp(self) -> ModelStamp:
        """What an index records of this model (lookalike.index)."""
        return ModelStamp(
            self.model_id,
            fingerprint(self),
            rule_fingerprint(self) if self.verify is not None else None,
            asdict(self.preprocess),
            self.encoder.config.embed_dim,
        )

    def without_verification(self) -> Model:
        """The CNN alone, deciding at its own calibrated cut-off.

        Calibration puts the CNN's own precision cut-off in `verify.confident_similarity`
        (pairs above it skip verification), so it is the right cut-off without it.
        """
        if self.verify is None:
            return self
        cut = self.verify.confident_similarity
        calibration = (
            replace(self.calibration, min_similarity=cut, method="the CNN's own cut-off")
            if cut < 1.0
            else self.calibration
        )
        return replace(self, verify=None, calibration=calibration)

    def with_calibration(self, calibration: Calibration) -> Model:
        """A copy of this model using another decision rule."""
        return replace(self, calibration=calibration)


def save_model(model: Model, path: str | os.PathLike[str], **extra: Any) -> Path:
    """Write a checkpoint: weights, architecture, preprocessing, calibration, id, format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.encoder.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": "lookalike-siamese",
        "model_id": model.model_id,
        "encoder": asdict(model.encoder.config),
        "preprocess": asdict(model.preprocess),
        "calibration": asdict(model.calibration),
        "meta": model.meta,
        "verify": asdict(model.verify) if model.verify else None,
        "state_dict": state,
        **extra,
    }
    buffer = _bytes_io.BytesIO()
    torch.save(payload, buffer)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file's raw contents, checking its kind and format version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file there")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("kind") != "lookalike-siamese":
        raise CheckpointError(f"{path}: not a lookalike checkpoint")
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {payload.get('format')!r} is not supported "
            f"(this lookalike reads format {CHECKPOINT_FORMAT})"
        )
    return payload


def model_from_payload(payload: dict[str, Any]) -> Model:
    """Build a Model from a checkpoint's contents."""
    try:
        enc = payload["encoder"]
        config = EncoderConfig(
            **{**enc, "widths": tuple(enc["widths"]), "depths": tuple(enc["depths"])}
        )
        encoder = Encoder(config)
        encoder.load_state_dict(payload["state_dict"])
        return Model(
            encoder=encoder,
            preprocess=Preprocess(**payload["preprocess"]),
            calibration=Calibration(**payload["calibration"]),
            model_id=str(payload["model_id"]),
            meta=dict(payload.get("meta", {})),
            verify=VerifyConfig(**payload["verify"]) if payload.get("verify") else None,
        )
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint contents do not match the architecture: {exc}") from None


def load_model(path: str | os.PathLike[str] | None = None) -> Model:
    """Load a checkpoint; with no path, the default model bundled with lookalike."""
    if path is None:
        path = DEFAULT_CHECKPOINT
        if not path.is_file():
            raise CheckpointError(
                "the bundled default model is missing from this install; "
                "pass --model PATH (a checkpoint made by `lookalike train`)"
            )
    return model_from_payload(read_checkpoint(path))


def new_model(
    config: EncoderConfig | None = None,
    preprocess: Preprocess | None = None,
    seed: int = 0,
    model_id: str = "untrained",
) -> Model:
    """A freshly initialised model (random weights, seeded)."""
    torch.manual_seed(seed)
    return Model(Encoder(config or EncoderConfig()), preprocess or Preprocess(), model_id=model_id)


def rule_fingerprint(model: Model) -> str:
    """A short digest of the verification settings: verified similarities from equal
    rule fingerprints (and equal model fingerprints) can be reused."""
    settings = asdict(model.verify) if model.verify is not None else None
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:16]


def fingerprint(model: Model) -> str:
    """A short digest of weights + preprocessing: embeddings from equal fingerprints mix."""
    digest = hashlib.sha256()
    digest.update(repr(asdict(model.preprocess)).encode())
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
