"""The Siamese model: embeddings, the similarity scale, checkpoints, the bundled model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import lookalike.model.checkpoint as model_module
from conftest import TINY_ENCODER, TINY_PREPROCESS, SyntheticFolder
from lookalike.io import UnreadableImage, load_image
from lookalike.model import (
    CHECKPOINT_FORMAT,
    Calibration,
    CheckpointError,
    Model,
    Preprocess,
    fingerprint,
    load_model,
    load_prepared,
    new_model,
    prepare_image,
    read_checkpoint,
    save_model,
    to_tensor,
    trim_box,
)
from lookalike.model.preprocess import canvas_box
from lookalike.records import Comparison
from lookalike.score import cnn_similarity_from_cosine


@pytest.fixture(scope="module")
def files(synthetic_folder: SyntheticFolder) -> list[Path]:
    return [*synthetic_folder.originals, *synthetic_folder.edits, *synthetic_folder.unrelated]


# ---------------------------------------------------------------- embeddings


def test_embeddings_are_unit_norm_and_finite(tiny_model: Model, files: list[Path]) -> None:
    vectors = tiny_model.embed(files)
    assert vectors.shape == (len(files), TINY_ENCODER.embed_dim)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_flat_and_extreme_pictures_embed_finitely(tiny_model: Model) -> None:
    images = [
        Image.new("RGB", (64, 64), (0, 0, 0)),
        Image.new("RGB", (64, 64), (255, 255, 255)),
        Image.new("RGB", (1, 1), (10, 200, 30)),
        Image.new("RGB", (3000, 2), (120, 0, 0)),
    ]
    vectors = tiny_model.embed_images(images)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embedding_does_not_depend_on_the_batch(tiny_model: Model, files: list[Path]) -> None:
    together = tiny_model.embed(files, batch_size=5)
    alone = np.concatenate([tiny_model.embed([f]) for f in files[:4]])
    np.testing.assert_allclose(together[:4], alone, atol=1e-5)
    np.testing.assert_allclose(tiny_model.embed(files, batch_size=64), together, atol=1e-5)


def test_embed_images_and_arrays_agree_with_embed(tiny_model: Model, files: list[Path]) -> None:
    pre = tiny_model.preprocess
    from_files = tiny_model.embed(files[:3])
    images = [load_image(f, min_side=pre.input_size) for f in files[:3]]
    np.testing.assert_allclose(tiny_model.embed_images(images), from_files, atol=1e-6)
    arrays = np.stack([load_prepared(f, pre) for f in files[:3]])
    assert arrays.shape == (3, pre.input_size, pre.input_size, 3) and arrays.dtype == np.uint8
    np.testing.assert_allclose(tiny_model.embed_arrays(arrays), from_files, atol=1e-6)


def test_empty_inputs_give_empty_arrays(tiny_model: Model) -> None:
    dim = TINY_ENCODER.embed_dim
    assert tiny_model.embed([]).shape == (0, dim)
    assert tiny_model.embed_images([]).shape == (0, dim)


def test_embed_raises_unreadable_image(
    tiny_model: Model, synthetic_folder: SyntheticFolder
) -> None:
    with pytest.raises(UnreadableImage) as info:
        tiny_model.embed([synthetic_folder.originals[0], synthetic_folder.corrupt])
    assert info.value.path == synthetic_folder.corrupt


def test_folded_batch_norm_gives_the_training_graph_outputs(files: list[Path]) -> None:
    """Inference folds batch norm into the convolutions; outputs must not change."""
    model = new_model(TINY_ENCODER, TINY_PREPROCESS, seed=3)
    generator = torch.Generator().manual_seed(0)
    for module in model.encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            count = module.num_features
            module.running_mean.copy_(torch.randn(count, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(count, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(count, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(count, generator=generator) * 0.2)
    arrays = np.stack([load_prepared(f, model.preprocess) for f in files[:6]])
    with torch.no_grad():
        reference = model.encoder.eval()(to_tensor(arrays, model.preprocess)).numpy()
    np.testing.assert_allclose(model.embed_arrays(arrays), reference, atol=1e-4)


def test_embeddings_follow_weight_changes(files: list[Path]) -> None:
    """Training validates with the model it is training: no stale cached encoder."""
    model = new_model(TINY_ENCODER, TINY_PREPROCESS, seed=0)
    before = model.embed(files[:3])
    with torch.no_grad():
        for parameter in model.encoder.parameters():
            parameter.mul_(1.5).add_(0.01)
    changed = model.embed(files[:3])
    assert not np.allclose(before, changed, atol=1e-4)
    model.encoder.load_state_dict(
        new_model(TINY_ENCODER, TINY_PREPROCESS, seed=0).encoder.state_dict()
    )
    np.testing.assert_allclose(model.embed(files[:3]), before, atol=1e-6)


def test_a_mirror_symmetric_encoder_embeds_a_mirrored_picture_as_the_picture(
    files: list[Path],
) -> None:
    """With every kernel its own mirror image, the embedding of a mirrored picture is the
    picture's own where each strided layer gets an odd side (41 -> 21 -> 11 for the tiny
    encoder's three strides); an unconstrained encoder's is not."""
    symmetric = replace(TINY_ENCODER, mirror_symmetric=True)
    odd = Preprocess(input_size=41)
    photos = [load_image(f) for f in files[:4]]
    mirrored = [ImageOps.mirror(p) for p in photos]
    model = new_model(symmetric, odd, seed=1)
    np.testing.assert_allclose(model.embed_images(mirrored), model.embed_images(photos), atol=1e-5)
    plain = new_model(TINY_ENCODER, odd, seed=1)
    gap = np.abs(plain.embed_images(mirrored) - plain.embed_images(photos)).max()
    assert gap > 1e-3  # a hundred times the tolerance above
    with torch.no_grad():  # a training step moves the kernels; symmetrise_ restores them
        for parameter in model.encoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    model.encoder.symmetrise_()
    np.testing.assert_allclose(model.embed_images(mirrored), model.embed_images(photos), atol=1e-5)


def test_prepare_image_trims_a_uniform_border() -> None:
    from conftest import make_picture

    photo = make_picture(3, (120, 90))
    canvas = Image.new("RGB", (300, 260), (250, 250, 250))
    canvas.paste(photo, (70, 40))
    pre = replace(TINY_PREPROCESS, input_size=32)
    framed, bare = prepare_image(canvas, pre), prepare_image(photo, pre)
    assert framed.shape == bare.shape == (32, 32, 3)
    assert np.abs(framed.astype(int) - bare.astype(int)).mean() < 6
    untrimmed = prepare_image(canvas, replace(pre, trim_borders=False))
    assert np.abs(untrimmed.astype(int) - bare.astype(int)).mean() > 20


def _gradient(size: tuple[int, int], top: tuple[int, ...], bottom: tuple[int, ...]) -> np.ndarray:
    t = np.linspace(0.0, 1.0, size[1])[:, None, None]
    return np.broadcast_to(np.array(top) * (1 - t) + np.array(bottom) * t, (size[1], size[0], 3))


@pytest.mark.parametrize("canvas_kind", ["gradient", "grain"])
def test_prepare_image_trims_a_smooth_canvas_when_asked(canvas_kind: str) -> None:
    from conftest import make_picture

    photo = make_picture(3, (120, 90))
    rng = np.random.default_rng(0)
    if canvas_kind == "gradient":
        pixels = _gradient((300, 260), (200, 40, 90), (30, 160, 220))
    else:
        pixels = np.array((120, 60, 150)) + rng.normal(0, 25, (260, 300, 3))
    canvas = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    canvas.paste(photo, (70, 40))
    pre = replace(TINY_PREPROCESS, input_size=32, trim_canvas=True)
    framed, bare = prepare_image(canvas, pre), prepare_image(photo, pre)
    assert np.abs(framed.astype(int) - bare.astype(int)).mean() < 8
    left, top, right, bottom = trim_box(canvas, pre)
    assert abs(left - 70) <= 2 and abs(top - 40) <= 2
    assert abs(right - 190) <= 2 and abs(bottom - 130) <= 2
    # Without trim_canvas (checkpoints before v1.17) the canvas stays: the uniform test
    # finds no border there.
    untrimmed = prepare_image(canvas, replace(pre, trim_canvas=False))
    assert np.abs(untrimmed.astype(int) - bare.astype(int)).mean() > 20


def test_canvas_trim_keeps_photos_and_small_things_on_a_plain_ground_whole() -> None:
    from conftest import make_picture

    rng = np.random.default_rng(1)
    sky = _gradient((300, 200), (90, 140, 230), (190, 215, 245))
    cloud = Image.fromarray(sky.astype(np.uint8), "RGB")
    cloud.paste((250, 250, 250), (200, 40, 240, 60))  # small, off the edges
    # A horizon: a sky ramp above, grass below; the side edges are not straight ramps.
    land = sky.copy()
    land[120:] = np.array((60, 120, 40)) + rng.normal(0, 30, (80, 300, 3))
    landscape = Image.fromarray(np.clip(land, 0, 255).astype(np.uint8), "RGB")
    # A thumbnail on a gradient canvas keeps it: too small to tell canvas from picture.
    thumbnail = Image.fromarray(_gradient((48, 40), (200, 40, 90), (30, 160, 220)).astype(np.uint8))
    thumbnail.paste(make_picture(6, (24, 20)), (12, 10))
    for picture in (cloud, landscape, make_picture(5, (160, 120)), thumbnail):
        assert canvas_box(picture, 12) == (0, 0, picture.width, picture.height)


# ---------------------------------------------------------------- similarity


def test_similarity_scale() -> None:
    assert cnn_similarity_from_cosine(1.0) == 1.0
    assert cnn_similarity_from_cosine(0.0) == 0.5
    assert cnn_similarity_from_cosine(-1.0) == 0.0
    assert cnn_similarity_from_cosine(1.0000001) == 1.0  # rounding never leaves [0, 1]
    np.testing.assert_allclose(
        cnn_similarity_from_cosine(np.array([-1.5, -1.0, 0.2, 1.0, 1.2])), [0, 0, 0.6, 1, 1]
    )


def test_compare_a_file_with_itself(tiny_model: Model, files: list[Path]) -> None:
    result = tiny_model.compare(files[0], files[0])
    assert isinstance(result, Comparison)
    assert result.similarity == pytest.approx(1.0, abs=1e-5)
    assert result.duplicate
    assert result.min_similarity == tiny_model.min_similarity
    assert result.model == "tiny-test"
    assert (result.a, result.b) == (files[0], files[0])


def test_compare_uses_the_given_min_similarity(tiny_model: Model, files: list[Path]) -> None:
    a, b = files[0], files[-1]
    score = tiny_model.compare(a, b).similarity
    assert 0.0 <= score <= 1.0
    assert tiny_model.compare(a, b, min_similarity=score).duplicate
    assert not tiny_model.compare(a, b, min_similarity=min(1.0, score + 1e-4)).duplicate
    assert tiny_model.compare(a, b, min_similarity=0.0).duplicate
    stricter = tiny_model.with_calibration(Calibration(min_similarity=0.999, method="test"))
    assert stricter.compare(a, b).min_similarity == 0.999
    assert tiny_model.min_similarity == Calibration().min_similarity  # the original is unchanged
    assert tiny_model.compare(str(a), str(b)).a == a  # str and Path both accepted


def test_similarity_is_symmetric_and_in_range(tiny_model: Model, files: list[Path]) -> None:
    vectors = tiny_model.embed(files)
    forward = tiny_model.cnn_similarity(vectors[:-1], vectors[1:])
    backward = tiny_model.cnn_similarity(vectors[1:], vectors[:-1])
    np.testing.assert_allclose(forward, backward)
    assert ((forward >= 0) & (forward <= 1)).all()
    one_vs_many = tiny_model.cnn_similarity(vectors[0], vectors)
    assert one_vs_many.shape == (len(files),)
    assert one_vs_many[0] == pytest.approx(1.0, abs=1e-5)


def test_similarity_matrix_matches_pairwise_similarity(
    tiny_model: Model, files: list[Path]
) -> None:
    vectors = tiny_model.embed(files)
    a, b = vectors[:5], vectors[3:]
    matrix = tiny_model.cnn_similarity_matrix(a, b)
    assert matrix.shape == (5, len(b))
    for i in range(len(a)):
        for j in range(len(b)):
            expected = tiny_model.cnn_similarity(a[i], b[j])[0]
            assert matrix[i, j] == pytest.approx(expected, abs=1e-5)
    assert ((matrix >= 0) & (matrix <= 1)).all()


# ---------------------------------------------------------------- checkpoints


def test_save_load_gives_identical_embeddings(
    tiny_model: Model, files: list[Path], tmp_path: Path
) -> None:
    calibrated = tiny_model.with_calibration(
        Calibration(0.8123, "precision >= 0.99", 0.99, positives=10, negatives=90)
    )
    calibrated.meta = {"note": "test"}
    path = save_model(calibrated, tmp_path / "sub" / "model.pt")
    assert path.is_file() and not list(tmp_path.glob("sub/*.tmp"))
    loaded = load_model(path)
    assert np.array_equal(loaded.embed(files), calibrated.embed(files))
    assert loaded.encoder.config == TINY_ENCODER
    assert loaded.preprocess == calibrated.preprocess
    assert loaded.calibration == calibrated.calibration
    assert loaded.min_similarity == 0.8123
    assert loaded.model_id == "tiny-test"
    assert loaded.meta == {"note": "test"}
    assert fingerprint(loaded) == fingerprint(calibrated)
    payload = read_checkpoint(path)
    assert payload["format"] == CHECKPOINT_FORMAT
    assert {"encoder", "preprocess", "calibration", "model_id", "state_dict"} <= set(payload)


def test_fingerprint_follows_weights_and_preprocessing(tiny_model: Model) -> None:
    before = fingerprint(tiny_model)
    assert before == fingerprint(new_model(TINY_ENCODER, TINY_PREPROCESS, seed=0))
    assert before != fingerprint(new_model(TINY_ENCODER, TINY_PREPROCESS, seed=1))
    other_input = replace(tiny_model, preprocess=replace(TINY_PREPROCESS, input_size=96))
    assert fingerprint(other_input) != before
    assert fingerprint(tiny_model.with_calibration(Calibration(0.5))) == before
    with torch.no_grad():
        tiny_model.encoder.project.bias.add_(1e-3)
    assert fingerprint(tiny_model) != before


def _save_payload(path: Path, payload: object) -> Path:
    torch.save(payload, path)
    return path


def test_unknown_checkpoint_format(tiny_checkpoint: Path, tmp_path: Path) -> None:
    payload = read_checkpoint(tiny_checkpoint)
    path = _save_payload(tmp_path / "future.pt", {**payload, "format": CHECKPOINT_FORMAT + 1})
    with pytest.raises(CheckpointError, match=r"format 2 is not supported.*reads format 1"):
        load_model(path)


def test_truncated_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_corrupt_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_checkpoint.read_bytes())
    for i in range(200, len(data), 97):
        data[i] ^= 0xFF
    path = tmp_path / "corrupt.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_model(path)


def test_files_that_are_not_checkpoints(synthetic_folder: SyntheticFolder, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(synthetic_folder.originals[0])
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(tmp_path / "notes.pt")
    other = _save_payload(tmp_path / "other.pt", {"state_dict": {}, "epoch": 3})
    with pytest.raises(CheckpointError, match="not a lookalike checkpoint"):
        load_model(other)
    weights_only = _save_payload(tmp_path / "weights.pt", {"w": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="not a lookalike checkpoint"):
        load_model(weights_only)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_model(tmp_path)


def test_checkpoint_whose_weights_do_not_fit_its_architecture(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    payload = read_checkpoint(tiny_checkpoint)
    wider = {**payload, "encoder": {**payload["encoder"], "embed_dim": 32}}
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(_save_payload(tmp_path / "mismatch.pt", wider))
    missing = {k: v for k, v in payload.items() if k != "preprocess"}
    with pytest.raises(CheckpointError):
        load_model(_save_payload(tmp_path / "missing_key.pt", missing))


def test_missing_bundled_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(model_module, "DEFAULT_CHECKPOINT", tmp_path / "nothing" / "default.pt")
    with pytest.raises(CheckpointError, match=r"bundled default model is missing.*--model"):
        load_model()


def test_saving_never_leaves_a_half_written_checkpoint(
    tiny_model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_model(tiny_model, tmp_path / "model.pt")
    before = path.read_bytes()

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_model(new_model(TINY_ENCODER, TINY_PREPROCESS, seed=9), path)
    assert path.read_bytes() == before


# ---------------------------------------------------------------- the bundled model


@pytest.mark.slow
def test_bundled_model_finds_edited_copies(synthetic_folder: SyntheticFolder) -> None:
    """The shipped model: each edited copy is nearer its own original than any other image,
    re-compressed copies are duplicates, unrelated pictures are not."""
    assert model_module.DEFAULT_CHECKPOINT.is_file(), "the bundled model is missing"
    model = load_model()
    assert model.encoder.config.embed_dim >= 64
    assert 0.5 < model.min_similarity < 1.0
    copies = list(synthetic_folder.edits)
    owner = np.array(
        [synthetic_folder.originals.index(synthetic_folder.edits[c][0]) for c in copies]
    )
    # The embeddings themselves (the detail gate aside: it may not vouch for a smooth picture).
    to_originals = model.embed(copies) @ model.embed(synthetic_folder.originals).T
    assert (to_originals.argmax(axis=1) == owner).all()

    positives = [model.compare(c, synthetic_folder.edits[c][0]) for c in copies]
    negatives = [
        model.compare(o, u) for o in synthetic_folder.originals for u in synthetic_folder.unrelated
    ]
    assert min(p.similarity for p in positives) > max(n.similarity for n in negatives)
    assert not any(n.duplicate for n in negatives)
    recompressed = [
        p for p, c in zip(positives, copies, strict=True) if synthetic_folder.edits[c][1] == "jpeg"
    ]
    assert recompressed and all(p.duplicate for p in recompressed)


# ---------------------------------------------------------------- inference runtime


def test_onnx_runtime_matches_pytorch(files: list[Path]) -> None:
    model = load_model()
    arrays = np.stack([load_prepared(f, model.preprocess) for f in files[:8]])
    fast = replace(model, runtime="onnx").embed_arrays(arrays)
    plain = replace(model, runtime="torch").embed_arrays(arrays)
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)


def test_onnx_runtime_follows_weight_changes(files: list[Path]) -> None:
    model = replace(new_model(TINY_ENCODER, TINY_PREPROCESS, seed=1), runtime="onnx")
    arrays = np.stack([load_prepared(f, model.preprocess) for f in files[:4]])
    before = model.embed_arrays(arrays)
    with torch.no_grad():
        next(model.encoder.parameters()).mul_(-1.0)
    after = model.embed_arrays(arrays)
    assert not np.allclose(before, after, atol=1e-3)
    np.testing.assert_allclose(
        after, replace(model, runtime="torch").embed_arrays(arrays), atol=1e-5
    )


def test_a_model_with_a_runtime_session_pickles(files: list[Path]) -> None:
    import pickle

    model = replace(load_model(), runtime="onnx")
    arrays = np.stack([load_prepared(f, model.preprocess) for f in files[:2]])
    first = model.embed_arrays(arrays)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).embed_arrays(arrays), first)


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match="runtime"):
        replace(load_model(), runtime="gpu")


def test_decode_side_defaults_to_the_input_size() -> None:
    assert TINY_PREPROCESS.decode_side == TINY_PREPROCESS.input_size
    assert replace(TINY_PREPROCESS, decode_min_side=40).decode_side == 40


# -- The detail gate: near-flat pictures are not copies on the CNN's word ----------------


def test_detail_measures_flat_and_textured_pictures() -> None:
    from lookalike.model import detail_of_pixels

    sky = np.zeros((160, 160, 3), dtype=np.uint8) + np.array([120, 170, 230], dtype=np.uint8)
    sky[:, :, 2] = np.linspace(200, 240, 160).astype(np.uint8)[None, :]  # a gentle gradient
    noise = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    assert detail_of_pixels(sky) < 0.005 < 0.1 < detail_of_pixels(noise)


def test_coarse_detail_reads_structure_not_grain() -> None:
    """A tile of one wall (grain, no shapes) has detail at 64 px but little at 16 px; a
    picture with shapes has it at both."""
    from lookalike.model import detail_of_pixels

    rng = np.random.default_rng(0)
    wall = np.clip(rng.normal(150, 30, (160, 160, 3)), 0, 255).astype(np.uint8)
    shapes = wall.copy()
    shapes[20:80, 30:90] = 30
    shapes[100:150, 90:140] = 240
    assert detail_of_pixels(wall) > 0.05
    assert detail_of_pixels(wall, side=16) < 0.02 < 0.05 < detail_of_pixels(shapes, side=16)


def test_a_detail_gate_zeroes_flat_pairs_and_is_kept_in_the_checkpoint(
    tiny_model: Model, tmp_path: Path
) -> None:
    from lookalike.model import fit_detail_gate, rule_fingerprint

    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(200, 8))
    details = np.exp(vectors[:, 0] - 4) - 1e-4  # detail read along the first axis
    gate = fit_detail_gate(vectors, details, min_detail=np.exp(-4) - 1e-4, ridge=1e-6)
    np.testing.assert_allclose(gate.detail(vectors), details, rtol=1e-3, atol=1e-6)
    flat = gate.flat(vectors)
    assert flat.tolist() == (vectors[:, 0] < 0).tolist()

    dim = tiny_model.encoder.config.embed_dim
    unit = np.zeros((4, dim))
    unit[:, 0] = [-0.6, -0.5, 0.6, 0.5]  # rows 0, 1 flat; 2, 3 not
    unit[:, 1] = 0.8
    gated = replace(
        tiny_model, detail=replace(gate, weights=(1.0,) * 1 + (0.0,) * (dim - 1) + (-4.0,))
    )
    assert gated.detail is not None
    assert gated.detail.flat(unit).tolist() == [True, True, False, False]
    plain = tiny_model.cnn_similarity(unit[[0, 2]], unit[[1, 3]])
    assert (plain > 0.9).all()  # both pairs look alike to the CNN
    assert gated.cnn_similarity(unit[[0, 2]], unit[[1, 3]]).tolist() == [
        0.0,
        pytest.approx(plain[1]),
    ]
    matrix = gated.cnn_similarity_matrix(unit, unit)
    assert (matrix[:2] == 0).all() and (matrix[:, :2] == 0).all() and (matrix[2:, 2:] > 0.9).all()

    save_model(gated, tmp_path / "gated.pt")
    loaded = load_model(tmp_path / "gated.pt")
    assert loaded.detail == gated.detail
    assert rule_fingerprint(loaded) != rule_fingerprint(tiny_model)

    coarse = replace(gated, detail=replace(gated.detail, side=16))
    save_model(coarse, tmp_path / "coarse.pt")
    assert load_model(tmp_path / "coarse.pt").detail == coarse.detail
    assert rule_fingerprint(coarse) != rule_fingerprint(gated)

    # A gate saved before `side` existed reads as 64 px, with its fingerprint unchanged.
    payload = torch.load(tmp_path / "gated.pt", weights_only=True)
    del payload["detail"]["side"]
    torch.save(payload, tmp_path / "older.pt")
    older = load_model(tmp_path / "older.pt")
    assert older.detail == gated.detail and older.detail.side == 64
    assert rule_fingerprint(older) == rule_fingerprint(gated)


def test_measured_detail_overrules_a_flat_read_out_only_where_known_and_clear(
    tiny_model: Model, tmp_path: Path
) -> None:
    """With `clear_detail`, a picture the read-out calls flat but measured as detailed is
    not flat; unknown (NaN) measures and gates without `clear_detail` keep the read-out."""
    from lookalike.model import DetailGate, measure_detail, rule_fingerprint

    dim = tiny_model.encoder.config.embed_dim
    weights = (1.0,) + (0.0,) * (dim - 1) + (-4.0,)
    unit = np.zeros((4, dim))
    unit[:, 0] = [-0.6, -0.5, 0.6, -0.5]  # by the read-out rows 0, 1, 3 flat; 2 not
    unit[:, 1] = 0.8
    measured = np.array([0.01, 0.2, 0.01, np.nan])  # row 1 measured clear; row 3 unknown
    gate = DetailGate(weights, min_detail=float(np.exp(-4) - 1e-4), side=16)
    assert gate.flat(unit, measured).tolist() == [True, True, False, True]  # no clear_detail
    clear = replace(gate, clear_detail=0.06)
    assert clear.flat(unit).tolist() == [True, True, False, True]  # nothing measured
    assert clear.flat(unit, measured).tolist() == [True, False, False, True]

    model = replace(tiny_model, detail=clear)
    flat = model.flat(unit, measured)
    plain = model.cnn_similarity(unit[[1]], unit[[2]], gate=False)
    assert plain[0] > 0 and model.cnn_similarity(unit[[1]], unit[[2]]).tolist() == [0.0]
    assert model.cnn_similarity(unit[[1]], unit[[2]], flat=flat[[1]] | flat[[2]]).tolist() == [
        pytest.approx(plain[0])
    ]
    assert model.verification_prior(unit[[1]], unit[[2]], flat[[1]] | flat[[2]])[0].tolist() == [
        pytest.approx(plain[0])
    ]
    matrix = model.cnn_similarity_matrix(unit, unit, flat, flat)
    assert matrix[1, 2] > 0 and matrix[1, 3] == 0 and matrix[0, 1] == 0
    assert (model.cnn_similarity_matrix(unit, unit)[1] == 0).all()  # the read-out alone

    shapes = np.zeros((64, 64, 3), dtype=np.uint8)
    shapes[8:40, 8:40] = 255
    assert measure_detail(shapes) > 0.06 > measure_detail(np.full((64, 64, 3), 90, np.uint8))

    save_model(model, tmp_path / "clear.pt")
    assert load_model(tmp_path / "clear.pt").detail == clear
    assert rule_fingerprint(model) != rule_fingerprint(replace(model, detail=gate))


def test_a_cnn_confident_pair_ranks_with_well_verified_ones_and_decides_alike(
    tiny_model: Model, tmp_path: Path
) -> None:
    """`confident_lift` raises only CNN-confident similarities (monotone, below 1), so a
    pair the CNN is sure of outranks one that a few matches verify, while every decision
    at a cut-off under the confident one, and the CNN alone, stay as they were."""
    from lookalike.model import rule_fingerprint
    from lookalike.verify import VerifyConfig, fuse_similarity

    config = VerifyConfig(confident_cnn_similarity=0.998, inlier_offset=12, inlier_scale=4)
    plain = replace(tiny_model, verify=config)
    lifted = replace(tiny_model, verify=replace(config, confident_lift=7.0))
    scores = np.array([0.0, 0.6, 0.99, 0.9979, 0.998, 0.9985, 0.9999, 1.0])
    np.testing.assert_array_equal(plain.unverified_similarity(scores), scores)
    raised = lifted.unverified_similarity(scores)
    np.testing.assert_array_equal(raised[:4], scores[:4])  # below the confident cut-off
    assert (raised[4:7] > scores[4:7]).all() and (raised <= 1.0).all() and raised[7] == 1.0
    assert (np.diff(raised) > 0).all()  # the order of pairs is kept
    # Verified by 32 matches from CNN similarity 0.9 (tiles of a repeated pattern in the
    # benchmarks): above a confident pair without the lift, below it with.
    weak = fuse_similarity(np.array([0.9]), np.array([32.0]), config)[0]
    assert scores[5] < weak < raised[5]
    cut = 0.9969  # the shipped cut-offs sit under the confident one
    assert (plain.unverified_similarity(scores) >= cut).tolist() == (raised >= cut).tolist()
    # The CNN alone is not lifted; the setting is part of the rule and of the checkpoint.
    assert lifted.without_verification().unverified_similarity(scores).tolist() == scores.tolist()
    save_model(lifted, tmp_path / "lifted.pt")
    loaded = load_model(tmp_path / "lifted.pt")
    assert loaded.verify is not None and loaded.verify.confident_lift == 7.0
    assert rule_fingerprint(loaded) != rule_fingerprint(plain)
