"""Shots of one place: what verification sees in clothing pairs (calibration aid).

    python scripts/probe_shots.py ../shared/clothing --list data/splits/clothing_train.txt \
        --list data/splits/clothing_calibrate.txt --out runs/probe-shots.json

For each photo's 10 nearest neighbours (CNN similarity >= 0.6) records the CNN similarity,
the verdict of verification on the best match (direct or mirrored), its inliers and
coverage, and the inliers of a *second* motion: A's keypoints outside the first match
matched again (a subject moved between two shots of one place matches on its own). Pairs
of two known, different garment classes are never the same garment.
"""

from __future__ import annotations

import argparse
import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from lookalike.io import load_image
from lookalike.model import load_model
from lookalike.verify import AGREES, Keypoints, extract_keypoints, judge_match, match_keypoints

UNSURE = {"Not sure", "Skip", "Other"}


def _second_motion(a: Keypoints, b: Keypoints, rows: np.ndarray, config) -> int:  # type: ignore[no-untyped-def]
    keep = np.ones(len(a.points), dtype=bool)
    keep[rows] = False
    if a.descriptors is None or keep.sum() < 12:
        return 0
    rest = replace(a, points=a.points[keep], descriptors=a.descriptors[keep])
    found = match_keypoints(rest, b, config)
    return 0 if found is None else found.inliers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clothing", type=Path)
    parser.add_argument("--list", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with (args.clothing / "images.csv").open() as handle:
        rows = {r["image"]: r for r in csv.DictReader(handle)}
    names = [n for path in args.list for n in path.read_text().split()]
    paths = [args.clothing / "images" / n for n in names]
    model = load_model()
    config = model.verify
    assert config is not None
    vectors = model.embed(paths)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    cosine, nearest = index.search(vectors, 11)
    pairs = sorted(
        {
            (min(i, int(j)), max(i, int(j)))
            for i in range(len(names))
            for c, j in zip(cosine[i], nearest[i], strict=True)
            if int(j) != i and (1 + c) / 2 >= 0.6
        }
    )
    keys: dict[tuple[int, bool], Keypoints] = {}

    def keypoints(n: int, mirrored: bool) -> Keypoints:
        if (n, mirrored) not in keys:
            keys[(n, mirrored)] = extract_keypoints(load_image(paths[n]), config, mirrored)
        return keys[(n, mirrored)]

    def probe(pair: tuple[int, int]) -> dict[str, object]:
        i, j = pair
        best: tuple[int, str, float, int] = (0, "no match", 0.0, 0)
        for mirrored in (False, True):
            a, b = keypoints(i, mirrored), keypoints(j, False)
            found, verdict = judge_match(a, b, config)
            if found is not None and (verdict == AGREES, found.inliers) > (
                best[1] == AGREES,
                best[0],
            ):
                best = (
                    found.inliers,
                    verdict,
                    found.coverage,
                    _second_motion(a, b, found.rows, config),
                )
        meta_i, meta_j = rows[Path(names[i]).stem], rows[Path(names[j]).stem]
        labels = {meta_i["label"], meta_j["label"]}
        return {
            "a": names[i],
            "b": names[j],
            "cnn": float((1 + vectors[i] @ vectors[j]) / 2),
            "inliers": best[0],
            "verdict": best[1],
            "coverage": best[2],
            "second": best[3],
            "same_sender": meta_i["sender_id"] == meta_j["sender_id"],
            "cross_class": len(labels) == 2 and not labels & UNSURE,
        }

    for n in range(len(names)):  # keypoints once, then pairs on threads
        keypoints(n, False), keypoints(n, True)
    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(probe, pairs))
    args.out.write_text(json.dumps(found))
    for kind in ("cross", "same-class-or-unknown"):
        part = [f for f in found if f["cross_class"] == (kind == "cross")]
        for verdict in (AGREES, "content differs", "misses the centre", "no match"):
            these = [f for f in part if f["verdict"] == verdict]
            if not these:
                continue
            cnn = np.array([f["cnn"] for f in these])
            second = np.array([f["second"] for f in these])
            print(
                f"{kind:22} {verdict:18} n={len(these):5} cnn p10/50/90 "
                f"{np.percentile(cnn, 10):.3f}/{np.median(cnn):.3f}/{np.percentile(cnn, 90):.3f}"
                f"  second>=20: {(second >= 20).sum()}"
            )


if __name__ == "__main__":
    main()
