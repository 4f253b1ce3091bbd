"""All-pairs scoring of a benchmark set in blocks, so memory stays linear in its size."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lookalike.evaluate.metrics import ScoreTally
from lookalike.evaluate.truth import PairLayout

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Scores of images `rows` x images `cols` (index arrays), higher = more alike."""

BLOCK_ELEMENTS = 4_000_000
"""Scores computed at once (about 16 MB of float32): rows per block = this / images."""


def tally_pairs(
    layout: PairLayout,
    scorer: Scorer,
    min_score: float,
    *,
    valid: np.ndarray | None = None,
    block_elements: int = BLOCK_ELEMENTS,
) -> ScoreTally:
    """Score every positive pair and every negative pair of a set, block by block.

    Images that could not be read (`valid` False) score -inf against everything: their
    positives are misses and their negatives are true negatives, so every system is
    counted over the same pairs. Rows i of a block are scored against columns j > i only.
    """
    n = len(layout.paths)
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    positives = np.full(layout.positives, -np.inf)
    for original in np.unique(layout.positive_a):
        where = np.flatnonzero(layout.positive_a == original)
        copies = layout.positive_b[where]
        scores = np.asarray(scorer(np.array([original]), copies), dtype=np.float64)[0]
        positives[where] = np.where(valid[original] & valid[copies], scores, -np.inf)
    tally = ScoreTally(positives, layout.positive_family, min_score)
    rows_per_block = max(1, block_elements // max(1, n))
    for start in range(0, n - 1, rows_per_block):
        rows = np.arange(start, min(n, start + rows_per_block))
        cols = np.arange(start + 1, n)
        scores = np.array(scorer(rows, cols), copy=True)
        if not valid.all():
            scores[~valid[rows]] = -np.inf
            scores[:, ~valid[cols]] = -np.inf
        negative = (cols[None, :] > rows[:, None]) & (
            layout.group[rows][:, None] != layout.group[cols][None, :]
        )
        tally.add_negatives(scores[negative])
    return tally
