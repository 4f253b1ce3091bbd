"""Would a repetition test drop the false pairs that verification lets through?

    lookalike scan runs/bench/calibrate-cc/images -i /tmp/cc.lookalike \
        --review-min-similarity 0.98 --json-out /tmp/cc-scan.json
    python scripts/probe_repeats.py runs/bench/calibrate-cc /tmp/cc-scan.json [BENCH SCAN ...]

The highest false pairs of the calibrate sets are tiles of one photo of a repeated pattern
(a carpet's medallions, a colonnade), matched one period apart. For each verified pair of
the scans, judged against the sets' truth (same group: a copy; else a false pair), this
counts the *unique* inliers: those whose match distance is below `ratio` times the
distance from either matched keypoint to its nearest twin elsewhere in its own picture
(more than 12 px away at the matching size). A match one period apart rests on twins.
Prints how many copies above the shipped cut-off fall under it, and which false pairs
stay above, when the unique inliers replace (or are averaged with) the inliers as
evidence (MODEL_CARD.md, "Not done yet", item 4).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
from _probes import keypoint_sets  # type: ignore[import-not-found]

from lookalike.evaluate import load_truth
from lookalike.model import load_model
from lookalike.verify import (
    AGREES,
    Keypoints,
    VerifyConfig,
    fuse_similarity,
    judge_match,
    nearest_two,
)

RATIOS = (0.6, 0.7, 0.8, 0.9)


def judged_pairs(bench: Path, scan: Path) -> list[tuple[bool, dict[str, object]]]:
    """The scan's verified pairs, each with whether the set's truth calls it a copy."""
    group = {name: i for i, g in enumerate(load_truth(bench).groups) for name in g}
    pairs = json.loads(scan.read_text())["pairs"]
    judged = []
    for pair in pairs:
        if not pair.get("matches"):
            continue
        a, b = Path(pair["a"]).name, Path(pair["b"]).name
        judged.append((a in group and group.get(b) == group[a], pair))
    return judged


def twin_distances(keys: Keypoints, rows: np.ndarray, radius: float = 12.0) -> np.ndarray:
    """Hamming distance from each of `rows`' descriptors to its nearest twin in the same
    picture, at least `radius` px away (256 when there is none among the 10 nearest)."""
    assert keys.descriptors is not None
    index = faiss.IndexBinaryFlat(8 * keys.descriptors.shape[1])
    index.add(np.ascontiguousarray(keys.descriptors))
    found, near = index.search(np.ascontiguousarray(keys.descriptors[rows]), 10)
    out = np.full(len(rows), 256.0)
    for r, (dists, others) in enumerate(zip(found, near, strict=True)):
        far = [
            d
            for d, j in zip(dists, others, strict=True)
            if j >= 0 and np.hypot(*(keys.points[j] - keys.points[rows[r]])) > radius
        ]
        if far:
            out[r] = far[0]
    return out


def unique_inliers(
    keys: dict[str, tuple[Keypoints, Keypoints]], a: str, b: str, config: VerifyConfig
) -> tuple[int, dict[float, int]] | None:
    """Inliers of the pair's best agreeing match (direct or mirrored) and, per ratio, how
    many of them are unique; None when no match agrees."""
    best = None
    for first in keys[a]:
        found, verdict = judge_match(first, keys[b][0], config)
        if (
            found is not None
            and verdict == AGREES
            and (best is None or found.inliers > best[0].inliers)
        ):
            best = (found, first)
    if best is None:
        return None
    found, first = best
    second = keys[b][0]
    assert first.descriptors is not None and second.descriptors is not None
    distances, nearest = nearest_two(first.descriptors[found.rows], second.descriptors)
    twin = np.minimum(twin_distances(first, found.rows), twin_distances(second, nearest[:, 0]))
    return found.inliers, {r: int((distances[:, 0] < r * twin).sum()) for r in RATIOS}


Row = tuple[bool, float, tuple[int, dict[float, int]]]


def measure_set(bench: Path, scan: Path, config: VerifyConfig) -> list[Row]:
    """(copy?, verified similarity, `unique_inliers`) for each verified pair of one set."""
    judged = judged_pairs(bench, scan)
    with ThreadPoolExecutor(2) as pool:
        keys = keypoint_sets((str(p[k]) for _, p in judged for k in ("a", "b")), config, pool)
        counts = list(
            pool.map(lambda j: unique_inliers(keys, str(j[1]["a"]), str(j[1]["b"]), config), judged)
        )
    return [
        (copy, float(str(p["similarity"])), c)
        for (copy, p), c in zip(judged, counts, strict=True)
        if c is not None
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", type=Path, nargs="+", help="BENCH SCAN_JSON pairs")
    args = parser.parse_args()
    model = load_model()
    config = model.verify
    assert config is not None
    cut = model.min_similarity
    rows = [
        row
        for bench, scan in zip(args.sets[::2], args.sets[1::2], strict=True)
        for row in measure_set(bench, scan, config)
    ]
    offset, scale = config.inlier_offset, config.inlier_scale
    for ratio in RATIOS:
        for mode in ("unique", "mean"):
            lost, kept = 0, []
            for copy, similarity, (inliers, unique) in rows:
                evidence = unique[ratio] if mode == "unique" else (unique[ratio] + inliers) / 2
                # the CNN similarity the verified one was fused from, then fused anew
                cnn = 1 - (1 - similarity) * np.exp(max(0, inliers - offset) / scale)
                fused = float(fuse_similarity(np.array([cnn]), np.array([evidence]), config)[0])
                if copy and similarity >= cut and fused < cut:
                    lost += 1
                if not copy and fused >= cut:
                    kept.append((inliers, unique[ratio]))
            print(f"ratio {ratio} {mode}: copies lost {lost}; false pairs above: {kept}")
    false = [(i, u) for copy, _, (i, u) in rows if not copy]
    print(f"{sum(c for c, _, _ in rows)} copies; false pairs (inliers, unique by ratio): {false}")


if __name__ == "__main__":
    main()
