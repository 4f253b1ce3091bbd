"""lookalike: find replicated images (edited copies of one picture) with a Siamese CNN.

>>> from lookalike import load_model, scan_folder
>>> model = load_model()
>>> model.compare("a.jpg", "b.jpg").duplicate
>>> result = scan_folder(["photos/"], index="photos.idx")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lookalike.augment import FAMILIES, apply_edit
from lookalike.errors import LookalikeError
from lookalike.io import UnreadableImage, load_image
from lookalike.model import CheckpointError, Model, load_model
from lookalike.records import Comparison, Group, Pair, ScanResult

__version__ = "0.1.0"

if TYPE_CHECKING:  # the lazy names below, typed for checkers
    from lookalike.embed import embed_all, embed_paths
    from lookalike.evaluate import evaluate_model, evaluate_pairs, make_benchmark
    from lookalike.explain import explain_pair
    from lookalike.report import write_csv, write_html, write_json, write_list
    from lookalike.scan import (
        find_duplicates,
        find_leaks,
        find_lookalikes,
        quarantine,
        restore,
        scan_folder,
    )

# Heavier parts (FAISS, OpenCV, matplotlib) load on first use, so `import lookalike` stays fast.
_LAZY = {
    "embed_paths": "lookalike.embed",
    "embed_all": "lookalike.embed",
    "scan_folder": "lookalike.scan",
    "find_duplicates": "lookalike.scan",
    "quarantine": "lookalike.scan",
    "restore": "lookalike.scan",
    "find_leaks": "lookalike.scan",
    "find_lookalikes": "lookalike.scan",
    "explain_pair": "lookalike.explain",
    "evaluate_model": "lookalike.evaluate",
    "evaluate_pairs": "lookalike.evaluate",
    "make_benchmark": "lookalike.evaluate",
    "write_json": "lookalike.report",
    "write_csv": "lookalike.report",
    "write_list": "lookalike.report",
    "write_html": "lookalike.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")


__all__ = [
    "FAMILIES",
    "CheckpointError",
    "Comparison",
    "Group",
    "LookalikeError",
    "Model",
    "Pair",
    "ScanResult",
    "UnreadableImage",
    "__version__",
    "apply_edit",
    "embed_all",
    "embed_paths",
    "evaluate_model",
    "evaluate_pairs",
    "explain_pair",
    "find_duplicates",
    "find_leaks",
    "find_lookalikes",
    "load_image",
    "load_model",
    "make_benchmark",
    "quarantine",
    "restore",
    "scan_folder",
    "write_csv",
    "write_html",
    "write_json",
    "write_list",
]
