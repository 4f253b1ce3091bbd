"""Benchmark sets: originals, one edited copy per family, distractors, and the truth file."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import xxhash

from lookalike.augment import FAMILIES
from lookalike.evaluate.bench_images import MIN_TILE as MIN_TILE
from lookalike.evaluate.bench_images import _Job, _run_jobs
from lookalike.evaluate.bench_images import tile_boxes as tile_boxes
from lookalike.evaluate.truth import IMAGES_DIR, BenchmarkError, write_truth
from lookalike.io import iter_image_files
from lookalike.records import FileError, Source, Truth

SIBLINGS = 3
"""Composites made on each background: different subjects, one place."""


def read_photo_list(path: str | os.PathLike[str]) -> list[str]:
    """Photo names from a list file: one per line, blank lines and `#` comments ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BenchmarkError(f"cannot read photo list {path}: {exc.strerror or exc}") from None
    return [s for line in lines if (s := line.strip()) and not s.startswith("#")]


def _digest(path: Path) -> str:
    return xxhash.xxh3_128_hexdigest(path.read_bytes())


def _choose_photos(photo_dir: Path, photo_names: Sequence[str] | None) -> list[tuple[Path, str]]:
    if not photo_dir.is_dir():
        raise BenchmarkError(f"not a folder: {photo_dir}")
    if photo_names is None:
        paths = list(iter_image_files([photo_dir]))
        return [(p, p.relative_to(photo_dir).as_posix()) for p in paths]
    missing = [n for n in photo_names if not (photo_dir / n).is_file()]
    if missing:
        raise BenchmarkError(
            f"{len(missing)} listed photos are not in {photo_dir} (first: {missing[0]})"
        )
    return [(photo_dir / n, n) for n in dict.fromkeys(photo_names)]


