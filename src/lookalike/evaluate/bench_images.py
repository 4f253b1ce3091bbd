"""A benchmark set's images: each photo made into an original and its edits, tiles or
composites, written as JPEG by worker processes."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.augment import apply_edit, composite
from lookalike.io import UnreadableImage, load_image
from lookalike.records import Source

MAX_SIDE = 1024
"""Originals and distractor photos are scaled down to this longest side."""
MIN_TILE = 64
"""Shortest side of a distractor tile, in pixels."""
BLANK_STD = 2.0
"""Tiles whose grey levels spread less than this (0-255 scale) are blank and left out."""
JPEG_QUALITY = 95
"""Every image is stored as JPEG at this quality, so the `jpeg` family's own heavier
compression dominates and neither names nor formats tell an edit from an original."""


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
