"""Training the Siamese encoder: pair sampling, contrastive losses and the training loop."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lookalike.augment import FAMILIES, apply_edit, composite
from lookalike.evaluate import calibrate_min_similarity, recall_at_precision
from lookalike.io import UnreadableImage, iter_image_files, load_image
from lookalike.model import (
    CheckpointError,
    EncoderConfig,
    Model,
    Preprocess,
    new_model,
    prepare_image,
    save_model,
    to_tensor,
)
from lookalike.records import EpochLog
from lookalike.score import similarity_from_cosine
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
    tiles_per_photo: int = 4
    composites_per_batch: int = 0
    """Backgrounds per batch each given two different pasted subjects (two negatives that
    share a place, not a subject: see `augment.composite`)."""
    place_share: float = 0.0
    """Chance that a photo with a known place (`photo_places`) brings up to
    `place_photos` others of that place into its batch: different subjects, one background."""
    place_photos: int = 6
    tile_min_side: int = 200
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
        return cls(
            **raw,
            encoder=EncoderConfig(**enc),
            preprocess=Preprocess(**pre),
            verify=VerifyConfig(**verify) if verify is not None else None,
        )


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
            anchors.append(prepare_image(anchor, cfg.preprocess))
            positives.append(
                prepare_image(edit_view(image, rng, cfg.max_stacked_edits), cfg.preprocess)
            )
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


def _exclusion_mask(
    sources: torch.Tensor, tiles: torch.Tensor, shots: torch.Tensor | None = None
) -> torch.Tensor:
    """True where two pictures overlap in pixels (a whole photo and its own tile), or may
    show one subject in one place (`shots`, -1 = unknown)."""
    same = sources[:, None] == sources[None, :]
    one_whole = ~(tiles[:, None] & tiles[None, :])
    excluded = same & one_whole
    if shots is not None:
        excluded |= (shots[:, None] == shots[None, :]) & (shots[:, None] >= 0)
    return excluded


def ntxent_loss(
    a: torch.Tensor, b: torch.Tensor, excluded: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Contrastive InfoNCE / NT-Xent over 2N views: each view's partner is its positive,
    every other picture in the batch a negative; `excluded` (N x N) pairs are ignored."""
    n = a.shape[0]
    z = torch.cat([a, b])
    logits = z @ z.T / temperature
    block = excluded.repeat(2, 2)
    eye = torch.eye(2 * n, dtype=torch.bool)
    partner = torch.arange(2 * n).roll(n)
    mask = block | eye
    mask[torch.arange(2 * n), partner] = False
    logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, partner)


def margin_contrastive_loss(
    a: torch.Tensor, b: torch.Tensor, excluded: torch.Tensor, margin: float
) -> torch.Tensor:
    """The classic contrastive loss (Hadsell et al. 2006) on every pair in the batch:
    positives pulled together (d^2), negatives pushed beyond `margin` ((m - d)^2)."""
    n = a.shape[0]
    z = torch.cat([a, b])
    dist = torch.cdist(z, z).clamp_min(1e-9)
    partner = torch.arange(2 * n).roll(n)
    positive = torch.zeros(2 * n, 2 * n, dtype=torch.bool)
    positive[torch.arange(2 * n), partner] = True
    ignore = excluded.repeat(2, 2) | torch.eye(2 * n, dtype=torch.bool)
    negative = ~positive & ~ignore
    pos_term = dist[positive].pow(2).mean()
    neg_term = F.relu(margin - dist[negative]).pow(2)
    hard = neg_term[neg_term > 0]
    return pos_term + (hard.mean() if hard.numel() else neg_term.sum())


def koleo_loss(z: torch.Tensor) -> torch.Tensor:
    """Kozachenko-Leonenko entropy regulariser: spread embeddings over the sphere."""
    with torch.no_grad():
        sims = z @ z.T
        sims.fill_diagonal_(-2.0)
        nearest = sims.argmax(dim=1)
    distances = (z - z[nearest]).norm(dim=1)
    return -torch.log(distances + 1e-4).mean()


def _loss(
    model: nn.Module, batch: dict[str, torch.Tensor], config: TrainConfig, pre: Preprocess
) -> torch.Tensor:
    a = model(to_tensor(batch["anchors"].numpy(), pre))
    b = model(to_tensor(batch["positives"].numpy(), pre))
    excluded = _exclusion_mask(batch["sources"], batch["tiles"], batch.get("shots"))
    if config.loss == "margin":
        main = margin_contrastive_loss(a, b, excluded, config.margin)
    else:
        main = ntxent_loss(a, b, excluded, config.temperature)
    if config.koleo_weight:
        main = main + config.koleo_weight * 0.5 * (koleo_loss(a) + koleo_loss(b))
    return main


@dataclass
class _ValSet:
    """Fixed, seeded validation material built from validation photos only."""

    batches: list[dict[str, torch.Tensor]]
    originals: np.ndarray
    edits: np.ndarray
    edit_owner: np.ndarray
    distractors: np.ndarray


def _build_val(items: list[_Item], config: TrainConfig) -> _ValSet:
    stream = _PairStream(items, replace(config, synthetic_per_batch=0), seed=config.seed + 999)
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
    return similarity_from_cosine(pos), similarity_from_cosine(neg)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    checkpoint: Path
    history: list[EpochLog]
    best_epoch: int
    best_recall_at_p99: float


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
    on_epoch: Callable[[EpochLog, dict[str, float]], None] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train a Siamese encoder with a contrastive loss; keep the best checkpoint at `out`.

    Validation photos (by default a seeded share of `photos`) never enter training;
    `places` names the (place, subject) of photos shot in one place (see `load_photos`);
    the best epoch is the one with the highest validation recall at precision 0.99, and
    the saved checkpoint's min_similarity is calibrated on those photos.
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
    for epoch in range(start_epoch, config.epochs):
        began = time.time()
        net.train()
        losses = []
        for step in range(config.steps_per_epoch):
            loss = _loss(net, next(batches), config, config.preprocess)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
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
        extra = {"val_recall_at_p99": recall99, "lr": float(scheduler.get_last_lr()[0])}
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
            on_epoch(log, extra)
    return TrainResult(out, history, best_epoch, best_score)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def photo_paths(
    folder: str | os.PathLike[str], names_file: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Image files in a folder, or only those named (one per line) in `names_file`."""
    folder = Path(folder)
    if names_file is None:
        return sorted(iter_image_files([folder]))
    names = [n.strip() for n in Path(names_file).read_text().splitlines() if n.strip()]
    return [folder / n for n in names]
