"""The index's stored outcome: pairs, groups, the user's review marks, and the keeper
traits and verified pairs scans reuse. A part of `Index` (a base class of it)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from lookalike.records import Traits


@dataclass(frozen=True)
class GroupRow:
    """One stored group: keeper and members as file ids, with similarity to the keeper."""

    id: int
    keep: int
    keep_by: str
    members: tuple[tuple[int, float], ...]


class ResultTables:
    """Queries of a scan's outcome and of the review page (mixed into `Index`)."""

    _conn: sqlite3.Connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # Index's

    def snapshot(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # Index's

    def meta(self) -> dict[str, str]:
        raise NotImplementedError  # Index's

    def set_meta(self, conn: sqlite3.Connection, **values: object) -> None:
        raise NotImplementedError  # Index's

    # -- pairs, groups and review marks --------------------------------------------------

    def pairs(self, min_similarity: float = 0.0) -> list[tuple[int, int, float, bool]]:
        """Stored pairs (file id a, file id b, similarity, exact) at or above a cut-off."""
        rows = self._conn.execute(
            "SELECT a, b, similarity, exact FROM pairs WHERE similarity >= ? "
            "ORDER BY similarity DESC, a, b",
            (min_similarity,),
        )
        return [(int(a), int(b), float(s), bool(e)) for a, b, s, e in rows]

    def groups(self, offset: int = 0, limit: int | None = None) -> list[GroupRow]:
        """Stored groups in the scan's order (largest first, then by keeper path).

        Members come keeper first, then by similarity to the keeper.
        """
        with self.snapshot() as conn:
            heads = conn.execute(
                "SELECT id, keep, keep_by FROM groups ORDER BY rank LIMIT ? OFFSET ?",
                (-1 if limit is None else limit, offset),
            ).fetchall()
            members: dict[int, list[tuple[int, float, str]]] = {int(g[0]): [] for g in heads}
            ids = list(members)
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT m.group_id, m.file_id, m.similarity_to_keep, f.path FROM members m "
                    f"JOIN files f ON f.id = m.file_id WHERE m.group_id IN ({marks})",
                    chunk,
                )
                for gid, fid, similarity, path in rows:
                    members[int(gid)].append((int(fid), float(similarity), str(path)))
        out = []
        for gid, keep, keep_by in heads:
            ordered = sorted(members[int(gid)], key=lambda m: (m[0] != keep, -m[1], m[2]))
            out.append(
                GroupRow(int(gid), int(keep), str(keep_by), tuple((f, s) for f, s, _ in ordered))
            )
        return out

    def group_count(self) -> int:
        """Number of stored groups."""
        return int(self._conn.execute("SELECT COUNT(*) FROM groups").fetchone()[0])

    def not_duplicate_marks(self) -> set[tuple[str, str]]:
        """Content-hash pairs (sorted) the user marked as not duplicates."""
        return {(a, b) for a, b in self._conn.execute("SELECT hash_a, hash_b FROM not_duplicates")}

    def mark_not_duplicate(self, hash_a: str, hash_b: str) -> None:
        """Remember that two contents are not duplicates; later scans never pair them."""
        if hash_a == hash_b:
            raise ValueError("byte-identical files are always duplicates")
        a, b = sorted((hash_a, hash_b))
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO not_duplicates (hash_a, hash_b, marked_at) VALUES (?, ?, ?)",
                (a, b, time.time()),
            )

    def unmark_not_duplicate(self, hash_a: str, hash_b: str) -> bool:
        """Forget a not-duplicate mark (later scans may pair the two again); False if none."""
        a, b = sorted((hash_a, hash_b))
        with self.transaction() as conn:
            gone = conn.execute(
                "DELETE FROM not_duplicates WHERE hash_a = ? AND hash_b = ?", (a, b)
            ).rowcount
        return gone > 0

    def keep_marks(self) -> set[str]:
        """Content hashes the user chose as keepers; later scans keep them."""
        return {h for (h,) in self._conn.execute("SELECT hash FROM keep_marks")}

    def set_keeper(self, group_id: int, file_id: int) -> None:
        """Make a member the keeper of its stored group, and remember the choice by content."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT f.hash FROM members m JOIN files f ON f.id = m.file_id "
                "WHERE m.group_id = ? AND m.file_id = ?",
                (group_id, file_id),
            ).fetchone()
            if row is None:
                raise ValueError(f"file {file_id} is not a member of group {group_id}")
            old = conn.execute("SELECT keep FROM groups WHERE id = ?", (group_id,)).fetchone()
            conn.execute(
                "DELETE FROM keep_marks WHERE hash IN (SELECT hash FROM files WHERE id = ?)",
                (old[0],),
            )
            conn.execute(
                "INSERT OR REPLACE INTO keep_marks (hash, marked_at) VALUES (?, ?)",
                (row[0], time.time()),
            )
            conn.execute(
                "UPDATE groups SET keep = ?, keep_by = 'user' WHERE id = ?", (file_id, group_id)
            )

    def traits(self) -> dict[str, Traits]:
        """Stored keeper traits by content hash (none in an index made before them)."""
        try:
            rows = self._conn.execute(
                "SELECT hash, pixels, colour, jpeg_quality, thumb FROM traits"
            ).fetchall()
        except sqlite3.OperationalError:  # no such table: a read-only open of an older index
            return {}
        return {h: Traits(int(p), float(c), q, bytes(t)) for h, p, c, q, t in rows}

    def hashes_without_traits(self, file_ids: Iterable[int], version: int) -> list[tuple[str, str]]:
        """(hash, a path) of the given files whose traits are missing or of another version.

        Traits of another `version` are dropped first.
        """
        with self.transaction() as conn:
            if self.meta().get("traits_version") != str(version):
                conn.execute("DELETE FROM traits")
                self.set_meta(conn, traits_version=version)
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (id INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM wanted")
            conn.executemany(
                "INSERT OR IGNORE INTO wanted (id) VALUES (?)", ((i,) for i in file_ids)
            )
            rows = conn.execute(
                "SELECT hash, MIN(path) FROM files WHERE id IN (SELECT id FROM wanted) "
                "AND hash IS NOT NULL AND hash NOT IN (SELECT hash FROM traits) "
                "GROUP BY hash ORDER BY MIN(path)"
            ).fetchall()
            conn.execute("DELETE FROM wanted")
        return [(str(h), str(p)) for h, p in rows]

    def store_traits(self, measured: Iterable[tuple[str, Traits]]) -> None:
        """Keep measured traits (in one transaction)."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO traits (hash, pixels, colour, jpeg_quality, thumb) "
                "VALUES (?, ?, ?, ?, ?)",
                ((h, t.pixels, t.colour, t.jpeg_quality, t.thumb) for h, t in measured),
            )

    def store_results(
        self,
        conn: sqlite3.Connection,
        pairs: Iterable[tuple[int, int, float, bool]],
        groups: Iterable[tuple[int, str, Sequence[tuple[int, float]]]],
    ) -> None:
        """Replace the stored pairs and groups, given in display order (in a transaction)."""
        for table in ("pairs", "members", "groups"):
            conn.execute(f"DELETE FROM {table}")
        conn.executemany(
            "INSERT INTO pairs (a, b, similarity, exact) VALUES (?, ?, ?, ?)",
            ((a, b, s, int(e)) for a, b, s, e in pairs),
        )
        for rank, (keep, keep_by, members) in enumerate(groups):
            gid = conn.execute(
                "INSERT INTO groups (keep, keep_by, rank) VALUES (?, ?, ?)", (keep, keep_by, rank)
            ).lastrowid
            conn.executemany(
                "INSERT INTO members (group_id, file_id, similarity_to_keep) VALUES (?, ?, ?)",
                [(gid, f, s) for f, s in members],
            )