def make_benchmark(
    photo_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    originals: int = 50,
    distractors: int = 50,
    seed: int = 0,
    tiles: int = 0,
    more_distractors: str | os.PathLike[str] | None = None,
    composites: int = 0,
    composite_photos: str | os.PathLike[str] | None = None,
    families: Sequence[str] = FAMILIES,
    edits_per_original: int | None = None,
    photo_names: Sequence[str] | None = None,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Truth:
    """Build a benchmark set in `out` (a new or empty folder) and return its truth.

    From the photos of `photo_dir` (or only `photo_names` in it), `originals` photos each
    give an original and one edited copy per family (with `edits_per_original`, that many
    families drawn at random without repeats); `distractors` other photos are used
    whole, or cut into up to `tiles` non-overlapping tiles (the whole photo is then not
    used). Every image of `more_distractors` is a distractor photo too; exact byte
    duplicates of photos already chosen are skipped. `composites` further photos are
    backgrounds, each given SIBLINGS different subjects (crops of yet other photos, pasted
    near the centre): photos of one place that are not copies, counted as distractors and
    listed in `Truth.composites`, drawn from `composite_photos` (a folder used for nothing
    else), or else from the remaining photos, then from `more_distractors`. Images get
    random, seeded names (`out/images/<16 hex>.jpg`), so nothing leaks through names;
    `out/truth.json` holds the groups. The same arguments give the same set.

    >>> make_benchmark("photos", "bench", originals=100, distractors=200, tiles=4)
    """
    photo_dir, out = Path(photo_dir), Path(out)
    families = tuple(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise BenchmarkError(
            f"unknown edit family {unknown[0]!r}; expected some of {', '.join(FAMILIES)}"
        )
    if originals < 0 or distractors < 0 or tiles < 0 or composites < 0:
        raise BenchmarkError("originals, distractors, tiles and composites must be 0 or more")
    if edits_per_original is not None and not 1 <= edits_per_original <= len(families):
        raise BenchmarkError(
            f"edits per original must be between 1 and the number of families ({len(families)})"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BenchmarkError(f"{out} already exists and is not an empty folder; choose a new one")
    photos = _choose_photos(photo_dir, photo_names)
    if originals + distractors > len(photos):
        raise BenchmarkError(
            f"asked for {originals} originals and {distractors} distractors, but there are "
            f"only {len(photos)} photos to draw from (they must be different photos)"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos))
    chosen_originals = [photos[i] for i in order[:originals]]
    chosen_distractors = [photos[i] for i in order[originals : originals + distractors]]
    skipped: list[FileError] = []
    if more_distractors is not None:
        more = Path(more_distractors)
        if not more.is_dir():
            raise BenchmarkError(f"not a folder: {more}")
        seen = {_digest(p): n for p, n in chosen_originals + chosen_distractors}
        for path in iter_image_files([more]):
            digest = _digest(path)
            if digest in seen:
                skipped.append(FileError(path, f"same bytes as {seen[digest]}"))
                continue
            seen[digest] = str(path)
            chosen_distractors.append((path, str(path)))
    if composite_photos is not None:
        folder = Path(composite_photos)
        if not folder.is_dir():
            raise BenchmarkError(f"not a folder: {folder}")
        found = sorted(iter_image_files([folder]))
        shuffle = np.random.default_rng([seed, 2]).permutation(len(found))
        pool = [(found[i], str(found[i])) for i in shuffle]
    else:  # the photos left over, then the extra distractors
        pool = [photos[i] for i in order[originals + distractors :]]
        pool += chosen_distractors[distractors:]
    needed = composites * (1 + SIBLINGS)
    if needed > len(pool):
        raise BenchmarkError(
            f"{composites} composite backgrounds need {needed} photos besides the originals and "
            f"distractors, but only {len(pool)} are left; add --more-distractors or ask for fewer"
        )
    chosen_composites = pool[:needed]
    taken = {n for _, n in chosen_composites}
    chosen_distractors = [d for d in chosen_distractors if d[1] not in taken]

    names_rng = np.random.default_rng([seed, 1])
    used: set[str] = set()

    def new_names(count: int) -> tuple[str, ...]:
        names: list[str] = []
        while len(names) < count:
            name = names_rng.bytes(8).hex() + ".jpg"
            if name not in used:
                used.add(name)
                names.append(name)
        return tuple(names)

    edits_rng = np.random.default_rng([seed, 3])

    def edits_for_one() -> tuple[str, ...]:
        if edits_per_original is None:
            return families
        picked = set(edits_rng.choice(len(families), size=edits_per_original, replace=False))
        return tuple(f for i, f in enumerate(families) if i in picked)

    jobs = [
        _Job(str(p), n, new_names(1 + len(fams)), int(rng.integers(2**63)), True, fams)
        for p, n in chosen_originals
        for fams in (edits_for_one(),)
    ] + [
        _Job(str(p), n, new_names(max(1, tiles)), int(rng.integers(2**63)), False, tiles=tiles)
        for p, n in chosen_distractors
    ]
    for k in range(composites):
        background, *subjects = chosen_composites[k * (1 + SIBLINGS) : (k + 1) * (1 + SIBLINGS)]
        jobs.append(
            _Job(
                str(background[0]),
                background[1],
                new_names(SIBLINGS),
                int(rng.integers(2**63)),
                False,
                subjects=tuple(str(p) for p, _ in subjects),
            )
        )
    images_dir = out / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    results = _run_jobs(jobs, images_dir, workers, on_progress)

    groups: list[tuple[str, ...]] = []
    edits: dict[str, str] = {}
    sources: dict[str, Source] = {}
    distractor_names: list[str] = []
    siblings: list[tuple[str, ...]] = []
    for job, result in zip(jobs, results, strict=True):
        if result.error is not None:
            skipped.append(FileError(Path(job.path), result.error))
            continue
        for name, family, source in result.images:
            sources[name] = source
            if family is not None:
                edits[name] = family
        if job.original:
            groups.append(tuple(name for name, _, _ in result.images))
        else:
            distractor_names.extend(name for name, _, _ in result.images)
        if job.subjects:
            siblings.append(tuple(name for name, _, _ in result.images))
    truth = Truth(
        root=out,
        groups=tuple(groups),
        edits=edits,
        originals=tuple(g[0] for g in groups),
        distractors=tuple(distractor_names),
        sources=sources,
        families=families,
        skipped=tuple(skipped),
        composites=tuple(siblings),
    )
    write_truth(truth, seed=seed, tiles=tiles)
    return truth
