"""How often verification decodes an image, by the order pairs are verified in.

    python benchmarks/verify_order.py INDEX [--model PATH] [--json-out FILE]

Reads the embeddings a scan stored in INDEX (`lookalike scan`'s SQLite file), takes the
pairs the scan verifies first (`candidates.candidate_pairs`), and replays
`candidates.verify_pairs`' keypoint cache (CHUNK pairs at a time, at most
2 x KEYPOINT_CACHE entries, each image's keypoints dropped after its last chunk, then the
oldest) over two orders: breadth-first over the pair graph alone (lookalike up to
session 12, which sorted pairs by their earlier image, not their later) and
`local_order` by region of embedding space (now). Prints decodes and
ORB passes (direct or mirrored keypoints) per image for each. Decoding and ORB are about
1.7 and 2.5 ms of CPU per image and pass at 320-640 px; matching about 1.2 ms a pair.
A replay, not a timing: the million-image scan in BENCHMARKS.md gives the rates.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_results  # type: ignore[import-not-found]

from lookalike import candidates
from lookalike.candidates import CHUNK, candidate_pairs, last_chunks, local_order, trim_cache
from lookalike.index import build_search
from lookalike.model import load_model


def replay(pairs: np.ndarray, order: np.ndarray) -> tuple[int, int]:
    """(decodes, ORB passes) when `pairs` are verified in `order` with the scan's cache
    (`verify.match_pairs` fills it: both sides for a pair's first image; then
    `candidates.trim_cache`)."""
    last = last_chunks(pairs, order)
    cache: dict[tuple[int, bool], None] = {}
    decodes = passes = 0
    for chunk, start in enumerate(range(0, len(order), CHUNK)):
        rows = pairs[order[start : start + CHUNK]]
        firsts = set(rows[:, 0].tolist())
        for image in np.unique(rows).tolist():
            sides = (False, True) if image in firsts else (False,)
            missing = [(image, side) for side in sides if (image, side) not in cache]
            if missing:
                decodes += 1
                passes += len(missing)
                cache.update(dict.fromkeys(missing))
        trim_cache(cache, last, chunk)
    return decodes, passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index")
    parser.add_argument("--model", default=None)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    with sqlite3.connect(f"file:{args.index}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT vector FROM embeddings ORDER BY hash").fetchall()
    vectors = np.frombuffer(b"".join(v for (v,) in rows), dtype=np.float32).reshape(len(rows), -1)
    del rows
    model = load_model(args.model)
    pairs, _ = candidate_pairs(model, vectors, build_search(vectors))
    images = len(np.unique(pairs))
    print(f"{len(vectors):,} images, {len(pairs):,} pairs to verify first ({images:,} images)")
    results: dict[str, Any] = {"images": len(vectors), "pairs": len(pairs)}
    for name, use in (("breadth-first", None), ("by region", vectors)):
        started = time.perf_counter()
        order = local_order(pairs, use)
        took = time.perf_counter() - started
        decodes, passes = replay(pairs, order)
        print(
            f"{name:14s} {decodes / images:5.2f} decodes and {passes / images:5.2f} ORB passes"
            f" per image (ordering {took:.0f} s)"
        )
        results[name] = {"decodes": decodes, "passes": passes, "order_seconds": took}
    results["region_images"] = candidates.REGION_IMAGES
    if args.json_out:
        write_results(Path(args.json_out), "verify_order.py", None, results)


if __name__ == "__main__":
    main()
