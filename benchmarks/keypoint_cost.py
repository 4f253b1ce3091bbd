"""What one picture costs verification before any pair is matched, step by step, on one core.

    python benchmarks/keypoint_cost.py ../shared/photos [--count 150] [--model PATH]

Each of `--count` pictures (a seeded sample of the folder's JPEG and PNG files) is
decoded as verification reads it (and, beside it, straight to grey: tried, not used),
turned into its grey copy at the keypoint side, and given ORB keypoints (with the content
copy, hash and detail that go with them) directly and for its mirror image — the mirror
image's both by a second detection (before session 22) and as `extract_both` makes them
since: the direct keypoints mirrored and only their descriptors computed, the rest
mirrored from the direct ones. Prints the process time in milliseconds per picture of
each step, and how many of the mirror image's keypoints the two ways share exactly
(position and descriptor).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_results  # type: ignore[import-not-found]
from PIL import Image

from lookalike.model import load_model
from lookalike.verify.matching import (
    VerifyConfig,
    _grey,
    _keypoints_of_grey,
    _mirror,
    extract_both,
    load_for_matching,
)


def _timed(totals: dict[str, float], step: str, call: Callable[..., Any], *args: Any) -> Any:
    start = time.process_time()
    result = call(*args)
    totals[step] = totals.get(step, 0.0) + time.process_time() - start
    return result


def _grey_decode(path: Path, config: VerifyConfig) -> Image.Image:
    """A JPEG's luma straight from the decoder (PIL draft mode "L"), at the scale
    `load_for_matching` decodes it: faster, but tried in session 22 and not used — within a
    grey level of converting the colour decode, yet enough to move keypoints on tiny
    pictures (BENCHMARKS.md, "Cheaper keypoints")."""
    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft("L", (config.side, config.side))
        return image.convert("L")


def _shared(one: Any, other: Any) -> tuple[int, int]:
    """Keypoints of `one` found at the same place with the same descriptor in `other`."""
    if one.descriptors is None or other.descriptors is None:
        return 0, len(one.points)
    same = 0
    for point, descriptor in zip(one.points, one.descriptors, strict=True):
        nearest = int(np.argmin(np.abs(other.points - point).sum(axis=1)))
        same += bool(
            np.abs(other.points[nearest] - point).max() < 1e-3
            and (other.descriptors[nearest] == descriptor).all()
        )
    return same, len(one.points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    config = load_model(args.model).verify
    files = sorted(
        p for p in args.folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    random.Random(args.seed).shuffle(files)
    files = files[: args.count]
    totals: dict[str, float] = {}
    same = total = 0
    for path in files:
        picture = _timed(totals, "decode (load_for_matching)", load_for_matching, path, config)
        _timed(totals, "decode grey instead (tried, not used)", _grey_decode, path, config)
        grey, thumbnail = _timed(totals, "grey copy", _grey, picture, config)
        _timed(totals, "ORB direct", _keypoints_of_grey, grey, config, thumbnail)
        detected = _timed(
            totals, "ORB mirrored, detected", _keypoints_of_grey, _mirror(grey), config, thumbnail
        )
        _, mirrored = _timed(
            totals, "ORB direct + mirrored (extract_both)", extract_both, picture, config
        )
        shared, count = _shared(detected, mirrored)
        same, total = same + shared, total + count
    # extract_both decodes nothing but makes its own grey copy: count it out.
    both = "ORB direct + mirrored (extract_both)"
    totals[both] -= totals["grey copy"]
    rows = {step: 1000 * seconds / len(files) for step, seconds in totals.items()}
    rows["ORB mirrored, from direct keypoints"] = rows[both] - rows["ORB direct"]
    for step, ms in rows.items():
        print(f"{step:40s} {ms:6.2f} ms")
    share = same / max(total, 1)
    print(f"mirror image's keypoints the two ways share: {same} of {total} ({share:.3f})")
    if args.json_out:
        figures = {"pictures": len(files), "ms_per_picture": rows, "mirrored_shared": [same, total]}
        write_results(args.json_out, "keypoint_cost.py", None, figures)


if __name__ == "__main__":
    main()
