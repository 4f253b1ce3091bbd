"""Content agreement of matched pairs: copies vs photos of one place (calibration aid).

    python scripts/probe_content.py BENCH [--clothing DIR --clothing-list LIST] --out probe.json

For every positive pair of a benchmark set, every pair of composites on one background
and (with --clothing) each clothing photo's 10 nearest neighbours across garment classes,
records the CNN similarity, the inliers of the best plausible homography (direct or
mirrored) and the content disagreement under several settings. Prints a summary; the JSON
holds every pair, to choose `max_disagreement` / `max_centre_disagreement` from.
"""

from __future__ import annotations

import argparse
import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from lookalike.evaluate import load_truth, pair_layout
from lookalike.model import load_model
from lookalike.verify import (
    centre_match_rate,
    content_disagreement,
    extract_keypoints,
    load_for_matching,
    match_keypoints,
)

SETTINGS = {  # name: (content_tolerance, content_min_correlation)
    "t1.0r0.3": (1.0, 0.3),
    "t1.0r0.5": (1.0, 0.5),
    "t1.2r0.5": (1.2, 0.5),
    "t1.0r0.6": (1.0, 0.6),
    "t1.5r0.5": (1.5, 0.5),
}
UNSURE = {"Not sure", "Skip", "Other"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--clothing", type=Path)
    parser.add_argument("--clothing-list", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = load_model(args.model)
    config = model.verify
    assert config is not None
    layout = pair_layout(load_truth(args.bench))
    paths = list(layout.paths)
    positives = zip(layout.positive_a, layout.positive_b, layout.positive_family, strict=True)
    pairs: list[tuple[int, int, str]] = [(int(a), int(b), f) for a, b, f in positives]
    pairs += [(int(a), int(b), "composite") for a, b in layout.siblings]
    if args.clothing:
        images = args.clothing / "images"
        with (args.clothing / "images.csv").open() as handle:
            label = {r["image"] + ".jpg": r["label"] for r in csv.DictReader(handle)}
        names = args.clothing_list.read_text().split()
        start = len(paths)
        paths += [images / n for n in names]
        vectors = model.embed(paths[start:])
        sims = vectors @ vectors.T
        np.fill_diagonal(sims, -1)
        seen = set()
        for i in range(len(names)):
            for j in np.argsort(-sims[i])[:10]:
                key = (min(i, int(j)), max(i, int(j)))
                if key in seen or label[names[i]] == label[names[int(j)]]:
                    continue
                if {label[names[i]], label[names[int(j)]]} & UNSURE:
                    continue
                seen.add(key)
                pairs.append((start + key[0], start + key[1], "clothing-cross-class"))
    wanted = sorted({i for a, b, _ in pairs for i in (a, b)})
    vecs = model.embed([paths[i] for i in wanted])
    row = {i: k for k, i in enumerate(wanted)}

    def keypoints(i: int):  # type: ignore[no-untyped-def]
        image = load_for_matching(paths[i], config)
        return extract_keypoints(image, config), extract_keypoints(image, config, mirrored=True)

    with ThreadPoolExecutor(2) as pool:
        cache = dict(zip(wanted, pool.map(keypoints, wanted), strict=True))

    def probe(pair: tuple[int, int, str]) -> dict[str, object]:
        a, b, kind = pair
        s = float((1 + vecs[row[a]] @ vecs[row[b]]) / 2)
        best = None
        for side in (0, 1):
            found = match_keypoints(cache[a][side], cache[b][0], config)
            if found is not None and (best is None or found.inliers > best[0].inliers):
                best = (found, side)
        out: dict[str, object] = {"kind": kind, "a": str(paths[a]), "b": str(paths[b]), "cnn": s}
        if best is None:
            out["inliers"] = 0
            return out
        found, side = best
        out["inliers"] = found.inliers
        out["rate_centre"], out["rate_outer"] = centre_match_rate(
            cache[a][side], cache[b][0], found
        )
        for name, (t, r) in SETTINGS.items():
            setting = replace(config, content_tolerance=t, content_min_correlation=r)
            share, centre = content_disagreement(
                cache[a][side], cache[b][0], found.homography, setting
            )
            out[f"d{name}"], out[f"c{name}"] = share, centre
        return out

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(probe, pairs))
    args.out.write_text(json.dumps(results))
    kinds = sorted({r["kind"] for r in results})
    for t in SETTINGS:
        print(f"{t}: median / p90 of (overall, centre) disagreement, >= 12 inliers")
        for kind in kinds:
            rows = [r for r in results if r["kind"] == kind and r["inliers"] >= 12]
            if not rows:
                continue
            d = np.array([r[f"d{t}"] for r in rows])
            c = np.array([r[f"c{t}"] for r in rows])
            print(
                f"  {kind:22s} n={len(rows):4d}  {np.median(d):.3f}/{np.percentile(d, 90):.3f}  "
                f"{np.median(c):.3f}/{np.percentile(c, 90):.3f}"
            )


if __name__ == "__main__":
    main()
