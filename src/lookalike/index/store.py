"""The persistent index: one SQLite file (WAL) with files, embeddings, pairs and groups.

A scan writes it in small transactions, so a kill at any point loses at most the batch
in flight; a web server may read it (and write review marks) at the same time.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lookalike.index.scans import ScanTables
from lookalike.index.schema import (
    IndexSchemaError,
    ModelMismatch,
    add_new_tables,
    check_schema,
    connect,
    create_schema,
)
from lookalike.records import ModelStamp, Verification


class Stamped(Protocol):
    """A model as an index sees it: anything that can say what made its embeddings."""

    def stamp(self) -> ModelStamp: ...


@dataclass(frozen=True)
class FileRow:
    """One indexed file as stored."""

    id: int
    path: Path
    shown: str
    root_id: int | None
    size: int
    mtime_ns: int
    hash: str | None
    width: int | None
    height: int | None
    error: str | None
    same_as: int | None
    walk_order: int


@dataclass(frozen=True)
class RootRow:
    """One scan root as stored."""

    id: int
    path: Path
    shown: str
    label: str


_FILE_COLUMNS = (
    "id, path, shown, root_id, size, mtime_ns, hash, width, height, error, same_as, walk_order"
)


def _file_row(row: Sequence[object]) -> FileRow:
    fid, path, shown, root_id, size, mtime_ns, hsh, width, height, error, same_as, order = row
    return FileRow(
        int(fid),  # type: ignore[call-overload]
        Path(str(path)),
        str(shown),
        root_id,  # type: ignore[arg-type]
        int(size),  # type: ignore[call-overload]
        int(mtime_ns),  # type: ignore[call-overload]
        hsh,  # type: ignore[arg-type]
        width,  # type: ignore[arg-type]
        height,  # type: ignore[arg-type]
        error,  # type: ignore[arg-type]
        same_as,  # type: ignore[arg-type]
        int(order),  # type: ignore[call-overload]
    )


class Index(ScanTables):
    """An open lookalike index. Use `build_index` (to scan into) or `open_index` (to read).

    Writes go through `transaction()`; reads may happen at any time, also from other
    processes, and see the last committed state.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken at once, so concurrent writers queue, not deadlock)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            # SQLite has already rolled back after some errors (a full disk): the original
            # error is the one to report.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Several reads that see one committed state, even while a scan commits."""
        if self._conn.in_transaction:
            yield self._conn
            return
        self._conn.execute("BEGIN")
        try:
            yield self._conn
        finally:
            self._conn.execute("COMMIT")

    # -- meta --------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """Every meta entry (schema_version, model_id, model_fingerprint, settings...)."""
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, conn: sqlite3.Connection, **values: object) -> None:
        """Write meta entries inside a transaction."""
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in values.items()],
        )

    @property
    def model_fingerprint(self) -> str | None:
        """Fingerprint of the model whose embeddings the index holds (None if none yet)."""
        return self.meta().get("model_fingerprint")

    @property
    def model_id(self) -> str:
        """Id of the model whose embeddings the index holds."""
        return self.meta().get("model_id", "?")

    def settings(self) -> dict[str, object]:
        """The thresholds and keep policy of the stored groups (empty before any scan)."""
        raw = self.meta().get("settings")
        return json.loads(raw) if raw else {}

    def check_model(self, model: Stamped) -> None:
        """Raise ModelMismatch unless the stored embeddings were made by `model`."""
        stored = self.model_fingerprint
        stamp = model.stamp()
        if stored is not None and stored != stamp.fingerprint:
            raise ModelMismatch(
                f"{self.path} holds embeddings of model {self.model_id} (fingerprint {stored}), "
                f"not of {stamp.model_id} ({stamp.fingerprint}); rescan it with this model "
                "or pass the model it was made with"
            )

    def adopt_model(self, model: Stamped) -> bool:
        """Make `model` the index's model; if another made the embeddings, drop them all.

        Returns True when stored embeddings, pairs and groups were dropped. Verified
        similarities are dropped also when only the verification settings changed (the
        embeddings stay); a model without verification leaves them for a later scan.
        """
        stamp = model.stamp()
        stored = self.model_fingerprint
        rule = stamp.rule_fingerprint
        with self.transaction() as conn:
            dropped = stored is not None and stored != stamp.fingerprint
            if dropped:
                for table in ("embeddings", "verified", "pairs", "members", "groups"):
                    conn.execute(f"DELETE FROM {table}")
            elif rule is not None and self.meta().get("rule_fingerprint") != rule:
                conn.execute("DELETE FROM verified")
            if rule is not None:  # a scan without verification keeps them
                self.set_meta(conn, rule_fingerprint=rule)
            self.set_meta(
                conn,
                model_id=stamp.model_id,
                model_fingerprint=stamp.fingerprint,
                preprocess=stamp.preprocess,
                embed_dim=stamp.embed_dim,
            )
        return dropped

    # -- roots and files ---------------------------------------------------------------

    def roots(self) -> list[RootRow]:
        """The roots of the last scan."""
        rows = self._conn.execute("SELECT id, path, shown, label FROM roots ORDER BY id")
        return [RootRow(int(i), Path(p), s, lab) for i, p, s, lab in rows]

    def set_roots(self, roots: Sequence[tuple[Path, str]]) -> list[RootRow]:
        """Register scan roots (absolute path, as shown) and give each a unique label."""
        with self.transaction() as conn:
            existing = {Path(p): int(i) for i, p in conn.execute("SELECT id, path FROM roots")}
            labels = {str(lab) for (lab,) in conn.execute("SELECT label FROM roots")}
            for path, shown in roots:
                if path in existing:
                    conn.execute("UPDATE roots SET shown = ? WHERE id = ?", (shown, existing[path]))
                    continue
                base = path.name or "root"
                label, n = base, 2
                while label in labels:
                    label, n = f"{base}-{n}", n + 1
                labels.add(label)
                cur = conn.execute(
                    "INSERT INTO roots (path, shown, label) VALUES (?, ?, ?)",
                    (str(path), shown, label),
                )
                existing[path] = int(cur.lastrowid or 0)
        wanted = {p for p, _ in roots}
        return [r for r in self.roots() if r.path in wanted]

    def files(self) -> list[FileRow]:
        """Every stored file, by path."""
        return self._file_rows("")

    def readable_files(self) -> list[FileRow]:
        """Files read and hashed without error (one path per file), by path."""
        return self._file_rows("error IS NULL AND same_as IS NULL AND hash IS NOT NULL")

    def unreadable_files(self) -> list[FileRow]:
        """Files that could not be read (one path per file), by path."""
        return self._file_rows("error IS NOT NULL AND same_as IS NULL")

    def files_with_contents(self, hashes: Sequence[str]) -> list[FileRow]:
        """Readable files (one path per file) holding any of these contents, by path."""
        marks = ",".join("?" * len(hashes))
        return self._file_rows(f"error IS NULL AND same_as IS NULL AND hash IN ({marks})", hashes)

    def _file_rows(self, where: str, params: Sequence[object] = ()) -> list[FileRow]:
        sql = f"SELECT {_FILE_COLUMNS} FROM files" + (f" WHERE {where}" if where else "")
        return [_file_row(r) for r in self._conn.execute(sql + " ORDER BY path", params)]

    def file(self, file_id: int) -> FileRow | None:
        """One stored file by id."""
        row = self._conn.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        return _file_row(row) if row else None

    def file_by_path(self, path: str | os.PathLike[str]) -> FileRow | None:
        """One stored file by its path (absolute or as given)."""
        row = self._conn.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE path = ?", (os.path.abspath(path),)
        ).fetchone()
        return _file_row(row) if row else None

    # -- embeddings ----------------------------------------------------------------------

    def _embedding_rows(self, hashes: Sequence[str], column: str) -> Iterator[tuple[str, Any]]:
        """(hash, `column`) of the stored embeddings of these hashes, read 900 at a time
        (SQLite's limit on bound parameters); NULL values are left out."""
        for start in range(0, len(hashes), 900):
            chunk = hashes[start : start + 900]
            marks = ",".join("?" * len(chunk))
            yield from self._conn.execute(
                f"SELECT hash, {column} FROM embeddings WHERE hash IN ({marks}) "
                f"AND {column} IS NOT NULL",
                chunk,
            )

    def vectors(self, hashes: Sequence[str]) -> np.ndarray:
        """Stored embeddings of these content hashes, in order (KeyError if one is missing)."""
        dim = int(self.meta().get("embed_dim", "0"))
        out = np.zeros((len(hashes), dim), dtype=np.float32)
        position = {h: i for i, h in enumerate(hashes)}
        found = 0
        for h, blob in self._embedding_rows(hashes, "vector"):
            out[position[h]] = np.frombuffer(blob, dtype=np.float32)
            found += 1
        if found != len(position):
            raise KeyError("some contents have no stored embedding")
        return out

    def details(self, hashes: Sequence[str]) -> np.ndarray:
        """Measured detail of these content hashes' pictures, in order (N,) float64; NaN
        where none was stored (`lookalike.model.measure_detail`)."""
        out = np.full(len(hashes), np.nan)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(embeddings)")}
        if "detail" not in columns:  # an index from before, opened read-only
            return out
        position = {h: i for i, h in enumerate(hashes)}
        for h, detail in self._embedding_rows(hashes, "detail"):
            out[position[h]] = detail
        return out

    def embedded_vectors(self) -> tuple[list[str], np.ndarray]:
        """Every content hash of a readable, current file with its embedding (one row each)."""
        rows = self._conn.execute(
            "SELECT e.hash, e.vector FROM embeddings e WHERE e.hash IN "
            "(SELECT hash FROM files WHERE error IS NULL AND same_as IS NULL) ORDER BY e.hash"
        ).fetchall()
        dim = int(self.meta().get("embed_dim", "0"))
        if not rows:
            return [], np.zeros((0, dim), dtype=np.float32)
        hashes = [h for h, _ in rows]
        vectors = np.frombuffer(b"".join(v for _, v in rows), dtype=np.float32)
        return hashes, vectors.reshape(len(rows), -1).copy()

    def verified(self) -> dict[tuple[str, str], float]:
        """Similarities after geometric verification, by sorted content-hash pair."""
        return {(a, b): s for a, b, s in self.iter_verified()}

    def iter_verified(self) -> Iterator[tuple[str, str, float]]:
        """(hash a, hash b, similarity) of every verified pair, read as it goes."""
        for a, b, s in self._conn.execute("SELECT hash_a, hash_b, similarity FROM verified"):
            yield a, b, float(s)

    def store_verified(
        self, scores: Iterable[tuple[str, str, float, int, float, bool, int]]
    ) -> None:
        """Remember verified similarities, their match counts, how much of the pictures
        the match covers, whether it showed two shots of one scene, and how close the
        perceptual hashes were when they raised the pair instead (-1: they did not; hash
        pairs in any order), for later scans and for showing what decided a pair."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO verified (hash_a, hash_b, similarity, inliers, "
                "coverage, shot, hash_bits) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (min(a, b), max(a, b), s, n, c, int(t), h if h >= 0 else None)
                    for a, b, s, n, c, t, h in scores
                ],
            )

    def verified_matches(self) -> dict[tuple[str, str], Verification]:
        """What verified a pair, by sorted content-hash pair: the local-feature matches
        that counted and their coverage, or the perceptual hashes' distance (none in an
        index made before)."""
        try:
            rows = self._conn.execute(
                "SELECT hash_a, hash_b, inliers, coverage, hash_bits FROM verified "
                "WHERE inliers > 0 OR hash_bits IS NOT NULL"
            ).fetchall()
        except sqlite3.OperationalError:  # no such column: a read-only older index
            return {}
        return {
            (a, b): Verification(int(n or 0), float(c or 0.0), -1 if h is None else int(h))
            for a, b, n, c, h in rows
        }

    def shot_pairs(self) -> dict[tuple[str, str], tuple[float, float]]:
        """(CNN similarity, coverage) of the pairs verification found to be two shots of
        one scene (near-duplicate shots), by sorted content-hash pair."""
        rows = self._verified_rows("similarity", "shot = 1")
        return {(a, b): (float(s), float(c or 0.0)) for a, b, s, c in rows}

    def _verified_rows(self, value: str, where: str) -> list[tuple[str, str, float, float]]:
        """(hash a, hash b, `value`, coverage) of the verified pairs `where` holds (none
        in a read-only index older than those columns)."""
        try:
            return self._conn.execute(
                f"SELECT hash_a, hash_b, {value}, coverage FROM verified WHERE {where}"
            ).fetchall()
        except sqlite3.OperationalError:  # no such column: a read-only older index
            return []


@contextmanager
def _closed_if_not_an_index(path: Path, conn: sqlite3.Connection) -> Iterator[None]:
    """Close `conn` when opening the index fails: a file that is not an index raises
    IndexSchemaError; the machine's faults (a full disk...) pass through as they are."""
    try:
        yield
    except sqlite3.OperationalError:  # the machine's fault, not the file's
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise IndexSchemaError(f"{path}: not a lookalike index ({exc})") from None
    except IndexSchemaError:
        conn.close()
        raise


def open_index(path: str | os.PathLike[str]) -> Index:
    """Open an existing index (IndexSchemaError if it is missing or not one)."""
    path = Path(path)
    if not path.is_file():
        raise IndexSchemaError(f"{path}: no index there (run `lookalike scan ... --index {path}`)")
    conn = connect(path)
    with _closed_if_not_an_index(path, conn):
        check_schema(path, conn)
    return Index(path, conn)


def build_index(path: str | os.PathLike[str], model: Stamped) -> Index:
    """Open an index for writing with `model`, creating it if needed.

    An index made with another model keeps its files but drops its embeddings, pairs and
    groups, so everything is embedded again (never a mix of two models' embeddings).
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise IndexSchemaError(f"{path}: is a folder; give a file name for the index")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    with _closed_if_not_an_index(path, conn):
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
            create_schema(conn)
        conn.execute("COMMIT")
        check_schema(path, conn)
        add_new_tables(conn)
    index = Index(path, conn)
    index.adopt_model(model)
    return index
