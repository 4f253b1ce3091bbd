"""Seeded validation material from validation photos, and its pair similarities."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from lookalike.augment import FAMILIES, apply_edit, composite
from lookalike.model import Model, prepare_image
from lookalike.score import cnn_similarity_from_cosine
from lookalike.train.batches import _PairStream
from lookalike.train.config import TrainConfig
from lookalike.train.data import _Item, synthetic_image


@dataclass
class _ValSet:
    """Fixed, seeded validation material built from validation photos only."""

    batches: list[dict[str, torch.Tensor]]
    originals: np.ndarray
    edits: np.ndarray
    edit_owner: np.ndarray
    distractors: np.ndarray


def _build_val(items: list[_Item], config: TrainConfig) -> _ValSet:
    # Full-size views only: the validation set stays the same draw, whatever share of
    # training pictures are thumbnails, so runs with and without them compare.
    shown = replace(config, synthetic_per_batch=0, thumbnail_share=0.0)
    stream = _PairStream(items, shown, seed=config.seed + 999)
    rng = np.random.default_rng(config.seed + 12345)
    order = list(range(len(items)))
    batches = [
        stream._batch(order[i : i + config.batch_photos], rng)
        for i in range(0, len(order), config.batch_photos)
    ]
    wholes = [it for it in items if not it.tile]
    # Seeded order, so photos from different folders mix between originals and distractors.
    wholes = [wholes[int(i)] for i in rng.permutation(len(wholes))]
    half = max(1, len(wholes) // 2)
    originals, edits, owner = [], [], []
    for k, item in enumerate(wholes[:half]):
        image = Image.fromarray(item.pixels)
        originals.append(prepare_image(image, config.preprocess))
        for j in range(config.val_edits_per_photo):
            family = FAMILIES[j % len(FAMILIES)]
            edits.append(prepare_image(apply_edit(image, family, seed=rng), config.preprocess))
            owner.append(k)
    # Each remaining photo is a distractor whole or as its tiles, never both (they overlap).
    distractors = []
    for k, item in enumerate(wholes[half:]):
        tiles = [it for it in items if it.tile and it.source == item.source]
        for picture in tiles if tiles and k % 2 else [item]:
            distractors.append(prepare_image(Image.fromarray(picture.pixels), config.preprocess))
    distractors += [prepare_image(synthetic_image(rng), config.preprocess) for _ in range(64)]
    if config.composites_per_batch:
        # Three subjects on each of 32 backgrounds: a place shared, never a copy.
        for _ in range(32):
            picked = rng.choice(len(wholes), size=4, replace=False)
            background, *subjects = (Image.fromarray(wholes[int(i)].pixels) for i in picked)
            distractors += [
                prepare_image(composite(background, s, seed=rng), config.preprocess)
                for s in subjects
            ]
    return _ValSet(
        batches, np.stack(originals), np.stack(edits), np.array(owner), np.stack(distractors)
    )


def validation_scores(model: Model, val: _ValSet) -> tuple[np.ndarray, np.ndarray]:
    """Positive (original-edit) and negative (different pictures) similarities."""
    orig = model.embed_arrays(val.originals)
    edit = model.embed_arrays(val.edits)
    dist = model.embed_arrays(val.distractors)
    pos = np.sum(orig[val.edit_owner] * edit, axis=1)
    groups = np.concatenate(
        [np.arange(len(orig)), val.edit_owner, len(orig) + np.arange(len(dist))]
    )
    everything = np.concatenate([orig, edit, dist])
    sims = everything @ everything.T
    different = groups[:, None] != groups[None, :]
    upper = np.triu(np.ones_like(different), k=1).astype(bool)
    neg = sims[different & upper]
    return cnn_similarity_from_cosine(pos), cnn_similarity_from_cosine(neg)
