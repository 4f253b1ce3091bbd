"""Scanning beyond one machine: the embedding stage on Ray Data, and sharded pair search.

Ray is an optional extra (`pip install 'lookalike[ray]'`); nothing outside this package
imports it, and this package imports it only when a job runs.

>>> from lookalike.distributed import RayEmbedder, find_pairs_sharded, shard_files
>>> with RayEmbedder("photos.shards") as embedder:
...     scan_folder("photos", index="photos.lookalike", embedder=embedder)
>>> pairs = find_pairs_sharded(shard_files("photos.shards"), min_similarity=0.9)
"""

from lookalike.distributed.cluster import DistributedError, ray_cluster
from lookalike.distributed.pipeline import RayEmbedder, embed_to_shards, read_batches
from lookalike.distributed.search import find_pairs_sharded, shard_offsets
from lookalike.distributed.shards import (
    Manifest,
    ShardError,
    read_manifest,
    read_paths,
    read_vectors,
    shard_files,
    shard_schema,
    shard_table,
)

__all__ = [
    "DistributedError",
    "Manifest",
    "RayEmbedder",
    "ShardError",
    "embed_to_shards",
    "find_pairs_sharded",
    "ray_cluster",
    "read_batches",
    "read_manifest",
    "read_paths",
    "read_vectors",
    "shard_files",
    "shard_offsets",
    "shard_schema",
    "shard_table",
]
