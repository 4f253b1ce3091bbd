"""Opening images: every mode and format, EXIF orientation, bad files, folder walks."""

from __future__ import annotations

import io
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bad_inputs import STORED_FOR_ORIENTATION as _STORED
from bad_inputs import png_declaring
from conftest import make_picture
from lookalike.io import (
    MAX_PIXELS,
    UnreadableImage,
    is_image_name,
    iter_image_files,
    load_image,
    open_image,
    write_new,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(int(p) - int(e)) <= tolerance for p, e in zip(pixel, expected, strict=True))


def half_red_half_blue(size: tuple[int, int] = (48, 32)) -> Image.Image:
    """Upright test picture: red top half, blue bottom half."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = RED
    arr[h // 2 :] = BLUE
    return Image.fromarray(arr, "RGB")


def assert_upright(image: Image.Image, size: tuple[int, int]) -> None:
    assert image.mode == "RGB"
    assert image.size == size
    w, h = size
    assert close(image.getpixel((w // 2, h // 8)), RED)
    assert close(image.getpixel((w // 2, h - 1 - h // 8)), BLUE)


# ---------------------------------------------------------------- modes


def test_cmyk_jpeg_and_tiff(tmp_path: Path) -> None:
    picture = Image.new("CMYK", (24, 16), (0, 255, 255, 0))  # pure red in CMYK
    for name in ("cmyk.jpg", "cmyk.tif"):
        picture.save(tmp_path / name)
        image = load_image(tmp_path / name)
        assert image.mode == "RGB" and image.size == (24, 16)
        assert close(image.getpixel((5, 5)), RED)


def test_16_bit_greyscale_uses_the_full_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    image = load_image(tmp_path / "grey16.png")
    assert image.mode == "RGB" and image.size == (64, 8)
    assert image.getpixel((0, 0)) == (0, 0, 0)
    assert image.getpixel((63, 0)) == (255, 255, 255)
    middle = image.getpixel((32, 0))[0]
    assert 110 < middle < 145  # 16-bit mid-grey stays mid-grey, not clipped to white


def test_palette_image(tmp_path: Path) -> None:
    picture = Image.new("P", (10, 10), 0)
    picture.putpalette([*RED, 0, 255, 0] + [0] * 762)
    picture.putpixel((0, 0), 1)
    picture.save(tmp_path / "palette.png")
    image = load_image(tmp_path / "palette.png")
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (0, 255, 0)
    assert image.getpixel((5, 5)) == RED


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_transparency_goes_over_the_background(tmp_path: Path, suffix: str) -> None:
    picture = Image.new("P", (10, 10), 0)
    picture.putpalette([*RED, 0, 255, 0] + [0] * 762)
    picture.putpixel((0, 0), 1)
    path = tmp_path / f"transparent{suffix}"
    picture.save(path, transparency=1)
    assert load_image(path).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(path, background=(0, 0, 0)).getpixel((0, 0)) == (0, 0, 0)
    assert load_image(path).getpixel((5, 5)) == RED


def test_rgba_over_white(tmp_path: Path) -> None:
    arr = np.zeros((10, 10, 4), np.uint8)
    arr[..., 0] = 255
    arr[:5, :, 3] = 0  # top half transparent
    arr[5:, :, 3] = 255
    Image.fromarray(arr, "RGBA").save(tmp_path / "rgba.png")
    image = load_image(tmp_path / "rgba.png")
    assert image.mode == "RGB"
    assert image.getpixel((3, 1)) == (255, 255, 255)
    assert image.getpixel((3, 8)) == RED


def test_la_half_transparent_black_over_white_is_grey(tmp_path: Path) -> None:
    Image.new("LA", (10, 10), (0, 128)).save(tmp_path / "la.png")
    pixel = load_image(tmp_path / "la.png").getpixel((0, 0))
    assert all(120 <= v <= 135 for v in pixel)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_one_bit(tmp_path: Path, suffix: str) -> None:
    picture = Image.new("1", (16, 8), 0)
    picture.paste(1, (0, 0, 8, 8))
    picture.save(tmp_path / f"bits{suffix}")
    image = load_image(tmp_path / f"bits{suffix}")
    assert image.mode == "RGB" and image.size == (16, 8)
    assert image.getpixel((2, 2)) == (255, 255, 255)
    assert image.getpixel((12, 2)) == (0, 0, 0)


def test_float_tiff(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 32, dtype=np.float32), (4, 1))
    Image.fromarray(ramp, "F").save(tmp_path / "float.tif")
    assert Image.open(tmp_path / "float.tif").mode == "F"
    image = load_image(tmp_path / "float.tif")
    assert image.mode == "RGB" and image.size == (32, 4)
    assert image.getpixel((0, 0)) == (0, 0, 0)
    assert image.getpixel((31, 0)) == (255, 255, 255)


def test_float_tiff_with_nan_and_infinity(tmp_path: Path) -> None:
    values = np.array([[np.nan, 1.0], [np.inf, -3.0]], np.float32)
    Image.fromarray(values, "F").save(tmp_path / "nan.tif")
    arr = np.asarray(load_image(tmp_path / "nan.tif"))
    assert arr.shape == (2, 2, 3) and arr.dtype == np.uint8


def test_greyscale(tmp_path: Path) -> None:
    Image.new("L", (12, 9), 77).save(tmp_path / "grey.png")
    image = load_image(tmp_path / "grey.png")
    assert image.mode == "RGB" and image.getpixel((4, 4)) == (77, 77, 77)


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("suffix", "options"),
    [
        (".jpg", {"quality": 95}),
        (".png", {}),
        (".webp", {"lossless": True}),
        (".bmp", {}),
        (".tif", {}),
        (".tiff", {"compression": "tiff_lzw"}),
        (".gif", {}),
        (".ppm", {}),
    ],
)
def test_formats(tmp_path: Path, suffix: str, options: dict[str, object]) -> None:
    path = tmp_path / f"picture{suffix}"
    half_red_half_blue().save(path, **options)
    decoded = open_image(path)
    assert_upright(decoded.image, (48, 32))
    assert (decoded.width, decoded.height) == (48, 32)
    assert decoded.format == Image.open(path).format


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 10), colour) for colour in (RED, (0, 255, 0), BLUE)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=40)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    image = load_image(tmp_path / "anim.gif")
    assert image.size == (20, 10) and image.getpixel((5, 5)) == RED


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", [3, 6, 8, 2, 4, 5, 7])
def test_exif_orientation_gives_an_upright_picture(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = half_red_half_blue((48, 32)).transpose(_STORED[orientation])
    path = tmp_path / f"oriented_{orientation}.jpg"
    stored.save(path, exif=exif, quality=95)
    assert_upright(load_image(path), (48, 32))
    decoded = open_image(path, min_side=8)
    assert (decoded.width, decoded.height) == (48, 32)
    assert decoded.image.width > decoded.image.height  # still upright when decoded small
    assert close(decoded.image.getpixel((decoded.image.width // 2, 1)), RED, 40)


def test_open_image_reports_the_full_size_while_decoding_small(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    big.save(tmp_path / "big.jpg", quality=80)
    big.save(tmp_path / "big_rotated.jpg", quality=80, exif=exif)

    decoded = open_image(tmp_path / "big.jpg", min_side=100)
    assert (decoded.width, decoded.height) == (1600, 1200)
    assert decoded.image.size < (1600, 1200) and min(decoded.image.size) >= 100
    assert decoded.format == "JPEG"

    rotated = open_image(tmp_path / "big_rotated.jpg", min_side=100)
    assert (rotated.width, rotated.height) == (1200, 1600)
    assert rotated.image.height > rotated.image.width >= 100


@pytest.mark.parametrize("min_side", [50, 100, 160, 300, 599, 2000])
def test_min_side_reduces_large_jpegs_but_keeps_the_short_side(
    tmp_path: Path, min_side: int
) -> None:
    path = tmp_path / "large.jpg"
    Image.new("RGB", (1600, 1200), (90, 120, 30)).save(path)
    image = load_image(path, min_side=min_side)
    assert min(image.size) >= min(min_side, 1200)
    assert image.width / image.height == pytest.approx(1600 / 1200, rel=0.02)
    if min_side <= 300:
        assert image.width <= 800  # really decoded at a reduced scale


# ---------------------------------------------------------------- bad files


def test_huge_declared_size_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_declaring(100_000, 100_000))
    began = time.perf_counter()
    with pytest.raises(UnreadableImage, match="too large") as info:
        load_image(path)
    assert time.perf_counter() - began < 1.0
    assert info.value.path == path
    assert MAX_PIXELS < 100_000 * 100_000


def test_large_photo_below_the_limit_is_not_called_a_bomb(tmp_path: Path) -> None:
    """A 12000x12000 JPEG (144 Mpx, above PIL's warning level) is decoded, here small."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 12000, 12000)  # declared height, width
    path = tmp_path / "declared_large.jpg"
    path.write_bytes(bytes(data))
    try:
        decoded = open_image(path, min_side=100)
    except UnreadableImage as exc:  # the pixel data really is missing
        assert "too large" not in exc.reason
    else:
        assert (decoded.width, decoded.height) == (12000, 12000)
        assert decoded.image.size == (1500, 1500)


def test_truncated_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="truncated"):
        load_image(path)
    with pytest.raises(UnreadableImage, match="truncated"):
        load_image(path, min_side=32)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(UnreadableImage) as info:
        load_image(path)
    assert info.value.reason == "empty file"
    assert str(path) in str(info.value)


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: eggs, milk\n" * 20)
    with pytest.raises(UnreadableImage, match="not an image"):
        load_image(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage, match="file not found") as info:
        load_image(tmp_path / "nowhere.png")
    assert info.value.path == tmp_path / "nowhere.png"


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "looks_like.jpg"
    folder.mkdir()
    with pytest.raises(UnreadableImage, match="folder"):
        load_image(folder)


