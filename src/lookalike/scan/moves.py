"""Moving one file without ever replacing or losing one: hard link then unlink, or, across
file systems, a verified copy in a hidden file that is named only when whole."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import xxhash

_CHUNK = 1 << 20
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EACCES)
"""Why a hard link can fail where a copy still works (another file system, no links)."""
_PARTIAL = ".lookalike-partial-"
"""Name prefix of the hidden file a copy is made in before it gets its own name."""


def digests(path: Path) -> tuple[str, str]:
    """(xxh3-128, sha256) of a file's bytes, read once."""
    fast, strong = xxhash.xxh3_128(), hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            fast.update(chunk)
            strong.update(chunk)
    return fast.hexdigest(), strong.hexdigest()


def sha256_of(path: Path) -> str:
    return digests(path)[1]


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class MoveRefused(Exception):
    """A move that was not made; the message says why (the file is where it was)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


MACHINE_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "a disk I/O error",
}
"""Faults of the machine that end a clean-up at once: every later move would fail too."""


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def move_file(src: Path, dst: Path, sha256: str) -> None:
    """Move src to dst without ever replacing a file or losing one (raises MoveRefused).

    Same file system: hard link at dst, then unlink src. Otherwise (another file
    system, or one without hard links): copy into a hidden file beside dst, fsync, check
    the copy's SHA-256, name it dst, then unlink src. The new name reaches the disk
    before the old one is removed. If src cannot be removed, dst is removed again and
    src stays.
    """
    if not os.path.lexists(src):
        raise MoveRefused("vanished before it could be moved")
    if os.path.lexists(dst):
        raise MoveRefused(f"name clash: {dst} already exists")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MoveRefused(f"cannot create {dst.parent} ({exc.strerror})") from None
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        raise MoveRefused(f"name clash: {dst} already exists") from None
    except FileNotFoundError:
        raise MoveRefused("vanished before it could be moved") from None
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise MoveRefused(f"cannot move ({exc.strerror})", exc.errno) from None
        _copy_into_place(src, dst, sha256)
    fsync_dir(dst.parent)
    try:
        os.unlink(src)
    except FileNotFoundError:
        pass  # gone meanwhile, but its bytes are safe at dst
    except OSError as exc:
        _remove_quietly(dst)
        raise MoveRefused(
            f"cannot remove it from its folder ({exc.strerror}); left in place"
        ) from None
    fsync_dir(src.parent)


def _copy_into_place(src: Path, dst: Path, sha256: str) -> None:
    """Copy src to a new file dst, synced and verified first (else MoveRefused, no dst).

    The copy is made in a hidden `.lookalike-partial-*` file beside dst and named dst
    only when whole: a process killed mid-copy leaves src as it was and dst free, and
    the next `restore` removes the partial file.
    """
    try:
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
            return
        handle, name = tempfile.mkstemp(prefix=_PARTIAL, dir=dst.parent)
    except FileExistsError:
        raise MoveRefused(f"name clash: {dst} already exists") from None
    except OSError as exc:
        raise MoveRefused(f"cannot copy ({exc.strerror}); left in place", exc.errno) from None
    part = Path(name)
    try:
        with open(src, "rb") as source, open(handle, "wb") as target:
            shutil.copyfileobj(source, target, _CHUNK)
            target.flush()
            os.fsync(target.fileno())
        shutil.copystat(src, part)
        if sha256_of(part) != sha256:
            raise MoveRefused("the copy does not match the original; left in place")
        name_copy(part, dst)
    except OSError as exc:
        raise MoveRefused(f"cannot copy ({exc.strerror}); left in place", exc.errno) from None
    finally:
        _remove_quietly(part)


def name_copy(part: Path, dst: Path) -> None:
    """Give a finished copy the name dst, never replacing a file there."""
    try:
        os.link(part, dst)
    except FileExistsError:
        raise MoveRefused(f"name clash: {dst} already exists") from None
    except OSError as exc:  # no hard links on this file system: rename, once the name is free
        if exc.errno not in _NO_LINK:
            raise
        if os.path.lexists(dst):
            raise MoveRefused(f"name clash: {dst} already exists") from None
        os.rename(part, dst)


def remove_partials(folders: Iterable[Path]) -> None:
    """Remove the hidden partial copies that interrupted moves left in these folders."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(_PARTIAL) and entry.is_file(follow_symlinks=False):
                _remove_quietly(Path(entry.path))
