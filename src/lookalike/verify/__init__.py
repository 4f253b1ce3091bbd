"""Geometric verification: confirm a candidate pair by matching local features (ORB + RANSAC).

The Siamese CNN proposes each image's nearest candidates; for pairs whose similarity is
ambiguous, matching ORB keypoints under a RANSAC homography confirms a copy even after
crops, rotations, perspective changes, borders and overlays (the ISC 2021 winners' "local
verification"). A mirrored match is tried too, so flips are confirmed as well.

Shared geometry is not yet a copy: two photos taken one after another in one place (different
garments on the same carpet) match on the background. So a match must also agree in
*content*: B warped onto A by the homography, both blurred and normalised over their overlap,
may differ on only a small share of the overlap, and of its centre, where a photo's subject
usually is (`content_disagreement`); and the inliers must reach that centre, not only the
background around it (`centre_match_rate`). An overlay's painted shapes are neither: where
one picture is flat paint and the other is not, both checks look past it (`painted_cover`).

Agreeing content is not yet an edit either: the same garment photographed twice, moved
between the shots, agrees too. An edited copy moves as one picture, so once aligned by the
homography nothing is left to move; two shots of one scene leave parts that still move
(`residual_motion`). Such a match is a *near-duplicate shot*, reported apart, not a copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from PIL import Image

from lookalike.records import Evidence
from lookalike.verify.content import (
    FLAT_VARIANCE,
    centre_match_rate,
    content_disagreement,
    painted_cover,
    residual_motion,
)
from lookalike.verify.matching import (
    Keypoints,
    Match,
    VerifyConfig,
    _cv2,
    count_inliers,
    extract_both,
    extract_keypoints,
    hash_distance,
    load_for_matching,
    match_keypoints,
    nearest_two,
    perceptual_hash,
    single_threaded_search,
)

__all__ = [
    "AGREES",
    "FLAT_VARIANCE",
    "NOTHING",
    "SHOT",
    "Keypoints",
    "Match",
    "Matches",
    "Verified",
    "VerifyConfig",
    "centre_match_rate",
    "content_disagreement",
    "count_inliers",
    "extract_keypoints",
    "fuse_evidence",
    "fuse_similarity",
    "hash_counts",
    "hash_distance",
    "judge_match",
    "load_for_matching",
    "match_keypoints",
    "match_pairs",
    "nearest_two",
    "painted_cover",
    "pair_evidence",
    "perceptual_hash",
    "residual_motion",
    "single_threaded_search",
    "verified_inliers",
    "verified_match",
]


class Verified(NamedTuple):
    """What verification makes of one pair."""

    inliers: int
    """Matches of the match that counts (0: none counts)."""
    coverage: float
    """How much of the pictures that match (or the shot's) covers."""
    shot: bool = False
    """No match counts, but one shows two shots of one scene (see `residual_motion`)."""
    hash_bits: int = -1
    """No match counts and it is no shot, but the pictures' perceptual hashes are this
    many bits apart, at most `VerifyConfig.hash_max_bits` (-1: no such hash evidence)."""


NOTHING = Verified(0, 0.0)


class Matches(NamedTuple):
    """`Verified` for many pairs, as arrays (P,)."""

    counts: np.ndarray
    coverage: np.ndarray
    shots: np.ndarray
    hash_bits: np.ndarray

    @classmethod
    def of(cls, found: list[Verified]) -> Matches:
        """Arrays from one `Verified` per pair."""
        return cls(
            np.array([f.inliers for f in found], dtype=np.float64),
            np.array([f.coverage for f in found], dtype=np.float64),
            np.array([f.shot for f in found], dtype=bool),
            np.array([f.hash_bits for f in found], dtype=np.int64),
        )


def verified_inliers(
    a: Keypoints, a_mirrored: Keypoints | None, b: Keypoints, config: VerifyConfig
) -> int:
    """Inliers of the best match of A (or its mirror image) with B whose content agrees.

    A match whose aligned content differs beyond `max_disagreement` (or
    `max_centre_disagreement` at its centre), or whose inliers avoid the centre of the
    overlap (`min_centre_inlier_share`), shows one place, not one picture: it counts 0;
    so does one that leaves parts moving (`max_motion`): two shots of one scene.
    The mirrored match is tried unless the direct one is already strong.
    """
    return verified_match(a, a_mirrored, b, config).inliers


def verified_match(
    a: Keypoints, a_mirrored: Keypoints | None, b: Keypoints, config: VerifyConfig
) -> Verified:
    """The match `verified_inliers` counts, or NOTHING; a shot when no match counts but
    one, direct or mirrored, shows two shots of one scene; else hash evidence when the
    perceptual hashes (direct or mirrored) are close (`VerifyConfig.hash_max_bits`)."""
    best = _agreeing_match(a, b, config)
    if a_mirrored is None or best.inliers >= 4 * config.inlier_offset:
        return best if best.inliers or best.shot else _hash_evidence(a, a_mirrored, b, config)
    other = _agreeing_match(a_mirrored, b, config)
    if other.inliers or best.inliers:
        return max(best, other)
    if best.shot or other.shot:
        return best if best.shot else other
    return _hash_evidence(a, a_mirrored, b, config)


def _hash_evidence(
    a: Keypoints, a_mirrored: Keypoints | None, b: Keypoints, config: VerifyConfig
) -> Verified:
    if config.hash_max_bits < 0 or min(a.detail, b.detail) < config.hash_min_detail:
        return NOTHING
    bits = min(hash_distance(k, b) for k in (a, a_mirrored) if k is not None)
    return Verified(0, 0.0, hash_bits=bits) if bits <= config.hash_max_bits else NOTHING


AGREES = "agrees"
"""The verdict on a match that counts: one picture, not just one place."""

SHOT = "separate shot"
"""The verdict on a match whose content agrees but still moves in parts once aligned: two
shots of one scene (a near-duplicate shot), not an edited copy."""


def judge_match(a: Keypoints, b: Keypoints, config: VerifyConfig) -> tuple[Match | None, str]:
    """The match of A with B and the verdict on it: AGREES, SHOT, or why it does not count
    ("no match", "content differs", "misses the centre")."""
    found = match_keypoints(a, b, config)
    if found is None:
        return None, "no match"
    cover = painted_cover(a, b, found.homography, config)
    if config.max_disagreement < 1.0 or config.max_centre_disagreement < 1.0:
        share, centre = content_disagreement(a, b, found.homography, config, cover)
        if share > config.max_disagreement or centre > config.max_centre_disagreement:
            return found, "content differs"
        if config.clear_agreement > 0.0 and max(share, centre) <= config.clear_agreement:
            return found, AGREES
    if config.min_centre_inlier_share > 0.0:
        middle, _ = centre_match_rate(a, b, found, cover)
        if middle < config.min_centre_inlier_share:
            return found, "misses the centre"
    if config.max_motion > 0.0 and residual_motion(a, b, found.homography) > config.max_motion:
        return found, SHOT
    return found, AGREES


def _agreeing_match(a: Keypoints, b: Keypoints, config: VerifyConfig) -> Verified:
    found, verdict = judge_match(a, b, config)
    if found is None:
        return NOTHING
    if verdict == SHOT:
        return Verified(0, found.coverage, shot=True)
    if verdict != AGREES:
        return NOTHING
    return Verified(found.inliers, found.coverage)


def pair_evidence(a: Image.Image, b: Image.Image, config: VerifyConfig) -> Evidence:
    """What verification finds for one pair, as `verified_inliers` decides it, with the
    matched points and B's outline in each image's own pixels (for explanations)."""
    cv2 = _cv2()
    (keys_a, mirror_a), keys_b = extract_both(a, config), extract_keypoints(b, config)
    found, verdict = judge_match(keys_a, keys_b, config)
    mirrored = False
    direct, keys_m = keys_a, None
    if verdict != AGREES or (found is not None and found.inliers < 4 * config.inlier_offset):
        keys_m = mirror_a
        other, other_verdict = judge_match(keys_m, keys_b, config)
        if other is None:
            better = False
        elif other_verdict == AGREES:
            better = verdict != AGREES or found is None or other.inliers > found.inliers
        elif other_verdict == SHOT:  # as verified_match: a shot over a refused match
            better = verdict not in (AGREES, SHOT)
        else:  # neither counts: show the mirrored match only when there is no other
            better = found is None
        if better:
            found, verdict, keys_a, mirrored = other, other_verdict, keys_m, True
    counted = verdict in (AGREES, SHOT)
    hashed = NOTHING if counted else _hash_evidence(direct, keys_m, keys_b, config)
    empty = np.zeros((0, 2), dtype=np.float32)
    if found is None:
        return Evidence(verdict, 0, False, empty, empty, None, hash_bits=hashed.hash_bits)
    side_w, side_h = keys_a.shape[1], keys_a.shape[0]
    to_a = np.array([a.width / side_w, a.height / side_h])
    to_b = np.array([b.width / keys_b.shape[1], b.height / keys_b.shape[0]])

    def unmirror(points: np.ndarray) -> np.ndarray:
        out = points.astype(np.float64).copy()
        if mirrored:
            out[:, 0] = side_w - out[:, 0]
        return out

    inliers = keys_a.points[found.rows].astype(np.float64)
    mapped = cv2.perspectiveTransform(inliers.reshape(-1, 1, 2), found.homography).reshape(-1, 2)
    corners = np.array(
        [[0, 0], [keys_b.shape[1], 0], [keys_b.shape[1], keys_b.shape[0]], [0, keys_b.shape[0]]],
        dtype=np.float64,
    )
    outline = cv2.perspectiveTransform(
        corners.reshape(-1, 1, 2), np.linalg.inv(found.homography)
    ).reshape(-1, 2)
    return Evidence(
        verdict,
        found.inliers,
        mirrored,
        (unmirror(inliers) * to_a).astype(np.float32),
        (mapped * to_b).astype(np.float32),
        (unmirror(outline) * to_a).astype(np.float32),
        found.coverage,
        hashed.hash_bits,
    )


def fuse_similarity(
    similarity: np.ndarray, inliers: np.ndarray, config: VerifyConfig
) -> np.ndarray:
    """Raise a pair's similarity toward 1 as geometric evidence grows (monotone in both).

    fused = 1 - (1 - similarity) * exp(-max(0, inliers - offset) / scale)
    """
    evidence = np.maximum(0.0, np.asarray(inliers, dtype=np.float64) - config.inlier_offset)
    return 1.0 - (1.0 - np.asarray(similarity, dtype=np.float64)) * np.exp(
        -evidence / config.inlier_scale
    )


def fuse_evidence(similarity: np.ndarray, matches: Matches, config: VerifyConfig) -> np.ndarray:
    """A pair's similarity after verification: raised by the matches that count
    (`fuse_similarity`), or, with none, as a CNN-confident pair is (`confident_lift`)
    where the hashes are close and the CNN similarity reaches `hash_min_cnn_similarity`."""
    fused = fuse_similarity(similarity, matches.counts, config)
    lifted = 1.0 - (1.0 - fused) * np.exp(-config.confident_lift)
    return np.where(hash_counts(similarity, matches, config), lifted, fused)


def hash_counts(similarity: np.ndarray, matches: Matches, config: VerifyConfig) -> np.ndarray:
    """Where hash evidence raises a pair (P,) bool: no match counts, the hashes are close
    and the CNN similarity reaches `hash_min_cnn_similarity`."""
    close = (matches.counts == 0) & (matches.hash_bits >= 0)
    return np.asarray(close & (np.asarray(similarity) >= config.hash_min_cnn_similarity))


def match_pairs(
    config: VerifyConfig,
    load: Callable[[int], Image.Image],
    pairs: np.ndarray,
    threads: int | None = None,
    cache: dict[tuple[int, bool], Keypoints] | None = None,
) -> Matches:
    """`verified_match` for each pair (P, 2) of image numbers, on `threads` threads.

    `load(n)` opens image n, once per image not in `cache` (keypoints by (image,
    mirrored), kept across calls; the caller bounds it); the first image of a pair also
    gets mirrored keypoints, from the same decode.
    """
    if len(pairs) == 0:
        return Matches.of([])
    cache = {} if cache is None else cache
    firsts = set(np.asarray(pairs)[:, 0].tolist())

    def prime(n: int) -> None:
        # Runs once per image, before any match, so each image is decoded at most once.
        missing = [m for m in ((False, True) if n in firsts else (False,)) if (n, m) not in cache]
        if missing == [False, True]:
            cache[(n, False)], cache[(n, True)] = extract_both(load(n), config)
        elif missing:
            cache[(n, missing[0])] = extract_keypoints(load(n), config, mirrored=missing[0])

    def matched(pair: np.ndarray) -> Verified:
        a, b = int(pair[0]), int(pair[1])
        return verified_match(cache[(a, False)], cache[(a, True)], cache[(b, False)], config)

    images = np.unique(np.asarray(pairs).ravel())
    with ThreadPoolExecutor(
        threads or os.cpu_count() or 1, initializer=single_threaded_search
    ) as pool:
        list(pool.map(prime, images.tolist()))
        return Matches.of(list(pool.map(matched, np.asarray(pairs))))