def test_unreadable_image_is_the_only_error(tmp_path: Path) -> None:
    """Every byte of a small PNG flipped in turn: a typed error or an RGB image, never more."""
    buffer = io.BytesIO()
    half_red_half_blue((16, 12)).save(buffer, "PNG")
    data = buffer.getvalue()
    path = tmp_path / "mutated.png"
    for position in range(0, len(data), 3):
        mutated = bytearray(data)
        mutated[position] ^= 0xA5
        path.write_bytes(bytes(mutated))
        try:
            image = load_image(path)
        except UnreadableImage:
            continue
        assert image.mode == "RGB" and image.width >= 1 and image.height >= 1


# ---------------------------------------------------------------- properties

_MODES = ("RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16", "I", "F")
_FORMATS = {
    "RGB": ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM"),
    "RGBA": ("PNG", "WEBP", "TIFF"),
    "L": ("PNG", "JPEG", "BMP", "TIFF", "PPM"),
    "LA": ("PNG",),
    "P": ("PNG", "GIF", "BMP", "TIFF"),
    "1": ("PNG", "BMP", "TIFF", "PPM"),
    "CMYK": ("JPEG", "TIFF"),
    "I;16": ("PNG", "TIFF"),
    "I": ("TIFF",),
    "F": ("TIFF",),
}


