"""Do the lone-copy sets' false pairs come from repeated texture? A self-similarity probe.

    python scripts/probe_texture.py [MODEL.pt] [--sets runs/bench/lone-101 ...] \
        [--cache runs/band-probe]

For every pair verification raised above the cut-off (CNN below its confident cut-off,
fused similarity at or above `min_similarity`), each picture's self-similarity: the share
of its ORB descriptors whose nearest other descriptor in the same picture is at most
20 / 30 / 40 bits away and at least 12 px from it (a repeated motif gives many). Prints
the share (the lower of the pair's two) for false pairs and for copies, and how many of
each a test "fewer than N inliers and share above S" would refuse. Composite pairs on one
background (`PairLayout.siblings`, negatives too) are a different kind of false pair and
are counted apart, not probed. Verified pairs come
from `probe_band.py`'s cache (the sets are verified there first when not cached).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from probe_band import verified  # type: ignore[import-not-found]

from lookalike.model import load_model
from lookalike.verify import Keypoints, verified_match
from lookalike.verify.matching import extract_both, load_for_matching, nearest_two

BITS = (20, 30, 40)
MIN_SHIFT_PX = 12.0


def self_share(keys: Keypoints, max_bits: int) -> float:
    """Share of keypoints with a near-equal descriptor elsewhere in the same picture."""
    if keys.descriptors is None or len(keys.descriptors) < 3:
        return 0.0
    distances, rows = nearest_two(keys.descriptors, keys.descriptors)
    itself = rows[:, 0] == np.arange(len(rows))
    other = np.where(itself, rows[:, 1], rows[:, 0])
    distance = np.where(itself, distances[:, 1], distances[:, 0])
    shifted = np.linalg.norm(keys.points - keys.points[other], axis=1) > MIN_SHIFT_PX
    return float(((distance <= max_bits) & shifted).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, nargs="?", default=None)
    default_sets = [Path(f"runs/bench/lone-{s}") for s in range(101, 107)]
    parser.add_argument("--sets", type=Path, nargs="+", default=default_sets)
    parser.add_argument("--cache", type=Path, default=Path("runs/band-probe"))
    args = parser.parse_args()
    model = load_model(args.model)
    config = model.verify
    assert config is not None, "the model must verify pairs"
    found: dict[str, list[tuple[int, list[float]]]] = {"false pairs": [], "copies": []}
    composites = 0
    for bench in args.sets:
        v = verified(model, bench, args.cache)
        layout = v.layout
        copies = set(zip(layout.positive_a.tolist(), layout.positive_b.tolist(), strict=True))
        siblings = set(map(tuple, np.sort(layout.siblings, 1).tolist()))
        for k, (a, b) in enumerate(v.pairs.tolist()):
            if v.fused[k] < model.min_similarity or v.raw[k] >= config.confident_cnn_similarity:
                continue
            if (a, b) in siblings:
                composites += 1
                continue
            kind = "copies" if (a, b) in copies or (b, a) in copies else "false pairs"
            keys_a, mirrored_a = extract_both(load_for_matching(layout.paths[a], config), config)
            keys_b, _ = extract_both(load_for_matching(layout.paths[b], config), config)
            inliers = verified_match(keys_a, mirrored_a, keys_b, config).inliers
            shares = [min(self_share(keys_a, t), self_share(keys_b, t)) for t in BITS]
            found[kind].append((inliers, shares))
    print(f"composite pairs on one background raised (not probed): {composites}")
    for kind, rows in found.items():
        shares = np.array([s for _, s in rows]).reshape(-1, len(BITS))
        print(f"{kind} raised by verification: {len(rows)}")
        for j, bits in enumerate(BITS):
            column = shares[:, j]
            print(
                f"  share at <= {bits} bits: median {np.median(column):.3f}, "
                f"90th percentile {np.percentile(column, 90):.3f}, max {column.max():.3f}"
            )
    print("refused by 'fewer than N inliers and share at <= 20 bits above S':")
    for limit in (45, 60, 80):
        for share in (0.03, 0.05, 0.08):
            counts = {
                kind: sum(n < limit and s[0] > share for n, s in rows)
                for kind, rows in found.items()
            }
            print(
                f"  N {limit}, S {share}: false pairs {counts['false pairs']} of "
                f"{len(found['false pairs'])}, copies {counts['copies']} of {len(found['copies'])}"
            )


if __name__ == "__main__":
    main()
