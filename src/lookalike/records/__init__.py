"""Plain records passed between lookalike's modules (frozen dataclasses only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.records.errors import FileError
from lookalike.records.evaluation import (
    Curves,
    EpochLog,
    Evaluation,
    Metrics,
    OperatingPoint,
    Source,
    Truth,
)

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "Comparison",
    "Curves",
    "EpochLog",
    "Evaluation",
    "Evidence",
    "Explanation",
    "FileError",
    "Group",
    "LabelConflict",
    "Leak",
    "LeakReport",
    "Match",
    "Member",
    "Metrics",
    "ModelStamp",
    "Move",
    "OperatingPoint",
    "Pair",
    "Quarantine",
    "ScanProgress",
    "ScanResult",
    "ScanStats",
    "Shot",
    "Source",
    "Traits",
    "Truth",
    "Verification",
    "decided_by",
]


def decided_by(
    exact: bool, matches: int | None, coverage: float | None = None, hash_bits: int = -1
) -> str:
    """A similarity's source in words: "exact copy", "verified, N matches over P % of the
    picture" (the share inside the matched points' hull: small when only a background or a
    corner matched), "CNN and perceptual hash, N bits apart" or "CNN"."""
    if exact:
        return "exact copy"
    if matches:
        over = f" over {round(100 * coverage)} % of the picture" if coverage else ""
        return f"verified, {matches} matches{over}"
    if hash_bits >= 0:
        return f"CNN and perceptual hash, {hash_bits} bits apart"
    return "CNN"


@dataclass(frozen=True)
class Verification:
    """What verification stored for a pair that it raised: the local-feature matches that
    counted and how much of the pictures they cover, or, with none, how many bits apart
    the perceptual hashes were (-1: the matches raised it)."""

    matches: int
    coverage: float
    hash_bits: int = -1


@dataclass(frozen=True)
class ModelStamp:
    """What an index records of the model whose embeddings it holds."""

    model_id: str
    fingerprint: str
    """Digest of weights and preprocessing: embeddings of equal fingerprints mix."""
    rule_fingerprint: str | None
    """Digest of the verification settings (None: the model does not verify)."""
    preprocess: dict[str, object]
    embed_dim: int


@dataclass(frozen=True)
class Comparison:
    """The verdict on one pair of images."""

    a: Path
    b: Path
    similarity: float
    duplicate: bool
    min_similarity: float
    model: str


@dataclass(frozen=True)
class Pair:
    """Two indexed images and how alike they are."""

    a: Path
    b: Path
    similarity: float
    duplicate: bool
    exact: bool = False
    matches: int | None = None
    """Local-feature matches that verified the pair (None: the CNN's similarity stands)."""
    coverage: float | None = None
    """How much of the pictures those matches cover (0-1; None without matches)."""
    hash_bits: int = -1
    """With no matches: how many bits apart the perceptual hashes that raised the pair
    are (-1: they did not)."""

    @property
    def decided_by(self) -> str:
        """What set the similarity: "exact copy", "verified, N matches over P % of the
        picture", "CNN and perceptual hash, N bits apart" or "CNN"."""
        return decided_by(self.exact, self.matches, self.coverage, self.hash_bits)


@dataclass(frozen=True)
class Shot:
    """Two photos of one scene (a near-duplicate shot): local features match and the
    content agrees, but parts of it moved between the shots, so neither is an edited copy
    of the other. Shown for review; never put in a group or selected for removal."""

    a: Path
    b: Path
    similarity: float
    """The CNN's similarity (verification did not raise it)."""
    coverage: float
    """How much of the pictures the match covers."""


@dataclass(frozen=True)
class Traits:
    """What the `best` keep policy measures in one picture (lookalike.scan.keepers)."""

    pixels: int
    """Pixels of the picture inside any uniform frame, at the file's full size."""
    colour: float
    """Mean HSV saturation, 0-255 (0: a grey picture)."""
    jpeg_quality: int | None
    """Estimated from the JPEG luminance quantisation table; None if not a JPEG."""
    thumb: bytes
    """A small square RGB copy of the picture inside its frame (side**2 * 3 bytes)."""


@dataclass(frozen=True)
class Member:
    """One image of a duplicate group and its similarity to the group's keeper."""

    path: Path
    similarity_to_keep: float
    exact: bool = False
    """Byte-identical to the keeper."""
    matches: int | None = None
    """Local-feature matches that verified it against the keeper (None: the CNN decided)."""
    coverage: float | None = None
    """How much of the pictures those matches cover (0-1)."""
    hash_bits: int = -1
    """With no matches: the perceptual hashes' distance that raised it (see `Pair`)."""

    @property
    def decided_by(self) -> str:
        """What set its similarity to the keeper (see `Pair.decided_by`)."""
        return decided_by(self.exact, self.matches, self.coverage, self.hash_bits)


@dataclass(frozen=True)
class Group:
    """Images that are copies of one picture; `keep` is the one to keep."""

    keep: Path
    members: tuple[Member, ...]
    keep_reason: str = ""
    """Why `keep` is the keeper: a code of lookalike.scan.KEEP_REASONS ("user": your choice)."""

    @property
    def duplicates(self) -> tuple[Path, ...]:
        """Members other than the keeper."""
        return tuple(m.path for m in self.members if m.path != self.keep)


@dataclass(frozen=True)
class ScanProgress:
    """Where a scan is: `stage` is walk, hash, embed, search, keepers or group; `total` None =
    unknown."""

    stage: str
    done: int
    total: int | None = None


@dataclass(frozen=True)
class ScanStats:
    """Counts and cost of one scan.

    `files` = image files found (each path once), `images` = readable distinct files,
    `exact_duplicates` = files byte-identical to another one (copies beyond the first),
    `embedded` = contents the model embedded in this run (the rest came from the index).
    """

    files: int
    images: int
    errors: int
    exact_duplicates: int
    groups: int
    seconds: float
    images_per_s: float
    embedded: int = 0
    hashed: int = 0
    same_file: int = 0


@dataclass(frozen=True)
class ScanResult:
    """What a scan found: every pair at or above the review cut-off, the groups, the errors."""

    pairs: tuple[Pair, ...]
    groups: tuple[Group, ...]
    errors: tuple[FileError, ...]
    stats: ScanStats
    min_similarity: float
    review_min_similarity: float
    keep: str
    model: str
    index: Path | None
    """The index file the result is kept in (None: none was kept, see find_duplicates)."""
    shots: tuple[Shot, ...] = ()
    """Near-duplicate shots: pairs of photos of one scene, not copies (never in groups)."""


@dataclass(frozen=True)
class Move:
    """One file moved (or deleted) by quarantine; `sha256` is its content before the move."""

    src: Path
    dst: Path | None
    sha256: str
    op: str


@dataclass(frozen=True)
class Quarantine:
    """The outcome of a quarantine or restore: what was done and what was left, and why."""

    manifest: Path | None
    done: tuple[Move, ...]
    skipped: tuple[FileError, ...]
    dry_run: bool = False
    stopped: str | None = None
    """Why it stopped early (a full or read-only disk): every file not moved is where it
    was, and every file moved is listed in the manifest."""


@dataclass(frozen=True)
class Match:
    """An image in another split (or class folder) that duplicates a given image."""

    path: Path
    split: str
    similarity: float
    exact: bool = False


@dataclass(frozen=True)
class Leak:
    """An image of one split with duplicates in other splits."""

    path: Path
    split: str
    matches: tuple[Match, ...]


@dataclass(frozen=True)
class LabelConflict:
    """A duplicate group whose members sit in different class folders."""

    labels: tuple[str, ...]
    members: tuple[Match, ...]


@dataclass(frozen=True)
class LeakReport:
    """Images that appear (as duplicates) in more than one split of a dataset.

    `split_counts` maps "A|B" (an unordered pair of splits) to the number of images of
    either split with a duplicate in the other; `folder_counts` maps a folder to its
    number of leaking images.
    """

    splits: tuple[str, ...]
    leaks: tuple[Leak, ...]
    split_counts: dict[str, int]
    folder_counts: dict[str, int]
    label_conflicts: tuple[LabelConflict, ...]
    min_similarity: float
    errors: tuple[FileError, ...] = ()


@dataclass(frozen=True, eq=False)
class Evidence:
    """What local-feature verification found for a pair, in each image's own pixels."""

    verdict: str
    """"agrees" (the match counts), or why not: "no match", "content differs", "misses
    the centre", "separate shot" (two shots of one scene: a near-duplicate shot)."""
    inliers: int
    """Matches consistent with the homography (0 without one)."""
    mirrored: bool
    """Whether A was matched mirrored."""
    points_a: np.ndarray
    """(K, 2) x, y of the matched keypoints in A."""
    points_b: np.ndarray
    """(K, 2) where the homography puts them in B."""
    outline: np.ndarray | None
    """(4, 2) B's corners mapped into A (None without a homography)."""
    coverage: float = 0.0
    """How much of the pictures the matched points span (see `verify.Match.coverage`)."""
    hash_bits: int = -1
    """With no match that counts: how many bits apart the pictures' perceptual hashes are,
    when close enough to be evidence (-1: not)."""

    @property
    def confirmed(self) -> bool:
        """The match counts: the pair's similarity was raised by it."""
        return self.verdict == "agrees"


@dataclass(frozen=True, eq=False)
class Explanation:
    """Why the model scores a pair as it does: one Grad-CAM heatmap per image.

    Each heatmap is float32 (height, width) of its image, in [0, 1] (1 = where the
    similarity's gradient weighs most); `a`/`b` are the files, None for in-memory images.
    """

    a: Path | None
    b: Path | None
    image_a: Image.Image
    image_b: Image.Image
    heatmap_a: np.ndarray
    heatmap_b: np.ndarray
    similarity: float
    duplicate: bool
    min_similarity: float
    method: str
    model: str
    evidence: Evidence | None = None
    """Local-feature verification of the pair, when it ran (None: the CNN decided alone)."""
