"""Scanning beyond one machine: embedding on Ray Data, verification on Ray actors, and
sharded pair search.

Ray is an optional extra (`pip install 'lookalike[ray]'`); nothing outside this package
imports it, and this package imports it only when a job runs.

>>> from lookalike.distributed import RayEmbedder, find_pairs_sharded, shard_files
>>> with RayEmbedder("photos.shards") as embedder:
...     scan_folder("photos", index="photos.lookalike", embedder=embedder,
...                 verifier=embedder.verifier)
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
from lookalike.distributed.verify import RayMatcher, ray_matcher

__all__ = [
    "DistributedError",
    "Manifest",
    "RayEmbedder",
    "RayMatcher",
    "ShardError",
    "embed_to_shards",
    "find_pairs_sharded",
    "ray_cluster",
    "ray_matcher",
    "read_batches",
    "read_manifest",
    "read_paths",
    "read_vectors",
    "shard_files",
    "shard_offsets",
    "shard_schema",
    "shard_table",
]