def _random_image(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(-1000, 100_000, (h, w), dtype=np.int32))
    if mode == "F":
        return Image.fromarray(rng.normal(0, 10, (h, w)).astype(np.float32), "F")
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2, "P": 1, "1": 1, "CMYK": 4}[mode]
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    if mode in ("L", "P", "1"):
        return Image.fromarray(arr[..., 0], "L").convert(mode)
    return Image.fromarray(arr, mode)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mode=st.sampled_from(_MODES),
    width=st.integers(1, 90),
    height=st.integers(1, 90),
    pick=st.integers(0, 100),
    min_side=st.one_of(st.none(), st.integers(1, 200)),
    seed=st.integers(0, 2**16),
)
def test_any_mode_and_size_loads_as_rgb(
    tmp_path: Path,
    mode: str,
    width: int,
    height: int,
    pick: int,
    min_side: int | None,
    seed: int,
) -> None:
    formats = _FORMATS[mode]
    fmt = formats[pick % len(formats)]
    path = tmp_path / f"picture.{fmt.lower()}"
    _random_image(mode, (width, height), seed).save(path, fmt)
    decoded = open_image(path, min_side=min_side)
    assert decoded.image.mode == "RGB"
    assert (decoded.width, decoded.height) == (width, height)
    if min_side is None or fmt != "JPEG":
        assert decoded.image.size == (width, height)
    else:
        assert min(decoded.image.size) >= min(min_side, width, height)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG"]))
def test_random_bytes_raise_only_unreadable_image(
    tmp_path: Path, data: bytes, prefix: bytes
) -> None:
    path = tmp_path / "random.jpg"
    path.write_bytes(prefix + data)
    try:
        image = load_image(path, min_side=16)
    except UnreadableImage as exc:
        assert exc.path == path and exc.reason
    else:
        assert image.mode == "RGB"


# ---------------------------------------------------------------- folder walks


def _touch_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path, Image.registered_extensions()[path.suffix.lower()])
    return path


