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
background around it (`centre_match_rate`).

Agreeing content is not yet an edit either: the same garment photographed twice, moved
between the shots, agrees too. An edited copy moves as one picture, so once aligned by the
homography nothing is left to move; two shots of one scene leave parts that still move
(`residual_motion`). Such a match is a *near-duplicate shot*, reported apart, not a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import faiss
import numpy as np
from PIL import Image, ImageOps

from lookalike.records import Evidence

FLAT_VARIANCE = 0.02
"""Local variance (in units of the overlap's variance) below which a window is flat: its
pattern is noise, only its mean counts."""


@dataclass(frozen=True)
class VerifyConfig:
    """Settings of the local-feature check (stored in the checkpoint with the model)."""

    side: int = 320
    features: int = 500
    ratio: float = 0.8
    reprojection_px: float = 5.0
    min_spread: float = 0.02
    min_inlier_share: float = 0.25
    inlier_offset: float = 10.0
    inlier_scale: float = 20.0
    candidate_min_similarity: float = 0.8
    confident_similarity: float = 1.0
    candidates_per_image: int = 5
    max_disagreement: float = 1.0
    """Largest share of the aligned overlap where A and B may differ (1.0: no content check)."""
    max_centre_disagreement: float = 1.0
    """The same share over the central half (each side) of the overlap: where subjects are."""
    content_side: int = 96
    """Longer side of the grey copies compared after alignment."""
    content_tolerance: float = 1.0
    """Two aligned places differ when their local mean grey levels (standardised over the
    overlap) are this many standard deviations apart."""
    content_min_correlation: float = 0.5
    """... or when either is textured and their local patterns correlate less than this."""
    content_window: int = 7
    """Side, in pixels of the grey copies, of the window compared around each place."""
    min_centre_inlier_share: float = 0.0
    """Share of A's keypoints in the centre of the overlap that must be inliers: a match
    that leaves the centre out matched the background only (0: no check; see
    `centre_match_rate`)."""
    max_motion: float = 0.0
    """Largest median motion (pixels at `side`) left after aligning B onto A for an edited
    copy; beyond it the match shows two shots of one scene (0: no check; see
    `residual_motion`)."""
    expand_neighbours: int = 0
    """Second round: for each sure pair (similarity >= confident_similarity), the partner's
    this many nearest neighbours become candidates too. Copies of a picture that has many
    copies crowd its own neighbour list; their neighbours are where the others are."""


@dataclass(frozen=True)
class Keypoints:
    """ORB keypoints of one image: positions (N, 2), binary descriptors (N, 32), image shape,
    and a small grey copy (longer side `content_side`) for the content check."""

    points: np.ndarray
    descriptors: np.ndarray | None
    shape: tuple[int, int]
    grey: np.ndarray | None = None


@dataclass(frozen=True)
class Match:
    """A plausible homography from A's keypoint frame to B's, with its inlier count."""

    inliers: int
    homography: np.ndarray
    """3x3, mapping A's points (scaled to `side`) onto B's."""
    rows: np.ndarray
    """Indices of the inliers among A's keypoints."""
    coverage: float = 0.0
    """How much of the pictures the match covers: the smaller of the shares of A and of B
    inside the convex hull of the matched points."""


def _cv2():  # type: ignore[no-untyped-def]
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "geometric verification needs OpenCV: pip install 'lookalike[verify]'"
        ) from exc
    return cv2


def extract_keypoints(
    image: Image.Image, config: VerifyConfig, mirrored: bool = False
) -> Keypoints:
    """Detect ORB keypoints on a grey copy scaled so its longer side is `config.side`.

    Small images are scaled up to that size too, so keypoint scales are comparable.
    """
    cv2 = _cv2()
    if mirrored:
        image = ImageOps.mirror(image)
    scale = config.side / max(image.size)
    size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    grey = np.asarray(image.convert("L").resize(size, Image.Resampling.BILINEAR))
    orb = cv2.ORB_create(
        nfeatures=config.features, fastThreshold=10, edgeThreshold=15, patchSize=15
    )
    found, descriptors = orb.detectAndCompute(grey, None)
    points = np.array([k.pt for k in found], dtype=np.float32).reshape(-1, 2)
    small = max(8, config.content_side)
    factor = small / config.side
    small_size = (max(4, round(size[0] * factor)), max(4, round(size[1] * factor)))
    content = cv2.resize(grey, small_size, interpolation=cv2.INTER_AREA)
    return Keypoints(points, descriptors, (grey.shape[0], grey.shape[1]), content)


