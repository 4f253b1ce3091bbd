"""Grad-CAM explanations: heatmaps fit each image, are deterministic and point at shared content."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageOps
from typer.testing import CliRunner

from conftest import make_picture
from lookalike.augment import composite
from lookalike.cli import app
from lookalike.explain import METHODS, decided_by, explain_pair, overlay, panel
from lookalike.io import UnreadableImage
from lookalike.model import Model, load_model, trim_box
from photo_support import finish, mosaic_photo, smooth, texture

runner = CliRunner()


def landscape(rng: np.random.Generator, size: tuple[int, int], hues: tuple[float, float]):
    """Sky over textured ground, coloured from one family of hues (pixels, float32)."""
    w, h = size

    def colour(value: float) -> np.ndarray:
        hue = rng.uniform(*hues) % 1.0
        return 255 * np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.35, 0.8), value))

    y = np.mgrid[0:h, 0:w][0].astype(np.float32) / h
    horizon = rng.uniform(0.3, 0.6) + 0.08 * smooth(rng, 1, w, max(8, w // 4))[0]
    t = np.clip(y / horizon, 0, 1)[..., None]
    sky = colour(rng.uniform(0.7, 0.95)) * (1 - t) + colour(rng.uniform(0.6, 0.9)) * t
    relief = sum(a * smooth(rng, h, w, c) for c, a in ((w // 4, 0.25), (16, 0.15), (4, 0.08)))
    ground = colour(rng.uniform(0.35, 0.7)) * (1 + relief[..., None])
    return np.where((y < horizon)[..., None], sky, ground).astype(np.float32)


def emblem(rng: np.random.Generator, w: int, h: int) -> tuple[Image.Image, Image.Image]:
    """A distinctive object: concentric textured rings under an outlined star; and its mask."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    radius = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2))
    ring = np.minimum((radius * 4).astype(int), 3)
    pixels = np.zeros((h, w, 3), np.float32)
    for k in range(4):
        pixels[ring == k] = texture(rng, h, w)[ring == k]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    star = [
        (
            w / 2 + (0.35 if i % 2 == 0 else 0.15) * w * np.cos(i * np.pi / 5 - np.pi / 2),
            h / 2 + (0.35 if i % 2 == 0 else 0.15) * h * np.sin(i * np.pi / 5 - np.pi / 2),
        )
        for i in range(10)
    ]
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    ImageDraw.Draw(image).polygon(star, fill=fill, outline=(0, 0, 0), width=2)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, w - 1, h - 1), fill=255)
    return image, mask


def crop_pair(seed: int, side: float = 0.56) -> tuple[Image.Image, Image.Image, np.ndarray]:
    """(A, B = a crop of A keeping `side` of each dimension, mask of the crop in A).

    The crop sits anywhere in A (seeded), not only at the centre; 0.56 keeps 31% of A.
    """
    photo = mosaic_photo(seed)
    w, h = photo.size
    rng = np.random.default_rng(seed)
    cw, ch = int(side * w), int(side * h)
    left, top = int(rng.uniform(0, w - cw)), int(rng.uniform(0, h - ch))
    mask = np.zeros((h, w), bool)
    mask[top : top + ch, left : left + cw] = True
    return photo, photo.crop((left, top, left + cw, top + ch)), mask


def object_pair(seed: int, size: tuple[int, int] = (320, 240), scale: float = 0.55):
    """One emblem pasted at different places on two unrelated landscapes (cool vs warm
    colours, so the backgrounds share nothing but being photos); and its two masks."""
    rng = np.random.default_rng(500 + seed)
    w, h = size
    ow, oh = int(scale * w), int(scale * h)
    thing, outline = emblem(rng, ow, oh)
    images, masks = [], []
    for hues in ((0.4, 0.7), (-0.05, 0.12)):
        pixels = landscape(rng, size, hues)
        x, y = int(rng.uniform(0, w - ow)), int(rng.uniform(0, h - oh))
        background = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        background.paste(thing, (x, y), outline)
        mask = np.zeros((h, w), bool)
        mask[y : y + oh, x : x + ow] = np.asarray(outline) > 127
        images.append(finish(np.asarray(background, np.float32), rng))
        masks.append(mask)
    return images[0], images[1], masks[0], masks[1]


