"""Faults of the machine met by the index (a full disk, a read-only place), in words."""

from __future__ import annotations

import sqlite3

from lookalike.io import SPACE_ADVICE, WRITABLE_ADVICE
from lookalike.io import describe_fault as describe_file_fault

StoreFault = sqlite3.OperationalError
"""What the index raises when the machine refuses it (SQLite's operational error)."""

SQLITE_FAULTS = {  # primary result codes of SQLite
    13: ("the disk is full (SQLITE_FULL)", SPACE_ADVICE),
    10: ("a disk I/O error (SQLITE_IOERR: a full or failing disk?)", SPACE_ADVICE),
    8: ("the index cannot be written (SQLITE_READONLY: a read-only place?)", WRITABLE_ADVICE),
    14: (
        "the index cannot be opened (SQLITE_CANTOPEN: a read-only or missing folder?)",
        WRITABLE_ADVICE,
    ),
    3: ("permission denied (SQLITE_PERM)", WRITABLE_ADVICE),
}


def describe_fault(exc: BaseException) -> tuple[str, str, str] | None:
    """(path, what failed, what to do) for a fault of the machine, met by the index or on
    a file (`lookalike.io.describe_fault`); None for any other error."""
    if isinstance(exc, StoreFault):
        fault = SQLITE_FAULTS.get(getattr(exc, "sqlite_errorcode", -1) & 0xFF)
        return None if fault is None else ("the index", fault[0], fault[1])
    return describe_file_fault(exc)
