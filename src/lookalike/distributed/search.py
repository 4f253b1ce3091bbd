"""Sharded pair search: every pair of vectors at or above a cosine, one shard in memory at a time.

Task j owns shard j: it loads that shard's vectors (and, above `exact_limit` rows, an
inverted file over them, as `lookalike.index.build_search`) and streams other shards'
vectors past them as queries, `query_rows` at a time; the exact search scores them in
4 MB tiles (BLAS matrix products). Exact tasks query shards 0..j (each pair of shards is compared
once); approximate ones query every shard (a pair is found from either side, as in
`lookalike.index.find_pairs`). Each candidate is re-scored in float64 from the two
vectors, so the cut-off is applied exactly. A task holds one shard, its index and one
query block, whatever the total; the driver holds only the pairs it merges.

Rows are numbered globally: shard k's vectors (rows without an error, in file order)
are rows `shard_offsets(shards)[k]` onwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import faiss
import numpy as np
import pyarrow.parquet as pq

from lookalike.distributed.cluster import DistributedError, require_ray
from lookalike.distributed.shards import ShardError, iter_vectors, vector_rows
from lookalike.index import EXACT_LIMIT, Neighbours, build_search
from lookalike.index.search import DEFAULT_NPROBE
from lookalike.score import cosine_from_cnn_similarity

RETRIES = 3
"""Times a search task is run again after its worker died."""

SLACK = 1e-5
"""FAISS candidates this far below the cut-off are kept until re-scored exactly."""

_Found = tuple[np.ndarray, np.ndarray, np.ndarray]


def shard_offsets(shards: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """First global row of each shard, then the total: (len(shards) + 1,) int64."""
    counts = [vector_rows(s) for s in shards]
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


TILE_VALUES = 1 << 20
"""Scores computed at a time by the exact search (4 MB of float32)."""


def _load_shard(shard: str, rows: int) -> np.ndarray:
    """A shard's vectors in one array filled block by block (never two copies in memory)."""
    dim = pq.read_schema(shard).field("vector").type.list_size
    stored = np.empty((rows, dim), dtype=np.float32)
    filled = 0
    for block in iter_vectors(shard):
        stored[filled : filled + len(block)] = block
        filled += len(block)
    if filled != rows:
        raise ShardError(f"{shard} changed during the search ({filled} vectors, not {rows})")
    return stored


def _candidates(
    index: faiss.Index | None, queries: np.ndarray, stored: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """(query row, stored row) of every score >= radius: exact tiles, or the inverted file."""
    if index is not None:
        lims, _, ids = index.range_search(queries, radius)
        local = np.repeat(np.arange(len(queries)), np.diff(lims).astype(np.int64))
        return local, ids.astype(np.int64)
    tile = max(1, TILE_VALUES // max(1, len(queries)))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for first in range(0, len(stored), tile):
        r, c = np.nonzero(queries @ stored[first : first + tile].T >= radius)
        rows.append(r)
        cols.append(c + first)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


def search_shard(
    shards: Sequence[str],
    offsets: Sequence[int],
    j: int,
    min_cosine: float,
    exact_limit: int = EXACT_LIMIT,
    nprobe: int = DEFAULT_NPROBE,
    query_rows: int = 4096,
) -> _Found:
    """Pairs (global rows a < b, cosine) with b in shard j and cosine >= min_cosine.

    Runs as one Ray task (or in a plain process). Memory: shard j, one block of
    `query_rows` queries and 4 MB of scores; twice shard j for an inverted file.
    """
    rows = int(offsets[j + 1] - offsets[j])
    stored = _load_shard(shards[j], rows)
    exact = rows <= exact_limit
    index = None if exact else build_search(stored, exact_limit=exact_limit, nprobe=nprobe)
    found_a: list[np.ndarray] = []
    found_b: list[np.ndarray] = []
    found_c: list[np.ndarray] = []
    for i in range(j + 1) if exact else range(len(shards)):
        start = int(offsets[i])
        for block in iter_vectors(shards[i], query_rows):
            queries = np.ascontiguousarray(block, dtype=np.float32)
            local, ids = _candidates(index, queries, stored, float(min_cosine) - SLACK)
            cosine = np.einsum("ij,ij->i", queries[local], stored[ids], dtype=np.float64)
            a, b = local + start, ids + int(offsets[j])
            keep = (a != b) & (cosine >= min_cosine)
            if exact:
                keep &= a < b
            found_a.append(np.minimum(a, b)[keep])
            found_b.append(np.maximum(a, b)[keep])
            found_c.append(cosine[keep])
            start += len(queries)
    if not found_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_c)


def find_pairs_sharded(
    shards: Sequence[str | os.PathLike[str]],
    min_similarity: float,
    *,
    engine: str = "ray",
    exact_limit: int = EXACT_LIMIT,
    nprobe: int = DEFAULT_NPROBE,
    query_rows: int = 4096,
    on_progress: Callable[[int, int], None] | None = None,
) -> Neighbours:
    """Every pair of global rows whose similarity is at least `min_similarity`, over Parquet
    shards (the pairs carry their cosine; `lookalike.score` converts).

    `engine="ray"` runs one task per shard on the Ray cluster this process is connected
    to (the shards must be readable by every worker); `"local"` runs them one after the
    other here. Exact when every shard has at most `exact_limit` vectors (then equal to a
    brute-force search); shards above it use an inverted file, like a local scan.
    `on_progress(done, total)` follows the shards.
    """
    if engine not in ("ray", "local"):
        raise ValueError(f"engine must be 'ray' or 'local', not {engine!r}")
    names = [os.fspath(s) for s in shards]
    offsets = shard_offsets(names)
    total = len(names)
    exact = bool(np.all(np.diff(offsets) <= exact_limit))
    args = (cosine_from_cnn_similarity(min_similarity), exact_limit, nprobe, query_rows)
    parts: list[_Found] = []
    if engine == "local":
        for j in range(total):
            parts.append(search_shard(names, offsets.tolist(), j, *args))
            if on_progress:
                on_progress(j + 1, total)
    else:
        ray = require_ray()
        if not ray.is_initialized():
            raise DistributedError("not connected to Ray: call inside `with ray_cluster(...)`")
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(search_shard)
        shared = ray.put(names), ray.put(offsets.tolist())
        pending = [task.remote(*shared, j, *args) for j in range(total)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            parts.append(ray.get(done[0]))
            if on_progress:
                on_progress(total - len(pending), total)
    return _merge(parts, int(offsets[-1]), exact)


def _merge(parts: list[_Found], n: int, exact: bool) -> Neighbours:
    """One sorted list of distinct pairs from every task's pairs."""
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Neighbours(empty, empty, np.zeros(0, dtype=np.float32), exact)
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    c = np.concatenate([p[2] for p in parts])
    _, first = np.unique(a * max(n, 1) + b, return_index=True)
    return Neighbours(a[first], b[first], c[first].astype(np.float32), exact)
