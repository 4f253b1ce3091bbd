"""Metrics, calibration of min_similarity, benchmark sets and peer systems."""

from __future__ import annotations

import numpy as np

from lookalike.model import Calibration


def recall_at_precision(
    positives: np.ndarray, negatives: np.ndarray, target: float
) -> tuple[float, float]:
    """Best recall reachable with precision >= target, and the cut-off that gives it.

    Scores are "higher = more alike"; a cut-off t calls every pair with score >= t a
    duplicate, so tied scores are always decided together. Returns (0.0, inf) when no
    cut-off reaches the target.
    """
    pos = np.sort(np.asarray(positives, dtype=np.float64))[::-1]
    neg = np.sort(np.asarray(negatives, dtype=np.float64))[::-1]
    if pos.size == 0:
        return 0.0, float("inf")
    cuts = np.unique(pos)[::-1]
    tp = np.searchsorted(-pos, -cuts, side="right")
    fp = np.searchsorted(-neg, -cuts, side="right")
    precision = tp / np.maximum(tp + fp, 1)
    ok = np.flatnonzero(precision >= target)
    if ok.size == 0:
        return 0.0, float("inf")
    best = ok[np.argmax(tp[ok])]
    return float(tp[best] / pos.size), float(cuts[best])


def calibrate_min_similarity(
    positives: np.ndarray, negatives: np.ndarray, target_precision: float = 0.99
) -> Calibration:
    """Choose min_similarity: the lowest cut-off whose precision is >= target_precision.

    The cut-off is placed halfway between the chosen positive score and the highest
    negative below it, so that a score equal to a calibration negative stays rejected.
    """
    recall, cut = recall_at_precision(positives, negatives, target_precision)
    neg = np.asarray(negatives, dtype=np.float64)
    if not np.isfinite(cut):
        cut = float(neg.max()) + 1e-6 if neg.size else 1.0
    else:
        below = neg[neg < cut]
        if below.size:
            cut = (cut + float(below.max())) / 2.0
    return Calibration(
        min_similarity=round(min(1.0, cut), 6),
        method=f"lowest cut-off with pair precision >= {target_precision} "
        f"(recall {recall:.4f} there)",
        target_precision=target_precision,
        positives=int(np.size(positives)),
        negatives=int(neg.size),
    )
