"""Training pictures: photos decoded once (with tiles), synthetic pictures, edited views."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lookalike.augment import FAMILIES, apply_edit
from lookalike.io import UnreadableImage, iter_image_files, load_image
from lookalike.train.config import TrainConfig


@dataclass
class _Item:
    """One training picture: a whole photo or a tile of one (tiles share `source`)."""

    pixels: np.ndarray
    source: int
    tile: bool
    place: int = -1
    """Photos taken in one place share it (-1: unknown)."""
    subject: int = -1
    """Photos of one place with the same subject may be re-shots: never negatives."""


def _downscale(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    if scale >= 1:
        return image
    size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _cut_tiles(
    image: Image.Image, count: int, min_side: int, rng: random.Random
) -> list[Image.Image]:
    """Up to `count` non-overlapping tiles from a grid over a large photo."""
    w, h = image.size
    cols, rows = max(1, w // min_side), max(1, h // min_side)
    if cols * rows < 2:
        return []
    tw, th = w // cols, h // rows
    cells = [(c, r) for c in range(cols) for r in range(rows)]
    rng.shuffle(cells)
    return [image.crop((c * tw, r * th, (c + 1) * tw, (r + 1) * th)) for c, r in cells[:count]]


def load_photos(
    paths: Sequence[Path],
    config: TrainConfig,
    with_tiles: bool = True,
    places: Mapping[Path, tuple[str, str]] | None = None,
) -> tuple[list[_Item], list[Path]]:
    """Decode photos once into small in-memory copies, plus tiles (hard negatives).

    `places` gives some photos a (place, subject): photos of one place are batched
    together as hard negatives, except two of the same subject (maybe re-shots).
    """
    rng = random.Random(config.seed)
    items: list[_Item] = []
    skipped: list[Path] = []
    numbers: dict[str, int] = {}
    for source, path in enumerate(paths):
        try:
            image = load_image(path, min_side=config.cache_side)
        except UnreadableImage:
            skipped.append(path)
            continue
        place, subject = -1, -1
        if places is not None and path in places:
            where, what = places[path]
            place = numbers.setdefault("place:" + where, len(numbers))
            subject = numbers.setdefault("subject:" + what, len(numbers))
        items.append(
            _Item(np.asarray(_downscale(image, config.cache_side)), source, False, place, subject)
        )
        if with_tiles and config.tiles_per_photo:
            for tile in _cut_tiles(image, config.tiles_per_photo, config.tile_min_side, rng):
                items.append(_Item(np.asarray(_downscale(tile, config.cache_side)), source, True))
    return items, skipped


def synthetic_image(rng: np.random.Generator, side: int = 192) -> Image.Image:
    """A procedurally generated picture: dead leaves, a gradient, or a near-flat field.

    Flat and textured fields teach the network that featureless pictures are not all
    copies of each other (the collapse seen in the first experiment).
    """
    kind = rng.random()
    if kind < 0.5:
        image = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(20, 200))):
            r = float(side * rng.uniform(0.02, 0.3) ** 1.5)
            x, y = rng.uniform(-r, side + r, 2)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
            else:
                draw.rectangle((x - r, y - r, x + r * rng.uniform(0.5, 2), y + r), fill=colour)
        return image
    base = rng.uniform(0, 255, 3)
    top = np.clip(base + rng.normal(0, 40, 3), 0, 255)
    t = np.linspace(0, 1, side)[:, None, None]
    angle = rng.uniform(0, 2 * np.pi)
    u = np.cos(angle) * np.linspace(-1, 1, side)[None, :, None] + np.sin(angle) * (t * 2 - 1)
    u = (u - u.min()) / max(1e-6, float(u.max() - u.min()))
    field_ = base * (1 - u) + top * u
    if kind < 0.8:
        field_ = field_ + rng.normal(0, rng.uniform(1, 12), (side, side, 3))
    return Image.fromarray(np.clip(field_, 0, 255).astype(np.uint8), "RGB")


def edit_view(image: Image.Image, rng: np.random.Generator, max_stacked: int) -> Image.Image:
    """A random edited copy: 1..max_stacked families drawn from all of them, stacked."""
    for _ in range(int(rng.integers(1, max_stacked + 1))):
        image = apply_edit(image, FAMILIES[int(rng.integers(0, len(FAMILIES)))], seed=rng)
    return image


def photo_paths(
    folder: str | os.PathLike[str], names_file: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Image files in a folder, or only those named (one per line) in `names_file`."""
    folder = Path(folder)
    if names_file is None:
        return sorted(iter_image_files([folder]))
    names = [n.strip() for n in Path(names_file).read_text().splitlines() if n.strip()]
    return [folder / n for n in names]
