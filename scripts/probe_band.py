"""Which round-one pairs verification needs: replay narrower bands on verified sets.

    python scripts/probe_band.py MODEL.pt runs/bench/lone-101 [more sets] \
        [--cache runs/band-probe]

Each set is embedded and verified once exactly as an evaluation does (both rounds, the
model's own band); every verified pair is kept with its CNN similarity, fused
similarity, and where it stands in its images' neighbour lists. Then each band is
replayed: round-one pairs it leaves out keep their CNN similarity, round-two pairs (met
through a sure pair) stay verified. Per band: pairs verified, images whose keypoints
verification needs, copies at the cut-off, false pairs, recall at precision 0.99. Use
calibrate material only (lone-copy sets: `make-benchmark --edits-per-original 1`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.candidates import candidate_scores, file_loader
from lookalike.embed import embed_all
from lookalike.evaluate import load_truth, pair_layout, tally_pairs
from lookalike.evaluate.run import Refined
from lookalike.evaluate.truth import PairLayout
from lookalike.index import build_search, nearest_of
from lookalike.model import Model, load_model

NEIGHBOURS = 10


@dataclass
class Verified:
    """One set's verified pairs and what a band may look at."""

    layout: PairLayout
    vectors: np.ndarray
    flat: np.ndarray
    pairs: np.ndarray  # (P, 2) i < j
    fused: np.ndarray
    raw: np.ndarray
    rank: np.ndarray  # best place of one in the other's neighbour list, NEIGHBOURS if none
    margin: np.ndarray  # raw minus the higher of both images' NEIGHBOURS-th neighbour
    first: np.ndarray  # round one (in a neighbour list) or round two


def verified(model: Model, bench: Path, cache: Path | None) -> Verified:
    """Embed and verify `bench` (or read both from `cache`)."""
    layout = pair_layout(load_truth(bench))
    saved = cache / f"{bench.name}.npz" if cache else None
    if saved is not None and saved.exists():
        data = np.load(saved)
        vectors, flat, pairs, fused = data["vectors"], data["flat"], data["pairs"], data["fused"]
    else:
        embedded = embed_all(layout.paths, model)
        assert len(embedded.paths) == len(layout.paths), "every image must be readable"
        vectors = embedded.vectors
        flat = model.flat(vectors, embedded.details)
        scores = candidate_scores(
            model, vectors, file_loader([str(p) for p in layout.paths], model.verify), flat=flat
        )
        pairs = np.array(list(scores), dtype=np.int64).reshape(-1, 2)
        fused = np.array(list(scores.values()), dtype=np.float64)
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            np.savez(saved, vectors=vectors, flat=flat, pairs=pairs, fused=fused)
    raw = model.cnn_similarity(vectors[pairs[:, 0]], vectors[pairs[:, 1]], gate=False)
    rows = np.arange(len(vectors))
    near = nearest_of(vectors, rows, NEIGHBOURS, search=build_search(vectors))
    place: dict[tuple[int, int], int] = {}
    for i, found in enumerate(near.tolist()):
        for r, j in enumerate(found):
            key = (min(i, j), max(i, j))
            place[key] = min(place.get(key, NEIGHBOURS), r)
    rank = np.array([place.get((a, b), NEIGHBOURS) for a, b in pairs.tolist()])
    last = model.cnn_similarity(vectors, vectors[near[:, -1]], gate=False)
    margin = raw - np.maximum(last[pairs[:, 0]], last[pairs[:, 1]])
    return Verified(layout, vectors, flat, pairs, fused, raw, rank, margin, rank < NEIGHBOURS)


Band = Callable[[Verified], np.ndarray]


def floor(value: float) -> Band:
    """Pairs at or above this CNN similarity."""
    return lambda v: np.asarray(v.raw >= value)


def nearest(k: int) -> Band:
    """Pairs where one is among the other's k nearest."""
    return lambda v: np.asarray(v.rank < k)


def margin(value: float) -> Band:
    """Pairs this far above both images' last neighbour."""
    return lambda v: np.asarray(v.margin >= value)


def either(*bands: Band) -> Band:
    """Pairs any of `bands` takes."""
    return lambda v: np.logical_or.reduce([band(v) for band in bands])


BANDS: dict[str, Band] = {
    "model's own (0.6, 10 nearest)": floor(0.0),
    **{f"floor {f}": floor(f) for f in (0.7, 0.75, 0.8, 0.85)},
    **{f"{k} nearest": nearest(k) for k in (1, 2, 3, 5)},
    **{f"margin {m}": margin(m) for m in (0.0, 0.01, 0.02, 0.03, 0.05)},
    **{
        f"{k} nearest or floor {f}": either(nearest(k), floor(f))
        for k in (1, 2, 3)
        for f in (0.8, 0.85, 0.9)
    },
}


def replay(model: Model, v: Verified, chosen: np.ndarray) -> dict[str, float]:
    """The set's figures when round-one pairs outside `chosen` are not verified."""
    keep = chosen | ~v.first | v.flat[v.pairs[:, 0]] | v.flat[v.pairs[:, 1]]
    keep |= v.raw >= model.min_similarity  # never left to the CNN above the cut-off
    refined = Refined.of(
        dict(zip(map(tuple, v.pairs[keep].tolist()), v.fused[keep].tolist(), strict=True))
    )
    scorer = refined.scorer(model, v.vectors, v.flat)
    metrics = tally_pairs(v.layout, scorer, model.min_similarity).metrics("lookalike")
    return {
        "pairs": int(keep.sum()),
        "images": len(np.unique(v.pairs[keep])),
        "copies": metrics.tp,
        "fp": metrics.fp,
        "recall_at_p99": metrics.recall_at_p99,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("sets", type=Path, nargs="+")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    sets = [verified(model, bench, args.cache) for bench in args.sets]
    images = sum(len(v.vectors) for v in sets)
    print(f"{len(sets)} sets, {images} images, {sum(v.layout.positives for v in sets)} copies")
    print(f"{'band':<30} {'pairs/img':>9} {'touched':>8} {'copies':>7} {'FP':>4} {'R@p99':>7}")
    for name, band in BANDS.items():
        rows = [replay(model, v, band(v)) for v in sets]
        print(
            f"{name:<30} {sum(r['pairs'] for r in rows) / images:>9.2f} "
            f"{sum(r['images'] for r in rows) / images:>8.1%} "
            f"{sum(r['copies'] for r in rows):>7} {sum(r['fp'] for r in rows):>4} "
            f"{np.mean([r['recall_at_p99'] for r in rows]):>7.4f}"
        )


if __name__ == "__main__":
    main()
