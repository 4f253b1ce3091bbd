"""The training loop: optimiser and schedule, epochs, best checkpoint, resume state."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from lookalike.evaluate import calibrate_min_similarity, recall_at_precision
from lookalike.model import CheckpointError, load_model, new_model, save_model
from lookalike.records import EpochLog
from lookalike.train.batches import _PairStream
from lookalike.train.config import TrainConfig
from lookalike.train.data import load_photos
from lookalike.train.loss import NegativeMemory, _loss
from lookalike.train.validation import _build_val, validation_scores


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    checkpoint: Path
    history: list[EpochLog]
    best_epoch: int
    best_recall_at_p99: float


@dataclass(frozen=True)
class EpochStats:
    """An epoch's validation recall and learning rate, passed to `on_epoch` beside its
    EpochLog."""

    val_recall_at_p99: float
    lr: float


def _resume_path(out: Path) -> Path:
    return out.with_name(out.stem + ".resume.pt")


def train_model(
    photos: Sequence[Path],
    out: str | os.PathLike[str],
    config: TrainConfig = TrainConfig(),
    *,
    val_photos: Sequence[Path] | None = None,
    places: Mapping[Path, tuple[str, str]] | None = None,
    resume: bool = False,
    init: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[EpochLog, EpochStats], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train a Siamese encoder with a contrastive loss; keep the best checkpoint at `out`.

    Validation photos (by default a seeded share of `photos`) never enter training;
    `places` names the (place, subject) of photos shot in one place (see `load_photos`);
    the best epoch is the one with the highest validation recall at precision 0.99, and
    the saved checkpoint's min_similarity is calibrated on those photos. `init` starts
    from a checkpoint's weights (same encoder settings) instead of random ones.
    """
    out = Path(out)
    torch.set_num_threads(config.threads)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    photos = sorted(Path(p) for p in photos)
    if val_photos is None:
        shuffled = photos[:]
        random.Random(config.seed).shuffle(shuffled)
        n_val = max(2, round(len(photos) * config.val_fraction))
        val_photos, photos = sorted(shuffled[:n_val]), sorted(shuffled[n_val:])
    if len(photos) < 2 or len(val_photos) < 2:
        raise ValueError("training needs at least 2 training and 2 validation photos")
    train_items, _ = load_photos(photos, config, places=places)
    val_items, _ = load_photos(val_photos, config, places=places)
    if len(train_items) < 2 or len(val_items) < 2:
        raise ValueError("too few readable photos to train on")
    val = _build_val(val_items, config)

    model = new_model(config.encoder, config.preprocess, seed=config.seed, model_id=config.model_id)
    net = model.encoder
    if init is not None:
        try:
            net.load_state_dict(load_model(init).encoder.state_dict())
        except RuntimeError:  # torch's message for a different architecture
            raise ValueError(f"{init}: its encoder settings differ from the config's") from None
        if config.encoder.mirror_symmetric:
            net.symmetrise_()  # from weights trained without the constraint
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total = config.epochs * config.steps_per_epoch

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    history: list[EpochLog] = []
    start_epoch, best_epoch, best_score = 0, -1, -1.0
    if resume and _resume_path(out).is_file():
        try:
            state = torch.load(_resume_path(out), map_location="cpu", weights_only=False)
        except Exception as exc:  # torch raises many types on a damaged file
            raise CheckpointError(
                f"{_resume_path(out)}: cannot resume from this file ({type(exc).__name__}); "
                "move it away to train from the start"
            ) from None
        net.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = state["epoch"] + 1
        best_epoch, best_score = state["best_epoch"], state["best_score"]
        history = [EpochLog(**h) for h in state["history"]]
        torch.set_rng_state(state["torch_rng"])

    stream = _PairStream(train_items, config, seed=config.seed * 1000 + start_epoch)
    loader = DataLoader(
        stream,
        batch_size=None,
        num_workers=config.workers,
        persistent_workers=False,
        prefetch_factor=4 if config.workers else None,
    )
    batches = iter(loader)
    memory = NegativeMemory(config.memory_size) if config.memory_size else None
    for epoch in range(start_epoch, config.epochs):
        began = time.time()
        net.train()
        losses = []
        for step in range(config.steps_per_epoch):
            loss = _loss(net, next(batches), config, config.preprocess, memory)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if config.encoder.mirror_symmetric:
                net.symmetrise_()
            scheduler.step()
            losses.append(loss.item())
            if on_step:
                on_step(epoch, step, losses[-1])
        net.eval()
        with torch.no_grad():
            val_loss = float(
                np.mean([float(_loss(net, b, config, config.preprocess)) for b in val.batches])
            )
        pos, neg = validation_scores(model, val)
        recall99, _ = recall_at_precision(pos, neg, 0.99)
        log = EpochLog(epoch, float(np.mean(losses)), val_loss, time.time() - began)
        history.append(log)
        stats = EpochStats(recall99, float(scheduler.get_last_lr()[0]))
        if recall99 > best_score or best_epoch < 0:
            best_epoch, best_score = epoch, recall99
            calibrated = model.with_calibration(
                replace(
                    calibrate_min_similarity(pos, neg, 0.99),
                    method="precision >= 0.99 on the training run's validation photos",
                )
            )
            calibrated.verify = config.verify
            calibrated.meta = {
                "train_config": _jsonable(asdict(config)),
                "epoch": epoch,
                "val_recall_at_p99": recall99,
            }
            save_model(calibrated, out)
        # Written aside, then renamed: a run killed while saving still resumes.
        resume_tmp = _resume_path(out).with_name(_resume_path(out).name + ".tmp")
        torch.save(
            {
                "model": net.state_dict(),
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best_epoch": best_epoch,
                "best_score": best_score,
                "history": [asdict(h) for h in history],
                "torch_rng": torch.get_rng_state(),
            },
            resume_tmp,
        )
        os.replace(resume_tmp, _resume_path(out))
        if on_epoch:
            on_epoch(log, stats)
    return TrainResult(out, history, best_epoch, best_score)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))
