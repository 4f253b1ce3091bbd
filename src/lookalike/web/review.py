"""The review session behind the page: groups at a cut-off, marks, quarantine and restore.

Everything goes through the library: groups come from `lookalike.scan.regroup` on the
stored pairs (what a scan at that cut-off would group, the user's marks respected),
keeper and not-duplicate marks from the index's own functions, the clean-up from
`lookalike.scan.quarantine` / `restore`. Each call opens the index afresh, so the page
shows what a running scan last committed and never keeps the index busy.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from lookalike.index import FileRow, Index, ModelMismatch, open_index
from lookalike.records import FileError, Quarantine, Verification, decided_by
from lookalike.scan import (
    KEEP_REASONS,
    GroupPlan,
    regroup,
)
from lookalike.scan.stored import reference_folders, shot_files
from lookalike.scan.walk import leads_out_of
from lookalike.web.cleanup import QuarantineFolder, ReviewError, file_view
from lookalike.web.pictures import Refused, Source
from lookalike.web.views import (
    Cutoffs,
    GroupsPage,
    GroupView,
    ManifestView,
    MemberView,
    PairView,
    QuarantinePreview,
    ShotsPage,
    ShotView,
)

if TYPE_CHECKING:
    from lookalike.model import Model

_VIEWS_KEPT = 4

T = TypeVar("T")


class Review:
    """The state of one review page over one index (thread-safe; caches only).

    `model` (a Model, a checkpoint path, or None for the bundled model) is loaded on
    the first Grad-CAM request and must be the one the index was made with.
    """

    def __init__(
        self,
        index: str | os.PathLike[str],
        *,
        quarantine_to: str | os.PathLike[str],
        model: Model | str | os.PathLike[str] | None = None,
    ) -> None:
        self.index_path = Path(index)
        self.folder = QuarantineFolder(self.index_path, quarantine_to)
        self.quarantine_to = self.folder.path
        self.cutoffs()  # refuses an index without a finished scan, before serving it
        self._model_source = model
        self._model: tuple[Model, str] | None = None
        self._model_lock = threading.Lock()
        self._lock = threading.Lock()
        self._writes = 0
        self._cache: OrderedDict[tuple[object, ...], object] = OrderedDict()

    # -- reading -----------------------------------------------------------------------

    @contextmanager
    def _open(self) -> Iterator[Index]:
        try:
            store = open_index(self.index_path)
        except Exception as exc:  # IndexSchemaError, or the file vanished
            raise ReviewError(str(exc), 503) from None
        try:
            yield store
        finally:
            store.close()

    def _version(self) -> tuple[object, ...]:
        """Changes whenever the index is written: by this page or by another process.

        A commit grows the write-ahead log (or, once checkpointed, changes the database
        file). An empty log is left out: each reader's connection makes one afresh.
        """
        parts: list[object] = [self._writes]
        for suffix in ("", "-wal"):
            try:
                st = os.stat(f"{self.index_path}{suffix}")
            except OSError:
                parts.append(None)
                continue
            if suffix and st.st_size == 0:
                parts.append(None)
            else:
                parts.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(parts)

    def _cached(self, name: str, argument: object, make: Callable[[], T]) -> T:
        """A value derived from the index, kept until the index changes (a few kept)."""
        key = (name, argument, self._version())
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]  # type: ignore[return-value]
            value = make()
            self._cache[key] = value
            while len(self._cache) > _VIEWS_KEPT * 3:
                self._cache.popitem(last=False)
            return value

    def _wrote(self) -> None:
        with self._lock:
            self._writes += 1

    def cutoffs(self) -> Cutoffs:
        """The cut-offs of the stored scan (ReviewError when there is none yet)."""
        with self._open() as store:
            settings = store.settings()
        if not settings:
            raise ReviewError(f"{self.index_path}: no finished scan in this index yet", 503)
        return Cutoffs(
            float(settings["min_similarity"]),  # type: ignore[arg-type]
            float(settings["review_min_similarity"]),  # type: ignore[arg-type]
            str(settings["keep"]),
        )

    def _plans(self, store: Index, min_similarity: float) -> list[GroupPlan]:
        return self._cached(
            "groups", round(min_similarity, 6), lambda: regroup(store, min_similarity)
        )

    def _cutoff(self, min_similarity: float | None) -> float:
        cut = self.cutoffs()
        if min_similarity is None:
            return cut.min_similarity
        if not cut.review_min_similarity - 1e-9 <= min_similarity <= 1.0:
            raise ReviewError(
                f"min_similarity must be between the scan's review cut-off "
                f"{cut.review_min_similarity:.4f} and 1: the index holds no pairs below it",
                422,
            )
        return min_similarity

    def _row(self, store: Index, file_id: int) -> FileRow:
        row = store.file(file_id)
        if row is None:
            raise ReviewError(f"no file {file_id} in the index (reload the page)", 404)
        return row

    def groups(
        self, min_similarity: float | None = None, offset: int = 0, limit: int = 25
    ) -> GroupsPage:
        """One page of the groups at `min_similarity` (default: the scan's), largest first."""
        cut = self._cutoff(min_similarity)
        moved = self.folder.moved()
        with self._open() as store:
            plans = self._plans(store, cut)
            verified = self._cached("matches", None, store.verified_matches)
            folders = reference_folders(store)
            views = []
            for number, plan in enumerate(plans[offset : offset + limit], offset + 1):
                members = []
                keeper = store.file(plan.keep)
                for file_id, similarity in plan.members:
                    row = store.file(file_id)
                    if row is not None:  # None: dropped by a scan that finished just now
                        view = file_view(row, moved, folders)
                        members.append(
                            MemberView(
                                view,
                                similarity,
                                file_id == plan.keep,
                                _decided(keeper, row, verified) if file_id != plan.keep else "",
                            )
                        )
                why = KEEP_REASONS.get(plan.keep_by, plan.keep_by)
                views.append(GroupView(number, plan.keep_by, tuple(members), why))
        return GroupsPage(cut, len(plans), offset, limit, tuple(views))

    def pair(self, a: int, b: int) -> PairView:
        """Two indexed files and the similarity the scan stored for them (a near-duplicate
        shot's CNN similarity when they are one)."""
        moved = self.folder.moved()
        with self._open() as store:
            rows = self._row(store, a), self._row(store, b)
            pairs = self._cached(
                "pairs", None, lambda: {(x, y): (s, e) for x, y, s, e in store.pairs()}
            )
            folders = reference_folders(store)
            verified = self._cached("matches", None, store.verified_matches)
            shots = self._cached("shot pairs", None, store.shot_pairs)
        similarity, exact = pairs.get((min(a, b), max(a, b)), (None, False))
        views = [file_view(row, moved, folders) for row in rows]
        decided = _decided(rows[0], rows[1], verified) if similarity is not None else ""
        ha, hb = rows[0].hash or "", rows[1].hash or ""
        shot = shots.get((min(ha, hb), max(ha, hb)))
        if shot is not None:
            similarity = shot[0] if similarity is None else similarity
            decided = f"near-duplicate shot: one scene, a match over {round(100 * shot[1])} %"
        return PairView(views[0], views[1], similarity, exact, decided, shot is not None)

    def shots(self, offset: int = 0, limit: int = 25) -> ShotsPage:
        """One page of the near-duplicate shots (photos of one scene, not copies), most
        alike first."""
        moved = self.folder.moved()
        with self._open() as store:
            found = self._cached("shots", None, lambda: shot_files(store))
            folders = reference_folders(store)
            views = []
            for a, b, similarity, coverage in found[offset : offset + limit]:
                row_a, row_b = store.file(a), store.file(b)
                if row_a is not None and row_b is not None:  # None: dropped by a scan just now
                    views.append(
                        ShotView(
                            file_view(row_a, moved, folders),
                            file_view(row_b, moved, folders),
                            similarity,
                            coverage,
                        )
                    )
        return ShotsPage(len(found), offset, limit, tuple(views))

    def source(self, file_id: int) -> Source:
        """Where to read an indexed image from (its place, or the quarantine folder)."""
        with self._open() as store:
            row = store.file(file_id)
            roots = {r.id: r.path for r in store.roots()}
        if row is None or row.error is not None or row.hash is None:
            raise Refused("no such image in the index", 404)
        if not os.path.lexists(row.path):
            there = self.folder.moved().get(str(row.path))
            if there is not None:
                return Source(there, self.quarantine_to, row.hash, row.size, row.mtime_ns)
        root = roots.get(row.root_id) if row.root_id is not None else None
        if root is None:
            raise Refused("the file belongs to no scanned folder", 403)
        return Source(row.path, root, row.hash, row.size, row.mtime_ns)

    def overlay_model(self) -> tuple[Model, str]:
        """The model for Grad-CAM overlays and its fingerprint (Refused if unavailable)."""
        with self._model_lock:
            if self._model is None:
                from lookalike.model import CheckpointError, Model, fingerprint, load_model

                source = self._model_source
                try:
                    model = source if isinstance(source, Model) else load_model(source)
                except CheckpointError as exc:
                    raise Refused(f"Grad-CAM overlays are not available: {exc}", 409) from None
                self._model = (model, fingerprint(model))
            model, key = self._model
        with self._open() as store:
            try:
                store.check_model(model)
            except ModelMismatch as exc:
                raise Refused(f"Grad-CAM overlays are not available: {exc}", 409) from None
        return model, key

    # -- marks ---------------------------------------------------------------------------

    def set_keeper(self, file_id: int) -> None:
        """Make a file its group's keeper; remembered by content, so later scans keep it.

        The choice goes to the group the scan stored that holds the file (so quarantine,
        which acts on the stored groups, follows it); a file in none cannot be chosen.
        """
        moved = self.folder.moved()
        with self._open() as store:
            row = self._row(store, file_id)
            if file_view(row, moved).status != "present":
                raise ReviewError(
                    f"{row.shown} is not in its place (quarantined, gone or changed); "
                    "restore it or rescan before making it a keeper"
                )
            home = {r.id: r.path for r in store.roots()}.get(row.root_id or -1)
            if os.path.islink(row.path) and leads_out_of(row.path, home):
                raise ReviewError(
                    f"{row.shown} is a link leading out of its scanned folder; "
                    "a keeper must be a file inside it"
                )
            stored = self._cached(
                "stored", None, lambda: {f: g.id for g in store.groups() for f, _ in g.members}
            )
            group = stored.get(file_id)
            if group is None:
                raise ReviewError(
                    f"{row.shown} is in no group the scan stored (at its cut-off); "
                    "rescan with a lower --min-similarity to choose it as a keeper"
                )
            try:
                store.set_keeper(group, file_id)
            except ValueError as exc:
                raise ReviewError(f"{exc} (the index changed; reload the page)") from None
        self._wrote()

    def mark_not_duplicate(self, a: int, b: int) -> None:
        """Remember (by content) that two files are not duplicates; later scans agree."""
        with self._open() as store:
            rows = self._row(store, a), self._row(store, b)
            if rows[0].hash is None or rows[1].hash is None:
                raise ReviewError("the index holds no content hash for one of the files")
            try:
                store.mark_not_duplicate(rows[0].hash, rows[1].hash)
            except ValueError as exc:
                raise ReviewError(f"{rows[0].shown} and {rows[1].shown}: {exc}") from None
        self._wrote()

    def unmark_not_duplicate(self, a: int, b: int) -> bool:
        """Undo `mark_not_duplicate` for two files; False if they were not marked."""
        with self._open() as store:
            rows = self._row(store, a), self._row(store, b)
            if rows[0].hash is None or rows[1].hash is None:
                raise ReviewError("the index holds no content hash for one of the files")
            removed = store.unmark_not_duplicate(rows[0].hash, rows[1].hash)
        self._wrote()
        return removed

    # -- quarantine and restore ----------------------------------------------------------

    def preview_quarantine(
        self, file_ids: Sequence[int], min_similarity: float | None = None
    ) -> QuarantinePreview:
        """What quarantining these files would do (nothing moves), for the user to confirm.

        Only a non-keeper of a group at the page's cut-off is taken, and only if it is
        also a non-keeper of the groups the scan stored: `quarantine` moves those alone,
        after checking that their keeper still holds the bytes the scan saw.
        """
        cut = self._cutoff(min_similarity)
        refused: list[FileError] = []
        wanted: dict[str, str] = {}
        with self._open() as store:
            role = {f: f == p.keep for p in self._plans(store, cut) for f, _ in p.members}
            for file_id in dict.fromkeys(file_ids):
                row = store.file(file_id)
                if row is None:
                    refused.append(FileError(Path(f"file {file_id}"), "not in the index"))
                elif file_id not in role:
                    refused.append(FileError(Path(row.shown), "in no group at this cut-off"))
                elif role[file_id]:
                    refused.append(
                        FileError(Path(row.shown), "the keeper of its group: keepers stay")
                    )
                else:
                    wanted[str(row.path)] = row.shown
        outcome = self.folder.move(list(wanted), dry_run=True)
        listed = {str(m.src) for m in outcome.done} | {str(e.path) for e in outcome.skipped}
        refused.extend(
            FileError(
                Path(shown),
                "not a duplicate in the groups the scan stored (it is a keeper there, or "
                "below the scan's cut-off); rescan with a lower --min-similarity first",
            )
            for path, shown in wanted.items()
            if path not in listed
        )
        preview = self.folder.remember(tuple(m.src for m in outcome.done))
        return QuarantinePreview(preview, outcome, tuple(refused))

    def quarantine(self, preview: str) -> Quarantine:
        """Carry out a confirmed preview: move its files into the quarantine folder."""
        outcome = self.folder.carry_out(preview)
        self._wrote()
        return outcome

    def manifests(self) -> list[ManifestView]:
        """The quarantine folder's manifests, newest first."""
        return self.folder.manifests()

    def restore(self, name: str) -> Quarantine:
        """Put back the files of one manifest of the quarantine folder, by its file name."""
        outcome = self.folder.restore(name)
        self._wrote()
        return outcome


def _decided(a: FileRow | None, b: FileRow, verified: dict[tuple[str, str], Verification]) -> str:
    """What set the similarity of two indexed files (see `records.decided_by`)."""
    ha, hb = (a.hash if a else None) or "", b.hash or ""
    found = verified.get((min(ha, hb), max(ha, hb)))
    if found is None:
        return decided_by(ha == hb, None)
    return decided_by(ha == hb, found.matches, found.coverage, found.hash_bits)
