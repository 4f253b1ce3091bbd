"""Pairs of contents at or above a cut-off: neighbour search, then geometric verification.

The model's similarity of embeddings finds every pair at or above the cut-off. A model
with a `verify` config has its cut-off calibrated on verified similarities: the CNN
proposes each image's `candidates_per_image` nearest neighbours, and the pairs whose
CNN similarity is ambiguous (`VerifyConfig.is_candidate`) get their similarity from
`Model.refine` (local features matched under RANSAC). Scans and leak checks score pairs
this way, so the cut-off means what it was calibrated to mean.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np
from PIL import Image

from lookalike.index import build_search, find_pairs, nearest_pairs
from lookalike.io import UnreadableImage, load_image
from lookalike.model import Model

CHUNK = 4000
"""Pairs verified at a time: bounds the keypoints held in memory, and the work lost to a kill."""


def candidate_pairs(
    model: Model, vectors: np.ndarray, search: faiss.Index | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) row pairs to verify and their CNN similarities; empty without a verify config."""
    config = model.verify
    if config is None or len(vectors) < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    near = nearest_pairs(vectors, config.candidates_per_image, search=search)
    raw = model.similarity(vectors[near.i], vectors[near.j])
    keep = (raw >= config.candidate_min_similarity) & (raw < config.confident_similarity)
    keep &= raw < 1.0 - 1e-6
    return np.stack([near.i[keep], near.j[keep]], axis=1), raw[keep]


def file_loader(paths: list[str], side: int) -> Callable[[int], Image.Image]:
    """`load(n)` for Model.refine: row n's file at reduced size, blank if it cannot be read.

    A blank image has no keypoints, so a file that vanished since it was embedded simply
    gets no geometric evidence (its CNN similarity stands).
    """

    def load(n: int) -> Image.Image:
        try:
            return load_image(paths[n], min_side=side)
        except UnreadableImage:
            return Image.new("RGB", (8, 8))

    return load


def verify_pairs(
    model: Model,
    pairs: np.ndarray,
    raw: np.ndarray,
    load: Callable[[int], Image.Image],
    *,
    on_chunk: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Verified similarities of `pairs`, computed CHUNK pairs at a time (sorted by image).

    `on_chunk(pairs, similarities)` runs after each chunk (to store them as they come).
    """
    fused = np.asarray(raw, dtype=np.float64).copy()
    order = np.lexsort((pairs[:, 1], pairs[:, 0])) if len(pairs) else np.zeros(0, dtype=np.int64)
    for start in range(0, len(order), CHUNK):
        rows = order[start : start + CHUNK]
        fused[rows] = model.refine(load, pairs[rows], fused[rows])
        if on_chunk:
            on_chunk(pairs[rows], fused[rows])
    return fused


Pairs = dict[tuple[int, int], float]
"""Similarity by row pair (i < j) of the vectors."""


def pair_scores(
    model: Model,
    vectors: np.ndarray,
    min_similarity: float,
    load: Callable[[int], Image.Image],
    *,
    reuse: Pairs | None = None,
    on_verified: Callable[[np.ndarray, np.ndarray], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Pairs:
    """Every pair of rows whose (verified, where the model verifies) similarity is at
    least `min_similarity`.

    `load(n)` opens row n's image for verification; `reuse` holds verified similarities
    known from before (not verified again); `on_verified(pairs, similarities)` receives
    the new ones as they come; `on_progress(stage, done, total)` follows the "search"
    and "verify" stages.
    """
    report = on_progress or (lambda _s, _d, _t: None)
    n = len(vectors)
    if n < 2:
        return {}
    report("search", 0, n)
    search = build_search(vectors)
    found = find_pairs(
        vectors,
        2.0 * min_similarity - 1.0,
        search=search,
        on_progress=lambda done, _n: report("search", done, n),
    )
    raw = model.similarity(vectors[found.i], vectors[found.j]).tolist()
    scores: Pairs = dict(
        zip(zip(found.i.tolist(), found.j.tolist(), strict=True), raw, strict=True)
    )
    if model.verify is not None:
        candidates, cnn = candidate_pairs(model, vectors, search)
        known = reuse or {}
        todo = [k for k, (i, j) in enumerate(candidates.tolist()) if (i, j) not in known]
        scores.update(
            (pair, known[pair]) for pair in map(tuple, candidates.tolist()) if pair in known
        )
        done = 0
        report("verify", 0, len(todo))

        def chunk_done(pairs: np.ndarray, fused: np.ndarray) -> None:
            nonlocal done
            done += len(pairs)
            if on_verified:
                on_verified(pairs, fused)
            report("verify", done, len(todo))

        fused = verify_pairs(model, candidates[todo], cnn[todo], load, on_chunk=chunk_done)
        scores.update(zip(map(tuple, candidates[todo].tolist()), fused.tolist(), strict=True))
    return {pair: s for pair, s in scores.items() if s >= min_similarity}
