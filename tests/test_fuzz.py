"""Property and fuzz tests: any image size, mode, format and edit loads and embeds cleanly;
damaged files of every format raise only UnreadableImage (a bounded fuzz run in CI)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from bad_inputs import assert_plain
from conftest import TINY_ENCODER, TINY_PREPROCESS, make_picture
from lookalike import load_model
from lookalike.augment import FAMILIES, apply_edit
from lookalike.embed import embed_paths, prepare_file
from lookalike.io import UnreadableImage, open_image
from lookalike.model import Model, new_model, prepare_image

_FIXTURES = [HealthCheck.function_scoped_fixture]


class _Models(list[Model]):
    def __repr__(self) -> str:  # hypothesis prints its arguments when a test fails
        return f"<models {', '.join(m.model_id for m in self)}>"


@pytest.fixture(scope="module")
def models() -> list[Model]:
    """The tiny random model and the bundled one: both must give unit vectors for anything."""
    return _Models(
        [new_model(TINY_ENCODER, TINY_PREPROCESS, seed=0, model_id="tiny"), load_model()]
    )


def _picture(seed: int, size: tuple[int, int]) -> Image.Image:
    """make_picture at any size, down to 1x1 (it draws shapes of at least 8 px)."""
    w, h = size
    return make_picture(seed, (max(w, 32), max(h, 32))).resize(size)


def assert_unit_vectors(vectors: np.ndarray, count: int, model: Model) -> None:
    assert vectors.shape == (count, model.encoder.config.embed_dim)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


# ---------------------------------------------------------------- sizes, modes, edits

# Which formats can hold each mode (as PIL writes them).
_FORMATS = {
    "RGB": ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM"),
    "RGBA": ("PNG", "WEBP", "TIFF"),
    "L": ("PNG", "JPEG", "BMP", "TIFF", "PPM"),
    "LA": ("PNG",),
    "P": ("PNG", "GIF", "BMP", "TIFF"),
    "1": ("PNG", "BMP", "TIFF"),
    "CMYK": ("JPEG", "TIFF"),
    "I;16": ("PNG", "TIFF"),
    "F": ("TIFF",),
}


def _in_mode(image: Image.Image, mode: str) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    if mode == "F":
        return Image.fromarray(np.asarray(image.convert("L"), dtype=np.float32) / 255.0, "F")
    return image.convert(mode)


@settings(max_examples=80, deadline=None, suppress_health_check=_FIXTURES)
@given(
    width=st.integers(1, 400),
    height=st.integers(1, 400),
    family=st.sampled_from(FAMILIES),
    strength=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(sorted(_FORMATS)),
    pick=st.integers(0, 10),
)
def test_any_size_mode_and_edit_loads_and_embeds_to_unit_vectors(
    tmp_path: Path,
    models: list[Model],
    width: int,
    height: int,
    family: str,
    strength: float,
    seed: int,
    mode: str,
    pick: int,
) -> None:
    edited = apply_edit(_picture(seed, (width, height)), family, seed=seed, strength=strength)
    assert edited.mode == "RGB" and edited.width >= 1 and edited.height >= 1
    fmt = _FORMATS[mode][pick % len(_FORMATS[mode])]
    path = tmp_path / f"edited.{fmt.lower()}"
    _in_mode(edited, mode).save(path, fmt)
    decoded = open_image(path, min_side=64)
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == edited.size
    for model in models:
        pixels = prepare_image(decoded.image, model.preprocess)
        size = model.preprocess.input_size
        assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
        assert_unit_vectors(model.embed_arrays(np.stack([pixels])), 1, model)


@settings(max_examples=25, deadline=None, suppress_health_check=_FIXTURES)
@given(
    kind=st.sampled_from(["flat", "noise", "extremes", "stripes"]),
    value=st.integers(0, 255),
    seed=st.integers(0, 2**16),
    count=st.integers(1, 5),
)
def test_degenerate_inputs_embed_to_unit_vectors(
    models: list[Model], kind: str, value: int, seed: int, count: int
) -> None:
    """Flat, black, white, noisy and striped inputs: no division by a zero spread or norm."""
    rng = np.random.default_rng(seed)
    for model in models:
        size = model.preprocess.input_size
        if kind == "flat":
            batch = np.full((count, size, size, 3), value, np.uint8)
        elif kind == "noise":
            batch = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
        elif kind == "extremes":
            batch = rng.choice(np.array([0, 255], np.uint8), (count, size, size, 3))
        else:
            batch = np.zeros((count, size, size, 3), np.uint8)
            batch[:, ::2] = value
        vectors = model.embed_arrays(batch)
        assert_unit_vectors(vectors, count, model)
        similarity = model.cnn_similarity_matrix(vectors, vectors)
        assert np.isfinite(similarity).all()
        assert ((similarity >= 0.0) & (similarity <= 1.0 + 1e-6)).all()


# ---------------------------------------------------------------- the loader fuzzed


def _seed_files() -> dict[str, bytes]:
    """Small valid files of every format the scan meets, to be damaged by the fuzzer."""
    picture = make_picture(7, (40, 30))
    frames = [picture, make_picture(8, (40, 30))]
    exif = Image.Exif()
    exif[0x0112] = 6
    out: dict[str, bytes] = {}
    for name, image, fmt, options in [
        ("png", picture, "PNG", {}),
        (
            "png16",
            Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50),
            "PNG",
            {},
        ),
        ("palette", picture.convert("P"), "PNG", {}),
        ("jpg", picture, "JPEG", {"exif": exif}),
        ("progressive", picture, "JPEG", {"progressive": True}),
        ("cmyk", picture.convert("CMYK"), "JPEG", {}),
        ("gif", frames[0], "GIF", {"save_all": True, "append_images": frames[1:]}),
        ("webp", picture, "WEBP", {}),
        ("tiff", picture, "TIFF", {"compression": "tiff_lzw"}),
        ("float", Image.fromarray(np.ones((30, 40), np.float32), "F"), "TIFF", {}),
        ("bmp", picture, "BMP", {}),
        ("ppm", picture, "PPM", {}),
        ("ico", picture, "ICO", {"sizes": [(24, 24)]}),
        ("tga", picture, "TGA", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        out[name] = buffer.getvalue()
    return out


_SEEDS = _seed_files()


@st.composite
def damaged_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed file with bytes flipped, overwritten, cut off, inserted or duplicated."""
    name = draw(st.sampled_from(sorted(_SEEDS)))
    data = bytearray(_SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        how = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "repeat"]))
        at = draw(st.integers(0, len(data) - 1))
        if how == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif how == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        elif how == "truncate":
            del data[at:]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return name, bytes(data)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=_FIXTURES)
