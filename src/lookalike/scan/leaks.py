"""Dataset checks: images duplicated across splits, and copies filed under different labels."""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.index import Index, IndexSchemaError, open_index
from lookalike.model import Model, load_model
from lookalike.records import (
    FileError,
    LabelConflict,
    Leak,
    LeakReport,
    Match,
    ScanProgress,
)
from lookalike.scan.groups import build_groups
from lookalike.scan.keepers import Candidate
from lookalike.scan.pairs import file_loader, pair_scores
from lookalike.scan.run import resolve_thresholds, scan_folder
from lookalike.scan.walk import ScanError


@dataclass(frozen=True)
class _Image:
    shown: str
    path: Path
    split: str
    label: str | None
    hash: str


def _is_index(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        open_index(path).close()
    except IndexSchemaError:
        return False
    return True


def _label(path: Path, root: Path | None) -> str | None:
    """The class folder: the first folder below the split's root (None if directly in it)."""
    if root is None:
        return None
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None


def _images(store: Index, split: str) -> list[_Image]:
    roots = {r.id: r.path for r in store.roots()}
    return [
        _Image(
            row.shown,
            row.path,
            split,
            _label(row.path, roots.get(row.root_id or -1)),
            row.hash or "",
        )
        for row in store.readable_files()
    ]


def find_leaks(
    splits: Sequence[str | os.PathLike[str]],
    *,
    model: Model | None = None,
    min_similarity: float | None = None,
    labels_from_folders: bool = False,
    index_dir: str | os.PathLike[str] | None = None,
    include_hidden: bool = False,
    on_progress: Callable[[ScanProgress], None] | None = None,
    reference: Sequence[str | os.PathLike[str]] = (),
) -> LeakReport:
    """Every image with a duplicate in another split; splits are folders or index files.

    A folder is scanned first (into `index_dir/split-<n>.lookalike` when given, so a
    rerun is incremental; otherwise into a temporary index). Index files are read as
    they are and must hold embeddings of `model` (default: the bundled model). With
    `labels_from_folders`, duplicate groups whose members sit in different class folders
    (the first folder below each split) are reported too. A `reference` folder or index
    (e.g. a public test set) is compared like a split, but its own images are never
    reported as leaks, and copies among the references are not looked for.

    >>> find_leaks(["data/train", "data/test"]).split_counts
    {'data/train|data/test': 3}
    """
    if len(splits) + len(reference) < 2 or not splits:
        raise ScanError(
            "give at least two splits (folders or indexes) to compare, or a split and a reference"
        )
    references = {str(r) for r in reference}
    splits = [*splits, *reference]
    names = [str(s) for s in splits]
    if len(set(names)) != len(names):
        raise ScanError("each split must be given once")
    model = model or load_model()
    cut, _ = resolve_thresholds(model, min_similarity, None)
    with tempfile.TemporaryDirectory(prefix="lookalike-leaks-") as scratch:
        folder = Path(index_dir) if index_dir else Path(scratch)
        images: list[_Image] = []
        errors: list[FileError] = []
        hash_vectors: dict[str, tuple[np.ndarray, float]] = {}  # vector, measured detail
        marked: set[tuple[str, str]] = set()
        for number, (split, name) in enumerate(zip(splits, names, strict=True)):
            path = Path(split)
            if _is_index(path):
                index_path = path
            elif path.is_dir():
                index_path = folder / f"split-{number}.lookalike"
                scan_folder(
                    [split],
                    index_path,
                    model=model,
                    min_similarity=cut,
                    review_min_similarity=cut,
                    include_hidden=include_hidden,
                    on_progress=on_progress,
                )
            else:
                raise ScanError(f"not a folder or a lookalike index: {split}")
            with open_index(index_path) as store:
                store.check_model(model)
                found = _images(store, name)
                images.extend(found)
                errors.extend(
                    FileError(Path(r.shown), r.error or "") for r in store.unreadable_files()
                )
                new = sorted({i.hash for i in found} - hash_vectors.keys())
                hash_vectors.update(
                    zip(new, zip(store.vectors(new), store.details(new), strict=True), strict=True)
                )
                marked |= store.not_duplicate_marks()
    return _report(
        images, hash_vectors, marked, names, cut, model, labels_from_folders, errors, references
    )


def _report(
    images: list[_Image],
    hash_vectors: dict[str, tuple[np.ndarray, float]],
    marked: set[tuple[str, str]],
    names: list[str],
    cut: float,
    model: Model,
    labels_from_folders: bool,
    errors: list[FileError],
    references: set[str],
) -> LeakReport:
    by_hash: dict[str, list[int]] = defaultdict(list)
    for k, image in enumerate(images):
        by_hash[image.hash].append(k)
    hashes = sorted(by_hash)
    pairs: list[tuple[int, int, float, bool]] = []
    for ids in by_hash.values():
        pairs.extend((a, b, 1.0, True) for n, a in enumerate(ids) for b in ids[n + 1 :])
    if len(hashes) > 1:
        vectors = np.stack([hash_vectors[h][0] for h in hashes])
        flat = model.flat(vectors, np.array([hash_vectors[h][1] for h in hashes]))
        path_of = {image.hash: str(image.path) for image in reversed(images)}
        scores = pair_scores(
            model,
            vectors,
            cut,
            file_loader([path_of[h] for h in hashes], model.verify),
            flat=flat,
        )
        for (i, j), score in scores.items():
            ha, hb = hashes[i], hashes[j]
            if (min(ha, hb), max(ha, hb)) in marked:
                continue
            pairs.extend((a, b, float(score), False) for a in by_hash[ha] for b in by_hash[hb])

    matches: dict[int, list[Match]] = defaultdict(list)
    for a, b, score, exact in pairs:
        ia, ib = images[a], images[b]
        if ia.split == ib.split or {ia.split, ib.split} <= references:
            continue
        if ia.split not in references:
            matches[a].append(Match(Path(ib.shown), ib.split, score, exact))
        if ib.split not in references:
            matches[b].append(Match(Path(ia.shown), ia.split, score, exact))
    leaks = []
    split_sets: dict[str, set[int]] = defaultdict(set)
    folder_counts: dict[str, int] = defaultdict(int)
    order = {name: n for n, name in enumerate(names)}
    for k in sorted(matches, key=lambda k: (order[images[k].split], images[k].shown)):
        image = images[k]
        found_in = sorted(matches[k], key=lambda m: (-m.similarity, str(m.path)))
        leaks.append(Leak(Path(image.shown), image.split, tuple(found_in)))
        folder_counts[str(Path(image.shown).parent)] += 1
        for other in {m.split for m in found_in}:
            first, second = sorted((image.split, other), key=order.__getitem__)
            split_sets[f"{first}|{second}"].add(k)

    conflicts: list[LabelConflict] = []
    if labels_from_folders:
        candidates = {
            k: Candidate(k, f"{order[i.split]:06d}/{i.shown}", 0, 0, 0, 0, k, i.hash)
            for k, i in enumerate(images)
        }
        for plan in build_groups(candidates, pairs, min_similarity=cut, keep="first"):
            labels = {images[f].label for f, _ in plan.members} - {None}
            if len(labels) > 1:
                members = tuple(
                    Match(
                        Path(images[f].shown),
                        images[f].split,
                        s,
                        images[f].hash == images[plan.keep].hash,
                    )
                    for f, s in plan.members
                )
                conflicts.append(LabelConflict(tuple(sorted(labels)), members))  # type: ignore[arg-type]
    return LeakReport(
        splits=tuple(names),
        leaks=tuple(leaks),
        split_counts={key: len(v) for key, v in sorted(split_sets.items())},
        folder_counts=dict(sorted(folder_counts.items())),
        label_conflicts=tuple(conflicts),
        min_similarity=cut,
        errors=tuple(errors),
    )
