"""The Model: a trained encoder with its preprocessing, calibrated decision and verification."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lookalike.model.detail import DETAIL_SIDE, DetailGate, measure_detail
from lookalike.model.inference import Inference
from lookalike.model.network import Encoder
from lookalike.model.preprocess import (
    Preprocess,
    load_prepared,
    prepare_image,
)
from lookalike.records import Comparison, ModelStamp
from lookalike.score import cnn_similarity_from_cosine, decide, is_ambiguous
from lookalike.verify import (
    NOTHING,
    Keypoints,
    Matches,
    VerifyConfig,
    fuse_evidence,
    load_for_matching,
    match_pairs,
)


@dataclass(frozen=True)
class Calibration:
    """How `min_similarity` was chosen."""

    min_similarity: float = 0.9
    method: str = "uncalibrated default"
    target_precision: float | None = None
    positives: int = 0
    negatives: int = 0


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
    detail: DetailGate | None = None
    """Pairs with a near-flat picture score 0 (see `lookalike.model.detail`)."""

    def __post_init__(self) -> None:
        self.encoder.eval()
        self.encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._inference = Inference(self.encoder, self.preprocess, self.runtime)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the inference caches (an ONNX Runtime session cannot be pickled)."""
        state = dict(self.__dict__)
        del state["_inference"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._inference = Inference(self.encoder, self.preprocess, self.runtime)

    def _engine(self) -> Inference:
        """The inference caches, renewed if the encoder, preprocessing or runtime changed."""
        engine = self._inference
        if (
            engine.encoder is not self.encoder
            or engine.preprocess != self.preprocess
            or engine.runtime != self.runtime
        ):
            self._inference = engine = Inference(self.encoder, self.preprocess, self.runtime)
        return engine

    @property
    def min_similarity(self) -> float:
        """The calibrated cut-off: pairs at or above it are duplicates."""
        return self.calibration.min_similarity

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Embed prepared uint8 NHWC inputs -> float32 (N, D) unit vectors."""
        if len(batch) == 0:
            return np.zeros((0, self.encoder.config.embed_dim), dtype=np.float32)
        return self._engine().embed(batch)

    def uses_onnx(self) -> bool:
        """Whether embeddings are computed by ONNX Runtime (see `runtime`)."""
        return self._engine().uses_onnx()

    def onnx_bytes(self) -> bytes:
        """The encoder (batch norm folded) exported to ONNX, for ONNX Runtime sessions."""
        return self._engine().onnx_bytes()

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
        return self.embed_measured(paths, batch_size)[0]

    def embed_measured(
        self, paths: Iterable[str | os.PathLike[str]], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """`embed`, and each picture's measured detail (N,) (`measure_detail`)."""
        paths = list(paths)
        chunks: list[np.ndarray] = []
        measured: list[float] = []
        for i in range(0, len(paths), batch_size):
            prepared = [load_prepared(p, self.preprocess) for p in paths[i : i + batch_size]]
            chunks.append(self.embed_arrays(np.stack(prepared)))
            measured.extend(measure_detail(p) for p in prepared)
        vectors = np.concatenate(chunks) if chunks else self.embed_arrays(np.zeros((0,)))
        return vectors, np.array(measured, dtype=np.float64)

    def cnn_similarity(
        self, a: np.ndarray, b: np.ndarray, gate: bool = True, flat: np.ndarray | None = None
    ) -> np.ndarray:
        """CNN similarity of embedding rows a[i] and b[i] (or one against many), in [0, 1];
        0 where a picture is near-flat, unless `gate` is False. `flat` says which pairs
        hold a near-flat picture (`flat_pairs` of `flat` rows; default: read from a, b)."""
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        scores = np.asarray(cnn_similarity_from_cosine(np.sum(a * b, axis=1)))
        if gate and scores.size and (flat is not None or self.detail is not None):
            scores = np.where(self.flat_pairs(a, b) if flat is None else flat, 0.0, scores)
        return scores

    def verification_prior(
        self, a: np.ndarray, b: np.ndarray, flat: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(CNN similarity, whether to verify) of embedding rows a[i] and b[i]; `flat` as
        for `cnn_similarity`.

        A pair is verified when its CNN similarity is ambiguous (`score.is_ambiguous`); one
        the CNN is confident of is raised by `confident_lift`.
        A pair with a near-flat picture scores 0, the CNN's word not counting there; if the
        CNN alone would have called it ambiguous or confident, it is verified from 0, so
        local features must carry it on their own. Nothing is verified without a verify
        config.
        """
        plain = self.cnn_similarity(a, b, gate=False)
        flat = self.flat_pairs(a, b) if flat is None else np.asarray(flat, dtype=bool)
        raw = np.where(flat, 0.0, plain)
        if self.verify is None:
            return raw, np.zeros(len(raw), dtype=bool)
        check = is_ambiguous(plain, self.verify) | (
            flat & (plain >= self.verify.min_cnn_similarity)
        )
        return self.unverified_similarity(raw), np.asarray(check, dtype=bool)

    def unverified_similarity(self, scores: np.ndarray) -> np.ndarray:
        """A pair's similarity when it is not verified, from its (gated) CNN similarity:
        the same, except that a CNN-confident pair is raised by `verify.confident_lift`
        (a near-flat picture's pairs score 0 and stay 0). Every scorer of the rule
        (scan, evaluate, compare, query, explain) goes through this."""
        config = self.verify
        if config is None or config.confident_lift <= 0.0:
            return scores
        lifted = 1.0 - (1.0 - scores) * np.exp(-config.confident_lift)
        return np.where(scores >= config.confident_cnn_similarity, lifted, scores)

    def flat(self, vectors: np.ndarray, measured: np.ndarray | None = None) -> np.ndarray:
        """Which rows are near-flat pictures (N,) bool: `detail`'s read-out of the
        embedding, overruled where `measured` detail (NaN: unknown) shows clear structure
        (`lookalike.model.detail`). All False without a detail gate."""
        vectors = np.atleast_2d(vectors)
        if self.detail is None:
            return np.zeros(len(vectors), dtype=bool)
        return self.detail.flat(vectors, measured)

    def flat_pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Where row a[i] or b[i] is a near-flat picture by the read-out alone (all False
        without a detail gate); callers that know measured detail pass `flat` instead."""
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        return np.asarray(self.flat(a) | self.flat(b))

    def cnn_similarity_matrix(
        self,
        a: np.ndarray,
        b: np.ndarray,
        flat_a: np.ndarray | None = None,
        flat_b: np.ndarray | None = None,
    ) -> np.ndarray:
        """CNN similarity of every row of `a` with every row of `b`: (len(a), len(b)) in
        [0, 1].

        Every scorer of embeddings (evaluation, scan, explain) goes through this method
        or `cnn_similarity` (both `lookalike.score`'s mapping), so the score is defined in
        one place. A pair with a near-flat picture scores 0 (`flat_a`, `flat_b`: which
        rows are, see `flat`; default: read from the rows).
        """
        a, b = np.atleast_2d(a).astype(np.float32), np.atleast_2d(b).astype(np.float32)
        scores = np.asarray(cnn_similarity_from_cosine(a @ b.T), dtype=np.float32)
        if scores.size:
            flat_a = self.flat(a) if flat_a is None else np.asarray(flat_a, dtype=bool)
            flat_b = self.flat(b) if flat_b is None else np.asarray(flat_b, dtype=bool)
            scores[flat_a[:, None] | flat_b[None, :]] = 0.0
        return scores

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
        found = self.match_counts(load, pairs, threads, cache)
        return fuse_evidence(scores, found, self.verify)

    def match_counts(
        self,
        load: Callable[[int], Image.Image],
        pairs: np.ndarray,
        threads: int | None = None,
        cache: dict[tuple[int, bool], Keypoints] | None = None,
    ) -> Matches:
        """Local-feature matches that verify each candidate pair (0: none that count), how
        much of the pictures each such match covers (`verify.Match.coverage`), and which
        pairs are two shots of one scene instead (`verify.residual_motion`).

        `pairs` (P, 2) holds image numbers, `load(n)` opens image n (once per image not in
        `cache`; the first image of a pair also gets mirrored keypoints). Callers pass only
        candidates: each image's nearest few neighbours with similarity >=
        `verify.min_cnn_similarity`.
        `cache` keeps keypoints by (image, mirrored) across calls; the caller bounds it.
        """
        if self.verify is None or len(pairs) == 0:
            return Matches.of([NOTHING] * len(pairs))
        return match_pairs(self.verify, load, pairs, threads, cache)

    def compare(
        self,
        a: str | os.PathLike[str],
        b: str | os.PathLike[str],
        min_similarity: float | None = None,
    ) -> Comparison:
        """Decide whether two image files are copies of one picture."""
        cut = self.min_similarity if min_similarity is None else min_similarity
        emb, measured = self.embed_measured([a, b])
        flat = self.flat(emb, measured)
        raw, check = self.verification_prior(emb[:1], emb[1:], flat[:1] | flat[1:])
        score = float(raw[0])
        if check[0] and self.verify is not None:
            paths = [a, b]
            config = self.verify
            score = float(
                self.refine(
                    lambda n: load_for_matching(paths[n], config),
                    np.array([[0, 1]]),
                    np.array([score]),
                    threads=1,
                )[0]
            )
        return Comparison(Path(a), Path(b), score, bool(decide(score, cut)), cut, self.model_id)

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

        Calibration puts the CNN's own precision cut-off in `verify.confident_cnn_similarity`
        (pairs above it skip verification), so it is the right cut-off without it.
        """
        if self.verify is None:
            return self
        cut = self.verify.confident_cnn_similarity
        calibration = (
            replace(self.calibration, min_similarity=cut, method="the CNN's own cut-off")
            if cut < 1.0
            else self.calibration
        )
        return replace(self, verify=None, calibration=calibration)

    def verifying_nearest(self, nearest: int) -> Model:
        """A copy whose verification takes each picture's `nearest` nearest neighbours
        first and its further ones only where either picture already has a copy
        (`VerifyConfig.first_candidates`): faster where copies are few, but a lone copy
        that is not among its original's `nearest` nearest is left to the CNN alone.
        Raises ValueError without verification or outside 1..`candidates_per_image`."""
        if self.verify is None:
            raise ValueError(f"{self.model_id} does not verify pairs")
        most = self.verify.candidates_per_image
        if not 1 <= nearest <= most:
            raise ValueError(f"nearest neighbours to verify first: 1 to {most}, not {nearest}")
        return replace(self, verify=replace(self.verify, first_candidates=nearest))

    def with_calibration(self, calibration: Calibration) -> Model:
        """A copy of this model using another decision rule."""
        return replace(self, calibration=calibration)


def rule_fingerprint(model: Model) -> str:
    """A short digest of the verification settings: verified similarities from equal
    rule fingerprints (and equal model fingerprints) can be reused."""
    settings: object = model.verify.fingerprint_settings() if model.verify is not None else None
    if model.detail is not None:  # (absent from older models: their fingerprints stay)
        gate = asdict(model.detail)
        if gate["side"] == DETAIL_SIDE:  # (so are gates from before `side` existed)
            del gate["side"]
        if gate["clear_detail"] is None:  # (and from before `clear_detail`)
            del gate["clear_detail"]
        settings = (settings, gate)
    return hashlib.sha256(repr(settings).encode()).hexdigest()[:16]


def fingerprint(model: Model) -> str:
    """A short digest of weights + preprocessing: embeddings from equal fingerprints mix."""
    digest = hashlib.sha256()
    digest.update(repr(asdict(model.preprocess)).encode())
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