def heat_ratio(heatmaps: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """Share of heat mass inside the regions / the regions' share of the area (1 = no better
    than chance), over all given heatmaps together."""
    inside = sum(float(heat[mask].sum()) for heat, mask in zip(heatmaps, masks, strict=True))
    total = sum(float(heat.sum()) for heat in heatmaps)
    area = sum(int(mask.sum()) for mask in masks) / sum(mask.size for mask in masks)
    return inside / total / area


# --- the tiny random-weight model: shapes, ranges, determinism, plumbing ----------------


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    wa=st.integers(1, 300),
    ha=st.integers(1, 300),
    wb=st.integers(1, 300),
    hb=st.integers(1, 300),
    method=st.sampled_from(METHODS),
)
def test_heatmaps_have_each_images_size_and_unit_range(
    tiny_model: Model, wa: int, ha: int, wb: int, hb: int, method: str
) -> None:
    a = make_picture(1).resize((wa, ha))
    b = make_picture(2, (90, 150)).resize((wb, hb))
    result = explain_pair(a, b, tiny_model, method=method)
    for heat, (w, h) in ((result.heatmap_a, (wa, ha)), (result.heatmap_b, (wb, hb))):
        assert heat.shape == (h, w)
        assert heat.dtype == np.float32
        assert np.isfinite(heat).all()
        assert heat.min() >= 0.0 and heat.max() <= 1.0


def test_explanation_is_deterministic(tiny_model: Model) -> None:
    a, b = make_picture(1, (173, 97)), make_picture(2, (61, 150))
    first = explain_pair(a, b, tiny_model)
    second = explain_pair(a, b, tiny_model)
    assert np.array_equal(first.heatmap_a, second.heatmap_a)
    assert np.array_equal(first.heatmap_b, second.heatmap_b)
    assert first.similarity == second.similarity
    assert first.heatmap_a.max() == pytest.approx(1.0)


def test_methods_differ_and_unknown_method_is_refused(tiny_model: Model) -> None:
    a, b = make_picture(3), make_picture(4)
    plain = explain_pair(a, b, tiny_model, method="gradcam")
    plus = explain_pair(a, b, tiny_model, method="gradcam++")
    assert plain.similarity == plus.similarity
    assert not np.array_equal(plain.heatmap_a, plus.heatmap_a)
    with pytest.raises(ValueError, match="gradcam"):
        explain_pair(a, b, tiny_model, method="saliency")


def test_files_get_the_verdict_of_compare(tiny_model: Model, synthetic_folder) -> None:
    copy, (original, _) = next(iter(synthetic_folder.edits.items()))
    other = synthetic_folder.unrelated[0]
    for a, b in ((original, copy), (original, other)):
        result = explain_pair(a, b, tiny_model)
        verdict = tiny_model.compare(a, b)
        assert result.similarity == pytest.approx(verdict.similarity, abs=1e-6)
        assert result.duplicate == verdict.duplicate
        assert (result.a, result.b) == (a, b)
        with Image.open(a) as image:
            assert result.heatmap_a.shape == (image.height, image.width)


def test_trimmed_border_gets_no_heat_and_the_picture_does(tiny_model: Model) -> None:
    picture = make_picture(5, (120, 90))
    framed = ImageOps.expand(picture, border=(60, 20, 30, 45), fill=(250, 250, 250))
    left, top, right, bottom = trim_box(framed, tiny_model.preprocess)
    assert (left, top, right, bottom) == (60, 20, 180, 110)
    result = explain_pair(framed, make_picture(6), tiny_model, method="gradcam++")
    heat = result.heatmap_a
    inside = np.zeros(heat.shape, bool)
    inside[top:bottom, left:right] = True
    assert heat[~inside].max() == 0.0
    assert heat[inside].max() == pytest.approx(1.0)


def test_identical_images_have_nothing_to_explain(tiny_model: Model) -> None:
    picture = make_picture(7, (100, 80))
    result = explain_pair(picture, picture.copy(), tiny_model)
    assert result.similarity == pytest.approx(1.0, abs=1e-6)
    assert result.duplicate
    assert result.heatmap_a.max() == 0.0 and result.heatmap_b.max() == 0.0


def test_model_is_left_as_it_was(tiny_model: Model) -> None:
    a, b = make_picture(8), make_picture(9)
    before = tiny_model.embed_images([a, b])
    with torch.inference_mode():
        explain_pair(a, b, tiny_model)
    assert all(p.grad is None for p in tiny_model.encoder.parameters())
    assert not tiny_model.encoder.last_conv._forward_hooks
    assert not tiny_model.encoder.training
    assert np.array_equal(before, tiny_model.embed_images([a, b]))


