"""What the review page shows: plain records of files, groups, pairs and quarantines."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.records import FileError, Quarantine


@dataclass(frozen=True)
class FileView:
    """One file as the page shows it. `status`: present, quarantined, missing or changed."""

    id: int
    path: str
    size: int
    width: int | None
    height: int | None
    status: str
    version: str
    reference: bool = False
    """Under a reference folder of the scan: never quarantined from the page."""


@dataclass(frozen=True)
class MemberView:
    """A group member, its similarity to the keeper, and whether it is the keeper."""

    file: FileView
    similarity: float
    keeper: bool
    decided_by: str = ""
    """What set its similarity to the keeper: "exact copy", "verified, N matches" or "CNN"."""


@dataclass(frozen=True)
class GroupView:
    """One group at the page's cut-off; `number` counts from 1, largest groups first."""

    number: int
    keep_by: str
    """Why the keeper is kept: "user" (chosen on this page) or a keep reason code."""
    members: tuple[MemberView, ...]
    keep_reason: str = ""
    """The same in words, for people."""


@dataclass(frozen=True)
class GroupsPage:
    """A page of groups at one cut-off, and how many there are in all."""

    min_similarity: float
    total: int
    offset: int
    limit: int
    groups: tuple[GroupView, ...]


@dataclass(frozen=True)
class PairView:
    """Two files side by side, with their stored similarity (None: no stored pair)."""

    a: FileView
    b: FileView
    similarity: float | None
    exact: bool
    decided_by: str = ""
    """What set the similarity (see `MemberView.decided_by`)."""
    shot: bool = False
    """The two are a near-duplicate shot (photos of one scene), not copies."""


@dataclass(frozen=True)
class ShotView:
    """A near-duplicate shot: two photos of one scene, never in a group."""

    a: FileView
    b: FileView
    similarity: float
    """The CNN's similarity."""
    coverage: float
    """How much of the pictures the local-feature match covers."""


@dataclass(frozen=True)
class ShotsPage:
    """A page of near-duplicate shots, and how many there are in all."""

    total: int
    offset: int
    limit: int
    shots: tuple[ShotView, ...]


@dataclass(frozen=True)
class QuarantinePreview:
    """What a quarantine would do (a dry run), to be confirmed by `preview` id."""

    preview: str
    outcome: Quarantine
    refused: tuple[FileError, ...]


@dataclass(frozen=True)
class ManifestView:
    """A manifest in the quarantine folder: files listed, and how many are still there."""

    name: str
    files: int
    in_quarantine: int


@dataclass(frozen=True)
class Cutoffs:
    """The stored scan's duplicate and review cut-offs and keep policy."""

    min_similarity: float
    review_min_similarity: float
    keep: str
