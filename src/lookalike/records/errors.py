"""The record of a file that could not be read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileError:
    """A file that could not be read, and why."""

    path: Path
    reason: str
    kind: str = "content"
    """Whether the path ("missing", "path") or the contents ("content") are at fault."""