def test_unreadable_file_raises_a_typed_error(tiny_model: Model, synthetic_folder) -> None:
    with pytest.raises(UnreadableImage):
        explain_pair(synthetic_folder.corrupt, synthetic_folder.originals[0], tiny_model)


def test_overlay_blends_the_jet_colours_of_the_heat() -> None:
    image = Image.new("RGB", (256, 3), (0, 0, 0))
    ramp = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (3, 1))
    coloured = np.asarray(overlay(image, ramp, alpha=1.0), dtype=int)
    assert coloured.shape == (3, 256, 3)
    matplotlib = pytest.importorskip("matplotlib")
    reference = np.round(matplotlib.colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255)
    assert np.abs(coloured[1] - reference).max() <= 1
    half = np.asarray(overlay(Image.new("RGB", (256, 3), (200, 200, 200)), ramp), dtype=int)
    assert np.abs(half[1] - np.round((200 + reference) / 2)).max() <= 1
    with pytest.raises(ValueError, match="does not match"):
        overlay(image, ramp.T)


def test_panel_shows_both_images_their_overlays_and_a_caption(tiny_model: Model) -> None:
    result = explain_pair(make_picture(10, (200, 100)), make_picture(11, (90, 180)), tiny_model)
    picture = panel(result, height=120)
    assert picture.mode == "RGB"
    assert picture.width >= 240 + 60 and picture.height > 2 * 120
    pixels = np.asarray(picture)
    top_left = np.asarray(result.image_a.resize((240, 120), Image.Resampling.LANCZOS))
    assert np.abs(pixels[8 : 8 + 120, 8 : 8 + 240].astype(int) - top_left).mean() < 1
    caption = pixels[2 * 120 + 3 * 8 :]
    assert (caption < 128).any()


# --- the command line -------------------------------------------------------------------


def _run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["explain", *args])


