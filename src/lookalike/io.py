"""Find and open images: the one place that knows about files and formats."""

from __future__ import annotations

import errno
import os
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lookalike.errors import LookalikeError

# HEIC / HEIF (phones) through libheif; AVIF is read by Pillow itself.
pillow_heif.register_heif_opener()

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".gif",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".ico",
        ".heic",
        ".heif",
        ".avif",
    }
)
"""File name extensions read as images (compared lower-cased)."""

RAW_EXTENSIONS = frozenset(
    {".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".orf", ".rw2"}
    | {".raf", ".pef", ".srw", ".x3f", ".3fr", ".erf", ".kdc", ".mrw", ".raw", ".rwl", ".iiq"}
)
"""Camera RAW files: listed by the walk, so a scan reports them as unsupported instead of
passing over them in silence."""

MAX_PIXELS = 178_956_970
"""Images declaring more pixels than this are refused, before decoding.

PIL's own hard limit (twice its default `Image.MAX_IMAGE_PIXELS`); its warning at half
that is ignored, so 100-megapixel photos load.
"""

ImageFile.LOAD_TRUNCATED_IMAGES = False


PATH_REASONS = {
    "file not found": "missing",
    "broken symbolic link": "path",
    "symbolic link loop": "path",
    "permission denied": "path",
    "is a folder, not a file": "path",
}
"""Reasons that belong to one path, not to the bytes (another copy may read fine), and
their kind: "missing" (gone since it was found) or "path"."""


def error_kind(reason: str) -> str:
    """The kind of an unreadable file's reason: "missing", "path" or "content"."""
    return PATH_REASONS.get(reason, "content")


class UnreadableImage(LookalikeError):
    """A file that cannot be opened as an image; `reason` says why in plain words, `kind`
    whether the path ("missing", "path") or the contents ("content") are at fault."""

    exit_code = 1

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        self.kind = error_kind(reason)
        super().__init__(f"{self.path}: {reason}")


def _flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite an image with transparency over a solid background."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            raise ValueError("no finite pixel values")
        lo, hi = float(finite.min()), float(finite.max())
        if mode.startswith("I;16") or (mode == "I" and hi <= 65535 and lo >= 0 and hi > 255):
            lo, hi = 0.0, 65535.0 if hi > 255 else 255.0
        elif mode == "F" and lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        grey = np.clip((arr - lo) * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        return _flatten(image, background)
    if mode == "P":
        return image.convert("RGB")
    return image.convert("RGB")


def load_image(
    path: str | os.PathLike[str],
    *,
    min_side: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Open an image file as an upright 8-bit RGB PIL image.

    EXIF orientation is applied, any mode is converted to RGB (transparency over
    `background`), an animated file gives its first frame. With `min_side`, large JPEGs
    are decoded at a reduced scale (PIL draft mode) whose shorter side is still at least
    `min_side` pixels; other formats are decoded in full. Raises `UnreadableImage`.
    """
    return open_image(path, min_side=min_side, background=background).image


@dataclass(frozen=True)
class Decoded:
    """A decoded image and the full size (upright) of the picture in the file."""

    image: Image.Image
    width: int
    height: int
    format: str


def open_image(
    path: str | os.PathLike[str],
    *,
    min_side: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Decoded:
    """Like `load_image`, and also report the picture's full upright size and format."""
    path = Path(path)
    if path.suffix.lower() in RAW_EXTENSIONS:
        raise UnreadableImage(
            path, "unsupported format: a camera RAW file (convert it to JPEG, TIFF or PNG)"
        )
    try:
        with warnings.catch_warnings():
            # PIL warns about odd metadata (corrupt EXIF, big images) on stderr, naming no
            # file; a file is either decoded or refused with a reason, so warnings add nothing.
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                width, height = image.size
                if width < 1 or height < 1:
                    raise UnreadableImage(path, "image has no pixels")
                if width * height > MAX_PIXELS:
                    raise UnreadableImage(
                        path, f"image is too large ({width}x{height} pixels declared)"
                    )
                if (
                    min_side
                    and image.format == "JPEG"
                    and image.mode in ("RGB", "L", "CMYK", "YCbCr")
                ):
                    image.draft("RGB" if image.mode != "L" else "L", (min_side, min_side))
                fmt = image.format or "?"
                if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    width, height = height, width
                image.seek(0)
                image.load()
                upright = ImageOps.exif_transpose(image)
                return Decoded(_to_rgb(upright, background).copy(), width, height, fmt)
    except UnreadableImage:
        raise
    except FileNotFoundError:
        reason = "broken symbolic link" if path.is_symlink() else "file not found"
        raise UnreadableImage(path, reason) from None
    except IsADirectoryError:
        raise UnreadableImage(path, "is a folder, not a file") from None
    except PermissionError:
        raise UnreadableImage(path, "permission denied") from None
    except UnidentifiedImageError:
        raise UnreadableImage(path, _unidentified_reason(path)) from None
    except Image.DecompressionBombError:
        raise UnreadableImage(
            path, f"image is too large (more than {MAX_PIXELS:,} pixels declared)"
        ) from None
    except OSError as exc:
        raise UnreadableImage(path, _os_error_reason(path, exc)) from None
    except (
        ValueError,
        SyntaxError,
        EOFError,
        MemoryError,
        TypeError,
        IndexError,
        KeyError,
        ZeroDivisionError,
        struct.error,
    ):
        raise UnreadableImage(path, _corrupt(path)) from None


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


def _format_by_signature(path: Path) -> str | None:
    """The format a file's first bytes announce, if they announce one we know."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def _corrupt(path: Path) -> str:
    fmt = _format_by_signature(path)
    return f"corrupt or truncated {fmt} file" if fmt else "corrupt or truncated image"


def _unidentified_reason(path: Path) -> str:
    """Why PIL could not even identify a file: empty, a damaged image, or not an image."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
    except OSError:
        pass
    if _format_by_signature(path):
        return _corrupt(path)
    return "not an image, or a format PIL cannot read"


def _os_error_reason(path: Path, exc: OSError) -> str:
    """A plain reason for an OSError: a system error on the file, or damaged image data."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno is not None:
        return f"cannot read the file ({exc.strerror})"
    if "truncated" in str(exc).lower():  # PIL: "image file is truncated (n bytes not processed)"
        return "truncated image (the file ends before the picture does)"
    return _corrupt(path)


def is_image_name(path: Path) -> bool:
    """True when the file name has an image or camera RAW extension (case-insensitive)."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix in RAW_EXTENSIONS


def iter_image_files(
    roots: Iterable[str | os.PathLike[str]], *, include_hidden: bool = False
) -> Iterator[Path]:
    """Yield image files under each root, recursively, in sorted order.

    Symbolic links to folders are not followed (no loops), links to files are yielded like
    files; hidden files and folders are skipped unless `include_hidden`; a root that is a
    file is yielded as is.
    """
    for root in roots:
        root = Path(root)
        if root.is_file():
            yield root
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            if not include_hidden:
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            dirnames.sort()
            for name in sorted(filenames):
                if not include_hidden and name.startswith("."):
                    continue
                path = Path(dirpath) / name
                if is_image_name(path):
                    yield path


# -- faults of the machine -------------------------------------------------------------

SPACE_ADVICE = "free some space or choose another place"
WRITABLE_ADVICE = "choose a place you may write to"
_FAULTS = {
    errno.ENOSPC: ("no space left on the device", SPACE_ADVICE),
    errno.EDQUOT: ("the disk quota is used up", SPACE_ADVICE),
    errno.EROFS: ("the file system is read-only", WRITABLE_ADVICE),
    errno.EACCES: ("permission denied", WRITABLE_ADVICE),
    errno.EPERM: ("operation not permitted", WRITABLE_ADVICE),
    errno.ENOENT: ("no such file or folder (missing, or removed meanwhile)", "check the path"),
}


def describe_fault(exc: BaseException) -> tuple[str, str, str] | None:
    """(path, what failed, what to do) for a fault of the machine met on a file (a full
    disk, a read-only place, no permission, a vanished folder); None for any other error.
    Faults of the index itself: `lookalike.index.describe_fault`."""
    if isinstance(exc, OSError) and exc.errno is not None:
        fault = _FAULTS.get(exc.errno)
        path = str(exc.filename) if exc.filename else "a file"
    else:
        return None
    if fault is None:
        return None
    return path, fault[0], fault[1]


def write_new(data: bytes, folder: str | os.PathLike[str], stem: str, suffix: str) -> Path:
    """Write `data` under a name not taken yet in `folder` (stem.suffix, stem-2.suffix,
    ...), created exclusively, so no existing file is ever overwritten. OSError as the
    system raises it; FileExistsError after 9,999 names taken."""
    folder = Path(folder)
    for n in range(1, 10_000):
        path = folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
        try:
            with path.open("xb") as file:
                file.write(data)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"too many earlier files named {stem}*{suffix} in {folder}")
