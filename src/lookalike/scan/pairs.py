"""Pairs of contents at or above a cut-off: neighbour search, then geometric verification.

The model's similarity of embeddings finds every pair at or above the cut-off. A model
with a `verify` config has its cut-off calibrated on verified similarities, so its
candidate pairs are scored after verification (`lookalike.candidates`), the way the
calibration scored them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from lookalike.candidates import (
    KnownPairs,
    Matcher,
    Pairs,
    candidate_scores,
    file_loader,
    score_in_blocks,
)
from lookalike.index import build_search, find_pairs
from lookalike.model import Model
from lookalike.score import cosine_from_cnn_similarity, decide
from lookalike.verify import Matches

__all__ = ["Pairs", "file_loader", "pair_scores"]


def pair_scores(
    model: Model,
    vectors: np.ndarray,
    min_similarity: float,
    load: Callable[[int], Image.Image],
    *,
    reuse: Pairs | KnownPairs | None = None,
    on_verified: Callable[[np.ndarray, np.ndarray, Matches], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    matcher: Matcher | None = None,
    flat: np.ndarray | None = None,
) -> Pairs:
    """Every pair of rows whose (verified, where the model verifies) similarity is at
    least `min_similarity`.

    `load(n)` opens row n's image for verification; `reuse` holds verified similarities
    known from before (not verified again); `on_verified(pairs, similarities,
    matches)` receives the new ones as they come; `on_progress(stage, done, total)`
    follows the "search" and "verify" stages; `matcher` verifies elsewhere (see
    `candidates.verify_pairs`); `flat` (N,) which rows are near-flat pictures
    (`Model.flat`; default: read from the embeddings).
    """
    report = on_progress or (lambda _s, _d, _t: None)
    n = len(vectors)
    if n < 2:
        return {}
    flat = model.flat(vectors) if flat is None else np.asarray(flat, dtype=bool)
    report("search", 0, n)
    search = build_search(vectors)
    found = find_pairs(
        vectors,
        cosine_from_cnn_similarity(min_similarity),
        search=search,
        on_progress=lambda done, _n: report("search", done, n),
    )
    found_pairs = np.stack([found.i, found.j], axis=1)
    raw = model.unverified_similarity(
        score_in_blocks(model.cnn_similarity, vectors, found_pairs, flat=flat)
    )
    verified: Pairs = {}
    if model.verify is not None:
        report("verify", 0, 0)
        verified = candidate_scores(
            model,
            vectors,
            load,
            search=search,
            reuse=reuse,
            keep_from=min_similarity,
            on_verified=on_verified,
            on_progress=lambda done, total: report("verify", done, total),
            matcher=matcher,
            flat=flat,
        )
    # Found pairs stay arrays until verification is over (a big scan holds millions), and
    # only pairs at the cut-off become dict entries: a verified score replaces the CNN's.
    scores: Pairs = {}
    for pair, score in zip(
        zip(found.i.tolist(), found.j.tolist(), strict=True), raw.tolist(), strict=True
    ):
        score = verified.pop(pair, score)
        if decide(score, min_similarity):
            scores[pair] = score
    scores.update((pair, s) for pair, s in verified.items() if decide(s, min_similarity))
    return scores
