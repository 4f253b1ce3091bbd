"""Endless training batches: an anchor and an edited view of each picture in a batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from lookalike.augment import composite
from lookalike.model import prepare_image
from lookalike.train.config import TrainConfig
from lookalike.train.data import _Item, edit_view, synthetic_image


def thumbnail(image: Image.Image, sides: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """`image` squashed to a square thumbnail, its side drawn from `sides` (both included),
    as a 32-px benchmark set squashes every picture."""
    side = int(rng.integers(sides[0], sides[1] + 1))
    return image.resize((side, side), Image.Resampling.BILINEAR)


class _PairStream(IterableDataset):
    """Endless batches: for each picture an anchor view and an edited view (a positive).

    Every other picture of the batch is a negative, including tiles of the same photo
    (same scene, no shared pixels), other photos of the same place and composites on a
    shared background; a whole photo and its own tiles, and two photos of one subject in
    one place, are kept apart.
    """

    def __init__(self, items: list[_Item], config: TrainConfig, seed: int) -> None:
        self.items = items
        self.config = config
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info else 0
        rng = np.random.default_rng([self.seed, worker])
        cfg = self.config
        by_source: dict[int, list[int]] = {}
        by_place: dict[int, list[int]] = {}
        for index, item in enumerate(self.items):
            by_source.setdefault(item.source, []).append(index)
            if item.place >= 0 and not item.tile:
                by_place.setdefault(item.place, []).append(index)
        sources = list(by_source)
        while True:
            chosen: list[int] = []
            for source in rng.permutation(sources):
                members = by_source[int(source)]
                first = self.items[members[0]]
                # Sometimes bring in a photo's tiles together: hard negatives of one scene.
                if len(members) > 1 and rng.random() < 0.3:
                    chosen.extend(members[1:])
                elif first.place >= 0 and rng.random() < cfg.place_share:
                    # Or other photos of its place: different subjects, one background.
                    same = [m for m in by_place[first.place] if m not in chosen]
                    picked = rng.permutation(same)[: 1 + cfg.place_photos]
                    chosen.extend(int(m) for m in picked)
                else:
                    chosen.append(members[0])
                if len(chosen) >= cfg.batch_photos:
                    break
            chosen = list(dict.fromkeys(chosen))[: cfg.batch_photos]
            yield self._batch(chosen, rng)

    def _batch(self, chosen: list[int], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        cfg = self.config
        anchors, positives, sources, tiles, shots = [], [], [], [], []

        def add(image: Image.Image, source: int, tile: bool = False, shot: int = -1) -> None:
            anchor = image
            if rng.random() < cfg.anchor_edit_prob:
                anchor = edit_view(image, rng, 1)
            positive = edit_view(image, rng, cfg.max_stacked_edits)
            if cfg.thumbnail_share > 0 and rng.random() < cfg.thumbnail_share:
                sides = cfg.thumbnail_sides
                anchor, positive = (thumbnail(v, sides, rng) for v in (anchor, positive))
            anchors.append(prepare_image(anchor, cfg.preprocess))
            positives.append(prepare_image(positive, cfg.preprocess))
            sources.append(source)
            tiles.append(tile)
            shots.append(shot)

        for index in chosen:
            item = self.items[index]
            shot = item.place * (1 << 20) + item.subject if item.place >= 0 else -1
            add(Image.fromarray(item.pixels), item.source, item.tile, shot)
        for _ in range(cfg.synthetic_per_batch):
            add(synthetic_image(rng), -1 - int(rng.integers(0, 1 << 40)))
        for _ in range(cfg.composites_per_batch):
            # One background, two different subjects pasted on it: negatives of each other.
            picked = rng.choice(len(self.items), size=3, replace=False)
            background, *subjects = (Image.fromarray(self.items[int(i)].pixels) for i in picked)
            for subject in subjects:
                add(composite(background, subject, seed=rng), -1 - int(rng.integers(0, 1 << 40)))
        return {
            "anchors": torch.from_numpy(np.stack(anchors)),
            "positives": torch.from_numpy(np.stack(positives)),
            "sources": torch.tensor(sources, dtype=torch.long),
            "tiles": torch.tensor(tiles, dtype=torch.bool),
            "shots": torch.tensor(shots, dtype=torch.long),
        }