def _spread(points: np.ndarray, shape: tuple[int, int]) -> float:
    cv2 = _cv2()
    if len(points) < 4:
        return 0.0
    hull = cv2.convexHull(points.reshape(-1, 1, 2))
    return float(cv2.contourArea(hull)) / float(shape[0] * shape[1])


def nearest_two(queries: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distances (Q, 2) and rows (Q, 2) of each binary descriptor's two nearest in
    `base` (uint8 rows, at least two), in query order.

    FAISS's binary flat index: the same distances as OpenCV's brute-force matcher, about
    5 times faster on 500 x 500 ORB descriptors when run on one thread (verification runs
    pairs on several threads at once; see `single_threaded_search`).
    """
    index = faiss.IndexBinaryFlat(8 * base.shape[1])
    index.add(np.ascontiguousarray(base, dtype=np.uint8))
    distances, rows = index.search(np.ascontiguousarray(queries, dtype=np.uint8), 2)
    return distances, rows


def single_threaded_search() -> None:
    """Make FAISS searches started from the calling thread run on that thread alone.

    OpenMP's thread count is a per-thread setting: worker threads that each verify pairs
    call this, and the caller's own searches keep every core.
    """
    faiss.omp_set_num_threads(1)


def count_inliers(a: Keypoints, b: Keypoints, config: VerifyConfig) -> int:
    """Matches consistent with one plausible homography from a to b (0 if none)."""
    found = match_keypoints(a, b, config)
    return found.inliers if found is not None else 0


def match_keypoints(a: Keypoints, b: Keypoints, config: VerifyConfig) -> Match | None:
    """The plausible homography from a to b and its inliers, or None."""
    cv2 = _cv2()
    if a.descriptors is None or b.descriptors is None:
        return None
    if len(a.descriptors) < 8 or len(b.descriptors) < 8:
        return None
    distances, nearest = nearest_two(a.descriptors, b.descriptors)
    # Lowe's ratio test. When the two nearest tie, the match fails whichever comes first,
    # so the matches kept do not depend on how ties are broken.
    good = np.flatnonzero(distances[:, 0] < config.ratio * distances[:, 1])
    if len(good) < 12:
        return None
    src = a.points[good]
    dst = b.points[nearest[good, 0]]
    # USAC (OpenCV's modern RANSAC) stops early on hopeless samples: ~30x faster than
    # classic RANSAC on non-matching pairs. Its sampler is seeded, so verdicts repeat.
    cv2.setRNGSeed(0x5EED)
    homography, mask = cv2.findHomography(src, dst, cv2.USAC_FAST, config.reprojection_px)
    if homography is None or mask is None:
        return None
    inlier = mask.ravel().astype(bool)
    # A real copy maps by a moderate, non-degenerate transform and matches over an area,
    # not in one corner of repeated texture.
    det = float(np.linalg.det(homography[:2, :2]))
    if not 1 / 16 < abs(det) < 16 or np.abs(homography[2, :2]).max() > 0.005:
        return None
    if inlier.sum() < config.min_inlier_share * len(good):
        return None
    spread = min(_spread(src[inlier], a.shape), _spread(dst[inlier], b.shape))
    if spread < config.min_spread:
        return None
    return Match(int(inlier.sum()), homography, good[inlier], spread)


def content_disagreement(
    a: Keypoints, b: Keypoints, homography: np.ndarray, config: VerifyConfig
) -> tuple[float, float]:
    """Shares of the aligned overlap, and of its centre, where A and B differ.

    B's grey copy is warped into A's frame by `homography` (A -> B); both are blurred and
    standardised over the overlap, so brightness, contrast and colour edits do not count.
    Around each pixel (a window of `content_window` pixels a side) the two differ when
    their local means are more than `content_tolerance` apart, or when either is textured
    and their local patterns do not correlate (below `content_min_correlation`). Copies
    differ where an overlay was painted; two subjects on one background differ where the
    subjects are. (1.0, 1.0) when there is no grey copy or no overlap.
    """
    cv2 = _cv2()
    aligned = _aligned(a, b, homography)
    if aligned is None:
        return 1.0, 1.0
    grey, warped, inside = aligned
    window = config.content_window
    # Leave out the rim, where windows and interpolation reach outside the overlap.
    overlap = cv2.erode(inside, np.ones((window, window), np.uint8)).astype(bool)
    if overlap.sum() < 16:
        return 1.0, 1.0
    sigma = max(0.5, config.content_side / 96)

    def standard(values: np.ndarray) -> np.ndarray:
        values = cv2.GaussianBlur(values, (0, 0), sigma)
        inner = values[overlap]
        return (values - inner.mean()) / max(float(inner.std()), 2.0)

    first, second = standard(grey.astype(np.float32)), standard(warped)

    def local(values: np.ndarray) -> np.ndarray:
        return cv2.blur(values, (window, window))

    mean_a, mean_b = local(first), local(second)
    var_a = np.maximum(local(first * first) - mean_a**2, 0.0)
    var_b = np.maximum(local(second * second) - mean_b**2, 0.0)
    cov = local(first * second) - mean_a * mean_b
    textured = np.maximum(var_a, var_b) > FLAT_VARIANCE
    correlation = cov / np.sqrt(var_a * var_b + 1e-6)
    differs = np.abs(mean_a - mean_b) > config.content_tolerance
    differs |= textured & (correlation < config.content_min_correlation)
    rows, cols = np.nonzero(overlap)
    top, bottom = np.percentile(rows, [25, 75])
    left, right = np.percentile(cols, [25, 75])
    centre = overlap.copy()
    centre[: int(top)] = False
    centre[int(np.ceil(bottom)) + 1 :] = False
    centre[:, : int(left)] = False
    centre[:, int(np.ceil(right)) + 1 :] = False
    share = float(differs[overlap].mean())
    centre_share = float(differs[centre].mean()) if centre.any() else share
    return share, centre_share


def _aligned(
    a: Keypoints, b: Keypoints, homography: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A's grey copy, B's warped into A's frame by `homography` (A -> B, in keypoint
    frames), and the overlap's mask; None without grey copies."""
    cv2 = _cv2()
    if a.grey is None or b.grey is None:
        return None
    # Keypoint frames have longer side `side`; grey copies `content_side`: scale H to them.
    fa = np.diag([a.grey.shape[1] / a.shape[1], a.grey.shape[0] / a.shape[0], 1.0])
    fb = np.diag([b.grey.shape[1] / b.shape[1], b.grey.shape[0] / b.shape[0], 1.0])
    small = fb @ homography @ np.linalg.inv(fa)
    height, width = a.grey.shape
    inverse = cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(
        b.grey.astype(np.float32), small, (width, height), flags=cv2.INTER_LINEAR | inverse
    )
    inside = cv2.warpPerspective(
        np.ones(b.grey.shape, np.uint8), small, (width, height), flags=cv2.INTER_NEAREST | inverse
    )
    return a.grey, warped, inside


def residual_motion(a: Keypoints, b: Keypoints, homography: np.ndarray) -> float:
    """Median motion, in pixels of the keypoint frame, left between A and B once B is
    aligned onto A by `homography` (dense optical flow over the overlap of the grey copies).

    An edited copy moves as one picture: after alignment almost nothing moves (under about
    2 pixels at side 320 for the edit families, more only for a few heavy stacks). Two
    photos of one scene (a garment moved or laid again, the camera moved in front of
    something that is not flat) leave whole parts moving. 0.0 without grey copies.
    """
    cv2 = _cv2()
    aligned = _aligned(a, b, homography)
    if aligned is None:
        return 0.0
    grey, warped, inside = aligned
    overlap = cv2.erode(inside, np.ones((3, 3), np.uint8)).astype(bool)
    if overlap.sum() < 16:
        return 0.0
    flow = cv2.calcOpticalFlowFarneback(
        np.ascontiguousarray(grey, dtype=np.uint8),
        np.clip(warped, 0, 255).astype(np.uint8),
        None,
        0.5,  # pyramid scale
        2,  # levels
        9,  # window
        3,  # iterations
        5,  # polynomial neighbourhood
        1.1,  # its Gaussian
        0,
    )
    motion = np.linalg.norm(flow, axis=2)[overlap]
    return float(np.median(motion)) * a.shape[1] / grey.shape[1]


def centre_match_rate(a: Keypoints, b: Keypoints, found: Match) -> tuple[float, float]:
    """Shares of A's keypoints that are inliers, in the centre of the overlap and around it.

    The overlap: A's keypoints that the homography maps inside B; its centre: the middle
    half of them along each axis. A copy matches about as well in the middle as around it;
    two subjects photographed in one place match on the background around them only.
    """
    cv2 = _cv2()
    points = a.points
    if len(points) == 0:
        return 0.0, 0.0
    mapped = cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), found.homography)
    mapped = mapped.reshape(-1, 2)
    height, width = b.shape
    inside = (mapped[:, 0] >= 0) & (mapped[:, 0] < width) & (mapped[:, 1] >= 0)
    inside &= mapped[:, 1] < height
    if inside.sum() < 8:
        return 0.0, 0.0
    x, y = points[inside, 0], points[inside, 1]
    (left, right), (top, bottom) = np.percentile(x, [25, 75]), np.percentile(y, [25, 75])
    central = np.zeros(len(points), dtype=bool)
    central[inside] = (x >= left) & (x <= right) & (y >= top) & (y <= bottom)
    outer = inside & ~central
    matched = np.zeros(len(points), dtype=bool)
    matched[found.rows] = True
    rate = [float(matched[part].mean()) if part.any() else 0.0 for part in (central, outer)]
    return rate[0], rate[1]


