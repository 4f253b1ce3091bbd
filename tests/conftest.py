"""Shared fixtures: a seeded synthetic photo folder with known edits, and a tiny model."""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lookalike.augment import apply_edit
from lookalike.model import EncoderConfig, Model, Preprocess, new_model

TINY_ENCODER = EncoderConfig(stem=8, widths=(16, 32), depths=(1, 1), embed_dim=16)
TINY_PREPROCESS = Preprocess(input_size=64)


def missing_part(reason: str) -> None:
    """Skip a test whose optional part (an extra, a browser) is not installed, saying why;
    under CI (`CI=true`) fail instead, so CI runs every test."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI must run this test (`bash .ci/run` installs everything)")
    pytest.skip(reason)


def require_module(module: str, reason: str) -> ModuleType:
    """Import an optional module, or skip (fail under CI) via `missing_part`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing_part(reason)
        raise  # unreachable: missing_part raises


def make_picture(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A seeded synthetic 'photo': gradient background, random shapes, mild noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-1.0, 1.0, (2, 3))
    pixels = base + x[..., None] * slope[0] * 255 / w + y[..., None] * slope[1] * 255 / h
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 14))):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        x1, y1 = x0 + rng.uniform(8, w / 2), y0 + rng.uniform(8, h / 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


@dataclass(frozen=True)
class SyntheticFolder:
    """A folder of generated images and its truth."""

    root: Path
    originals: list[Path]
    edits: dict[Path, tuple[Path, str]]  # edited copy -> (its original, family)
    unrelated: list[Path]
    corrupt: Path

    @property
    def groups(self) -> list[set[Path]]:
        """Each original with its edited copies."""
        groups = {o: {o} for o in self.originals}
        for copy, (original, _) in self.edits.items():
            groups[original].add(copy)
        return list(groups.values())


def build_synthetic_folder(root: Path, originals: int = 4, unrelated: int = 4) -> SyntheticFolder:
    """Write originals, edited copies (several families), unrelated images, one corrupt file."""
    root.mkdir(parents=True, exist_ok=True)
    families = ("jpeg", "resize", "crop", "lightness", "flip", "border")
    originals_paths: list[Path] = []
    edits: dict[Path, tuple[Path, str]] = {}
    for i in range(originals):
        picture = make_picture(100 + i)
        original = root / f"original_{i}.png"
        picture.save(original)
        originals_paths.append(original)
        for j, family in enumerate(families[: 2 + i % 3]):
            copy = root / "copies" / f"copy_{i}_{family}.jpg"
            copy.parent.mkdir(exist_ok=True)
            apply_edit(picture, family, seed=1000 * i + j, strength=0.3).save(copy, quality=90)
            edits[copy] = (original, family)
    unrelated_paths = []
    for k in range(unrelated):
        path = root / "other" / f"unrelated_{k}.jpg"
        path.parent.mkdir(exist_ok=True)
        make_picture(900 + k, (140, 140)).save(path, quality=90)
        unrelated_paths.append(path)
    corrupt = root / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    truth = {
        "originals": [str(p) for p in originals_paths],
        "edits": {str(k): [str(v[0]), v[1]] for k, v in edits.items()},
        "unrelated": [str(p) for p in unrelated_paths],
        "corrupt": str(corrupt),
    }
    (root.parent / f"{root.name}_truth.json").write_text(json.dumps(truth, indent=1))
    return SyntheticFolder(root, originals_paths, edits, unrelated_paths, corrupt)


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> SyntheticFolder:
    """Seeded folder: originals, known edits of them, unrelated images, one corrupt file.

    Treat it as read-only; copy it (shutil.copytree) before changing anything.
    """
    return build_synthetic_folder(tmp_path_factory.mktemp("synthetic") / "photos")


@pytest.fixture()
def tiny_model() -> Model:
    """A tiny random-weight model: fast, deterministic, meaningless similarities."""
    return new_model(TINY_ENCODER, TINY_PREPROCESS, seed=0, model_id="tiny-test")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight model saved as a checkpoint file."""
    from lookalike.model import save_model

    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_model(new_model(TINY_ENCODER, TINY_PREPROCESS, seed=0, model_id="tiny-test"), path)
    return path
