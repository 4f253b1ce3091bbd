"""Why matched pairs are refused: the verdicts of the shipped rule, with their measures.

    python scripts/probe_refusals.py runs/bench/calibrate-cc runs/bench/calibrate-cc-101 \
        runs/bench/overlay-cal-{7,8,9} --clothing ../shared/clothing --out runs/refusals.json

For every positive pair and every pair of composites on one background of each benchmark
set (build them from the calibrate photos only), and each clothing photo of the calibrate
and train splits with its 10 nearest neighbours (pairs across garment classes and within
one), records the verdict of `verify.judge_match` (direct and mirrored), the inliers, the
content disagreement over the overlap and its centre, the centre inlier rate and the
residual motion. Prints, per kind of pair, how many were refused by which check, and the
refused pairs whose content agrees (disagreement at most 0.1): how `clear_agreement` was
chosen (MODEL_CARD.md, "Clear agreement").
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _probes import keypoint_sets  # type: ignore[import-not-found]

from lookalike.evaluate import load_truth, pair_layout
from lookalike.model import load_model
from lookalike.verify import (
    AGREES,
    Keypoints,
    VerifyConfig,
    centre_match_rate,
    content_disagreement,
    judge_match,
    painted_cover,
    residual_motion,
)

UNSURE = {"Not sure", "Skip", "Other"}
NEGATIVE = {"composite", "clothing-across", "clothing-within"}
Pair = tuple[str, str, str]


def bench_pairs(bench: Path) -> list[Pair]:
    """The set's positive pairs (by family) and its composite siblings."""
    layout = pair_layout(load_truth(bench))
    paths = [str(p) for p in layout.paths]
    positives = zip(layout.positive_a, layout.positive_b, layout.positive_family, strict=True)
    pairs = [(paths[int(a)], paths[int(b)], str(f)) for a, b, f in positives]
    return pairs + [(paths[int(a)], paths[int(b)], "composite") for a, b in layout.siblings]


def clothing_pairs(root: Path, model_path: Path | None) -> list[Pair]:
    """Each calibrate or train clothing photo with its 10 nearest neighbours."""
    label = {r["image"] + ".jpg": r["label"] for r in csv.DictReader((root / "images.csv").open())}
    splits = Path(__file__).resolve().parents[1] / "data" / "splits"
    names = [
        n
        for s in ("clothing_calibrate", "clothing_train")
        for n in (splits / f"{s}.txt").read_text().split()
    ]
    paths = [str(root / "images" / n) for n in names]
    vectors = load_model(model_path).embed(paths)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    seen: set[tuple[int, int]] = set()
    pairs: list[Pair] = []
    for i in range(len(names)):
        for j in (int(j) for j in np.argsort(-sims[i])[:10]):
            key = (min(i, j), max(i, j))
            classes = {label[names[i]], label[names[j]]}
            if key in seen or classes & UNSURE:
                continue
            seen.add(key)
            kind = "clothing-within" if len(classes) == 1 else "clothing-across"
            pairs.append((paths[key[0]], paths[key[1]], kind))
    return pairs


def probe(
    pair: Pair, keys: dict[str, tuple[Keypoints, Keypoints]], config: VerifyConfig
) -> dict[str, object]:
    """The pair's verdict and measures, direct and mirrored."""
    a, b, kind = pair
    sides = []
    for side in (0, 1):
        first, second = keys[a][side], keys[b][0]
        found, verdict = judge_match(first, second, config)
        row: dict[str, object] = {
            "side": side,
            "verdict": verdict,
            "inliers": found.inliers if found else 0,
        }
        if found is not None:
            cover = painted_cover(first, second, found.homography, config)
            row["share"], row["centre"] = content_disagreement(
                first, second, found.homography, config, cover
            )
            row["centre_rate"] = centre_match_rate(first, second, found, cover)[0]
            row["motion"] = residual_motion(first, second, found.homography)
        sides.append(row)
    return {"a": a, "b": b, "kind": kind, "sides": sides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", type=Path, nargs="+")
    parser.add_argument("--clothing", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = load_model(args.model).verify
    assert config is not None
    pairs = [p for bench in args.benches for p in bench_pairs(bench)]
    if args.clothing:
        pairs += clothing_pairs(args.clothing, args.model)
    with ThreadPoolExecutor(2) as pool:
        keys = keypoint_sets((path for a, b, _ in pairs for path in (a, b)), config, pool)
        results = list(pool.map(lambda pair: probe(pair, keys, config), pairs))
    args.out.write_text(json.dumps(results))
    refused: Counter[tuple[str, str]] = Counter()
    for r in results:
        agreeing = [s for s in r["sides"] if s["verdict"] == AGREES]  # type: ignore[attr-defined]
        best = max(agreeing or r["sides"], key=lambda s: s["inliers"])  # type: ignore[arg-type]
        if best["verdict"] != AGREES and best["inliers"] > config.inlier_offset:
            refused[(str(r["kind"]), str(best["verdict"]))] += 1
            if max(best["share"], best["centre"]) <= 0.1:
                print(f"agrees in content, refused: {r['kind']} {best}")
        elif best["verdict"] == AGREES and r["kind"] in NEGATIVE:
            refused[(str(r["kind"]), "ACCEPTED")] += 1
    for (kind, verdict), count in sorted(refused.items()):
        print(f"{kind:18s} {verdict:20s} {count}")


if __name__ == "__main__":
    main()
