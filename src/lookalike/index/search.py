"""Nearest-neighbour search over embeddings: all close pairs, and the nearest to a query.

Embeddings are unit vectors, so cosine = inner product. Up to `EXACT_LIMIT` vectors the
search is exact (FAISS IndexFlatIP, a BLAS matrix product block by block); above it an
inverted-file index (IndexIVFFlat) visits only the `nprobe` cells nearest each query, so
the cost grows like n * sqrt(n) instead of n squared. Near-duplicates sit very close
together, which is where an inverted file loses almost nothing (the recall is measured
against the exact search in tests and in benchmarks/ann_scale.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np

EXACT_LIMIT = 30_000
"""Collections up to this many vectors are searched exactly."""

DEFAULT_NPROBE = 16
"""Cells visited per query by the approximate search."""

_SLACK = 1e-5
"""Candidates a hair below the cut-off are kept; the caller re-scores them exactly."""


@dataclass(frozen=True)
class Neighbours:
    """Index pairs i < j of vectors whose cosine is at least the cut-off."""

    i: np.ndarray
    j: np.ndarray
    cosine: np.ndarray
    exact_search: bool

    def __len__(self) -> int:
        return len(self.i)


def ivf_cells(n: int) -> int:
    """Number of inverted-file cells for n vectors: about 4 * sqrt(n), and at least 40
    vectors per cell to train them on."""
    return int(max(1, min(16384, 4 * math.sqrt(n), n // 40)))


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-d array of embeddings, got shape {matrix.shape}")
    return matrix


def build_search(
    vectors: np.ndarray,
    *,
    exact_limit: int = EXACT_LIMIT,
    nlist: int | None = None,
    nprobe: int = DEFAULT_NPROBE,
    seed: int = 0,
) -> faiss.Index:
    """A FAISS inner-product index over `vectors`: exact if small, IVF above `exact_limit`."""
    x = _as_matrix(vectors)
    n, dim = x.shape
    if n <= exact_limit:
        flat = faiss.IndexFlatIP(dim)
        flat.add(x)
        return flat
    cells = nlist or ivf_cells(n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.niter = 12
    sample = np.random.default_rng(seed).choice(n, size=min(n, 48 * cells), replace=False)
    index.train(x[np.sort(sample)])
    index.add(x)
    index.nprobe = min(nprobe, cells)
    return index


def find_pairs(
    vectors: np.ndarray,
    min_cosine: float,
    *,
    exact_limit: int = EXACT_LIMIT,
    nlist: int | None = None,
    nprobe: int = DEFAULT_NPROBE,
    batch: int = 8192,
    search: faiss.Index | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Neighbours:
    """Every pair of rows whose cosine is at least `min_cosine` (approximately, when large).

    Each row is a query against all rows (range search), and a pair found from either
    side counts once. `search` reuses an index from `build_search` over the same
    vectors. `on_progress(done, total)` follows the queries.
    """
    x = _as_matrix(vectors)
    n = len(x)
    if n < 2:
        return _no_pairs()
    index = search or build_search(x, exact_limit=exact_limit, nlist=nlist, nprobe=nprobe)
    radius = float(min_cosine) - _SLACK
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    found_c: list[np.ndarray] = []
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        lims, scores, ids = index.range_search(x[start:stop], radius)
        rows = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(lims).astype(np.int64))
        ids = ids.astype(np.int64)
        keep = rows != ids
        a, b = np.minimum(rows, ids)[keep], np.maximum(rows, ids)[keep]
        found_i.append(a)
        found_j.append(b)
        found_c.append(scores[keep].astype(np.float32))
        if on_progress:
            on_progress(stop, n)
    return _unique_pairs(found_i, found_j, found_c, n, isinstance(index, faiss.IndexFlat))


def _no_pairs() -> Neighbours:
    empty = np.zeros(0, dtype=np.int64)
    return Neighbours(empty, empty, np.zeros(0, dtype=np.float32), True)


def _unique_pairs(
    found_i: list[np.ndarray],
    found_j: list[np.ndarray],
    found_c: list[np.ndarray],
    n: int,
    exact: bool,
) -> Neighbours:
    i, j, c = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_c)
    _, first = np.unique(i * n + j, return_index=True)
    return Neighbours(i[first], j[first], c[first], exact)


def nearest_pairs(
    vectors: np.ndarray,
    k: int,
    *,
    search: faiss.Index | None = None,
    batch: int = 8192,
) -> Neighbours:
    """Each row with its k nearest other rows, as pairs i < j (each pair once)."""
    x = _as_matrix(vectors)
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return _no_pairs()
    index = search or build_search(x)
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    found_c: list[np.ndarray] = []
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        scores, ids = index.search(x[start:stop], k + 1)
        rows = np.repeat(np.arange(start, stop, dtype=np.int64), k + 1)
        ids, scores = ids.astype(np.int64).ravel(), scores.ravel()
        keep = (ids >= 0) & (ids != rows)
        found_i.append(np.minimum(rows, ids)[keep])
        found_j.append(np.maximum(rows, ids)[keep])
        found_c.append(scores[keep].astype(np.float32))
    return _unique_pairs(found_i, found_j, found_c, n, isinstance(index, faiss.IndexFlat))


def nearest_of(
    vectors: np.ndarray, rows: np.ndarray, k: int, *, search: faiss.Index | None = None
) -> np.ndarray:
    """(len(rows), k) ids of each row's k nearest other rows, nearest first; -1 pads."""
    x = _as_matrix(vectors)
    rows = np.asarray(rows, dtype=np.int64)
    k = min(k, len(x) - 1)
    if k < 1 or len(rows) == 0:
        return np.full((len(rows), max(k, 0)), -1, dtype=np.int64)
    index = search or build_search(x)
    _, ids = index.search(x[rows], k + 1)
    ids = ids.astype(np.int64)
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for r, found in enumerate(ids):
        others = found[(found >= 0) & (found != rows[r])][:k]
        out[r, : len(others)] = others
    return out


def nearest(vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k rows with the highest cosine to `query` (exact): (row ids, cosines), best first."""
    x = _as_matrix(vectors)
    q = _as_matrix(np.atleast_2d(query))[0]
    if len(x) == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    scores = x @ q
    k = min(k, len(x))
    top = np.argpartition(-scores, k - 1)[:k]
    order = top[np.lexsort((top, -scores[top]))]
    return order.astype(np.int64), scores[order]
