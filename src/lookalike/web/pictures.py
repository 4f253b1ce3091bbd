"""Pictures for the review page: thumbnails, large previews and Grad-CAM overlays, made once.

Only indexed files are read, and only from inside the folder they belong to (their scan
root, or the quarantine folder): a path that resolves elsewhere, e.g. through a symbolic
link out of the root, is refused. The page never gets a file's own bytes: every picture
is decoded here and re-encoded as a JPEG, cached on disk by content hash (so a renamed
or moved copy reuses it), and written atomically, so a cached picture is always whole.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.errors import LookalikeError
from lookalike.io import UnreadableImage, load_image

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.model import Model

THUMB_SIDE = 240
"""Longest side of a thumbnail, in pixels (shown at 160 CSS pixels, sharp on HiDPI)."""

PREVIEW_SIDE = 1280
"""Longest side of the large pictures of the pair view (and of their overlays)."""

_HEX = re.compile(r"[0-9a-f]{8,128}")


class Refused(LookalikeError):
    """A picture the page will not make; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Source:
    """Where to read one indexed file, the folder it must stay inside, and what it held."""

    path: Path
    folder: Path
    hash: str
    size: int
    mtime_ns: int


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@contextmanager
def opened(source: Source) -> Iterator[str]:
    """A path by which to read `source`, checked to be the indexed file inside its folder.

    The path is resolved (symbolic links followed) and must lie inside the folder, also
    resolved; the file is then opened and, where the system says which file an open
    descriptor is (Linux's /proc/self/fd), checked again, so a link swapped in after the
    first check is refused too. Size and modification time must match the index.
    """
    folder = os.path.realpath(source.folder)
    real = os.path.realpath(source.path)
    if not _inside(real, folder):
        raise Refused("the file lies outside its scanned folder (a link out of it?)", 403)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise Refused("the file is gone", 404) from None
    except OSError as exc:
        raise Refused(f"the file cannot be read ({exc.strerror})", 403) from None
    try:
        by_fd = f"/proc/self/fd/{fd}"
        path = real
        if os.path.isdir("/proc/self/fd"):
            if not _inside(os.readlink(by_fd), folder):
                raise Refused("the file lies outside its scanned folder (a link out of it?)", 403)
            path = by_fd
        st = os.fstat(fd)
        if (st.st_size, st.st_mtime_ns) != (source.size, source.mtime_ns):
            raise Refused("the file changed since the scan; rescan to review it", 409)
        yield path
    finally:
        os.close(fd)


def _save_jpeg(image: Image.Image, target: Path, side: int) -> None:
    """Shrink to `side` pixels at most and write atomically (a whole file or none)."""
    image.thumbnail((side, side))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
    image.save(tmp, "JPEG", quality=85)
    os.replace(tmp, target)


class Pictures:
    """The picture cache of one review page: `cache_dir/{thumbs,large,overlays}/...`.

    At most `decoders` images are decoded at a time, so a burst of requests for large
    photos cannot exhaust memory; the rest wait.
    """

    def __init__(self, cache_dir: Path, decoders: int = 2) -> None:
        self.cache_dir = cache_dir
        self._decoding = threading.BoundedSemaphore(decoders)
        self._explaining = threading.Lock()

    def _cached(self, kind: str, digest: str, name: str) -> Path:
        if not _HEX.fullmatch(digest):
            raise Refused("the index holds no usable content hash for this file", 409)
        return self.cache_dir / kind / digest[:2] / name

    def thumbnail(self, source: Source) -> Path:
        """The file's thumbnail (THUMB_SIDE), made on first use."""
        return self._picture(source, "thumbs", THUMB_SIDE)

    def preview(self, source: Source) -> Path:
        """The file's large picture (PREVIEW_SIDE), made on first use."""
        return self._picture(source, "large", PREVIEW_SIDE)

    def _picture(self, source: Source, kind: str, side: int) -> Path:
        target = self._cached(kind, source.hash, f"{source.hash}-{side}.jpg")
        # Checked even when cached: a file gone or now linked out of its folder is not shown.
        with opened(source) as path:
            if target.is_file():
                return target
            with self._decoding:
                return self._render(path, target, side)

    def _render(self, path: str, target: Path, side: int) -> Path:
        if not target.is_file():  # else made by another request meanwhile
            try:
                image = load_image(path, min_side=side)
            except UnreadableImage as exc:
                raise Refused(f"the file cannot be decoded: {exc.reason}", 409) from None
            _save_jpeg(image, target, side)
        return target

    def overlays(
        self, a: Source, b: Source, model: Model, model_key: str
    ) -> tuple[Path, Path, Path]:
        """Grad-CAM overlays of a pair (one per image, PREVIEW_SIDE) and the pair with its
        local-feature matches drawn and what decided it, made on first use.

        `model_key` names the model (its fingerprint): overlays of two models never mix.
        """
        if not _HEX.fullmatch(model_key):
            raise Refused("the model has no usable fingerprint", 409)
        names = tuple(f"{a.hash}-{b.hash}-{side}.jpg" for side in ("a", "b", "m"))
        targets = tuple(self._cached("overlays", a.hash, f"{model_key[:16]}-{n}") for n in names)
        with opened(a) as path_a, opened(b) as path_b:
            if all(t.is_file() for t in targets):
                return targets[0], targets[1], targets[2]
            # One explanation at a time: each takes both cores for a moment.
            with self._explaining:
                return self._explain(path_a, path_b, model, targets)

    def _explain(
        self, path_a: str, path_b: str, model: Model, targets: tuple[Path, ...]
    ) -> tuple[Path, Path, Path]:
        from lookalike.explain import explain_pair, overlay, panel

        if not all(t.is_file() for t in targets):  # else made by another request meanwhile
            try:
                result = explain_pair(path_a, path_b, model)
            except UnreadableImage as exc:
                raise Refused(f"the file cannot be decoded: {exc.reason}", 409) from None
            _save_jpeg(overlay(result.image_a, result.heatmap_a), targets[0], PREVIEW_SIDE)
            _save_jpeg(overlay(result.image_b, result.heatmap_b), targets[1], PREVIEW_SIDE)
            matches = panel(result, height=PREVIEW_SIDE // 2, heatmaps=False)
            _save_jpeg(matches, targets[2], max(matches.size))
        return targets[0], targets[1], targets[2]
