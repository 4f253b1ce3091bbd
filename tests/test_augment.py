"""The edit families: each changes the picture, is seeded, keeps a usable size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import make_picture
from lookalike.augment import FAMILIES, apply_edit, apply_edits, composite

# Families whose result depends on the seed even at a fixed strength.
RANDOM_FAMILIES = (
    "crop",
    "contrast",
    "saturation",
    "lightness",
    "rotation",
    "angle",
    "heavy",
    "noise",
    "overlay",
    "border",
    "flip",
)


def picture(size: tuple[int, int] = (160, 120), seed: int = 5) -> Image.Image:
    image = make_picture(seed)
    return image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(pixels(a), pixels(b))


def test_the_sixteen_family_ids() -> None:
    assert set(FAMILIES) == {
        "crop",
        "contrast",
        "saturation",
        "lightness",
        "rotation",
        "pixelate",
        "angle",
        "heavy",
        "jpeg",
        "resize",
        "flip",
        "blur",
        "noise",
        "overlay",
        "border",
        "grayscale",
    }
    assert len(FAMILIES) == 16
    assert set(RANDOM_FAMILIES) <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(160, 120), (16, 12), (400, 40), (30, 250)])
def test_every_family_changes_the_picture_and_keeps_a_valid_size(
    family: str, size: tuple[int, int]
) -> None:
    original = picture(size)
    before = pixels(original).copy()
    for seed in range(3):
        for strength in (0.0, 0.5, 1.0):
            edited = apply_edit(original, family, seed=seed, strength=strength)
            assert edited.mode == "RGB"
            assert min(edited.size) >= 8
            assert not same(edited, original), (family, seed, strength)
    assert np.array_equal(pixels(original), before)  # the input is never modified


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_edit(family: str) -> None:
    original = picture()
    for seed in (0, 7, 123456):
        assert same(
            apply_edit(original, family, seed=seed), apply_edit(original, family, seed=seed)
        )
    assert same(
        apply_edit(original, family, seed=3, strength=0.4),
        apply_edit(original, family, seed=3, strength=0.4),
    )


@pytest.mark.parametrize("family", RANDOM_FAMILIES)
def test_random_families_differ_between_seeds(family: str) -> None:
    original = picture()
    results = [apply_edit(original, family, seed=seed, strength=0.6) for seed in range(8)]
    distinct = {pixels(r).tobytes() + bytes(str(r.size), "ascii") for r in results}
    assert len(distinct) >= 2
    # At a fixed strength these choose one of two directions (down or up, mirror or flip).
    if family not in ("flip", "contrast", "saturation", "lightness"):
        assert len(distinct) >= 6


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "grayscale"])
def test_strength_drawn_from_the_seed_varies(family: str) -> None:
    original = picture()
    results = {apply_edit(original, family, seed=seed).tobytes() for seed in range(6)}
    assert len(results) >= 2


def test_grayscale_is_grey() -> None:
    arr = pixels(apply_edit(picture(), "grayscale", seed=0))
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])


def test_flip_mirrors() -> None:
    original = picture()
    flipped = pixels(apply_edit(original, "flip", seed=0))
    assert np.array_equal(flipped, pixels(original)[:, ::-1]) or np.array_equal(
        flipped, pixels(original)[::-1]
    )


def test_strength_runs_from_mild_to_severe() -> None:
    """Stronger edits move the picture further (on average over seeds)."""
    original = picture().resize((96, 72))
    base = pixels(original).astype(np.float32)

    def change(family: str, strength: float) -> float:
        diffs = []
        for seed in range(6):
            edited = apply_edit(original, family, seed=seed, strength=strength)
            diffs.append(np.abs(pixels(edited.resize(original.size)) - base).mean())
        return float(np.mean(diffs))

    for family in ("noise", "blur", "jpeg", "pixelate", "resize", "overlay"):
        assert change(family, 1.0) > change(family, 0.0), family


def test_strength_is_clamped() -> None:
    original = picture()
    for family in ("crop", "noise", "jpeg", "contrast"):
        assert same(
            apply_edit(original, family, seed=1, strength=7.0),
            apply_edit(original, family, seed=1, strength=1.0),
        )
        assert same(
            apply_edit(original, family, seed=1, strength=-2.0),
            apply_edit(original, family, seed=1, strength=0.0),
        )


def test_unknown_family() -> None:
    with pytest.raises(ValueError, match="unknown edit family 'sepia'"):
        apply_edit(picture(), "sepia", seed=0)
    with pytest.raises(ValueError, match="unknown edit family"):
        apply_edits(picture(), ["crop", "Crop"], seed=0)


def test_other_modes_are_edited_as_rgb() -> None:
    for mode in ("L", "RGBA", "P", "CMYK"):
        edited = apply_edit(picture().convert(mode), "lightness", seed=0)
        assert edited.mode == "RGB"


def test_apply_edits_composes_and_is_seeded() -> None:
    original = picture()
    stacked = apply_edits(original, ["crop", "grayscale", "noise"], seed=4)
    assert same(stacked, apply_edits(original, ["crop", "grayscale", "noise"], seed=4))
    assert not same(stacked, apply_edits(original, ["crop", "grayscale", "noise"], seed=5))
    assert stacked.size[0] < original.size[0] or stacked.size[1] < original.size[1]
    assert same(apply_edits(original, [], seed=0), original)


def test_a_generator_seed_advances() -> None:
    original = picture()
    rng = np.random.default_rng(0)
    first = apply_edit(original, "noise", seed=rng)
    second = apply_edit(original, "noise", seed=rng)
    assert not same(first, second)


@settings(max_examples=40, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    width=st.integers(16, 220),
    height=st.integers(12, 220),
    strength=st.one_of(st.none(), st.floats(-1.0, 2.0, allow_nan=False)),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_size_and_strength_gives_a_valid_rgb_picture(
    family: str, width: int, height: int, strength: float | None, seed: int
) -> None:
    edited = apply_edit(picture((width, height)), family, seed=seed, strength=strength)
    assert edited.mode == "RGB"
    assert min(edited.size) >= 8
    assert max(edited.size) <= 3 * max(width, height)


def test_tiny_pictures_do_not_crash() -> None:
    for size in ((8, 8), (4, 4), (1, 1), (3, 50)):
        for family in FAMILIES:
            edited = apply_edit(picture(size), family, seed=2)
            assert edited.mode == "RGB" and edited.width >= 1 and edited.height >= 1


def test_composite_keeps_the_background_and_pastes_a_different_subject_near_the_centre() -> None:
    background, subject = picture(seed=1), picture(seed=2)
    made = composite(background, subject, seed=3)
    assert made.size == background.size
    changed = np.any(pixels(made) != pixels(background), axis=2)
    assert 0.2 <= changed.mean() <= 0.55  # 25-50 % of the picture, less where colours agree
    rows, cols = np.nonzero(changed)
    h, w = changed.shape
    assert abs(rows.mean() - h / 2) < h / 4 and abs(cols.mean() - w / 2) < w / 4
    assert same(made, composite(background, subject, seed=3))
    assert not same(made, composite(background, subject, seed=4))
