"""The demo folder: bundled sample photos, edited copies of some, one exact copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image

from lookalike.augment import apply_edit
from lookalike.scan.walk import ScanError

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
"""Photos bundled with lookalike (see SOURCES.md there for their origin and licence)."""

DEMO_EDITS: dict[str, tuple[str, ...]] = {
    "astronaut.jpg": ("jpeg", "resize"),
    "chelsea.jpg": ("blur", "saturation"),
    "coffee.jpg": ("resize",),
    "rocket.jpg": ("overlay", "jpeg"),
    "camera.jpg": (),
}
"""Edited copies written for each sample photo (camera.jpg stays unrelated)."""

EXACT_COPY = "coffee.jpg"
MARKER = ".lookalike-demo"


def write_demo_folder(folder: str | os.PathLike[str]) -> Path:
    """Write the demo photos into `folder`/photos and return that photos folder.

    The folder must be new, empty, or an earlier demo folder (it holds a marker file);
    anything else is refused so no file of yours is ever overwritten.
    """
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise ScanError(f"{root} is a file; give a folder for the demo")
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER).is_file():
        raise ScanError(f"{root} is not empty; give a new or empty folder for the demo")
    photos = root / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    (photos / "edited").mkdir(parents=True)
    (photos / "backup").mkdir()
    (root / MARKER).write_text("written by `lookalike demo`; safe to delete\n")
    for name, families in DEMO_EDITS.items():
        source = SAMPLES / name
        shutil.copyfile(source, photos / name)
        with Image.open(source) as opened:
            picture = opened.convert("RGB")
        for number, family in enumerate(families):
            edited = apply_edit(picture, family, seed=number, strength=0.5)
            # Saved a little more compressed than the originals, as copies passed around are.
            edited.save(photos / "edited" / f"{Path(name).stem}_{family}.jpg", quality=75)
    shutil.copyfile(SAMPLES / EXACT_COPY, photos / "backup" / EXACT_COPY)
    return photos
