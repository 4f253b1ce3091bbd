"""Where verification's time goes, and on which pairs: each step on one core.

    python benchmarks/verify_steps.py runs/bench/calibrate-cc [--pairs 1500] [--model PATH]

Takes the pairs a scan would verify first (each image's nearest neighbours with an
ambiguous CNN similarity: `candidates.candidate_pairs`), a seeded sample of them, and
runs verification's steps one at a time, as `verify.verified_match` does: decode at the
keypoint side, ORB keypoints (direct and mirrored), descriptor matching with the ratio
test, the homography (USAC), the content, centre and motion checks, then the mirrored
match when the direct one is not strong. Prints milliseconds per pair for each step,
and how the pairs end: true copies, other pairs of one original, and strangers (pairs no
copy relation joins; two edits of one original are neither), and at which step
strangers are refused. Every image's keypoints
are counted once, as the scan's cache does.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from _common import write_results  # type: ignore[import-not-found]
from PIL import Image

from lookalike.candidates import candidate_pairs
from lookalike.evaluate import load_truth
from lookalike.model import load_model
from lookalike.verify import (
    AGREES,
    Keypoints,
    VerifyConfig,
    centre_match_rate,
    content_disagreement,
    extract_keypoints,
    load_for_matching,
    painted_cover,
    residual_motion,
    single_threaded_search,
)
from lookalike.verify.matching import match_keypoints, nearest_two

TIMES: dict[str, float] = defaultdict(float)


def _timed(step: str, work, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = work(*args)
    TIMES[step] += time.perf_counter() - start
    return out


def _judge(a: Keypoints, b: Keypoints, config: VerifyConfig, side: str) -> tuple[int, str]:
    """verify.judge_match, step by step under timers: (inliers, verdict or refusal)."""
    if a.descriptors is None or b.descriptors is None or len(a.descriptors) < 8:
        return 0, "no keypoints"
    distances, _ = _timed(f"match {side}: descriptors", nearest_two, a.descriptors, b.descriptors)
    good = int((distances[:, 0] < config.ratio * distances[:, 1]).sum())
    if good < 12:
        return 0, "under 12 ratio-test matches"
    found = _timed(f"match {side}: homography", match_keypoints, a, b, config)
    if found is None:
        return 0, "no plausible homography"
    cover = _timed(f"check {side}: painted cover", painted_cover, a, b, found.homography, config)
    share, centre = _timed(
        f"check {side}: content", content_disagreement, a, b, found.homography, config, cover
    )
    if share > config.max_disagreement or centre > config.max_centre_disagreement:
        return found.inliers, "content differs"
    middle, _ = _timed(f"check {side}: centre", centre_match_rate, a, b, found, cover)
    if middle < config.min_centre_inlier_share:
        return found.inliers, "misses the centre"
    if config.max_motion > 0:
        motion = _timed(f"check {side}: motion", residual_motion, a, b, found.homography)
        if motion > config.max_motion:
            return found.inliers, "separate shot"
    return found.inliers, AGREES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--pairs", type=int, default=1500)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    single_threaded_search()  # one core, as each of the scan's verification threads
    model = load_model(args.model)
    config = model.verify
    assert config is not None, "the model does not verify"
    truth = load_truth(args.bench)
    names = list(truth.images)
    paths = [truth.root / "images" / n for n in names]
    group = {n: k for k, g in enumerate(truth.groups) for n in g}
    vectors = model.embed(paths)
    pairs, _ = candidate_pairs(model, vectors)
    rng = np.random.default_rng(args.seed)
    sample = pairs[rng.permutation(len(pairs))[: args.pairs]]
    images: dict[tuple[int, bool], Keypoints] = {}
    decoded: dict[int, Image.Image] = {}  # one decode per image, as the scan's cache

    def keypoints(n: int, mirrored: bool) -> Keypoints:
        if (n, mirrored) not in images:
            if n not in decoded:
                decoded[n] = _timed(
                    "decode at the keypoint side",
                    lambda p: load_for_matching(p, config),
                    paths[n],
                )
            picture = decoded[n]
            step = "keypoints mirrored" if mirrored else "keypoints"
            images[(n, mirrored)] = _timed(step, extract_keypoints, picture, config, mirrored)
        return images[(n, mirrored)]

    ends: Counter[tuple[str, str]] = Counter()
    for a, b in sample.tolist():
        ga, gb = group.get(names[a]), group.get(names[b])
        originals = {truth.groups[g][0] for g in (ga, gb) if g is not None}
        copy = ga is not None and ga == gb and (names[a] in originals or names[b] in originals)
        same = ga is not None and ga == gb
        kind = "copy" if copy else ("two edits" if same else "stranger")
        inliers, verdict = _judge(keypoints(a, False), keypoints(b, False), config, "direct")
        if verdict != AGREES or inliers < 4 * config.inlier_offset:
            mirrored, other = _judge(keypoints(a, True), keypoints(b, False), config, "mirrored")
            if other == AGREES and (verdict != AGREES or mirrored > inliers):
                verdict = AGREES
        ends[(kind, verdict)] += 1
    total = sum(TIMES.values())
    print(f"{len(sample)} of {len(pairs)} first-round pairs, {len(images)} keypoint sets")
    for step, seconds in sorted(TIMES.items(), key=lambda t: -t[1]):
        print(f"{step:36} {1000 * seconds / len(sample):7.2f} ms/pair  {seconds / total:5.1%}")
    print(f"{'all':36} {1000 * total / len(sample):7.2f} ms/pair")
    for (kind, verdict), count in sorted(ends.items()):
        print(f"{kind:12} {verdict:30} {count:6}")
    if args.json_out:
        figures = {
            "bench": str(args.bench),
            "pairs": len(sample),
            "first_round_pairs": len(pairs),
            "ms_per_pair": {s: 1000 * t / len(sample) for s, t in TIMES.items()},
            "ends": {f"{k} / {v}": c for (k, v), c in ends.items()},
        }
        write_results(args.json_out, "verify_steps.py", None, figures)


if __name__ == "__main__":
    main()
