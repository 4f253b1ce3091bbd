"""A benchmark set's truth file (groups, edits, distractors, sources) and its pairs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.records import FileError, Source, Truth

TRUTH_FILE = "truth.json"
IMAGES_DIR = "images"
TRUTH_SCHEMA = 1


class BenchmarkError(LookalikeError):
    """A benchmark set that cannot be built or read; the message says what to change."""


def write_truth(truth: Truth, *, seed: int, tiles: int) -> Path:
    """Write `truth.json` into the set's folder (aside, then renamed)."""
    payload: dict[str, Any] = {
        "schema_version": TRUTH_SCHEMA,
        "groups": [list(g) for g in truth.groups],
        "edits": truth.edits,
        "originals": list(truth.originals),
        "distractors": list(truth.distractors),
        "families": list(truth.families),
        "sources": {
            name: {"photo": s.photo, "size": list(s.size), "box": list(s.box) if s.box else None}
            for name, s in truth.sources.items()
        },
        "skipped": [{"photo": str(e.path), "reason": e.reason} for e in truth.skipped],
        "composites": [list(c) for c in truth.composites],
        "seed": seed,
        "tiles": tiles,
    }
    path = truth.root / TRUTH_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_truth(bench_dir: str | os.PathLike[str]) -> Truth:
    """Read a benchmark set's truth.json, checking it against its images folder."""
    root = Path(bench_dir)
    if root.name == TRUTH_FILE and root.is_file():
        root = root.parent
    path = root / TRUTH_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchmarkError(f"{root} is not a benchmark set (no {TRUTH_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"cannot read {path}: {exc}") from None
    try:
        groups = tuple(tuple(str(n) for n in g) for g in payload["groups"])
        edits = {str(k): str(v) for k, v in payload["edits"].items()}
        truth = Truth(
            root=root,
            groups=groups,
            edits=edits,
            originals=tuple(str(n) for n in payload["originals"]),
            distractors=tuple(str(n) for n in payload["distractors"]),
            sources={
                str(k): Source(
                    str(v["photo"]),
                    (int(v["size"][0]), int(v["size"][1])),
                    tuple(int(x) for x in v["box"]) if v.get("box") else None,  # type: ignore[arg-type]
                )
                for k, v in payload.get("sources", {}).items()
            },
            families=tuple(str(f) for f in payload.get("families", ())),
            skipped=tuple(
                FileError(Path(e["photo"]), str(e["reason"])) for e in payload.get("skipped", ())
            ),
            composites=tuple(tuple(str(n) for n in c) for c in payload.get("composites", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise BenchmarkError(
            f"{path} is not a valid truth file ({type(exc).__name__}: {exc})"
        ) from None
    _check_truth(truth, path)
    return truth


def _check_truth(truth: Truth, path: Path) -> None:
    names = truth.images
    if len(set(names)) != len(names):
        raise BenchmarkError(f"{path}: an image is listed twice")
    if any(not g for g in truth.groups) or tuple(g[0] for g in truth.groups) != truth.originals:
        raise BenchmarkError(f"{path}: every group must start with its original")
    members = {n for g in truth.groups for n in g[1:]}
    if members != set(truth.edits):
        raise BenchmarkError(f"{path}: the edits and the groups' copies disagree")
    if not {n for c in truth.composites for n in c} <= set(truth.distractors):
        raise BenchmarkError(f"{path}: every composite must be a distractor")
    images_dir = truth.root / IMAGES_DIR
    missing = [n for n in names if not (images_dir / n).is_file()]
    if missing:
        raise BenchmarkError(
            f"{len(missing)} images of {path} are missing from {images_dir} (first: {missing[0]})"
        )


@dataclass(frozen=True)
class PairLayout:
    """The images of a set in a fixed order, their groups and the positive pairs."""

    paths: tuple[Path, ...]
    group: np.ndarray
    """Group number of every image (each distractor has its own)."""
    positive_a: np.ndarray
    """Index of the original of each positive pair."""
    positive_b: np.ndarray
    """Index of the edited copy of each positive pair."""
    positive_family: tuple[str, ...]
    ignored: int
    """Pairs of two edits of one original: neither positive nor negative."""
    families: tuple[str, ...] = field(default=())
    siblings: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    """(S, 2) image indices of composite pairs on one background (negatives, listed apart)."""

    @property
    def positives(self) -> int:
        return int(self.positive_a.size)

    @property
    def negatives(self) -> int:
        """Every pair across groups."""
        n = len(self.paths)
        return n * (n - 1) // 2 - self.positives - self.ignored


def pair_layout(truth: Truth) -> PairLayout:
    """Number the images of a set and list its positive pairs."""
    names = truth.images
    index = {name: i for i, name in enumerate(names)}
    group = np.arange(len(names), dtype=np.int64)
    a, b, family = [], [], []
    ignored = 0
    for number, members in enumerate(truth.groups):
        for name in members:
            group[index[name]] = number
        for edit in members[1:]:
            a.append(index[members[0]])
            b.append(index[edit])
            family.append(truth.edits[edit])
        ignored += (len(members) - 1) * (len(members) - 2) // 2
    group[len(names) - len(truth.distractors) :] += len(truth.groups)
    siblings = [
        (index[a], index[b])
        for members in truth.composites
        for k, a in enumerate(members)
        for b in members[k + 1 :]
    ]
    images_dir = truth.root / IMAGES_DIR
    return PairLayout(
        paths=tuple(images_dir / n for n in names),
        group=group,
        positive_a=np.array(a, dtype=np.int64),
        positive_b=np.array(b, dtype=np.int64),
        positive_family=tuple(family),
        ignored=ignored,
        families=truth.families,
        siblings=np.array(siblings, dtype=np.int64).reshape(-1, 2),
    )