@given(damaged=damaged_files(), min_side=st.sampled_from([None, 16, 64]))
def test_fuzzed_files_load_or_raise_only_unreadable_image(
    tmp_path: Path, damaged: tuple[str, bytes], min_side: int | None
) -> None:
    """The bounded fuzz run: damaged files of 14 kinds through the loader and the embedder's
    decode step. Anything but an RGB image or UnreadableImage (with a reason) fails."""
    name, data = damaged
    path = tmp_path / f"damaged.{name}"
    path.write_bytes(data)
    try:
        decoded = open_image(path, min_side=min_side)
    except UnreadableImage as exc:
        assert exc.path == path and exc.reason
        assert_plain(exc.reason)
        event(f"refused: {exc.reason}")
    else:
        event("loaded")
        assert decoded.image.mode == "RGB"
        assert decoded.width >= 1 and decoded.height >= 1
        assert decoded.image.width >= 1 and decoded.image.height >= 1
    prepared = prepare_file(0, str(path), TINY_PREPROCESS)  # must never raise
    assert (prepared.pixels is None) == (prepared.error is not None)
    assert prepared.error is None or "unexpected" not in prepared.error


@settings(max_examples=15, deadline=None, suppress_health_check=_FIXTURES)
@given(
    files=st.lists(st.one_of(damaged_files(), st.sampled_from(sorted(_SEEDS.items()))), max_size=12)
)
def test_embed_paths_accounts_for_every_file_exactly_once(
    tmp_path: Path, files: list[tuple[str, bytes]]
) -> None:
    """Each input comes back once: as a unit vector, or as an error naming it."""
    model = new_model(TINY_ENCODER, TINY_PREPROCESS, seed=0, model_id="tiny")
    folder = tmp_path / f"batch{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    paths = []
    for k, (name, data) in enumerate(files):
        paths.append(folder / f"{k}.{name}")
        paths[-1].write_bytes(data)
    seen: list[int] = []
    for batch in embed_paths(paths, model, batch_size=5, workers=1):
        assert_unit_vectors(batch.vectors, len(batch.indices), model)
        seen.extend(batch.indices.tolist())
        for index, error in batch.errors:
            assert error.path == paths[index] and error.reason
            seen.append(index)
    assert sorted(seen) == list(range(len(paths)))
