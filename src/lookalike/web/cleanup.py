"""The review page's quarantine folder: its manifests, previews waiting for a confirmation,
and moving files in and out through `lookalike.scan.quarantine` / `restore`."""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

from lookalike.errors import LookalikeError
from lookalike.index import FileRow
from lookalike.records import Move, Quarantine
from lookalike.scan import ScanError, quarantine, read_manifest, restore
from lookalike.scan.walk import inside_any
from lookalike.web.views import FileView, ManifestView

MANIFEST_NAME = re.compile(r"manifest-[0-9]{8}-[0-9]{6}(-[0-9]{1,3})?\.jsonl")
"""The names `quarantine` gives its manifests; nothing else is offered for restore."""

_PREVIEWS_KEPT = 32
PREVIEW_SECONDS = 15 * 60
"""How long a quarantine preview can be confirmed."""


class ReviewError(LookalikeError):
    """A request the review cannot carry out; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class QuarantineFolder:
    """One index's quarantine folder, as the review page uses it (thread-safe)."""

    def __init__(self, index: Path, folder: str | os.PathLike[str]) -> None:
        self.index = index
        self.path = Path(os.path.abspath(folder))
        self._lock = threading.Lock()
        self._manifests: dict[str, tuple[tuple[int, int], list[Move] | None]] = {}
        self._previews: OrderedDict[str, tuple[float, tuple[Path, ...]]] = OrderedDict()

    def moved(self) -> dict[str, Path]:
        """Quarantined files by original path -> place in the quarantine folder (latest)."""
        moved: dict[str, Path] = {}
        for _, moves in self._manifest_files():
            for move in moves or ():
                if move.op == "move" and move.dst is not None:
                    moved[str(move.src)] = move.dst
        return moved

    def _manifest_files(self) -> list[tuple[str, list[Move] | None]]:
        """Every manifest in the quarantine folder, oldest first (None: unreadable)."""
        try:
            entries = sorted(os.scandir(self.path), key=lambda e: e.name)
        except OSError:
            return []
        out = []
        for entry in entries:
            if not MANIFEST_NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            stamp = (st.st_size, st.st_mtime_ns)
            with self._lock:
                known = self._manifests.get(entry.name)
            if known is None or known[0] != stamp:
                try:
                    moves: list[Move] | None = read_manifest(entry.path)
                except ScanError:
                    moves = None
                known = (stamp, moves)
                with self._lock:
                    self._manifests[entry.name] = known
            out.append((entry.name, known[1]))
        return out

    def move(self, paths: Iterable[str], dry_run: bool) -> Quarantine:
        """Quarantine these files of the index (or say what would move)."""
        try:
            return quarantine(self.index, self.path, dry_run=dry_run, only=paths)
        except ScanError as exc:
            raise ReviewError(str(exc)) from None

    def remember(self, paths: tuple[Path, ...]) -> str:
        """Keep a previewed list of files to move; returns the id that confirms it."""
        preview = secrets.token_urlsafe(16)
        with self._lock:
            self._previews[preview] = (time.monotonic(), paths)
            while len(self._previews) > _PREVIEWS_KEPT:
                self._previews.popitem(last=False)
        return preview

    def carry_out(self, preview: str) -> Quarantine:
        """Move the files of a confirmed preview (once, within PREVIEW_SECONDS)."""
        with self._lock:
            made, paths = self._previews.pop(preview, (0.0, None))
        if paths is None or time.monotonic() - made > PREVIEW_SECONDS:
            raise ReviewError("this quarantine was not previewed, has expired or was done", 404)
        if not paths:
            raise ReviewError("nothing to move: the preview listed no file to quarantine")
        return self.move([str(p) for p in paths], dry_run=False)

    def manifests(self) -> list[ManifestView]:
        """The folder's manifests, newest first."""
        out = []
        for name, moves in reversed(self._manifest_files()):
            if moves is None:
                continue
            waiting = sum(
                1
                for m in moves
                if m.op == "move"
                and m.dst is not None
                and os.path.lexists(m.dst)
                and not os.path.lexists(m.src)
            )
            out.append(ManifestView(name, len(moves), waiting))
        return out

    def restore(self, name: str) -> Quarantine:
        """Put back the files of one manifest of the folder, by its file name."""
        if not MANIFEST_NAME.fullmatch(name) or name not in {m.name for m in self.manifests()}:
            raise ReviewError(f"no manifest named {name!r} in the quarantine folder", 404)
        try:
            return restore(self.path / name)
        except ScanError as exc:
            raise ReviewError(str(exc)) from None


def file_view(row: FileRow, moved: dict[str, Path], reference: Sequence[str] = ()) -> FileView:
    """An indexed file as the page shows it: present, changed since the scan, missing, or
    in the quarantine folder (`moved`: `QuarantineFolder.moved()`)."""
    try:
        st = os.stat(row.path)
    except OSError:
        there = moved.get(str(row.path))
        status = "quarantined" if there is not None and os.path.lexists(there) else "missing"
    else:
        same = (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns)
        status = "present" if same else "changed"
    return FileView(
        row.id,
        row.shown,
        row.size,
        row.width,
        row.height,
        status,
        (row.hash or "")[:12],
        inside_any(row.path, reference),
    )
