"""What would remove the false pairs verification lets through at 32 px?

    for s in calibrate-cc-32 calibrate-cc-102-32 ...; do
        lookalike scan runs/bench/$s/images -i /tmp/$s.lookalike \
            --review-min-similarity 0.98 --json-out /tmp/$s.json; done
    python scripts/probe_thumbnail_false_pairs.py runs/bench/calibrate-cc-32 \
        /tmp/calibrate-cc-32.json [BENCH SCAN ...]

v1.13 aligns a pair with a thumbnail to 10 px at the matching side. The false pairs it
lets through on 32-px sets are of two kinds: matches packed into a small patch of two
tiles of one photo (a plate's rim, a girder), and two composites of one background
photo with different pictures pasted on it. For each verified duplicate pair of the scans,
judged against the sets' truth (an original with its edit, two edits of one original, or
a false pair), this prints how many of each a floor on the match's spread (the share of
each picture inside the inliers' hull, `Match.coverage`) would drop, and what the
content check measures on each pair (share and centre disagreement, as
`verify.judge_match` computes them) with how many true pairs tighter limits would drop
(MODEL_CARD.md, "Thumbnails' keypoints").
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _probes import keypoint_sets  # type: ignore[import-not-found]

from lookalike.evaluate import load_truth
from lookalike.model import load_model
from lookalike.verify import Keypoints, VerifyConfig, match_keypoints
from lookalike.verify.content import content_disagreement, painted_cover

FLOORS = (0.03, 0.04, 0.05, 0.06, 0.07)
LIMITS = ((0.25, 0.5), (0.25, 0.45), (0.25, 0.4), (0.2, 0.45), (0.15, 0.4))

Row = tuple[str, float, float, float]
"""(kind: "original-edit" / "edit-edit" / "false", coverage, share, centre disagreement)."""


def kind_of(group: dict[str, list[str]], a: str, b: str) -> str:
    """How a set's truth calls a pair of file names; `group` maps each name of a group to
    the group (its original first)."""
    if a not in group or group.get(b) is not group[a]:
        return "false"
    return "original-edit" if group[a][0] in (a, b) else "edit-edit"


def disagreement(
    keys: tuple[Keypoints, Keypoints], other: tuple[Keypoints, Keypoints], config: VerifyConfig
) -> tuple[float, float]:
    """Share and centre disagreement of the pair's match with the most inliers (direct or
    mirrored first picture); (1, 1) when neither matches."""
    best: tuple[int, float, float] = (-1, 1.0, 1.0)
    for first in keys:
        found = match_keypoints(first, other[0], config)
        if found is None or found.inliers <= best[0]:
            continue
        cover = painted_cover(first, other[0], found.homography, config)
        share, centre = content_disagreement(first, other[0], found.homography, config, cover)
        best = (found.inliers, share, centre)
    return best[1], best[2]


def measure_set(bench: Path, scan: Path, config: VerifyConfig) -> list[Row]:
    """One `Row` per pair the scan calls a duplicate on the strength of a match."""
    pairs = [
        p for p in json.loads(scan.read_text())["pairs"] if p["duplicate"] and p.get("matches")
    ]
    with ThreadPoolExecutor(2) as pool:
        keys = keypoint_sets((str(p[k]) for p in pairs for k in ("a", "b")), config, pool)
        measured = list(
            pool.map(lambda p: disagreement(keys[str(p["a"])], keys[str(p["b"])], config), pairs)
        )
    group = {name: members for members in map(list, load_truth(bench).groups) for name in members}
    return [
        (kind_of(group, Path(p["a"]).name, Path(p["b"]).name), float(p["coverage"]), *m)
        for p, m in zip(pairs, measured, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", type=Path, nargs="+", help="BENCH SCAN_JSON pairs")
    args = parser.parse_args()
    config = load_model().verify
    assert config is not None
    rows = [
        row
        for bench, scan in zip(args.sets[::2], args.sets[1::2], strict=True)
        for row in measure_set(bench, scan, config)
    ]
    print(f"duplicate pairs verified: {dict(Counter(kind for kind, *_ in rows))}")
    for floor in FLOORS:
        dropped = Counter(kind for kind, coverage, *_ in rows if coverage < floor)
        print(f"spread floor {floor}: drops {dict(dropped)}")
    for share, centre in LIMITS:
        dropped = Counter(kind for kind, _, s, c in rows if s > share or c > centre)
        print(f"content limits {share} / {centre}: drops {dict(dropped)}")
    false = sorted((round(c, 3), round(s, 3), round(m, 3)) for k, c, s, m in rows if k == "false")
    print(f"false pairs (coverage, share, centre): {false}")


if __name__ == "__main__":
    main()
