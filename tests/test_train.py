"""Training: losses, a few steps on tiny photos, checkpoints, resume, reproducibility."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import TINY_ENCODER, make_picture
from lookalike.evaluate import calibrate_min_similarity
from lookalike.model import CheckpointError, Preprocess, load_model
from lookalike.records import EpochLog
from lookalike.train import (
    NegativeMemory,
    TrainConfig,
    TrainResult,
    _build_val,
    _exclusion_mask,
    _PairStream,
    koleo_loss,
    load_photos,
    margin_contrastive_loss,
    ntxent_loss,
    photo_paths,
    train_model,
    validation_scores,
)

TINY_TRAIN = TrainConfig(
    epochs=3,
    steps_per_epoch=10,
    batch_photos=6,
    synthetic_per_batch=2,
    lr=3e-3,
    warmup_steps=2,
    tiles_per_photo=0,
    cache_side=96,
    val_edits_per_photo=4,
    workers=0,
    threads=1,
    seed=0,
    model_id="tiny-trained",
    encoder=TINY_ENCODER,
    preprocess=Preprocess(input_size=64),
)


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """train_model sets torch's thread count for the process; later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Twelve tiny synthetic photos."""
    root = tmp_path_factory.mktemp("train_photos")
    paths = []
    for i in range(12):
        path = root / f"photo_{i:02d}.jpg"
        make_picture(200 + i, (160, 120)).save(path, quality=92)
        paths.append(path)
    return paths


def run(
    photos: list[Path], out: Path, config: TrainConfig = TINY_TRAIN, **kwargs: Any
) -> TrainResult:
    return train_model(photos, out, config, **kwargs)


