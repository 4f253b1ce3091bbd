"""The persistent store (SQLite + embeddings) and nearest-neighbour search.

>>> with build_index("photos.lookalike", load_model()) as index:
...     index.files()
"""

from lookalike.index.faults import StoreFault, describe_fault
from lookalike.index.results import GroupRow
from lookalike.index.schema import SCHEMA_VERSION, IndexSchemaError, ModelMismatch
from lookalike.index.search import (
    EXACT_LIMIT,
    Neighbours,
    build_search,
    find_pairs,
    nearest,
    nearest_of,
    nearest_pairs,
)
from lookalike.index.store import FileRow, Index, RootRow, build_index, open_index

__all__ = [
    "EXACT_LIMIT",
    "SCHEMA_VERSION",
    "FileRow",
    "GroupRow",
    "Index",
    "IndexSchemaError",
    "ModelMismatch",
    "Neighbours",
    "RootRow",
    "StoreFault",
    "build_index",
    "build_search",
    "describe_fault",
    "find_pairs",
    "nearest",
    "nearest_of",
    "nearest_pairs",
    "open_index",
]
