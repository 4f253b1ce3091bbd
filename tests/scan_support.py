"""Test support for scanning: a model whose embedding is the picture's coarse layout.

A random-weight network cannot tell an edited copy from another picture, so grouping
tests use this stub: each image becomes its 8x8 grey thumbnail, centred and scaled to
unit length. Edits that keep the layout (re-compression, resizing, noise) stay close;
different pictures do not. It goes through the real decode/preprocess/embed pipeline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from conftest import SyntheticFolder, make_picture
from lookalike.model import Calibration, Encoder, EncoderConfig, Model, Preprocess


class ContentModel(Model):
    """Embeds prepared pixels as their centred 8x8 grey thumbnail (64-d, unit length)."""

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, 64), dtype=np.float32)
        grey = batch.astype(np.float32).mean(axis=3)
        n, h, w = grey.shape
        coarse = grey.reshape(n, 8, h // 8, 8, w // 8).mean(axis=(2, 4)).reshape(n, 64)
        coarse -= coarse.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(coarse, axis=1, keepdims=True)
        norm[norm == 0] = 1.0
        return (coarse / norm).astype(np.float32)


def content_model(seed: int = 0, min_similarity: float = 0.95) -> ContentModel:
    """A ContentModel; a different seed gives a different fingerprint (a 'new model')."""
    torch.manual_seed(seed)
    encoder = Encoder(EncoderConfig(stem=8, widths=(16,), depths=(1,), embed_dim=64))
    return ContentModel(
        encoder,
        Preprocess(input_size=64, trim_borders=False),
        Calibration(min_similarity=min_similarity),
        model_id=f"content-{seed}",
    )


def write_copied_pictures(photos: Path, count: int, seed: int) -> None:
    """`count` small pictures in `photos`, each with byte copies in `photos/a` and `photos/b`."""
    for folder in ("a", "b"):
        (photos / folder).mkdir(parents=True, exist_ok=True)
    for k in range(count):
        original = photos / f"p{k:03d}.png"
        make_picture(seed + k, (32, 24)).save(original)
        shutil.copyfile(original, photos / "a" / original.name)
        shutil.copyfile(original, photos / "b" / original.name)


def new_and_archive(synthetic: SyntheticFolder, base: Path) -> tuple[Path, Path]:
    """(new, archive): the synthetic copies in `base/new`, their originals in `base/archive`
    (a reference folder)."""
    new = Path(shutil.copytree(synthetic.root / "copies", base / "new"))
    archive = base / "archive"
    archive.mkdir()
    for original in synthetic.originals:
        shutil.copyfile(original, archive / original.name)
    return new, archive
