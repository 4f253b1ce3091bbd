"""The settings that decide a training run (saved with its checkpoints)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.model import EncoderConfig, Preprocess
from lookalike.verify import VerifyConfig


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (saved with its checkpoints)."""

    epochs: int = 30
    steps_per_epoch: int = 100
    batch_photos: int = 96
    synthetic_per_batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    loss: str = "ntxent"
    temperature: float = 0.05
    margin: float = 0.5
    koleo_weight: float = 0.3
    memory_size: int = 0
    """Earlier batches' pictures kept as extra NT-Xent negatives (cross-batch memory);
    0 = none."""
    tiles_per_photo: int = 4
    composites_per_batch: int = 0
    """Backgrounds per batch each given two different pasted subjects (two negatives that
    share a place, not a subject: see `augment.composite`)."""
    place_share: float = 0.0
    """Chance that a photo with a known place (`photo_places`) brings up to
    `place_photos` others of that place into its batch: different subjects, one background."""
    place_photos: int = 6
    tile_min_side: int = 200
    thumbnail_share: float = 0.0
    """Chance that a picture's two views are both shown as thumbnails (each squashed to a
    random side in `thumbnail_sides`, as small-image datasets hold them): a copy at 32 px
    must score as one too (issue 20)."""
    thumbnail_sides: tuple[int, int] = (24, 64)
    cache_side: int = 320
    max_stacked_edits: int = 3
    anchor_edit_prob: float = 0.3
    val_fraction: float = 0.12
    val_edits_per_photo: int = 16
    seed: int = 0
    threads: int = 2
    workers: int = 1
    model_id: str = "lookalike-custom"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    preprocess: Preprocess = field(default_factory=Preprocess)
    verify: VerifyConfig | None = None
    """Geometric verification saved with the model (calibrate it afterwards)."""

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a config file (JSON object whose keys are this class's fields)."""
        raw = json.loads(Path(path).read_text())
        enc = raw.pop("encoder", {})
        pre = raw.pop("preprocess", {})
        verify = raw.pop("verify", None)
        for key in ("widths", "depths"):
            if key in enc:
                enc[key] = tuple(enc[key])
        if "thumbnail_sides" in raw:
            raw["thumbnail_sides"] = tuple(raw["thumbnail_sides"])
        return cls(
            **raw,
            encoder=EncoderConfig(**enc),
            preprocess=Preprocess(**pre),
            verify=VerifyConfig.from_dict(verify) if verify is not None else None,
        )
