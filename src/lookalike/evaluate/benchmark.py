"""Benchmark sets: originals, one edited copy per family, distractors, and the truth file."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from PIL import Image

from lookalike.augment import FAMILIES, apply_edit, composite
from lookalike.errors import LookalikeError
from lookalike.io import UnreadableImage, iter_image_files, load_image
from lookalike.records import FileError, Source, Truth

TRUTH_FILE = "truth.json"
IMAGES_DIR = "images"
TRUTH_SCHEMA = 1
MAX_SIDE = 1024
"""Originals and distractor photos are scaled down to this longest side."""
MIN_TILE = 64
BLANK_STD = 2.0
"""Tiles whose grey levels spread less than this (0-255 scale) are blank and left out."""
"""Shortest side of a distractor tile, in pixels."""
SIBLINGS = 3
"""Composites made on each background: different subjects, one place."""
JPEG_QUALITY = 95
"""Every image is stored as JPEG at this quality, so the `jpeg` family's own heavier
compression dominates and neither names nor formats tell an edit from an original."""


class BenchmarkError(LookalikeError):
    """A benchmark set that cannot be built or read; the message says what to change."""


@dataclass(frozen=True)
class _Job:
    """One photo to turn into benchmark images (run in a worker process)."""

    path: str
    photo: str
    names: tuple[str, ...]
    seed: int
    original: bool
    families: tuple[str, ...] = ()  # an original: one edit per family
    tiles: int = 0  # a distractor: cut into up to this many tiles (0 = whole)
    subjects: tuple[str, ...] = ()  # a background: one composite per subject photo


@dataclass(frozen=True)
class _Written:
    """What one job wrote: (file name, family or None, source) per image, or an error."""

    photo: str
    images: tuple[tuple[str, str | None, Source], ...] = ()
    error: str | None = None


def read_photo_list(path: str | os.PathLike[str]) -> list[str]:
    """Photo names from a list file: one per line, blank lines and `#` comments ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BenchmarkError(f"cannot read photo list {path}: {exc.strerror or exc}") from None
    return [s for line in lines if (s := line.strip()) and not s.startswith("#")]


def _fit(image: Image.Image) -> Image.Image:
    """Scale down to MAX_SIDE on the longest side (never up)."""
    if max(image.size) <= MAX_SIDE:
        return image
    fitted = image.copy()
    fitted.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return fitted


def tile_boxes(
    width: int, height: int, count: int, rng: np.random.Generator
) -> list[tuple[int, int, int, int]]:
    """Up to `count` non-overlapping boxes (left, top, right, bottom) inside the picture.

    The picture is cut into a grid with at least `count` cells, each at least MIN_TILE
    pixels a side; each chosen cell holds one box of 60-100% of its sides, so boxes never
    overlap by construction. Fewer boxes come back when the picture is too small.
    """
    for wanted in range(count, 0, -1):
        cols = min(wanted, max(1, round(math.sqrt(wanted * width / height))))
        rows = math.ceil(wanted / cols)
        cell_w, cell_h = width // cols, height // rows
        if min(cell_w, cell_h) >= MIN_TILE:
            break
    else:
        return []
    boxes = []
    for cell in sorted(rng.choice(rows * cols, size=wanted, replace=False)):
        row, col = divmod(int(cell), cols)
        tile_w = int(rng.integers(max(MIN_TILE, math.ceil(0.6 * cell_w)), cell_w + 1))
        tile_h = int(rng.integers(max(MIN_TILE, math.ceil(0.6 * cell_h)), cell_h + 1))
        left = col * cell_w + int(rng.integers(0, cell_w - tile_w + 1))
        top = row * cell_h + int(rng.integers(0, cell_h - tile_h + 1))
        boxes.append((left, top, left + tile_w, top + tile_h))
    return boxes


def _run_job(job: _Job, images_dir: str) -> _Written:
    """Decode one photo and write its images; a bad photo comes back as an error."""
    try:
        picture = _fit(load_image(job.path, min_side=MAX_SIDE))
    except UnreadableImage as exc:
        return _Written(job.photo, error=exc.reason)
    size = picture.size
    rng = np.random.default_rng(job.seed)
    out = Path(images_dir)
    written: list[tuple[str, str | None, Source]] = []
    if job.subjects:
        return _write_composites(job, picture, rng, out)
    if job.original:
        picture.save(out / job.names[0], "JPEG", quality=JPEG_QUALITY)
        written.append((job.names[0], None, Source(job.photo, size)))
        for name, family in zip(job.names[1:], job.families, strict=True):
            edited = apply_edit(picture, family, seed=int(rng.integers(2**63)))
            edited.save(out / name, "JPEG", quality=JPEG_QUALITY)
            written.append((name, family, Source(job.photo, size)))
        return _Written(job.photo, tuple(written))
    boxes = tile_boxes(*size, job.tiles, rng) if job.tiles else []
    if not boxes:
        picture.save(out / job.names[0], "JPEG", quality=JPEG_QUALITY)
        return _Written(job.photo, ((job.names[0], None, Source(job.photo, size)),))
    for name, box in zip(job.names, boxes, strict=False):
        tile = picture.crop(box)
        # A single-colour tile (a blank sky or page background) holds no picture: two of
        # them are the same image, so they would be duplicates, not distractors.
        if float(np.asarray(tile.convert("L"), dtype=np.float32).std()) < BLANK_STD:
            continue
        tile.save(out / name, "JPEG", quality=JPEG_QUALITY)
        written.append((name, None, Source(job.photo, size, box)))
    return _Written(job.photo, tuple(written))


def _write_composites(
    job: _Job, background: Image.Image, rng: np.random.Generator, out: Path
) -> _Written:
    """One background, a different subject pasted on each sibling (hard negatives).

    Half the backgrounds are used whole; on the other half each sibling is first its own
    crop (70-90 % a side) of the background, so siblings share only part of the place.
    """
    cropped = rng.random() < 0.5
    written: list[tuple[str, str | None, Source]] = []
    for name, subject_path in zip(job.names, job.subjects, strict=True):
        try:
            subject = _fit(load_image(subject_path, min_side=MAX_SIDE))
        except UnreadableImage as exc:
            return _Written(job.photo, error=f"{subject_path}: {exc.reason}")
        base, box = background, None
        if cropped:
            w, h = background.size
            cw, ch = round(w * rng.uniform(0.7, 0.9)), round(h * rng.uniform(0.7, 0.9))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (x, y, x + cw, y + ch)
            base = background.crop(box)
        made = composite(base, subject, seed=rng, area=(0.2, 0.5))
        made.save(out / name, "JPEG", quality=JPEG_QUALITY)
        written.append((name, None, Source(job.photo, background.size, box)))
    return _Written(job.photo, tuple(written))


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
    _write_truth(truth, seed=seed, tiles=tiles)
    return truth


def _run_jobs(
    jobs: list[_Job],
    images_dir: Path,
    workers: int | None,
    on_progress: Callable[[int], None] | None,
) -> list[_Written]:
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)
    if workers == 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(_run_job(job, str(images_dir)))
            if on_progress:
                on_progress(len(results[-1].images))
        return results
    context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_run_job, job, str(images_dir)) for job in jobs]
        results = []
        for future in futures:
            results.append(future.result())
            if on_progress:
                on_progress(len(results[-1].images))
    return results


def _write_truth(truth: Truth, *, seed: int, tiles: int) -> Path:
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
