"""What an inlier floor for pairs of two small pictures would drop: copies or false pairs.

    python scripts/probe_small_pairs.py MODEL.pt runs/bench/lone-101 [more sets] \
        [--cache runs/band-probe] [--largest 128] [--floors 40,50,60,80]

Every pair a set's verification raised to the cut-off while the CNN was not confident of it
(cached as `scripts/probe_band.py` caches it) is matched again to read its inliers. Pairs
of two pictures whose longer sides are both above `thumbnail_side` and at most `--largest`
px (scaled up for keypoints, matched with the full-size settings) are counted against
each floor: copies and false pairs it would drop (pairs raised by hash evidence apart).
Use calibrate material only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from probe_band import verified  # type: ignore[import-not-found]

from lookalike.model import load_model
from lookalike.verify import verified_match
from lookalike.verify.matching import extract_both, extract_keypoints, load_for_matching


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("sets", type=Path, nargs="+")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--largest", type=int, default=128)
    parser.add_argument("--floors", default="40,50,60,80")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    config = model.verify
    assert config is not None, "the model does not verify"
    found: list[tuple[bool, int]] = []  # (a copy, inliers) of pairs of two small pictures
    raised = copies = by_hash = 0
    for bench in args.sets:
        v = verified(model, bench, args.cache)
        truth = set(zip(v.layout.positive_a.tolist(), v.layout.positive_b.tolist(), strict=True))
        high = (v.fused >= model.min_similarity) & (v.raw < config.confident_cnn_similarity)
        group = v.layout.group
        for a, b in v.pairs[high].tolist():
            is_copy = (a, b) in truth or (b, a) in truth
            if not is_copy and group[a] == group[b]:
                continue  # two edits of one original: neither copy nor false pair
            raised += 1
            copies += is_copy
            sides = [max(Image.open(v.layout.paths[n]).size) for n in (a, b)]
            if not all(config.thumbnail_side < side <= args.largest for side in sides):
                continue
            ka, ka_mirrored = extract_both(load_for_matching(v.layout.paths[a], config), config)
            kb = extract_keypoints(load_for_matching(v.layout.paths[b], config), config)
            inliers = verified_match(ka, ka_mirrored, kb, config).inliers
            if inliers == 0:  # raised by hash evidence, which no inlier floor touches
                by_hash += 1
                continue
            found.append((is_copy, inliers))
    print(
        f"{raised} pairs raised by verification ({copies} copies, {raised - copies} false); "
        f"{len(found)} of two pictures of {config.thumbnail_side + 1}-{args.largest} px "
        f"({sum(c for c, _ in found)} copies) matched, {by_hash} more by hash evidence"
    )
    counts = np.array([n for _, n in found])
    of_copy = np.array([c for c, _ in found], dtype=bool)
    for floor in (int(f) for f in args.floors.split(",")):
        dropped = counts < floor
        print(
            f"floor {floor:>3}: drops {int((dropped & of_copy).sum())} copies and "
            f"{int((dropped & ~of_copy).sum())} false pairs"
        )


if __name__ == "__main__":
    main()
