"""How wide the verification band must be: recall and pairs verified for each band floor.

    python benchmarks/band.py runs/bench/calibrate-cc --model runs/v2/default.pt \
        [--floors 0.6,0.7,0.8,0.85,0.9] [--cache runs/band-cache.npz] [--json-out F]

Verification looks at each image's nearest neighbours whose CNN similarity lies in the
band [min_cnn_similarity, confident_cnn_similarity). This script verifies once with
the model's own floor, exactly as an evaluation does (both rounds), then replays the
decision for each higher floor: pairs under it keep their CNN similarity. It prints, per
floor, the pairs verified, recall and false positives at the model's cut-off, recall at
precision 0.99 and the families that lose copies. (Replayed, round two is a slight
over-estimate at high floors: its starting pairs are those of the lowest floor.)
Choose a floor on the calibrate set only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import write_results  # type: ignore[import-not-found]

from lookalike.candidates import candidate_scores
from lookalike.embed import embed_all
from lookalike.evaluate import load_truth, pair_layout, tally_pairs
from lookalike.evaluate.run import Refined
from lookalike.model import load_model
from lookalike.verify import load_for_matching


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--floors", default="0.6,0.7,0.75,0.8,0.85,0.9,0.95")
    parser.add_argument("--cache", type=Path, default=None, help="Verified pairs (npz).")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    assert model.verify is not None, "the model does not verify"
    layout = pair_layout(load_truth(args.bench))
    embedded = embed_all(layout.paths, model)
    row = {Path(p): i for i, p in enumerate(embedded.paths)}
    index = np.array([row.get(p, -1) for p in layout.paths], dtype=np.int64)
    valid = index >= 0
    vectors = np.zeros((len(layout.paths), embedded.vectors.shape[1]), dtype=np.float32)
    vectors[valid] = embedded.vectors[index[valid]]
    if args.cache is not None and args.cache.exists():
        saved = np.load(args.cache)
        pairs, fused = saved["pairs"], saved["fused"]
    else:
        scores = candidate_scores(
            model, vectors, lambda m: load_for_matching(layout.paths[m], model.verify)
        )
        pairs = np.array(list(scores), dtype=np.int64).reshape(-1, 2)
        fused = np.array(list(scores.values()), dtype=np.float64)
        if args.cache is not None:
            np.savez(args.cache, pairs=pairs, fused=fused)
    raw = model.cnn_similarity(vectors[pairs[:, 0]], vectors[pairs[:, 1]])
    cut = model.min_similarity
    positive = set(zip(layout.positive_a.tolist(), layout.positive_b.tolist(), strict=True))
    is_copy = np.array([(a, b) in positive or (b, a) in positive for a, b in pairs.tolist()])
    print(
        f"{args.bench}: {len(layout.paths)} images, {layout.positives} copies; "
        f"{len(pairs)} pairs verified from floor {model.verify.min_cnn_similarity} "
        f"({int(is_copy.sum())} copies); cut-off {cut:.5f}"
    )
    print(
        f"{'floor':>6} {'verified':>9} {'per image':>9} {'copies':>7} {'recall':>7} "
        f"{'FP':>4} {'R@p99':>7}  families losing copies"
    )
    rows = []
    base: dict[str, float] | None = None
    for floor in (float(f) for f in args.floors.split(",")):
        keep = raw >= floor
        refined = Refined.of(
            dict(zip(map(tuple, pairs[keep].tolist()), fused[keep].tolist(), strict=True))
        )
        scorer = refined.scorer(model, vectors, model.flat(vectors))
        metrics = tally_pairs(layout, scorer, cut, valid=valid).metrics("lookalike")
        if base is None:
            base = metrics.recall_by_family
        losing = {
            f: round(base[f] - r, 4)
            for f, r in metrics.recall_by_family.items()
            if base[f] - r > 1e-9
        }
        verified = int(keep.sum())
        rows.append(
            {
                "floor": floor,
                "verified_pairs": verified,
                "verified_copies": int(is_copy[keep].sum()),
                "recall": metrics.recall,
                "fp": metrics.fp,
                "recall_at_p99": metrics.recall_at_p99,
                "families_losing": losing,
            }
        )
        print(
            f"{floor:>6.2f} {verified:>9} {verified / len(layout.paths):>9.2f} "
            f"{int(is_copy[keep].sum()):>7} {metrics.recall:>7.4f} {metrics.fp:>4} "
            f"{metrics.recall_at_p99:>7.4f}  " + ", ".join(f"{f} -{v}" for f, v in losing.items())
        )
    if args.json_out:
        write_results(args.json_out, "benchmarks/band.py", argv, {"cut": cut, "floors": rows})


if __name__ == "__main__":
    main()
