"""Where the CNN-confident cut-off can sit: the highest-scoring negative pairs of the CNN alone.

    python scripts/probe_confident_cut.py MODEL.pt runs/bench/calibrate-cc \
        runs/bench/calibrate-cc-10{1,2,3} [--folder runs/clothing_calibrate] [--top 10]

Pairs at or above `verify.confident_cnn_similarity` skip verification, so a false pair there
is decided by the CNN alone. For each benchmark set this embeds every image once, scores all
pairs with the CNN alone (the model's detail gate included, with each picture's measured
detail as a scan has it) and prints the highest negative
scores with their files, and the share of copies at or above each candidate cut-off. Every
pair of a `--folder` counts as negative, so it is meant for folders of distinct photos (e.g.
the clothing calibrate split: garments on one carpet). Use calibrate material only.
"""

from __future__ import annotations

import argparse
import heapq
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lookalike.embed import embed_all
from lookalike.evaluate import load_truth, pair_layout
from lookalike.model import Model, load_model

CUTS = (0.98, 0.985, 0.99, 0.9925, 0.995, 0.9965, 0.998, 0.999)


def _top_negatives(
    group: np.ndarray, score: Callable[[np.ndarray, np.ndarray], np.ndarray], top: int
) -> list[tuple[float, int, int]]:
    """The `top` highest scores over pairs (i < j) of different groups; `score(rows, cols)`
    scores rows against columns."""
    best: list[tuple[float, int, int]] = []
    n = len(group)
    step = max(1, 4_000_000 // max(1, n))
    for start in range(0, n - 1, step):
        rows = np.arange(start, min(n, start + step))
        cols = np.arange(start + 1, n)
        s = np.asarray(score(rows, cols))
        keep = (cols[None, :] > rows[:, None]) & (group[rows][:, None] != group[cols][None, :])
        s = np.where(keep, s, -np.inf)
        flat = np.argpartition(s.ravel(), -top)[-top:] if s.size > top else np.arange(s.size)
        for k in flat:
            r, c = divmod(int(k), s.shape[1])
            v = float(s[r, c])
            if np.isfinite(v):
                heapq.heappush(best, (v, int(rows[r]), int(cols[c])))
                if len(best) > top:
                    heapq.heappop(best)
    return sorted(best, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("benches", type=Path, nargs="*")
    parser.add_argument("--folder", type=Path, action="append", default=[])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    model = load_model(args.model).without_verification()
    print(f"model {model.model_id}: CNN-confident cut-off {model.min_similarity:.5f}")
    for bench in args.benches:
        layout = pair_layout(load_truth(bench))
        paths, group = list(layout.paths), layout.group
        positives = (layout.positive_a, layout.positive_b)
        _report(bench.name, model, paths, group, positives, args.top)
    for folder in args.folder:
        paths = sorted(p for p in folder.iterdir() if p.is_file())
        group = np.arange(len(paths))
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        _report(folder.name, model, paths, group, empty, args.top)


def _report(
    name: str,
    model: Model,
    paths: list[Path],
    group: np.ndarray,
    positives: tuple[np.ndarray, np.ndarray],
    top: int,
) -> None:
    embedded = embed_all(paths, model)
    row = {Path(p): i for i, p in enumerate(embedded.paths)}
    index = np.array([row[Path(p)] for p in paths])
    vectors = embedded.vectors[index]
    flat = model.flat(vectors, embedded.details[index])
    a, b = positives
    pos = model.cnn_similarity(vectors[a], vectors[b], flat=flat[a] | flat[b])

    def score(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return model.cnn_similarity_matrix(vectors[rows], vectors[cols], flat[rows], flat[cols])

    negatives = _top_negatives(group, score, top)
    print(f"\n{name}: {len(paths)} images, {pos.size} copies")
    if pos.size:
        shares = ", ".join(f"≥{c}: {np.mean(pos >= c):.3f}" for c in CUTS)
        print(f"  copies at or above: {shares}")
    for v, i, j in negatives:
        print(f"  negative {v:.5f}  {Path(paths[i]).name}  {Path(paths[j]).name}")


if __name__ == "__main__":
    main()
