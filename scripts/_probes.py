"""What the probe scripts share: keypoints of many files, read as verification reads them."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Executor

from lookalike.verify import Keypoints, VerifyConfig, extract_both, load_for_matching


def keypoint_sets(
    paths: Iterable[str], config: VerifyConfig, pool: Executor
) -> dict[str, tuple[Keypoints, Keypoints]]:
    """(direct, mirrored) keypoints of each file, by path, extracted on `pool`."""
    paths = sorted(set(paths))
    found = pool.map(lambda p: extract_both(load_for_matching(p, config), config), paths)
    return dict(zip(paths, found, strict=True))
