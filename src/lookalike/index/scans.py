"""The index's queries for a scan: the walk, the embedding bookkeeping, and its results.

A part of `Index` (a base class of it), kept apart so the store module stays readable;
callers use these typed methods and never write SQL themselves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from lookalike.index.results import ResultTables
from lookalike.records import ScanStats


@dataclass(frozen=True)
class FileCounts:
    """What a finished scan saw: files, readable images, distinct contents, unreadable."""

    files: int
    images: int
    distinct: int
    errors: int


@dataclass(frozen=True)
class CandidateRow:
    """What grouping needs of one readable file (not another path of a file)."""

    id: int
    shown: str
    width: int
    height: int
    size: int
    mtime_ns: int
    walk_order: int
    hash: str
    is_link: bool
    path: str
    root_id: int | None


Walked = tuple[int, str, int | None, int, int, str]
"""An unchanged file seen again: (scan id, shown, root id, walk order, is_link, path)."""
Read = tuple[str, str, int | None, int, int, int, int, int, str | None, str | None, int, int]
"""A new or changed file: (path, shown, root id, size, mtime_ns, dev, inode, is_link, hash,
error, scan id, walk order)."""


class ScanTables(ResultTables):
    """Queries of `lookalike.scan` (mixed into `Index`, which provides the connection)."""

    # -- the walk ------------------------------------------------------------------------

    def known_files(
        self, paths: Sequence[str]
    ) -> dict[str, tuple[int, int, int, int, str | None, str | None]]:
        """Stored (size, mtime_ns, dev, inode, hash, error) of these paths, by path."""
        marks = ",".join("?" * len(paths))
        rows = self._conn.execute(
            f"SELECT path, size, mtime_ns, dev, inode, hash, error FROM files "
            f"WHERE path IN ({marks})",
            list(paths),
        )
        return {row[0]: tuple(row[1:]) for row in rows}  # type: ignore[misc]

    def record_walk(self, unchanged: Sequence[Walked], read: Sequence[Read]) -> None:
        """Store one batch of the walk: files seen again, and files read afresh."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE files SET seen = ?, shown = ?, root_id = ?, walk_order = ?, is_link = ? "
                "WHERE path = ?",
                unchanged,
            )
            # A changed file keeps its row (and id); its size and contents are read afresh.
            conn.executemany(
                "INSERT INTO files (path, shown, root_id, size, mtime_ns, dev, inode, is_link,"
                " hash, error, seen, walk_order) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET shown = excluded.shown,"
                " root_id = excluded.root_id, size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, dev = excluded.dev, inode = excluded.inode,"
                " is_link = excluded.is_link, error = excluded.error,"
                " width = CASE WHEN files.hash IS excluded.hash THEN files.width END,"
                " height = CASE WHEN files.hash IS excluded.hash THEN files.height END,"
                " hash = excluded.hash, seen = excluded.seen, walk_order = excluded.walk_order",
                read,
            )

    def shared_inodes(self, scan_id: int) -> list[tuple[int, int, int]]:
        """(id, dev, inode) of this scan's paths that share a device and inode with another,
        ordered so that a file's real path (not a link) and first walked comes first."""
        rows = self._conn.execute(
            "SELECT id, dev, inode FROM files WHERE seen = ? AND dev >= 0 AND (dev, inode) IN "
            "(SELECT dev, inode FROM files WHERE seen = ? AND dev >= 0 "
            " GROUP BY dev, inode HAVING COUNT(*) > 1) ORDER BY dev, inode, is_link, walk_order",
            (scan_id, scan_id),
        )
        return [(int(i), int(d), int(n)) for i, d, n in rows]

    def set_same_files(self, scan_id: int, links: Iterable[tuple[int | None, int]]) -> None:
        """Point each (target, path id) at the file it is another path of (None: itself)."""
        with self.transaction() as conn:
            conn.execute("UPDATE files SET same_as = NULL WHERE seen = ?", (scan_id,))
            conn.executemany("UPDATE files SET same_as = ? WHERE id = ?", links)

    # -- a scan's start, embeddings and end -------------------------------------------------

    def start_scan(self, roots: Sequence[str], settings: Mapping[str, object]) -> int:
        """Record a scan's start; returns its id."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO scans (started, roots, settings) VALUES (?, ?, ?)",
                (time.time(), json.dumps(list(roots)), json.dumps(dict(settings))),
            )
            return int(cursor.lastrowid or 0)

    _PENDING = (
        "FROM files WHERE seen = ? AND hash IS NOT NULL AND error IS NULL AND same_as IS NULL "
        "AND hash NOT IN (SELECT hash FROM embeddings)"
    )

    def unembedded_count(self, scan_id: int) -> int:
        """Contents of this scan that have no embedding (nor an error) yet."""
        row = self._conn.execute(f"SELECT COUNT(DISTINCT hash) {self._PENDING}", (scan_id,))
        return int(row.fetchone()[0])

    def unembedded(self, scan_id: int, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` (hash, a path) of contents still without an embedding."""
        rows = self._conn.execute(
            f"SELECT hash, MIN(path) {self._PENDING} GROUP BY hash ORDER BY MIN(path) LIMIT ?",
            (scan_id, limit),
        )
        return [(str(h), str(p)) for h, p in rows]

    def forget_unmeasured(self, scan_id: int) -> int:
        """Drop the embeddings of this scan's contents that were stored without a measured
        detail (an index from before it), so they are embedded again; returns how many."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM embeddings WHERE detail IS NULL AND hash IN "
                "(SELECT hash FROM files WHERE seen = ?)",
                (scan_id,),
            )
            return int(cursor.rowcount)

    def store_embeddings(
        self,
        scan_id: int,
        vectors: Sequence[tuple[str, bytes, float | None]],
        sizes: Sequence[tuple[str, int, int]],
        path_errors: Sequence[tuple[str, str]],
        content_errors: Sequence[tuple[str, str]],
    ) -> None:
        """One batch of the embedder's output, in one transaction: (hash, float32 bytes,
        measured detail or None) vectors, (hash, width, height) sizes, (path, reason)
        errors of one path, and (hash, reason) errors of the contents."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (hash, vector, detail) VALUES (?, ?, ?)",
                vectors,
            )
            conn.executemany(
                "UPDATE files SET width = ?, height = ? WHERE hash = ?",
                [(w, h, digest) for digest, w, h in sizes],
            )
            conn.executemany(
                "UPDATE files SET error = ? WHERE path = ?", [(r, p) for p, r in path_errors]
            )
            conn.executemany(
                "UPDATE files SET error = ? WHERE hash = ? AND seen = ?",
                [(r, digest, scan_id) for digest, r in content_errors],
            )

    def fill_copied_sizes(self, scan_id: int) -> None:
        """Copies of contents embedded before: same bytes, same size."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE files SET width = (SELECT f.width FROM files f WHERE f.hash = files.hash "
                "AND f.width IS NOT NULL), height = (SELECT f.height FROM files f WHERE "
                "f.hash = files.hash AND f.width IS NOT NULL) "
                "WHERE seen = ? AND width IS NULL AND hash IS NOT NULL AND error IS NULL",
                (scan_id,),
            )

    def embedded_files(self, scan_id: int) -> list[tuple[int, str, str]]:
        """(id, hash, path) of this scan's readable files whose contents are embedded."""
        rows = self._conn.execute(
            "SELECT id, hash, path FROM files WHERE seen = ? AND error IS NULL "
            "AND same_as IS NULL AND hash IN (SELECT hash FROM embeddings) ORDER BY id",
            (scan_id,),
        )
        return [(int(i), str(h), str(p)) for i, h, p in rows]

    def finish_scan(
        self,
        scan_id: int,
        root_ids: Sequence[int],
        pairs: Iterable[tuple[int, int, float, bool]],
        groups: Iterable[tuple[int, str, Sequence[tuple[int, float]]]],
        settings: Mapping[str, object],
        stats: Callable[[FileCounts], ScanStats],
    ) -> ScanStats:
        """End a scan in one transaction: drop what it did not see (files, then contents,
        traits and verified pairs nobody uses, other roots), store its pairs, groups and
        settings, and its stats (`stats` makes them from the counts)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM files WHERE seen != ?", (scan_id,))
            conn.execute(
                "DELETE FROM embeddings WHERE hash NOT IN "
                "(SELECT hash FROM files WHERE hash IS NOT NULL)"
            )
            conn.execute("DELETE FROM traits WHERE hash NOT IN (SELECT hash FROM embeddings)")
            conn.execute(
                "DELETE FROM verified WHERE hash_a NOT IN (SELECT hash FROM embeddings) "
                "OR hash_b NOT IN (SELECT hash FROM embeddings)"
            )
            kept = ",".join(str(int(i)) for i in root_ids) or "-1"
            conn.execute(f"DELETE FROM roots WHERE id NOT IN ({kept})")
            self.store_results(conn, pairs, groups)
            self.set_meta(conn, settings=dict(settings))
            files = conn.execute("SELECT COUNT(*) FROM files WHERE seen = ?", (scan_id,))
            seen = int(files.fetchone()[0])
            images, distinct = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT hash) FROM files WHERE seen = ? "
                "AND error IS NULL AND same_as IS NULL",
                (scan_id,),
            ).fetchone()
            errors = conn.execute(
                "SELECT COUNT(*) FROM files WHERE seen = ? AND error IS NOT NULL "
                "AND same_as IS NULL",
                (scan_id,),
            ).fetchone()[0]
            made = stats(FileCounts(seen, int(images), int(distinct), int(errors)))
            conn.execute(
                "UPDATE scans SET finished = ?, stats = ? WHERE id = ?",
                (time.time(), json.dumps(made.__dict__), scan_id),
            )
        return made

    # -- reading results back ----------------------------------------------------------------

    def candidate_rows(self, scan_id: int | None = None) -> list[CandidateRow]:
        """The files that can take part in groups (readable, not another path of a file),
        of one scan or of the last."""
        where = "error IS NULL AND same_as IS NULL AND hash IS NOT NULL"
        params: tuple[object, ...] = ()
        if scan_id is not None:
            where += " AND seen = ?"
            params = (scan_id,)
        rows = self._conn.execute(
            "SELECT id, shown, COALESCE(width, 0), COALESCE(height, 0), size, mtime_ns, "
            f"walk_order, hash, is_link, path, root_id FROM files WHERE {where}",
            params,
        )
        return [
            CandidateRow(int(i), s, int(w), int(h), int(z), int(m), int(o), d, bool(k), p, r)
            for i, s, w, h, z, m, o, d, k, p, r in rows
        ]

    def shown_paths(self) -> dict[int, str]:
        """Every file's path as the user gave it, by id."""
        return {int(i): str(s) for i, s in self._conn.execute("SELECT id, shown FROM files")}

    def content_hashes(self) -> dict[int, str]:
        """The content hash of every file whose bytes could be read, by id."""
        rows = self._conn.execute("SELECT id, hash FROM files WHERE hash IS NOT NULL")
        return {int(i): str(h) for i, h in rows}

    def unreadable(self) -> list[tuple[str, str]]:
        """(path as given, reason) of every file that could not be read, by path."""
        rows = self._conn.execute(
            "SELECT shown, error FROM files WHERE error IS NOT NULL AND same_as IS NULL "
            "ORDER BY shown"
        )
        return [(str(s), str(e)) for s, e in rows]

    def last_stats(self) -> dict[str, object] | None:
        """The stats of the last finished scan (None: no scan finished yet)."""
        row = self._conn.execute(
            "SELECT stats FROM scans WHERE finished IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return json.loads(row[0]) if row and row[0] else None
