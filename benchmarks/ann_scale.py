"""Scale benchmark: all near-duplicate pairs among N embeddings with the scan's search.

    python benchmarks/ann_scale.py --n 1000000

Synthetic 128-d unit vectors shaped like a photo collection, not plain noise: every
vector belongs to one of N/100 "topics" (cosine to its topic centre about 0.5, so two
photos of one topic sit near cosine 0.25), and a fifth of them are planted near-copies
of another vector, 1 to 8 per original, at cosines to it spread from 0.85 to 0.999, so
pairs fall on both sides of the cut-off. The pair search is `lookalike.index.find_pairs`,
exactly as `lookalike scan` calls it, at the cosine of the scan's review cut-off
(min_similarity - 0.03; min_similarity is the bundled model's calibrated value unless
given). Prints the time and peak memory of the search, then its recall against exact
(brute-force) search for a random sample of query vectors, at both cut-offs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _common import write_results  # type: ignore[import-not-found]

from lookalike.evaluate import ResourceMonitor
from lookalike.index import EXACT_LIMIT, find_pairs
from lookalike.model import load_model
from lookalike.scan.run import REVIEW_MARGIN


def planted_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """n unit vectors: topic structure plus planted near-copy clusters (see module doc)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(1, n // 100), dim), dtype=np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    copies = n // 5
    originals = n - copies
    x = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, originals, step):
        stop = min(originals, start + step)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32) / np.sqrt(dim)
        block = topics[rng.integers(0, len(topics), stop - start)] + noise * np.float32(1.7)
        x[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    # Clusters: an original gets 1..8 copies, each at its own distance from it.
    sizes = np.minimum(rng.geometric(0.35, size=copies), 8)
    parents = np.repeat(rng.choice(originals, size=copies, replace=False), sizes)[:copies]
    for start in range(0, copies, step):
        stop = min(copies, start + step)
        cosine = rng.uniform(0.85, 0.999, size=(stop - start, 1)).astype(np.float32)
        sigma = np.sqrt((1.0 / cosine**2 - 1.0) / dim)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32) * sigma
        block = x[parents[start:stop]] + noise
        x[originals + start : originals + stop] = block / np.linalg.norm(
            block, axis=1, keepdims=True
        )
    return x


def exact_neighbours(x: np.ndarray, queries: np.ndarray, min_cosine: float) -> list[set[int]]:
    """For each query row, every other row at or above min_cosine (brute force, by blocks)."""
    out: list[set[int]] = []
    for start in range(0, len(queries), 1024):
        block = queries[start : start + 1024]
        scores = x[block] @ x.T
        for row, q in enumerate(block):
            hits = np.flatnonzero(scores[row] >= min_cosine)
            out.append(set(hits[hits != q].tolist()))
    return out


def recall(
    x: np.ndarray, pairs_i: np.ndarray, pairs_j: np.ndarray, queries: np.ndarray, cut: float
) -> tuple[float, int]:
    """Share of the exact neighbours of the sampled queries the search found; true pairs."""
    truth = exact_neighbours(x, queries, cut)
    position = {int(q): k for k, q in enumerate(queries)}
    found: list[set[int]] = [set() for _ in queries]
    for i, j in zip(pairs_i.tolist(), pairs_j.tolist(), strict=True):
        if i in position:
            found[position[i]].add(j)
        if j in position:
            found[position[j]].add(i)
    total = sum(len(t) for t in truth)
    hit = sum(len(t & f) for t, f in zip(truth, found, strict=True))
    return (hit / total if total else 1.0), total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="Vectors (default 1,000,000).")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=10_000, help="Sampled recall queries.")
    parser.add_argument("--min-similarity", type=float, help="Default: the bundled model's.")
    parser.add_argument("--model", type=Path, help="Checkpoint whose calibration to use.")
    parser.add_argument("--exact-limit", type=int, default=EXACT_LIMIT)
    parser.add_argument("--nprobe", type=int, help="IVF cells visited per query.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, help="Also write the figures here (JSON).")
    parser.add_argument("--tiny", action="store_true", help="A seconds-long smoke run.")
    args = parser.parse_args(argv)
    if args.tiny:
        args.n, args.queries, args.exact_limit = 20_000, 2_000, 5_000
    if args.min_similarity is None:
        args.min_similarity = load_model(args.model).min_similarity
    cut = args.min_similarity
    review = max(0.0, cut - REVIEW_MARGIN)
    started = time.perf_counter()
    x = planted_vectors(args.n, args.dim, args.seed)
    print(
        f"{args.n:,} vectors of {args.dim} dims generated in {time.perf_counter() - started:.1f} s"
    )
    options = {"exact_limit": args.exact_limit}
    if args.nprobe:
        options["nprobe"] = args.nprobe
    with ResourceMonitor(interval=0.5) as monitor:
        found = find_pairs(x, 2 * review - 1, **options)
    cost = monitor.cost
    search = "exact (IndexFlatIP)" if found.exact_search else "IVF (IndexIVFFlat)"
    print(
        f"search: {search}, {len(found):,} pairs at similarity >= {review:.4f} "
        f"(review cut-off) in {cost.seconds:.1f} s, CPU {cost.cpu_util:.0%}, "
        f"peak memory {cost.peak_rss_mb:,.0f} MB (the vectors alone: {x.nbytes / 2**20:,.0f} MB)"
    )
    queries = np.sort(np.random.default_rng(args.seed + 1).choice(args.n, args.queries, False))
    figures = {}
    for name, similarity in (("min_similarity", cut), ("review_min_similarity", review)):
        keep = found.cosine >= 2 * similarity - 1
        value, total = recall(x, found.i[keep], found.j[keep], queries, 2 * similarity - 1)
        figures[name] = {"similarity": similarity, "recall": value, "true_pairs": total}
        print(
            f"recall at {name} {similarity:.4f}: {value:.4f} "
            f"({total:,} true pairs around {args.queries:,} sampled queries)"
        )
    if args.json_out:
        write_results(
            args.json_out,
            "ann_scale.py",
            argv,
            {
                "vectors": args.n,
                "dim": args.dim,
                "search": search,
                "pairs": len(found),
                "seconds": round(cost.seconds, 2),
                "cpu_util": round(cost.cpu_util, 3),
                "peak_rss_mb": round(cost.peak_rss_mb, 1),
                "queries": args.queries,
                "recall": figures,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
