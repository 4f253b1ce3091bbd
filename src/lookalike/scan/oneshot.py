"""One-call duplicate finding with no index file kept (imagededup-style)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from lookalike.model import Model
from lookalike.records import ScanResult
from lookalike.scan.run import scan_folder


def find_duplicates(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    model: Model | None = None,
    min_similarity: float | None = None,
    keep: str = "best",
    verify: bool = True,
    workers: int | None = None,
    reference: Sequence[str | os.PathLike[str]] = (),
) -> ScanResult:
    """The duplicate groups among image files and folders, in one call, keeping no index.

    Like `scan_folder` with a temporary index (removed on return; `result.index` is None):
    nothing is remembered between calls. For large or repeated scans use `scan_folder`.
    Files under a `reference` folder are never to be removed (see `scan_folder`).

    >>> from lookalike import find_duplicates
    >>> [g.duplicates for g in find_duplicates("photos/").groups]
    """
    with tempfile.TemporaryDirectory(prefix="lookalike-") as folder:
        result = scan_folder(
            paths,
            Path(folder) / "index.lookalike",
            model=model,
            min_similarity=min_similarity,
            keep=keep,
            verify=verify,
            workers=workers,
            reference=reference,
        )
    return replace(result, index=None)
