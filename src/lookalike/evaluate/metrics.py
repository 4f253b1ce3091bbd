"""Pair metrics: confusion counts, recall at precision, PR / ROC curves, calibration.

Scores are always "higher = more alike" and a cut-off t calls every pair with score >= t
a duplicate, so tied scores are decided together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lookalike.augment import FAMILIES
from lookalike.model import Calibration
from lookalike.records import Curves, Metrics, OperatingPoint

HISTOGRAM_BINS = 100
"""Bins over [0, 1] of the score histograms (plots only; no metric uses them)."""


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


def _ratio(num: float, den: float) -> float:
    """num / den, or 0.0 when den is 0 (scikit-learn's zero_division=0)."""
    return float(num / den) if den else 0.0


def _family_order(names: Sequence[str]) -> list[str]:
    rank = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(set(names), key=lambda f: (rank.get(f, len(rank)), f))


class ScoreTally:
    """Exact pair counts of one system on one set, with the negatives streamed in blocks.

    Every positive score is kept. Negative scores are never stored: each block is counted
    into the gaps between the distinct positive scores and onto them (ties). Those counts
    give the exact number of negatives at or above every cut-off that can change recall,
    which is all that recall at a precision, average precision and ROC AUC depend on;
    negatives at or above `min_score` (the decision cut-off) are counted too. Memory is
    O(positives) however many negative pairs there are. A coarse histogram feeds plots.

    >>> tally = ScoreTally(pos_scores, pos_families, min_score=0.9)
    >>> for block in blocks:
    ...     tally.add_negatives(block)
    >>> tally.metrics("model").recall_at_p99
    """

    def __init__(
        self,
        positives: np.ndarray | Sequence[float],
        families: Sequence[str] | None,
        min_score: float,
    ) -> None:
        self.positives = np.asarray(positives, dtype=np.float64).ravel()
        if np.isnan(self.positives).any():
            raise ValueError("positive scores contain NaN")
        self.families = np.asarray(
            families if families is not None else [""] * self.positives.size, dtype=object
        )
        if self.families.shape != self.positives.shape:
            raise ValueError(
                f"{self.families.size} families for {self.positives.size} positive scores"
            )
        self.min_score = float(min_score)
        self._cuts, self._cut_counts = np.unique(self.positives, return_counts=True)
        m = self._cuts.size
        self._gap = np.zeros(m + 1, dtype=np.int64)  # negatives strictly between cuts
        self._equal = np.zeros(m, dtype=np.int64)  # negatives equal to a cut
        self.negatives = 0
        self.false_positives = 0
        self.negative_histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)

    def add_negatives(self, scores: np.ndarray | Sequence[float]) -> None:
        """Count one block of negative-pair scores (any shape; NaN is refused)."""
        s = np.asarray(scores).ravel()
        if s.size == 0:
            return
        if np.isnan(s).any():
            raise ValueError("negative scores contain NaN")
        self.negatives += s.size
        self.false_positives += int(np.count_nonzero(s >= self.min_score))
        self.negative_histogram += _histogram(s)
        if self._cuts.size == 0:
            return
        low = s < self._cuts[0]
        self._gap[0] += int(np.count_nonzero(low))
        rest = s[~low].astype(np.float64)
        if rest.size == 0:
            return
        idx = np.searchsorted(self._cuts, rest, side="right")  # >= 1: rest >= cuts[0]
        tied = self._cuts[idx - 1] == rest
        self._equal += np.bincount(idx[tied] - 1, minlength=self._cuts.size)
        self._gap += np.bincount(idx[~tied], minlength=self._cuts.size + 1)

    def _ladder(self) -> tuple[np.ndarray, np.ndarray]:
        """(positives >= cut, negatives >= cut) for every distinct positive score, ascending."""
        pos_ge = np.cumsum(self._cut_counts[::-1])[::-1]
        neg_ge = np.cumsum(self._equal[::-1])[::-1] + np.cumsum(self._gap[::-1])[::-1][1:]
        return pos_ge, neg_ge

    def recall_at(self, target: float) -> tuple[float, float]:
        """Best recall with precision >= target and its cut-off ((0.0, inf) if none)."""
        if self.positives.size == 0:
            return 0.0, float("inf")
        pos_ge, neg_ge = self._ladder()
        ok = np.flatnonzero(pos_ge / (pos_ge + neg_ge) >= target)
        if ok.size == 0:
            return 0.0, float("inf")
        best = ok[0]  # the lowest qualifying cut has the most positives above it
        return float(pos_ge[best] / self.positives.size), float(self._cuts[best])

    def average_precision(self) -> float:
        """Area under the precision-recall curve as average precision (NaN without positives)."""
        if self.positives.size == 0:
            return float("nan")
        pos_ge, neg_ge = self._ladder()
        precision = pos_ge / (pos_ge + neg_ge)
        return float(np.sum(self._cut_counts * precision) / self.positives.size)

    def roc_auc(self) -> float:
        """P(positive scores above a negative), ties counting half (NaN if a class is empty)."""
        if self.positives.size == 0 or self.negatives == 0:
            return float("nan")
        pos_ge = np.append(np.cumsum(self._cut_counts[::-1])[::-1], 0)
        above = float(np.sum(self._gap * pos_ge))
        tied = float(np.sum(self._equal * (pos_ge[1:] + 0.5 * self._cut_counts)))
        return (above + tied) / (self.positives.size * self.negatives)

    def metrics(
        self,
        system: str,
        *,
        seconds: float = 0.0,
        images: int = 0,
        cpu_util: float = 0.0,
        peak_rss_mb: float = 0.0,
    ) -> Metrics:
        """Every quality figure of the system, plus the cost figures it is given."""
        found = self.positives >= self.min_score
        tp, fn = int(found.sum()), int((~found).sum())
        fp, tn = self.false_positives, self.negatives - self.false_positives
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        r99, cut99 = self.recall_at(0.99)
        r999, cut999 = self.recall_at(0.999)
        families = _family_order(list(self.families)) if self.families.size else []
        by_family = {f: self.families == f for f in families}
        return Metrics(
            system=system,
            tp=tp,
            fp=fp,
            fn=fn,
            tn=tn,
            precision=precision,
            recall=recall,
            f1=_ratio(2 * precision * recall, precision + recall),
            recall_by_family={f: float(found[m].mean()) for f, m in by_family.items()},
            positives_by_family={f: int(m.sum()) for f, m in by_family.items()},
            at_p99=OperatingPoint(0.99, r99, cut99),
            at_p999=OperatingPoint(0.999, r999, cut999),
            recall_by_family_at_p99={
                f: float((self.positives[m] >= cut99).mean()) for f, m in by_family.items()
            },
            pr_auc=self.average_precision(),
            roc_auc=self.roc_auc(),
            seconds=seconds,
            images_per_s=_ratio(images, seconds),
            cpu_util=cpu_util,
            peak_rss_mb=peak_rss_mb,
            min_score=self.min_score,
            images=images,
        )

    def curves(self, system: str) -> Curves:
        """Exact ROC and PR curves (strictest cut-off first) and the score histograms."""
        p, n = self.positives.size, self.negatives
        roc: list[tuple[float, float]] = [(0.0, 0.0)]
        pr: list[tuple[float, float]] = []
        if p:
            pos_ge, neg_ge = self._ladder()
            pos_above = np.append(pos_ge[1:], 0)
            for j in range(self._cuts.size - 1, -1, -1):
                # Lowering the cut to cuts[j] first passes the negatives strictly above
                # it, then the positives and negatives tied on it together.
                roc.append((_ratio(neg_ge[j] - self._equal[j], n), pos_above[j] / p))
                roc.append((_ratio(neg_ge[j], n), pos_ge[j] / p))
                pr.append((pos_ge[j] / p, pos_ge[j] / (pos_ge[j] + neg_ge[j])))
        roc.append((1.0 if n else 0.0, 1.0 if p else 0.0))
        return Curves(
            system=system,
            roc=tuple((float(x), float(y)) for x, y in roc),
            pr=tuple((float(x), float(y)) for x, y in pr),
            bin_edges=tuple(float(e) for e in np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)),
            positive_counts=tuple(int(c) for c in _histogram(self.positives)),
            negative_counts=tuple(int(c) for c in self.negative_histogram),
        )


def _histogram(scores: np.ndarray) -> np.ndarray:
    """Counts in HISTOGRAM_BINS equal bins over [0, 1]; scores outside land in the end bins."""
    index = np.clip(np.floor(scores * HISTOGRAM_BINS), 0, HISTOGRAM_BINS - 1).astype(np.int64)
    return np.bincount(index, minlength=HISTOGRAM_BINS)


def evaluate_pairs(
    positives: np.ndarray | Sequence[float],
    negatives: np.ndarray | Sequence[float],
    families: Sequence[str] | None = None,
    min_score: float = 0.5,
    system: str = "pairs",
) -> Metrics:
    """Metrics of scored pairs: confusion at `min_score`, recall at precision, AUCs.

    `families` labels each positive (edit family) for per-family recall. Undefined
    ratios (no positives, nothing called a duplicate) are 0.0, AUCs are NaN.

    >>> evaluate_pairs([0.9, 0.8], [0.1, 0.85], ["jpeg", "crop"], min_score=0.82).tp
    1
    """
    tally = ScoreTally(positives, families, min_score)
    tally.add_negatives(np.asarray(negatives, dtype=np.float64))
    return tally.metrics(system)