class Verified(NamedTuple):
    """What verification makes of one pair."""

    inliers: int
    """Matches of the match that counts (0: none counts)."""
    coverage: float
    """How much of the pictures that match (or the shot's) covers."""
    shot: bool = False
    """No match counts, but one shows two shots of one scene (see `residual_motion`)."""


NOTHING = Verified(0, 0.0)


class Matches(NamedTuple):
    """`Verified` for many pairs, as arrays (P,)."""

    counts: np.ndarray
    coverage: np.ndarray
    shots: np.ndarray

    @classmethod
    def of(cls, found: list[Verified]) -> Matches:
        """Arrays from one `Verified` per pair."""
        return cls(
            np.array([f.inliers for f in found], dtype=np.float64),
            np.array([f.coverage for f in found], dtype=np.float64),
            np.array([f.shot for f in found], dtype=bool),
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
    one, direct or mirrored, shows two shots of one scene."""
    best = _agreeing_match(a, b, config)
    if a_mirrored is None or best.inliers >= 4 * config.inlier_offset:
        return best
    other = _agreeing_match(a_mirrored, b, config)
    if other.inliers or best.inliers:
        return max(best, other)
    return best if best.shot else other


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
    if config.max_disagreement < 1.0 or config.max_centre_disagreement < 1.0:
        share, centre = content_disagreement(a, b, found.homography, config)
        if share > config.max_disagreement or centre > config.max_centre_disagreement:
            return found, "content differs"
    if config.min_centre_inlier_share > 0.0:
        middle, _ = centre_match_rate(a, b, found)
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
    keys_a, keys_b = extract_keypoints(a, config), extract_keypoints(b, config)
    found, verdict = judge_match(keys_a, keys_b, config)
    mirrored = False
    if verdict != AGREES or (found is not None and found.inliers < 4 * config.inlier_offset):
        keys_m = extract_keypoints(a, config, mirrored=True)
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
    empty = np.zeros((0, 2), dtype=np.float32)
    if found is None:
        return Evidence(verdict, 0, False, empty, empty, None)
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