def test_iter_image_files_skips_hidden_and_non_images(tmp_path: Path) -> None:
    wanted = [
        _touch_image(tmp_path / "a.jpg"),
        _touch_image(tmp_path / "B.JPEG"),
        _touch_image(tmp_path / "sub" / "c.PNG"),
        _touch_image(tmp_path / "sub" / "deeper" / "d.webp"),
        _touch_image(tmp_path / "фото été 📷.Tif"),
    ]
    hidden = [
        _touch_image(tmp_path / ".hidden.jpg"),
        _touch_image(tmp_path / ".cache" / "e.jpg"),
        _touch_image(tmp_path / "sub" / ".thumbs" / "f.png"),
    ]
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub" / "clip.mp4").write_bytes(b"\0" * 10)
    (tmp_path / "jpg").write_text("no suffix")

    found = list(iter_image_files([tmp_path]))
    assert sorted(found) == sorted(wanted)
    assert len(found) == len(set(found))
    everything = set(iter_image_files([tmp_path], include_hidden=True))
    assert everything == set(wanted) | set(hidden)


def test_iter_image_files_order_is_stable(tmp_path: Path) -> None:
    for name in ("z.jpg", "a.jpg", "m/b.png", "m/a.png", "b/z.gif"):
        _touch_image(tmp_path / name)
    first = list(iter_image_files([tmp_path]))
    assert first == list(iter_image_files([tmp_path]))
    assert first[:2] == [tmp_path / "a.jpg", tmp_path / "z.jpg"]


def test_iter_image_files_root_that_is_a_file(tmp_path: Path) -> None:
    image = _touch_image(tmp_path / "one.png")
    assert list(iter_image_files([image])) == [image]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_iter_image_files_survives_symlink_loops(tmp_path: Path) -> None:
    root = tmp_path / "root"
    real = _touch_image(root / "a" / "photo.jpg")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    (root / "a" / "self").symlink_to(root / "a", target_is_directory=True)
    (root / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    began = time.perf_counter()
    found = list(iter_image_files([root]))
    assert time.perf_counter() - began < 5
    assert real in found
    assert len(found) == len(set(found)) == 2  # the photo and the dangling link, once each


def test_is_image_name() -> None:
    assert is_image_name(Path("x/PHOTO.JPG"))
    assert is_image_name(Path("scan.tiff"))
    assert not is_image_name(Path("photo.jpg.txt"))
    assert not is_image_name(Path("README"))


@pytest.mark.parametrize(("fmt", "name"), [("HEIF", "IMG_0001.HEIC"), ("AVIF", "photo.avif")])
def test_phone_formats_read_upright_like_any_photo(fmt: str, name: str, tmp_path: Path) -> None:
    picture = make_picture(41, (120, 90))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned, shown upright
    path = tmp_path / name
    picture.transpose(Image.Transpose.ROTATE_90).save(path, fmt, exif=exif.tobytes(), quality=95)
    assert list(iter_image_files([tmp_path])) == [path]
    decoded = open_image(path)
    assert decoded.image.size == (120, 90) == (decoded.width, decoded.height)
    difference = np.abs(np.asarray(decoded.image, np.float32) - np.asarray(picture, np.float32))
    assert difference.mean() < 12  # the same picture, lossy compression aside


def test_camera_raw_files_are_listed_and_refused_plainly(tmp_path: Path) -> None:
    path = tmp_path / "DSC_0001.NEF"
    path.write_bytes(b"MM\x00*" + b"\0" * 64)
    assert list(iter_image_files([tmp_path])) == [path]
    with pytest.raises(UnreadableImage, match="unsupported format: a camera RAW file"):
        load_image(path)


@pytest.mark.slow
def test_a_heic_copy_of_a_jpeg_is_a_duplicate(tmp_path: Path) -> None:
    from lookalike.model import load_model

    picture = make_picture(42, (320, 240))
    picture.save(tmp_path / "a.jpg", quality=92)
    picture.save(tmp_path / "a.heic", "HEIF", quality=80)
    assert load_model().compare(tmp_path / "a.jpg", tmp_path / "a.heic").duplicate


def test_write_new_never_overwrites(tmp_path: Path) -> None:
    first = write_new(b"one", tmp_path, "panel", ".png")
    second = write_new(b"two", tmp_path, "panel", ".png")
    assert (first.name, second.name) == ("panel.png", "panel-2.png")
    assert first.read_bytes() == b"one" and second.read_bytes() == b"two"
    with pytest.raises(FileNotFoundError):
        write_new(b"x", tmp_path / "missing", "panel", ".png")