def test_cli_writes_overlays_and_panel_and_prints_json(
    tiny_checkpoint: Path, synthetic_folder, tmp_path: Path
) -> None:
    a, b = synthetic_folder.originals[0], synthetic_folder.unrelated[0]
    out = tmp_path / "why"
    result = _run(str(a), str(b), "--out", str(out), "--model", str(tiny_checkpoint), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {
        "schema_version",
        "a",
        "b",
        "similarity",
        "duplicate",
        "decided_by",
        "verification",
        "overlays",
        "panel",
    }
    assert payload["verification"] is None  # the tiny model has no local-feature check
    assert payload["decided_by"].startswith("CNN alone")
    assert payload["schema_version"] == 1
    assert (payload["a"], payload["b"]) == (str(a), str(b))
    assert 0.0 <= payload["similarity"] <= 1.0 and isinstance(payload["duplicate"], bool)
    written = [Path(p) for p in (*payload["overlays"], payload["panel"])]
    assert len(set(written)) == 3
    for path, source in zip(written, (a, b, None), strict=True):
        assert path.parent == out
        with Image.open(path) as png:
            assert png.format == "PNG"
            png.verify()
        if source is not None:
            with Image.open(path) as png, Image.open(source) as original:
                assert png.size == original.size


def test_cli_never_overwrites_earlier_files(
    tiny_checkpoint: Path, synthetic_folder, tmp_path: Path
) -> None:
    a, b = synthetic_folder.originals[1], synthetic_folder.originals[1]
    args = (str(a), str(b), "--out", str(tmp_path), "--model", str(tiny_checkpoint), "--json")
    first = json.loads(_run(*args).stdout)
    kept = {p: Path(p).read_bytes() for p in (*first["overlays"], first["panel"])}
    second = json.loads(_run(*args, "--method", "gradcam++").stdout)
    assert not set(kept) & {*second["overlays"], second["panel"]}
    assert all(Path(p).read_bytes() == data for p, data in kept.items())
    assert len(first["overlays"]) == len(set(first["overlays"])) == 2


def test_cli_plain_output_names_the_files(
    tiny_checkpoint: Path, synthetic_folder, tmp_path: Path
) -> None:
    a, b = synthetic_folder.originals[2], synthetic_folder.unrelated[1]
    result = _run(str(a), str(b), "-o", str(tmp_path), "-m", str(tiny_checkpoint))
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("similarity ")
    assert lines[1].startswith("CNN alone")  # what decided it
    assert all(Path(line).is_file() for line in lines[2:]) and len(lines) == 5


def test_cli_exit_codes(tiny_checkpoint: Path, synthetic_folder, tmp_path: Path) -> None:
    good = str(synthetic_folder.originals[0])
    model = ("--model", str(tiny_checkpoint))
    unreadable = _run(str(synthetic_folder.corrupt), good, "--out", str(tmp_path), *model)
    assert unreadable.exit_code == 1
    missing = _run(str(tmp_path / "nope.jpg"), good, "--out", str(tmp_path), *model)
    assert missing.exit_code == 1
    bad_method = _run(good, good, "--out", str(tmp_path), "--method", "lime", *model)
    assert bad_method.exit_code == 2
    a_file = tmp_path / "taken.txt"
    a_file.write_text("mine")
    not_a_folder = _run(good, good, "--out", str(a_file), *model)
    assert not_a_folder.exit_code == 2 and a_file.read_text() == "mine"
    assert _run(good, "--out", str(tmp_path), *model).exit_code == 2
    bad_model = _run(good, good, "--out", str(tmp_path), "--model", str(a_file))
    assert bad_model.exit_code == 2


# --- the bundled model: heat lies on what the two images share --------------------------


@pytest.fixture(scope="module")
def bundled() -> Model:
    return load_model()


@pytest.mark.slow
def test_crop_heat_lies_inside_the_cropped_region(bundled: Model) -> None:
    """Over 32 seeded pairs (B = a 31% crop of A, anywhere in A), A's heat mass inside the
    crop is at least 1.5x the crop's share of A's area (one pair alone is a noisy measure)."""
    heats, masks = [], []
    for seed in range(32):
        a, b, mask = crop_pair(seed)
        heats.append(explain_pair(a, b, bundled).heatmap_a)
        masks.append(mask)
    assert heat_ratio(heats, masks) >= 1.5


@pytest.mark.slow
def test_pasted_object_draws_the_heat(bundled: Model) -> None:
    """Over 32 seeded pairs (one emblem, about a quarter of the picture, on two unrelated
    landscapes), the heat mass on the emblem is at least 1.5x its share of the area."""
    heats, masks = [], []
    for seed in range(32):
        a, b, mask_a, mask_b = object_pair(seed)
        result = explain_pair(a, b, bundled)
        heats += [result.heatmap_a, result.heatmap_b]
        masks += [mask_a, mask_b]
    assert heat_ratio(heats, masks) >= 1.5


@pytest.mark.slow
def test_a_verified_crop_shows_its_matches_and_where_it_lies(bundled: Model) -> None:
    """The explanation of a crop pair carries the matches that verified it: B's outline
    mapped into A is the crop box (within 5 % of A's size), every matched point of A lies
    inside it, and the panel and the caption say so."""
    for seed in range(4):
        a, b, mask = crop_pair(seed, side=0.7)
        result = explain_pair(a, b, bundled)
        found = result.evidence
        assert found is not None and found.confirmed and found.outline is not None
        assert found.inliers == len(found.points_a) >= 20
        rows, cols = np.nonzero(mask)
        box = np.array(
            [
                [cols.min(), rows.min()],
                [cols.max() + 1, rows.min()],
                [cols.max() + 1, rows.max() + 1],
                [cols.min(), rows.max() + 1],
            ]
        )
        assert np.abs(found.outline - box).max() <= 0.05 * max(a.size), seed
        inside = mask[found.points_a[:, 1].astype(int), found.points_a[:, 0].astype(int)]
        assert inside.all()
        assert decided_by(result) == (
            f"verified: {found.inliers} local-feature matches over "
            f"{round(100 * found.coverage)} % of the picture"
        )
        # The matched points lie in the crop: they span no more of A than the crop does.
        assert 0.0 < found.coverage <= float(mask.mean()) + 0.01
        assert panel(result, heatmaps=False).height < panel(result).height


@pytest.mark.slow
def test_a_match_on_a_shared_background_alone_is_shown_as_not_counted(bundled: Model) -> None:
    """Two different objects pasted on one background: if local features match the
    background, the explanation shows the match as refused and the CNN's score standing."""
    refused = 0
    for seed in range(6):
        background = mosaic_photo(100 + seed)
        a, b = (composite(background, mosaic_photo(200 + seed + 7 * k), seed=seed) for k in (1, 2))
        result = explain_pair(a, b, bundled)
        found = result.evidence
        if found is not None and found.inliers and not found.confirmed:
            refused += 1
            assert decided_by(result).startswith("CNN alone")
            assert result.similarity < bundled.min_similarity
    assert refused >= 1
