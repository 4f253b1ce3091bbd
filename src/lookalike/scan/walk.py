"""The first stage of a scan: find the files, stat them, hash new or changed contents.

Each batch of files is written in one transaction, so a killed scan resumes where it
stopped: files whose size and modification time did not change are not read again.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mode
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import xxhash

from lookalike.errors import LookalikeError
from lookalike.index import Index
from lookalike.index.scans import Read, Walked
from lookalike.io import iter_image_files

BATCH = 512
"""Files per transaction in the walk stage."""

_CHUNK = 1 << 20


class ScanError(LookalikeError):
    """A scan that cannot start: a missing folder, bad options, an index in use."""


def content_hash(path: str | os.PathLike[str]) -> str:
    """xxh3-128 of a file's bytes (hex): equal for byte-identical files."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Found:
    """A file to index: its absolute path, the path as the user gave it, its root."""

    path: str
    shown: str
    root: int


def absolute(path: str | os.PathLike[str]) -> Path:
    """An absolute, normalised path; symbolic links are not resolved (they are paths too)."""
    return Path(os.path.abspath(path))


def leads_out_of(path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> bool:
    """Whether a path, its symbolic links followed, ends outside its scan root (or has none)."""
    if root is None:
        return True
    real, home = os.path.realpath(path), os.path.realpath(root)
    return real != home and not real.startswith(home.rstrip(os.sep) + os.sep)


def inside_any(path: str | os.PathLike[str], folders: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether an absolute path lies in one of the absolute folders (links not followed)."""
    text = str(path)
    return any(text == str(f) or text.startswith(str(f).rstrip(os.sep) + os.sep) for f in folders)


def scan_roots(
    roots: Sequence[str | os.PathLike[str]], listed: Sequence[str | os.PathLike[str]]
) -> list[tuple[Path, str]]:
    """The roots of a scan (absolute, as given): one per root given, then one for a list.

    A root that is a file stands for its folder. The files of a list share one root:
    the deepest folder that holds them all.
    """
    out: list[tuple[Path, str]] = []
    for root in roots:
        path = absolute(root)
        if path.is_file():
            out.append((path.parent, str(Path(root).parent)))
        elif path.is_dir():
            out.append((path, str(root)))
        else:
            raise ScanError(f"not a folder or an image file: {root}")
    if listed:
        parents = {str(absolute(p).parent) for p in listed}
        common = Path(os.path.commonpath(sorted(parents)))
        out.append((common, str(common)))
    return out


def iter_found(
    roots: Sequence[str | os.PathLike[str]],
    listed: Sequence[str | os.PathLike[str]],
    root_ids: Sequence[int],
    include_hidden: bool,
) -> Iterator[Found]:
    """Every file to index, each absolute path once: the roots' images, then the list."""
    seen: set[str] = set()
    for root, root_id in zip(roots, root_ids, strict=False):
        for shown in iter_image_files([root], include_hidden=include_hidden):
            path = str(absolute(shown))
            if path not in seen:
                seen.add(path)
                yield Found(path, str(shown), root_id)
    for name in listed:
        path = str(absolute(name))
        if path not in seen:
            seen.add(path)
            yield Found(path, str(name), root_ids[-1])


@dataclass(frozen=True)
class _Stat:
    size: int
    mtime_ns: int
    dev: int
    inode: int
    is_link: bool
    error: str | None = None


def _stat(path: str) -> _Stat:
    try:
        is_link = stat_mode.S_ISLNK(os.lstat(path).st_mode)
        st = os.stat(path)
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(path) else "file vanished during the scan"
        return _Stat(-1, -1, -1, -1, False, reason)
    except PermissionError:
        return _Stat(-1, -1, -1, -1, False, "permission denied")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _Stat(-1, -1, -1, -1, False, "symbolic link loop")
        return _Stat(-1, -1, -1, -1, False, f"cannot read file information ({exc.strerror})")
    if not stat_mode.S_ISREG(st.st_mode):
        return _Stat(-1, -1, st.st_dev, st.st_ino, is_link, "not a regular file")
    return _Stat(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, is_link)


def _hash_or_error(path: str) -> tuple[str | None, str | None]:
    try:
        return content_hash(path), None
    except FileNotFoundError:
        return None, "file vanished during the scan"
    except PermissionError:
        return None, "permission denied"
    except IsADirectoryError:
        return None, "is a folder, not a file"
    except OSError as exc:
        return None, f"cannot read the file ({exc.strerror or exc})"


@dataclass
class WalkCounts:
    """What the walk stage did."""

    files: int = 0
    hashed: int = 0


def walk_into(
    index: Index,
    scan_id: int,
    found: Iterable[Found],
    *,
    threads: int = 2,
    on_batch: Callable[[int, int], None] | None = None,
) -> WalkCounts:
    """Stat every found file, hash the new or changed ones, and store them batch by batch.

    A file is unchanged when its size, modification time, device and inode match the
    index; then only its `seen` mark is renewed. `on_batch(files, hashed)` runs after
    each committed batch.
    """
    counts = WalkCounts()
    inode_hashes: dict[tuple[int, int, int, int], str] = {}
    batch: list[Found] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:

        def flush() -> None:
            _store_batch(index, scan_id, batch, counts, inode_hashes, pool, threads)
            batch.clear()
            if on_batch:
                on_batch(counts.files, counts.hashed)

        for item in found:
            batch.append(item)
            if len(batch) >= BATCH:
                flush()
        if batch:
            flush()
    return counts


def _store_batch(
    index: Index,
    scan_id: int,
    batch: list[Found],
    counts: WalkCounts,
    inode_hashes: dict[tuple[int, int, int, int], str],
    pool: ThreadPoolExecutor,
    threads: int,
) -> None:
    stats = [_stat(f.path) for f in batch]  # microseconds each: a thread costs more
    known = index.known_files([f.path for f in batch])
    unchanged: list[Walked] = []
    to_hash: list[int] = []
    for k, (item, st) in enumerate(zip(batch, stats, strict=True)):
        old = known.get(item.path)
        if (
            st.error is None
            and old is not None
            and tuple(old[:4]) == (st.size, st.mtime_ns, st.dev, st.inode)
            and (old[4] is not None or old[5] is not None)
        ):
            order = counts.files + k
            unchanged.append((scan_id, item.shown, item.root, order, int(st.is_link), item.path))
        elif st.error is None:
            to_hash.append(k)
    hashes: dict[int, tuple[str | None, str | None]] = {}
    need = []
    for k in to_hash:
        st = stats[k]
        key = (st.dev, st.inode, st.size, st.mtime_ns)
        if key in inode_hashes:  # another path of a file already read in this scan
            hashes[k] = (inode_hashes[key], None)
        else:
            need.append(k)
    # Hashing a file from the page cache takes about 15 us, less than handing it to a
    # thread, so each thread reads an equal share of the batch (parallel reads still help
    # on disks and network file systems, where reading waits).
    share = max(1, -(-len(need) // threads))
    parts = [need[i : i + share] for i in range(0, len(need), share)]
    results = [
        result
        for part in pool.map(lambda ks: [_hash_or_error(batch[k].path) for k in ks], parts)
        for result in part
    ]
    for k, result in zip(need, results, strict=True):
        hashes[k] = result
        st = stats[k]
        if result[0] is not None:
            inode_hashes[(st.dev, st.inode, st.size, st.mtime_ns)] = result[0]
    counts.hashed += len(need)
    changed: list[Read] = []
    for k, (item, st) in enumerate(zip(batch, stats, strict=True)):
        digest: str | None
        error: str | None
        if st.error is not None:
            digest, error = None, st.error
        elif k in hashes:
            digest, error = hashes[k]
        else:
            continue
        changed.append(
            (
                item.path,
                item.shown,
                item.root,
                st.size,
                st.mtime_ns,
                st.dev,
                st.inode,
                int(st.is_link),
                digest,
                error,
                scan_id,
                counts.files + k,
            )
        )
    index.record_walk(unchanged, changed)
    counts.files += len(batch)


def link_same_files(index: Index, scan_id: int) -> int:
    """Mark paths that are one file (hard links, symbolic links) as the same file.

    Of each set, a path that is not a symbolic link is the file, then the first path;
    the others point at it (`same_as`) and take part in no pair or group. Returns how
    many paths were marked.
    """
    rows = index.shared_inodes(scan_id)
    updates: list[tuple[int | None, int]] = []
    first: dict[tuple[int, int], int] = {}
    for fid, dev, inode in rows:
        key = (int(dev), int(inode))
        if key in first:
            updates.append((first[key], int(fid)))
        else:
            first[key] = int(fid)
            updates.append((None, int(fid)))
    index.set_same_files(scan_id, updates)
    return sum(1 for target, _ in updates if target is not None)
