"""Plain records of training and evaluation: epochs, metrics, benchmark truth, curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lookalike.records.errors import FileError


@dataclass(frozen=True)
class EpochLog:
    """Losses of one training epoch."""

    epoch: int
    loss: float
    val_loss: float
    seconds: float


@dataclass(frozen=True)
class OperatingPoint:
    """The cut-off a system needs for a pair precision, and the recall it gets there."""

    precision: float
    """The target pair precision (0.99, 0.999)."""
    recall: float
    min_score: float
    """Lowest score called a duplicate; inf when no cut-off reaches the precision."""
    max_distance: int | None = None
    """A peer hash's cut-off in its own unit (Hamming distance); None for the model or
    when no cut-off reaches the precision."""


@dataclass(frozen=True)
class Metrics:
    """Quality and cost of one system on one benchmark set."""

    system: str
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    recall_by_family: dict[str, float]
    positives_by_family: dict[str, int]
    at_p99: OperatingPoint
    at_p999: OperatingPoint
    recall_by_family_at_p99: dict[str, float]
    pr_auc: float
    roc_auc: float
    seconds: float
    images_per_s: float
    cpu_util: float
    peak_rss_mb: float
    min_score: float
    """The decision cut-off: scores at or above it are called duplicates."""
    images: int = 0
    unreadable: int = 0
    cpu_seconds: float = 0.0
    scoring_seconds: float = 0.0
    """The evaluation's own all-pairs scoring, apart from `seconds`."""
    min_similarity: float | None = None
    """The model's decision (its `min_score`); None for a peer."""
    verified_pairs: int | None = None
    """Candidate pairs the model verified geometrically; None for a peer."""
    max_distance: int | None = None
    """A peer hash's decision: Hamming distance <= this; None for the model."""
    bits: int | None = None
    """A peer hash's length; None for the model."""
    sibling_pairs: int = 0
    """Pairs of composites on one background (photos of one place, never copies)."""
    sibling_fp: int = 0
    """Of those, the pairs called duplicates at the system's decision cut-off."""

    @property
    def recall_at_p99(self) -> float:
        """Best recall with pair precision >= 0.99."""
        return self.at_p99.recall

    @property
    def recall_at_p999(self) -> float:
        """Best recall with pair precision >= 0.999."""
        return self.at_p999.recall

    @property
    def seconds_per_image(self) -> float:
        """Wall time per image (0.0 without images)."""
        return self.seconds / self.images if self.images else 0.0


@dataclass(frozen=True)
class Source:
    """Where a benchmark image comes from: a photo, and the box cut from it (None = whole).

    `box` is (left, top, right, bottom) in the photo scaled to `size` (width, height).
    """

    photo: str
    size: tuple[int, int]
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Truth:
    """A benchmark set: its images (file names under `root / "images"`) and their groups.

    Each group is an original followed by its edited copies; every distractor is a group
    of its own. Positives are original-edit pairs, two edits of one original are neither
    positive nor negative, and every pair across groups is a negative.
    """

    root: Path
    groups: tuple[tuple[str, ...], ...]
    edits: dict[str, str]
    originals: tuple[str, ...]
    distractors: tuple[str, ...]
    sources: dict[str, Source] = field(default_factory=dict)
    families: tuple[str, ...] = ()
    skipped: tuple[FileError, ...] = ()
    composites: tuple[tuple[str, ...], ...] = ()
    """Sets of distractors made on one background with different subjects: photos of one
    place, never copies (the hardest negatives; their pairs are also reported apart)."""

    @property
    def images(self) -> tuple[str, ...]:
        """Every image of the set: each group in order, then the distractors."""
        return tuple(name for group in self.groups for name in group) + self.distractors


@dataclass(frozen=True)
class Curves:
    """Score distributions and the ROC / precision-recall curves of one system on one set."""

    system: str
    roc: tuple[tuple[float, float], ...]
    """(false-positive rate, recall) from the strictest cut-off to the loosest."""
    pr: tuple[tuple[float, float], ...]
    """(recall, precision) at every distinct positive score, strictest first."""
    bin_edges: tuple[float, ...]
    positive_counts: tuple[int, ...]
    negative_counts: tuple[int, ...]


@dataclass(frozen=True)
class Evaluation:
    """One system's metrics and curves on one benchmark set."""

    metrics: Metrics
    curves: Curves
