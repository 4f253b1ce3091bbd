"""A corpus of bad, odd and awkward inputs for scans, written by a test fixture.

`write_bad_corpus(root)` writes files of 40 kinds (never committed: every byte is made
here) and returns what a scan must make of each: `good` files are read (at their upright
size), `broken` ones are listed under errors with a reason a user understands, `skipped`
ones (hidden, not named like images, links to folders) are not looked at. Copies of three
pictures are planted among them, saved in awkward ways (upper-case names, JPEG bytes
behind `.png`, CMYK, EXIF-rotated, deep in folders); the bundled model must group each
with its original.

Two kinds are races: a file deleted after the walk lists it, one deleted after its bytes
were hashed, and a file still being written when the walk reads it. `install_races`
makes them happen at those exact points of a scan, so the outcomes above hold only with
it installed.

>>> corpus = write_bad_corpus(tmp_path / "corpus")
>>> corpus.install_races(monkeypatch)
>>> result = scan_folder([corpus.root], index=tmp_path / "idx")
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import make_picture
from lookalike.augment import apply_edit

GOOD, BROKEN, SKIPPED = "good", "broken", "skipped"

# What raw exception text looks like: class names, errno numbers, reprs, quoted paths.
_RAW = re.compile(r"Error\b|Errno|Traceback|Exception|\[|<|'|\"|\\x|0x")


def assert_plain(reason: str) -> None:
    """A reason a user understands: short plain words, no exception text or path."""
    assert reason and len(reason) <= 80, reason
    assert reason[0].islower(), reason
    assert not _RAW.search(reason), reason
    assert "/" not in reason, reason


@dataclass(frozen=True)
class Case:
    """One file of the corpus and what a scan must make of it.

    `reason` (broken files): words the error's reason must contain. `size` (good files):
    the picture's upright (width, height).
    """

    kind: str
    path: Path
    outcome: str
    reason: str | None = None
    size: tuple[int, int] | None = None


@dataclass
class BadCorpus:
    """The files written and their expected outcomes; `planted`: each original with its copies."""

    root: Path
    cases: list[Case] = field(default_factory=list)
    planted: list[frozenset[Path]] = field(default_factory=list)
    vanish_after_listing: Path | None = None
    vanish_after_hashing: Path | None = None
    growing: Path | None = None
    growing_rest: bytes = b""

    def paths(self, outcome: str) -> set[Path]:
        """The files with this outcome (good, broken or skipped)."""
        return {c.path for c in self.cases if c.outcome == outcome}

    @property
    def kinds(self) -> set[str]:
        """Every kind of input in the corpus."""
        return {c.kind for c in self.cases}

    def case(self, path: Path) -> Case:
        """The case of one path."""
        return next(c for c in self.cases if c.path == path)

    def install_races(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the races happen inside the next scan (of `lookalike.scan.run`).

        The walk lists `vanish_after_listing`, then it is deleted before it is read; after
        the walk has hashed every file, `vanish_after_hashing` is deleted and the rest of
        `growing` is written (the walk saw a half-written JPEG, the decoder sees it whole).
        """
        from lookalike.scan import run

        real_found, real_walk = run.iter_found, run.walk_into

        def iter_found(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for found in real_found(*args, **kwargs):
                yield found
                if self.vanish_after_listing and found.path == str(self.vanish_after_listing):
                    self.vanish_after_listing.unlink()

        def walk_into(*args: Any, **kwargs: Any) -> Any:
            counts = real_walk(*args, **kwargs)
            if self.vanish_after_hashing and self.vanish_after_hashing.exists():
                self.vanish_after_hashing.unlink()
            if self.growing and self.growing_rest:
                with open(self.growing, "ab") as handle:
                    handle.write(self.growing_rest)
                self.growing_rest = b""
            return counts

        monkeypatch.setattr(run, "iter_found", iter_found)
        monkeypatch.setattr(run, "walk_into", walk_into)


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_declaring(width: int, height: int) -> bytes:
    """A small valid-looking PNG whose header declares `width` x `height` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) declares `width` x `height` pixels."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), (10, 20, 30)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# How to store an upright picture so that EXIF orientation `o` displays it upright.
STORED_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _oriented(picture: Image.Image, orientation: int) -> bytes:
    """JPEG bytes of `picture` stored turned, with the EXIF tag that turns it back upright."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = (
        picture.transpose(STORED_FOR_ORIENTATION[orientation])
        if orientation in STORED_FOR_ORIENTATION
        else picture
    )
    return _encode(stored, "JPEG", quality=92, exif=exif)