@pytest.fixture(scope="module")
def trained(photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return run(photos, tmp_path_factory.mktemp("trained") / "model.pt")


# ---------------------------------------------------------------- losses


def _orthonormal(n: int, dim: int = 32) -> torch.Tensor:
    return torch.eye(dim)[:n]


def test_ntxent_is_near_zero_when_separated_and_large_when_collapsed() -> None:
    n = 8
    separated = _orthonormal(n)
    nothing_excluded = torch.zeros(n, n, dtype=torch.bool)
    perfect = ntxent_loss(separated, separated.clone(), nothing_excluded, temperature=0.05)
    assert float(perfect) < 1e-5
    collapsed = torch.nn.functional.normalize(torch.ones(n, 32), dim=1)
    worst = ntxent_loss(collapsed, collapsed.clone(), nothing_excluded, temperature=0.05)
    assert float(worst) == pytest.approx(np.log(2 * n - 1), rel=1e-4)
    # Swapped partners: every positive is far, a negative is identical.
    swapped = ntxent_loss(separated, separated.roll(1, dims=0), nothing_excluded, 0.05)
    assert float(swapped) > float(worst)


def test_ntxent_ignores_excluded_pairs() -> None:
    n = 4
    collapsed = torch.nn.functional.normalize(torch.ones(n, 16), dim=1)
    everything_excluded = torch.ones(n, n, dtype=torch.bool)
    assert float(ntxent_loss(collapsed, collapsed, everything_excluded, 0.05)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_memory_negatives_raise_the_loss_unless_excluded() -> None:
    n = 4
    views = _orthonormal(n)
    none = torch.zeros(n, n, dtype=torch.bool)
    alone = float(ntxent_loss(views, views.clone(), none, 0.05))
    # Earlier pictures identical to this batch's: hard negatives the batch alone lacks.
    memory = NegativeMemory(size=6)
    memory.push(views[:3], torch.tensor([10, 11, 12]), torch.tensor([-1, -1, -1]))
    memory.push(views[3:], torch.tensor([13]), torch.tensor([-1]))
    assert memory.vectors.shape == (4, 32) and memory.sources.tolist() == [13, 10, 11, 12]
    sources = torch.tensor([0, 1, 2, 3])
    harder = ntxent_loss(views, views, none, 0.05, memory.vectors, memory.excluded(sources, None))
    # Each view now meets one negative as close as its partner: log 2 (the rest are ~0).
    assert alone < 1e-5 and float(harder) == pytest.approx(np.log(2), rel=1e-4)
    # The same source photos (or the same shot) are never negatives of themselves.
    same = torch.tensor([10, 11, 12, 13])  # view k came from source 10 + k
    masked = ntxent_loss(views, views, none, 0.05, memory.vectors, memory.excluded(same, None))
    assert float(masked) == pytest.approx(alone, abs=1e-5)
    shots = torch.tensor([-1, -1, -1, 5])
    memory.push(views[:1], torch.tensor([20]), torch.tensor([5]))
    assert len(memory.vectors) == 5
    assert memory.excluded(sources, shots)[3].tolist() == [True, False, False, False, False]
    for _ in range(3):
        memory.push(views, sources, torch.full((4,), -1))
    assert len(memory.vectors) == 6  # the oldest went


def test_margin_loss_is_zero_when_separated_and_positive_when_collapsed() -> None:
    n = 6
    separated = _orthonormal(n)
    none = torch.zeros(n, n, dtype=torch.bool)
    assert float(margin_contrastive_loss(separated, separated.clone(), none, 0.5)) < 1e-6
    collapsed = torch.nn.functional.normalize(torch.ones(n, 32), dim=1)
    assert float(margin_contrastive_loss(collapsed, collapsed, none, 0.5)) == pytest.approx(
        0.25, abs=1e-3
    )
    # Positives apart are penalised by their squared distance.
    # Swapped partners: each positive at distance sqrt(2) costs 2, and each view now
    # meets an identical negative, which costs margin^2.
    far = margin_contrastive_loss(separated, separated.roll(1, dims=0), none, 0.5)
    assert float(far) == pytest.approx(2.0 + 0.25, abs=1e-3)


def test_losses_have_gradients() -> None:
    a = torch.nn.functional.normalize(
        torch.randn(6, 16, generator=torch.Generator().manual_seed(0)), dim=1
    )
    a.requires_grad_(True)
    b = a.detach().flip(0).clone()
    none = torch.zeros(6, 6, dtype=torch.bool)
    for loss in (ntxent_loss(a, b, none, 0.1), margin_contrastive_loss(a, b, none, 0.5)):
        (grad,) = torch.autograd.grad(loss, a)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_koleo_prefers_spread_embeddings() -> None:
    spread = _orthonormal(8)
    bunched = torch.nn.functional.normalize(
        torch.ones(8, 32) + 0.01 * torch.randn(8, 32, generator=torch.Generator().manual_seed(1)),
        dim=1,
    )
    assert float(koleo_loss(spread)) < float(koleo_loss(bunched))


def test_exclusion_mask_keeps_a_photo_apart_from_its_own_tiles() -> None:
    sources = torch.tensor([0, 0, 0, 1])
    tiles = torch.tensor([False, True, True, False])
    mask = _exclusion_mask(sources, tiles)
    assert mask[0, 1] and mask[1, 0] and mask[0, 2]  # whole photo vs its tile: overlap
    assert not mask[1, 2]  # two tiles of one photo share no pixels: a hard negative
    assert not mask[0, 3] and not mask[3, 0]


def test_exclusion_mask_keeps_one_subject_of_one_place_apart() -> None:
    sources = torch.tensor([0, 1, 2, 3])
    tiles = torch.zeros(4, dtype=torch.bool)
    shots = torch.tensor([5, 5, 6, -1])  # 0 and 1: same place, same subject (maybe re-shots)
    mask = _exclusion_mask(sources, tiles, shots)
    assert mask[0, 1] and mask[1, 0]
    assert not mask[0, 2] and not mask[2, 3] and not mask[3, 0]


def test_places_batch_photos_of_one_place_and_composites_join_as_negatives(
    tmp_path: Path,
) -> None:
    paths = []
    for k in range(8):
        paths.append(tmp_path / f"p{k}.png")
        make_picture(k, (96, 80)).save(paths[-1])
    places = {
        p: ("carpet" if k < 4 else f"room{k}", "shirt" if k < 2 else f"c{k}")
        for k, p in enumerate(paths)
    }
    config = replace(TINY_TRAIN, place_share=1.0, place_photos=3, composites_per_batch=2)
    items, _ = load_photos(paths, config, places=places)
    assert len({it.place for it in items[:4]}) == 1 and items[4].place != items[0].place
    stream = _PairStream(items, config, seed=0)
    batch = next(iter(stream))
    n = config.batch_photos + config.synthetic_per_batch + 2 * config.composites_per_batch
    assert batch["anchors"].shape[0] == n
    excluded = _exclusion_mask(batch["sources"], batch["tiles"], batch["shots"])
    # Composites are distinct sources: negatives of everything but themselves.
    assert not excluded[-2:, :-2].any() and not excluded[-1, -2]
    # The two "shirt" photos of the carpet, when both are in the batch, are kept apart.
    shirts = [i for i, s in enumerate(batch["shots"].tolist()) if s == batch["shots"][0] >= 0]
    assert all(excluded[i, j] for i in shirts for j in shirts)


# ---------------------------------------------------------------- data


def test_load_photos_skips_unreadable_files(photos: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    items, skipped = load_photos([*photos[:3], broken], TINY_TRAIN)
    assert skipped == [broken]
    assert len(items) == 3
    assert all(max(item.pixels.shape[:2]) <= TINY_TRAIN.cache_side for item in items)


def test_large_photos_give_tiles(tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    make_picture(7, (640, 480)).save(path)
    config = replace(TINY_TRAIN, tiles_per_photo=3, tile_min_side=200, cache_side=128)
    items, _ = load_photos([path], config)
    assert [item.tile for item in items] == [False, True, True, True]
    assert {item.source for item in items} == {0}


def test_photo_paths(photos: list[Path], tmp_path: Path) -> None:
    folder = photos[0].parent
    assert photo_paths(folder) == sorted(photos)
    names = tmp_path / "names.txt"
    names.write_text(f"{photos[3].name}\n\n{photos[1].name}\n")
    assert photo_paths(folder, names) == [photos[3], photos[1]]


def test_config_from_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    raw = json.loads(json.dumps(asdict(TINY_TRAIN)))
    path.write_text(json.dumps(raw))
    assert TrainConfig.from_json(path) == TINY_TRAIN
    path.write_text(json.dumps({"epochs": 2, "encoder": {"widths": [8, 16], "depths": [1, 1]}}))
    partial = TrainConfig.from_json(path)
    assert partial.epochs == 2 and partial.encoder.widths == (8, 16)
    assert partial.lr == TrainConfig().lr and partial.verify is None


def test_shipped_config_carries_the_decision_rule_and_training_saves_it(
    photos: list[Path], tmp_path: Path
) -> None:
    shipped = TrainConfig.from_json(Path(__file__).parents[1] / "configs" / "default.json")
    assert shipped.verify is not None and shipped.verify.expand_neighbours > 0
    assert shipped.verify.max_disagreement < 1.0 and shipped.verify.max_centre_disagreement < 1.0
    assert shipped.verify.min_centre_inlier_share > 0.0
    assert shipped.preprocess.decode_min_side > 0
    path = tmp_path / "config.json"
    config = replace(TINY_TRAIN, epochs=1, verify=shipped.verify)
    path.write_text(json.dumps(asdict(config)))
    assert TrainConfig.from_json(path) == config
    result = run(photos, tmp_path / "model.pt", config)
    assert load_model(result.checkpoint).verify == shipped.verify


def test_too_few_photos(photos: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2 training"):
        train_model(photos[:2], tmp_path / "model.pt", TINY_TRAIN)
    assert not (tmp_path / "model.pt").exists()


# ---------------------------------------------------------------- training runs


def test_training_lowers_the_loss(trained: TrainResult) -> None:
    losses = [log.loss for log in trained.history]
    val_losses = [log.val_loss for log in trained.history]
    assert [log.epoch for log in trained.history] == [0, 1, 2]
    assert all(np.isfinite(losses)) and all(np.isfinite(val_losses))
    assert losses[-1] < losses[0]
    assert all(isinstance(log, EpochLog) and log.seconds > 0 for log in trained.history)


def test_the_checkpoint_loads_and_is_calibrated_on_validation_photos(
    trained: TrainResult, photos: list[Path]
) -> None:
    model = load_model(trained.checkpoint)
    assert model.model_id == "tiny-trained"
    assert model.encoder.config == TINY_ENCODER
    assert model.preprocess == TINY_TRAIN.preprocess
    assert "validation" in model.calibration.method
    assert model.calibration.target_precision == 0.99
    assert model.meta["epoch"] == trained.best_epoch
    assert model.meta["train_config"]["steps_per_epoch"] == TINY_TRAIN.steps_per_epoch
    vectors = model.embed(photos[:4])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.compare(photos[0], photos[0]).duplicate


def test_checkpoint_calibration_matches_its_own_weights(
    trained: TrainResult, photos: list[Path]
) -> None:
    """The saved min_similarity comes from validation scores of the saved weights."""
    shuffled = photos[:]
    import random

    random.Random(TINY_TRAIN.seed).shuffle(shuffled)
    n_val = max(2, round(len(photos) * TINY_TRAIN.val_fraction))
    val_items, _ = load_photos(sorted(shuffled[:n_val]), TINY_TRAIN)
    model = load_model(trained.checkpoint)
    pos, neg = validation_scores(model, _build_val(val_items, TINY_TRAIN))
    expected = calibrate_min_similarity(pos, neg, 0.99)
    assert model.min_similarity == pytest.approx(expected.min_similarity, abs=1e-5)


def test_same_seed_same_losses(trained: TrainResult, photos: list[Path], tmp_path: Path) -> None:
    again = run(photos, tmp_path / "again.pt")
    assert [log.loss for log in again.history] == [log.loss for log in trained.history]
    assert [log.val_loss for log in again.history] == [log.val_loss for log in trained.history]
    other = run(photos, tmp_path / "other.pt", replace(TINY_TRAIN, seed=1, epochs=1))
    assert other.history[0].loss != trained.history[0].loss


def test_resume_continues_from_the_saved_epoch(photos: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    first = run(photos, out, replace(TINY_TRAIN, epochs=2))
    assert [log.epoch for log in first.history] == [0, 1]
    assert out.with_name("model.resume.pt").is_file()

    seen: list[int] = []
    resumed = run(
        photos,
        out,
        replace(TINY_TRAIN, epochs=3),
        resume=True,
        on_epoch=lambda log, extra: seen.append(log.epoch),
    )
    assert seen == [2]  # only the one missing epoch ran
    assert [log.epoch for log in resumed.history] == [0, 1, 2]
    assert resumed.history[:2] == first.history
    assert load_model(out).model_id == "tiny-trained"

    nothing_left: list[int] = []
    run(
        photos,
        out,
        replace(TINY_TRAIN, epochs=3),
        resume=True,
        on_epoch=lambda log, extra: nothing_left.append(log.epoch),
    )
    assert nothing_left == []


def test_a_run_can_start_from_a_checkpoint_with_a_memory(
    trained: TrainResult, photos: list[Path], tmp_path: Path
) -> None:
    config = replace(TINY_TRAIN, epochs=1, memory_size=64)
    again = run(photos, tmp_path / "fine.pt", config, init=trained.checkpoint)
    fresh = run(photos, tmp_path / "fresh.pt", config)
    # Starting from trained weights, the first epoch's loss is already lower.
    assert again.history[0].loss < fresh.history[0].loss
    wider = config.encoder.embed_dim * 2
    other = replace(config, encoder=replace(config.encoder, embed_dim=wider))
    with pytest.raises(ValueError, match="encoder settings differ"):
        run(photos, tmp_path / "bad.pt", other, init=trained.checkpoint)


def test_a_mirror_symmetric_run_keeps_its_kernels_symmetric_from_unconstrained_weights(
    trained: TrainResult, photos: list[Path], tmp_path: Path
) -> None:
    """`mirror_symmetric` fine-tuning from weights trained without it: every kernel of the
    saved model is its own mirror image after the optimiser's steps."""
    config = replace(
        TINY_TRAIN,
        epochs=1,
        steps_per_epoch=3,
        encoder=replace(TINY_ENCODER, mirror_symmetric=True),
    )
    result = run(photos, tmp_path / "mirror.pt", config, init=trained.checkpoint)
    kernels = [
        m.weight
        for m in load_model(result.checkpoint).encoder.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size[1] > 1
    ]
    assert kernels and all(torch.equal(k, k.flip(-1)) for k in kernels)
    unconstrained = load_model(trained.checkpoint).encoder.modules()
    assert any(
        not torch.equal(m.weight, m.weight.flip(-1))
        for m in unconstrained
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size[1] > 1
    )


def test_a_run_killed_while_saving_still_resumes(
    photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model.pt"
    run(photos, out, replace(TINY_TRAIN, epochs=1))
    real_save = torch.save

    def dies_half_way(obj: object, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(f, str | Path) and "resume" in str(f):
            Path(f).write_bytes(b"PK\x03\x04 half a file")
            raise KeyboardInterrupt
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        run(photos, out, replace(TINY_TRAIN, epochs=2), resume=True)
    monkeypatch.setattr(torch, "save", real_save)

    seen: list[int] = []
    resumed = run(
        photos,
        out,
        replace(TINY_TRAIN, epochs=2),
        resume=True,
        on_epoch=lambda log, extra: seen.append(log.epoch),
    )
    assert seen == [1]
    assert [log.epoch for log in resumed.history] == [0, 1]


def test_a_damaged_resume_file_is_a_clear_error(photos: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "model.pt"
    damaged = out.with_name("model.resume.pt")
    damaged.write_bytes(b"not a saved run")
    with pytest.raises(CheckpointError, match="cannot resume from this file"):
        run(photos, out, replace(TINY_TRAIN, epochs=1), resume=True)
    assert damaged.read_bytes() == b"not a saved run"  # left for the user to look at


def test_resume_without_a_saved_run_starts_from_scratch(photos: list[Path], tmp_path: Path) -> None:
    result = run(photos, tmp_path / "fresh.pt", replace(TINY_TRAIN, epochs=1), resume=True)
    assert [log.epoch for log in result.history] == [0]


def test_margin_loss_trains(photos: list[Path], tmp_path: Path) -> None:
    config = replace(TINY_TRAIN, loss="margin", koleo_weight=0.0)
    steps: list[float] = []
    result = run(
        photos, tmp_path / "margin.pt", config, on_step=lambda e, s, loss: steps.append(loss)
    )
    assert len(steps) == config.epochs * config.steps_per_epoch
    assert all(np.isfinite(steps))
    assert result.history[-1].loss < result.history[0].loss
    assert load_model(result.checkpoint).model_id == "tiny-trained"


def test_explicit_validation_photos_stay_out_of_training(
    photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lookalike.train.loop as train_module

    loaded: list[list[Path]] = []
    real = train_module.load_photos

    def spy(paths: list[Path], config: TrainConfig, **options: Any) -> Any:
        loaded.append(list(paths))
        return real(paths, config, **options)

    monkeypatch.setattr(train_module, "load_photos", spy)
    run(photos[:8], tmp_path / "m.pt", replace(TINY_TRAIN, epochs=1), val_photos=photos[8:])
    train_set, val_set = loaded
    assert sorted(val_set) == sorted(photos[8:])
    assert not set(train_set) & set(val_set)


def test_thumbnail_share_shows_both_views_of_a_picture_as_a_thumbnail(tmp_path: Path) -> None:
    paths = []
    for k in range(6):
        paths.append(tmp_path / f"p{k}.png")
        make_picture(k, (96, 80)).save(paths[-1])
    config = replace(TINY_TRAIN, synthetic_per_batch=0, anchor_edit_prob=0.0, cache_side=160)
    config = replace(config, preprocess=Preprocess(input_size=96, trim_borders=False))
    items, _ = load_photos(paths, config)

    def detail(share: float) -> float:
        batch = next(iter(_PairStream(items, replace(config, thumbnail_share=share), seed=0)))
        views = torch.cat([batch["anchors"], batch["positives"]]).float()
        return float(views.diff(dim=1).abs().mean() + views.diff(dim=2).abs().mean())

    # A thumbnail of at most 64 px scaled up to 96 px keeps less fine detail than the picture.
    full, thumbnails = detail(0.0), detail(1.0)
    assert thumbnails < 0.85 * full


def test_the_validation_set_is_the_same_draw_whatever_the_thumbnail_share(
    photos: list[Path],
) -> None:
    items, _ = load_photos(photos[:4], TINY_TRAIN)
    plain = _build_val(items, TINY_TRAIN)
    small = _build_val(items, replace(TINY_TRAIN, thumbnail_share=1.0))
    for name in ("originals", "edits", "distractors"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(small, name))
    np.testing.assert_array_equal(plain.batches[0]["anchors"], small.batches[0]["anchors"])
