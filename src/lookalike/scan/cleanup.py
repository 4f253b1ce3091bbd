"""Safe clean-up: move the non-keepers of the stored groups aside, and put them back.

Nothing is moved before a manifest (JSON lines: src, dst, sha256, op) is on disk. A file
is moved by hard-linking it at its new place and then unlinking the old name, or, across
file systems, by copying into a hidden file, verifying the copy's SHA-256, naming it and
only then removing the source; an existing file is never replaced, and a file's name never
holds part of it. Clashes, read-only or vanished files are reported and left where they are.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lookalike.index import Index, open_index
from lookalike.records import FileError, Move, Quarantine
from lookalike.scan.moves import (
    MACHINE_FAULTS,
    MoveRefused,
    digests,
    fsync_dir,
    move_file,
    name_copy,
    remove_partials,
    sha256_of,
)
from lookalike.scan.run import index_lock
from lookalike.scan.stored import reference_folders
from lookalike.scan.walk import ScanError, absolute, inside_any


@dataclass(frozen=True)
class _Plan:
    src: Path
    dst: Path
    sha256: str


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def quarantine(
    index: str | os.PathLike[str],
    to: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    delete: bool = False,
    only: Iterable[str | os.PathLike[str]] | None = None,
) -> Quarantine:
    """Move every non-keeper of the index's stored groups into `to`, under its root's name.

    Each file keeps its path relative to its scan root: `to/<root label>/<relative path>`.
    A file is left alone (and listed in `skipped`) when its keeper is gone or changed,
    when it changed since the scan, vanished, clashes with a file in `to`, or cannot be
    removed. The manifest `to/manifest-<time>.jsonl` is written and synced first.
    With `delete`, files are deleted instead (still listed in the manifest first).
    `only` limits the clean-up to those paths (keepers are never touched).
    """
    path = Path(index)
    target = absolute(to)
    op = "delete" if delete else "move"
    with index_lock(path, "quarantine"):
        with open_index(path) as store:
            plans, skipped = _plan(store, target, only)
        if dry_run:
            moves = tuple(Move(p.src, None if delete else p.dst, p.sha256, op) for p in plans)
            return Quarantine(None, moves, tuple(skipped), dry_run=True)
        target.mkdir(parents=True, exist_ok=True)
        manifest = _write_manifest(target, plans, op)
        done = []
        stopped = None
        for number, plan in enumerate(plans):
            try:
                if delete:
                    _delete(plan)
                else:
                    move_file(plan.src, plan.dst, plan.sha256)
            except MoveRefused as exc:
                skipped.append(FileError(plan.src, str(exc)))
                if exc.errno in MACHINE_FAULTS:
                    stopped = f"{MACHINE_FAULTS[exc.errno]} ({target})"
                    skipped.extend(
                        FileError(p.src, f"not tried: {stopped}; left in place")
                        for p in plans[number + 1 :]
                    )
                    break
                continue
            done.append(Move(plan.src, None if delete else plan.dst, plan.sha256, op))
    return Quarantine(manifest, tuple(done), tuple(skipped), stopped=stopped)


def _delete(plan: _Plan) -> None:
    try:
        if sha256_of(plan.src) != plan.sha256:
            raise MoveRefused("changed since it was checked; left in place")
        os.unlink(plan.src)
    except FileNotFoundError:
        raise MoveRefused("vanished before it could be deleted") from None
    except OSError as exc:
        raise MoveRefused(f"cannot delete ({exc.strerror}); left in place") from None


def _plan(
    store: Index, target: Path, only: Iterable[str | os.PathLike[str]] | None
) -> tuple[list[_Plan], list[FileError]]:
    roots = {r.id: r for r in store.roots()}
    for root in roots.values():
        if _inside(target, root.path) and not any(
            part.startswith(".") for part in target.relative_to(root.path).parts
        ):
            raise ScanError(
                f"the quarantine folder {target} is inside the scanned folder {root.shown}; "
                "choose a folder outside it (or a hidden one, which scans skip)"
            )
    wanted = {str(absolute(p)) for p in only} if only is not None else None
    plans: list[_Plan] = []
    skipped: list[FileError] = []
    taken: set[Path] = set()
    if not store.settings():
        raise ScanError(f"{store.path}: no finished scan in this index yet")
    reference = reference_folders(store)
    for group in store.groups():
        keeper = store.file(group.keep)
        members = [store.file(f) for f, _ in group.members if f != group.keep]
        chosen = [m for m in members if m and (wanted is None or str(m.path) in wanted)]
        if not chosen or keeper is None:
            continue
        problem = _changed(keeper.path, keeper.hash, "its keeper")
        if problem:
            skipped.extend(FileError(m.path, problem) for m in chosen)
            continue
        for member in chosen:
            if inside_any(member.path, reference):  # a scan never lists one; an old index might
                skipped.append(FileError(member.path, "in a reference folder: never moved"))
                continue
            problem = _changed(member.path, member.hash, "the file")
            if problem:
                skipped.append(FileError(member.path, problem))
                continue
            home = roots.get(member.root_id or -1)
            if home is not None and _inside(member.path, home.path):
                dst = target / home.label / member.path.relative_to(home.path)
            else:
                dst = target / "other" / member.path.relative_to(member.path.anchor)
            if os.path.lexists(dst) or dst in taken:
                skipped.append(FileError(member.path, f"name clash: {dst} already exists"))
                continue
            taken.add(dst)
            plans.append(_Plan(member.path, dst, sha256_of(member.path)))
    return plans, skipped


def _changed(path: Path, expected: str | None, what: str) -> str | None:
    """Why a file must not be relied on (None when it still holds the scanned bytes)."""
    try:
        digest = digests(path)[0]
    except FileNotFoundError:
        return f"{what} vanished since the scan"
    except OSError as exc:
        return f"cannot read {what} ({exc.strerror})"
    if digest != expected:
        return f"{what} changed since the scan; rescan first"
    return None


def _remove_stale_partial_manifests(target: Path) -> None:
    """Drop half-written manifests of quarantines that were killed (their process is gone)."""
    for stale in target.glob(".manifest-*.partial"):
        try:
            pid = int(stale.stem.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except (ValueError, IndexError, OSError):  # not ours, or alive (another user's)
            continue


def _write_manifest(target: Path, plans: list[_Plan], op: str) -> Path:
    """Write and sync the manifest under a new name (never over an existing file)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    lines = "".join(
        json.dumps(
            {
                "src": str(plan.src),
                "dst": None if op == "delete" else str(plan.dst),
                "sha256": plan.sha256,
                "op": op,
            },
            ensure_ascii=False,
        )
        + "\n"
        for plan in plans
    )
    _remove_stale_partial_manifests(target)
    # Written whole under a hidden name, then named like a finished copy (never over an
    # existing file): a manifest is either complete or absent, even after a kill.
    partial = target / f".manifest-{stamp}-{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        for n in range(1000):
            name = f"manifest-{stamp}.jsonl" if n == 0 else f"manifest-{stamp}-{n}.jsonl"
            manifest = target / name
            try:
                name_copy(partial, manifest)
            except MoveRefused:  # that name is taken: try the next one
                continue
            fsync_dir(target)
            return manifest
    finally:
        partial.unlink(missing_ok=True)
    raise ScanError(f"cannot create a manifest in {target}")