class _Writer:
    """Writes files into the corpus and records their cases."""

    def __init__(self, corpus: BadCorpus) -> None:
        self.corpus = corpus

    def path(self, name: str) -> Path:
        path = self.corpus.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, kind: str, name: str, data: bytes, outcome: str, **case: Any) -> Path:
        path = self.path(name)
        path.write_bytes(data)
        self.corpus.cases.append(Case(kind, path, outcome, **case))
        return path

    def good(self, kind: str, name: str, data: bytes, size: tuple[int, int]) -> Path:
        return self.write(kind, name, data, GOOD, size=size)

    def broken(self, kind: str, name: str, data: bytes, reason: str) -> Path:
        return self.write(kind, name, data, BROKEN, reason=reason)

    def skipped(self, kind: str, name: str, data: bytes) -> Path:
        return self.write(kind, name, data, SKIPPED)

    def link(self, kind: str, name: str, target: str, outcome: str, **case: Any) -> Path:
        path = self.path(name)
        os.symlink(target, path)
        self.corpus.cases.append(Case(kind, path, outcome, **case))
        return path


def _picture(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    return make_picture(seed, size)


def _odd_modes(w: _Writer) -> None:
    """Pixel modes other than 8-bit RGB: each must load and count as an image."""
    pic = _picture(11)
    rng = np.random.default_rng(11)
    w.good("CMYK JPEG", "modes/cmyk.jpg", _encode(pic.convert("CMYK"), "JPEG"), (96, 72))
    ramp = (np.linspace(0, 65535, 96 * 72).reshape(72, 96)).astype(np.uint16)
    w.good(
        "16-bit greyscale PNG", "modes/grey16.png", _encode(Image.fromarray(ramp), "PNG"), (96, 72)
    )
    w.good("greyscale JPEG", "modes/grey.jpg", _encode(_picture(12).convert("L"), "JPEG"), (96, 72))
    w.good("palette PNG", "modes/palette.png", _encode(_picture(13).convert("P"), "PNG"), (96, 72))
    alpha = _picture(14).convert("RGBA")
    alpha.putalpha(Image.fromarray(rng.integers(0, 256, (72, 96), dtype=np.uint8)))
    w.good("RGBA PNG", "modes/alpha.png", _encode(alpha, "PNG"), (96, 72))
    w.good("LA PNG", "modes/la.png", _encode(_picture(15).convert("LA"), "PNG"), (96, 72))
    w.good("1-bit PNG", "modes/bits.png", _encode(_picture(16).convert("1"), "PNG"), (96, 72))
    floats = rng.normal(0.0, 3.0, (72, 96)).astype(np.float32)
    floats[0, 0] = np.nan
    w.good(
        "float TIFF (with a NaN)",
        "modes/float.tif",
        _encode(Image.fromarray(floats, "F"), "TIFF"),
        (96, 72),
    )


def _formats(w: _Writer) -> None:
    """Every common container, and files whose name lies about their format."""
    frames = [_picture(20 + k) for k in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    w.good("animated GIF", "formats/animated.gif", gif.getvalue(), (96, 72))
    w.good("WebP", "formats/picture.webp", _encode(_picture(23), "WEBP", quality=80), (96, 72))
    w.good("BMP", "formats/picture.bmp", _encode(_picture(24), "BMP"), (96, 72))
    w.good("PPM", "formats/picture.ppm", _encode(_picture(25), "PPM"), (96, 72))
    w.good(
        "TIFF (LZW)",
        "formats/picture.tiff",
        _encode(_picture(26), "TIFF", compression="tiff_lzw"),
        (96, 72),
    )
    w.good("TGA", "formats/picture.tga", _encode(_picture(27), "TGA"), (96, 72))
    w.good(
        "ICO",
        "formats/icon.ico",
        _encode(_picture(28, (32, 32)), "ICO", sizes=[(32, 32)]),
        (32, 32),
    )
    w.good(
        "progressive JPEG",
        "formats/progressive.jpg",
        _encode(_picture(29), "JPEG", progressive=True),
        (96, 72),
    )
    w.good(
        "JPEG bytes named .png",
        "formats/really_a_jpeg.png",
        _encode(_picture(30), "JPEG"),
        (96, 72),
    )
    w.good(
        "PNG bytes named .jpg", "formats/really_a_png.jpg", _encode(_picture(31), "PNG"), (96, 72)
    )
    w.good("upper-case extension", "formats/SHOUTING.JPEG", _encode(_picture(32), "JPEG"), (96, 72))
    tail = _encode(_picture(33), "JPEG") + b"trailing bytes after the end-of-image marker" * 20
    w.good("JPEG with trailing garbage", "formats/trailing.jpg", tail, (96, 72))


def _shapes_and_names(w: _Writer) -> None:
    """Extreme sizes, flat pictures, EXIF orientations, awkward names and folders."""
    w.good(
        "1x1 image",
        "shapes/dot.png",
        _encode(Image.new("RGB", (1, 1), (200, 30, 40)), "PNG"),
        (1, 1),
    )
    strip = Image.fromarray(np.random.default_rng(3).integers(0, 256, (2, 2000, 3), dtype=np.uint8))
    w.good("2000x2 image", "shapes/strip.png", _encode(strip, "PNG"), (2000, 2))
    w.good(
        "2x2000 image",
        "shapes/pole.png",
        _encode(strip.transpose(Image.Transpose.TRANSPOSE), "PNG"),
        (2, 2000),
    )
    w.good(
        "flat grey image",
        "shapes/grey.png",
        _encode(Image.new("RGB", (64, 48), (128, 128, 128)), "PNG"),
        (64, 48),
    )
    upright = _picture(40, (80, 48))
    for orientation in range(2, 9):
        w.good(
            "EXIF orientation 2-8",
            f"orientation/o{orientation}.jpg",
            _oriented(upright, orientation),
            (80, 48),
        )
    for fmt, name in (("HEIF", "orientation/IMG_0002.HEIC"), ("AVIF", "orientation/o6.avif")):
        # Phone formats, stored turned with orientation 6: read upright, one picture with
        # the JPEGs above.
        exif = Image.Exif()
        exif[0x0112] = 6
        stored = upright.transpose(STORED_FOR_ORIENTATION[6])
        data = _encode(stored, fmt, exif=exif.tobytes(), quality=95)
        w.good(f"{fmt} photo, EXIF orientation 6", name, data, (80, 48))
    for orientation in (0, 9):  # out of range: the picture is shown as stored
        w.good(
            "invalid EXIF orientation",
            f"orientation/bad{orientation}.jpg",
            _oriented(upright, orientation),
            (80, 48),
        )
    w.good(
        "unicode and spaces in the name",
        "names/photo d’été 写真 📷.jpg",
        _encode(_picture(41), "JPEG"),
        (96, 72),
    )
    w.good(
        "leading and trailing spaces", "names/ spaced .png", _encode(_picture(42), "PNG"), (96, 72)
    )
    deep = "/".join(f"level{k}" for k in range(40))
    w.good("deep nesting (40 folders)", f"{deep}/deep.jpg", _encode(_picture(43), "JPEG"), (96, 72))
    w.good(
        "folder named like an image", "album.jpg/inside.png", _encode(_picture(44), "PNG"), (96, 72)
    )


def _broken(w: _Writer) -> None:
    """Files named like images that are not, or no longer, readable pictures."""
    jpeg = _encode(_picture(50, (200, 150)), "JPEG", quality=90)
    png = _encode(_picture(51, (200, 150)), "PNG")
    w.broken("empty file", "broken/empty.jpg", b"", "empty file")
    w.broken("truncated JPEG", "broken/truncated.jpg", jpeg[: len(jpeg) // 2], "truncated")
    w.broken("truncated PNG", "broken/truncated.png", png[: len(png) // 2], "truncated")
    webp = _encode(_picture(52, (200, 150)), "WEBP")
    w.broken("truncated WebP", "broken/truncated.webp", webp[: len(webp) // 2], "truncated")
    gif = _encode(_picture(53, (200, 150)), "GIF")
    w.broken("truncated GIF", "broken/truncated.gif", gif[: len(gif) // 2], "truncated")
    html = b"<!doctype html><html><body><h1>Not found</h1></body></html>\n"
    w.broken("HTML named .jpg", "broken/page.jpg", html, "not an image")
    w.broken("text named .png", "broken/notes.png", b"shopping list: eggs, milk\n", "not an image")
    w.broken("zero bytes", "broken/zeros.jpg", b"\0" * 4096, "not an image")
    w.broken(
        "only a PNG signature",
        "broken/signature.png",
        b"\x89PNG\r\n\x1a\n",
        "corrupt or truncated PNG file",
    )
    w.broken(
        "only a JPEG start marker",
        "broken/soi.jpg",
        b"\xff\xd8\xff",
        "corrupt or truncated JPEG file",
    )
    w.broken(
        "PNG declaring 100000x100000",
        "broken/huge.png",
        png_declaring(100_000, 100_000),
        "too large",
    )
    w.broken(
        "JPEG declaring 65500x65500",
        "broken/huge.jpg",
        _jpeg_declaring(65_500, 65_500),
        "too large",
    )
    w.broken(
        "PNG declaring zero width",
        "broken/zero_width.png",
        png_declaring(0, 10),
        "corrupt or truncated PNG file",
    )
    tiff = bytearray(_encode(_picture(54), "TIFF"))
    tiff[4:8] = struct.pack("<I", len(tiff) + 1000)  # the first directory lies past the end
    w.broken(
        "TIFF with a bad directory offset",
        "broken/bad_ifd.tif",
        bytes(tiff),
        "corrupt or truncated TIFF file",
    )
    w.link(
        "dangling symlink",
        "broken/dangling.jpg",
        "no-such-file.jpg",
        BROKEN,
        reason="broken symbolic link",
    )
    w.link(
        "symlink loop (file)",
        "broken/loop_a.jpg",
        "loop_b.jpg",
        BROKEN,
        reason="symbolic link loop",
    )
    w.link(
        "symlink loop (file)",
        "broken/loop_b.jpg",
        "loop_a.jpg",
        BROKEN,
        reason="symbolic link loop",
    )
    if os.geteuid() != 0:  # root reads every file whatever its mode
        locked = w.broken(
            "unreadable (no permission)", "broken/locked.jpg", jpeg, "permission denied"
        )
        locked.chmod(0)
    fifo = w.path("broken/pipe.jpg")
    os.mkfifo(fifo)
    w.corpus.cases.append(Case("named pipe named .jpg", fifo, BROKEN, reason="not a regular file"))


def _skipped(w: _Writer, planted_original: bytes) -> None:
    """Files a scan must not look at: hidden, not named like images, links to folders."""
    w.skipped("hidden file", ".hidden_copy.png", planted_original)
    w.skipped("hidden folder", ".thumbnails/copy.png", planted_original)
    w.skipped("non-image file (text)", "notes.txt", b"not an image\n")
    w.skipped("non-image file (no extension)", "README", b"read me\n")
    w.skipped("non-image file (zip)", "archive.zip", b"PK\x05\x06" + b"\0" * 18)
    w.broken(
        "camera RAW file",
        "camera/IMG_0001.CR2",
        b"II*\x00\x10\x00\x00\x00CR\x02\x00" + b"\0" * 64,
        reason="unsupported format: a camera RAW file",
    )
    w.skipped("image-like double extension", "photo.jpg.txt", _encode(_picture(61), "JPEG"))
    w.link("symlink loop (folder)", "loops/up", "..", SKIPPED)
    w.link("symlink loop (folder)", "loops/self", ".", SKIPPED)


def _races(w: _Writer) -> None:
    """Files that change while the scan runs (see `BadCorpus.install_races`)."""
    corpus = w.corpus
    corpus.vanish_after_listing = w.broken(
        "file deleted while the scan runs",
        "races/deleted_before_read.jpg",
        _encode(_picture(70), "JPEG"),
        "vanished",
    )
    corpus.vanish_after_hashing = w.broken(
        "file deleted while the scan runs",
        "races/deleted_before_decode.jpg",
        _encode(_picture(71), "JPEG"),
        "vanished",
    )
    whole = _encode(_picture(72, (240, 180)), "JPEG", quality=90)
    half = len(whole) // 2
    corpus.growing = w.good(
        "file that grows while being read", "races/growing.jpg", whole[:half], (240, 180)
    )
    corpus.growing_rest = whole[half:]


def _planted(w: _Writer) -> bytes:
    """Three pictures with edited copies saved in awkward ways; returns one original's PNG."""
    size = (320, 240)
    first = b""
    for i in range(3):
        picture = make_picture(500 + i, size)
        original = w.good(
            "planted original", f"planted/original_{i}.png", _encode(picture, "PNG"), size
        )
        first = first or original.read_bytes()
        copy = apply_edit(picture, "jpeg", seed=i, strength=0.3)
        resized = apply_edit(picture, "resize", seed=i, strength=0.2)
        copies = [
            w.good(
                "planted copy, upper-case name",
                f"planted/copies/COPY_{i}.JPG",
                _encode(copy, "JPEG", quality=85),
                size,
            ),
            w.good(
                "planted copy, JPEG bytes named .png",
                f"elsewhere/copy_{i}.png",
                _encode(copy, "JPEG", quality=80),
                size,
            ),
            w.good(
                "planted copy, CMYK",
                f"elsewhere/cmyk copy {i}.jpg",
                _encode(picture.convert("CMYK"), "JPEG", quality=90),
                size,
            ),
            w.good(
                "planted copy, EXIF-rotated",
                f"elsewhere/rotated_{i}.jpg",
                _oriented(picture, 6 + i),
                size,
            ),
            w.good(
                "planted copy, resized WebP",
                f"level0/level1/resized_{i}.webp",
                _encode(resized, "WEBP", quality=85),
                resized.size,
            ),
        ]
        w.corpus.planted.append(frozenset([original, *copies]))
    return first


def write_bad_corpus(root: Path) -> BadCorpus:
    """Write the corpus into `root` (created) and return its expected outcomes."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = BadCorpus(root.absolute())
    w = _Writer(corpus)
    original = _planted(w)
    _odd_modes(w)
    _formats(w)
    _shapes_and_names(w)
    _broken(w)
    _skipped(w, original)
    _races(w)
    return corpus
