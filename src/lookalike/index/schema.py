"""The index's table layout, its version, and opening an SQLite file as an index."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from lookalike.errors import LookalikeError

SCHEMA_VERSION = 1
"""Version of the table layout written by this lookalike."""

BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE roots (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,      -- absolute
    shown TEXT NOT NULL,            -- as the user gave it
    label TEXT NOT NULL UNIQUE      -- folder name under a quarantine folder
);
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,      -- absolute, symbolic links not resolved
    shown TEXT NOT NULL,            -- as the user gave it
    root_id INTEGER REFERENCES roots(id),
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    is_link INTEGER NOT NULL DEFAULT 0,
    hash TEXT,                      -- xxh3_128 of the bytes; NULL if they could not be read
    width INTEGER,
    height INTEGER,
    error TEXT,
    same_as INTEGER,                -- another path of this very file (hard or symbolic link)
    seen INTEGER NOT NULL,          -- the last scan that found it
    walk_order INTEGER NOT NULL     -- position in that scan's walk (the `first` keep policy)
);
CREATE INDEX files_hash ON files(hash);
CREATE INDEX files_seen ON files(seen);
CREATE INDEX files_inode ON files(dev, inode);
CREATE TABLE embeddings (             -- detail: lookalike.model.measure_detail (NULL: unknown)
    hash TEXT PRIMARY KEY,
    vector BLOB NOT NULL,
    detail REAL
);
CREATE TABLE verified (             -- similarity after geometric verification, per contents
    hash_a TEXT NOT NULL,
    hash_b TEXT NOT NULL,
    similarity REAL NOT NULL,
    inliers INTEGER,                -- the local-feature matches that counted (0: none)
    coverage REAL,                  -- share of the pictures inside the matched points' hull
    shot INTEGER,                   -- 1: the match showed two shots of one scene
    hash_bits INTEGER,              -- no match counted: the pHash distance that raised it
    PRIMARY KEY (hash_a, hash_b)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS traits (  -- what the `best` keep policy measured, per contents
    hash TEXT PRIMARY KEY,
    pixels INTEGER NOT NULL,
    colour REAL NOT NULL,
    jpeg_quality INTEGER,
    thumb BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE pairs (
    a INTEGER NOT NULL,
    b INTEGER NOT NULL,
    similarity REAL NOT NULL,
    exact INTEGER NOT NULL,
    PRIMARY KEY (a, b)
) WITHOUT ROWID;
CREATE INDEX pairs_b ON pairs(b);
CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    keep INTEGER NOT NULL,
    keep_by TEXT NOT NULL,          -- why: 'user' or a keep reason ('most-pixels', ...)
    rank INTEGER NOT NULL           -- position in the scan's order: largest first, then path
);
CREATE INDEX groups_rank ON groups(rank);
CREATE TABLE members (
    group_id INTEGER NOT NULL,
    file_id INTEGER NOT NULL UNIQUE,
    similarity_to_keep REAL NOT NULL,
    PRIMARY KEY (group_id, file_id)
);
CREATE TABLE keep_marks (hash TEXT PRIMARY KEY, marked_at REAL NOT NULL);
CREATE TABLE not_duplicates (
    hash_a TEXT NOT NULL,
    hash_b TEXT NOT NULL,
    marked_at REAL NOT NULL,
    PRIMARY KEY (hash_a, hash_b),
    CHECK (hash_a < hash_b)
);
CREATE TABLE scans (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    roots TEXT NOT NULL,
    settings TEXT NOT NULL,
    stats TEXT
);
"""


class IndexSchemaError(LookalikeError):
    """A file that is not a lookalike index, or one of a schema this version cannot read."""


class ModelMismatch(LookalikeError):
    """An index whose embeddings were made by another model than the one in use."""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = OFF")
    return conn


def check_schema(path: Path, conn: sqlite3.Connection) -> None:
    try:
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        raise IndexSchemaError(f"{path}: not a lookalike index (not an SQLite file)") from None
    if "meta" not in tables:
        raise IndexSchemaError(f"{path}: not a lookalike index (no meta table)")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise IndexSchemaError(f"{path}: not a lookalike index (no schema version)")
    version = int(row[0])
    if version > SCHEMA_VERSION:
        raise IndexSchemaError(
            f"{path}: index schema {version} is newer than this lookalike reads "
            f"({SCHEMA_VERSION}); upgrade lookalike"
        )
    if version < SCHEMA_VERSION:
        raise IndexSchemaError(
            f"{path}: index schema {version} is too old to migrate; delete it and rescan"
        )


def add_new_tables(conn: sqlite3.Connection) -> None:
    """Add the tables and columns later versions of schema 1 brought (an older index)."""
    for statement in _SCHEMA.split(";\n"):
        if statement.strip().startswith("CREATE TABLE IF NOT EXISTS"):
            conn.execute(statement)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(verified)")}
    added = (("inliers", "INTEGER"), ("coverage", "REAL"), ("shot", "INTEGER"))
    for column, kind in (*added, ("hash_bits", "INTEGER")):
        if column not in columns:
            conn.execute(f"ALTER TABLE verified ADD COLUMN {column} {kind}")
    if "detail" not in {row[1] for row in conn.execute("PRAGMA table_info(embeddings)")}:
        conn.execute("ALTER TABLE embeddings ADD COLUMN detail REAL")


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables in an empty database (inside the caller's transaction)."""
    for statement in _SCHEMA.split(";\n"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?), ('created', ?)",
        (str(SCHEMA_VERSION), str(time.time())),
    )