def read_manifest(manifest: str | os.PathLike[str]) -> list[Move]:
    """The moves listed in a quarantine manifest (ScanError if it is not one)."""
    path = Path(manifest)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScanError(f"cannot read the manifest {path}: {exc}") from None
    moves = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            dst = entry["dst"]
            moves.append(
                Move(Path(entry["src"]), Path(dst) if dst else None, entry["sha256"], entry["op"])
            )
        except (ValueError, KeyError, TypeError):
            raise ScanError(f"{path}:{number}: not a quarantine manifest line") from None
    return moves


def restore(manifest: str | os.PathLike[str]) -> Quarantine:
    """Put every file of a quarantine manifest back where it was, checking its SHA-256.

    A file is restored only if its original place is free and its bytes are unchanged;
    otherwise it is listed in `skipped` with the reason, and stays where it is. Deleted
    files (`--delete`) cannot be restored and are listed too. Hidden partial copies left
    by an interrupted move (killed mid-copy) in the folders involved, and half-written
    manifests of killed quarantines beside this one, are removed.
    """
    path = Path(manifest)
    done, skipped = [], []
    moves = read_manifest(path)
    _remove_stale_partial_manifests(path.parent)
    remove_partials(
        {m.src.parent for m in moves} | {m.dst.parent for m in moves if m.dst is not None}
    )
    stopped = None
    for number, move in enumerate(moves):
        if move.op == "delete" or move.dst is None:
            skipped.append(FileError(move.src, "was deleted, not moved; cannot be restored"))
            continue
        try:
            reason = _restore_one(move)
        except MoveRefused as exc:  # the machine refused: later moves would fail too
            skipped.append(FileError(move.src, str(exc)))
            stopped = f"{MACHINE_FAULTS[exc.errno or errno.EIO]} ({move.src.parent})"
            skipped.extend(
                FileError(m.src, f"not tried: {stopped}; still in quarantine")
                for m in moves[number + 1 :]
            )
            break
        if reason:
            skipped.append(FileError(move.src, reason))
        else:
            done.append(Move(move.dst, move.src, move.sha256, "restore"))
    return Quarantine(path, tuple(done), tuple(skipped), stopped=stopped)


def _restore_one(move: Move) -> str | None:
    assert move.dst is not None
    src_there, dst_there = os.path.lexists(move.src), os.path.lexists(move.dst)
    if src_there:
        if not dst_there:
            return "already in place (it was never moved)"
        # A move interrupted between making the new name and removing the old one.
        try:
            same = sha256_of(move.src) == move.sha256 == sha256_of(move.dst)
        except OSError as exc:
            return f"cannot read ({exc.strerror}); both copies left as they are"
        if not same:
            return f"both {move.src} and {move.dst} exist and differ; both left as they are"
        try:
            os.unlink(move.dst)
        except FileNotFoundError:
            pass  # another restore of this manifest got there first
        except OSError as exc:
            return f"back in place, but its copy {move.dst} cannot be removed ({exc.strerror})"
        return None
    if not dst_there:
        return f"missing from the quarantine folder ({move.dst})"
    try:
        if sha256_of(move.dst) != move.sha256:
            return f"{move.dst} changed in quarantine; left there"
    except OSError as exc:
        return f"cannot read {move.dst} ({exc.strerror}); left there"
    try:
        move_file(move.dst, move.src, move.sha256)
    except MoveRefused as exc:
        if exc.errno in MACHINE_FAULTS:
            raise
        return str(exc)
    return None
