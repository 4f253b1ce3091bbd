"""What a match shows once B is aligned onto A: whether the content agrees, whether the
inliers reach the centre, and whether anything is left moving."""

from __future__ import annotations

import numpy as np

from lookalike.verify.matching import Keypoints, Match, VerifyConfig, _cv2

FLAT_VARIANCE = 0.02
"""Local variance (in units of the overlap's variance) below which a window is flat: its
pattern is noise, only its mean counts."""


def content_disagreement(
    a: Keypoints,
    b: Keypoints,
    homography: np.ndarray,
    config: VerifyConfig,
    cover: np.ndarray | None = None,
) -> tuple[float, float]:
    """Shares of the aligned overlap, and of its centre, where A and B differ.

    B's grey copy is warped into A's frame by `homography` (A -> B); both are blurred and
    standardised over the overlap, so brightness, contrast and colour edits do not count.
    Around each pixel (a window of `content_window` pixels a side) the two differ when
    their local means are more than `content_tolerance` apart, or when either is textured
    and their local patterns do not correlate (below `content_min_correlation`). Copies
    differ where an overlay was painted; two subjects on one background differ where the
    subjects are. Places under `cover` (A's grey frame, see `painted_cover`) count as
    agreeing. (1.0, 1.0) when there is no grey copy or no overlap.
    """
    cv2 = _cv2()
    aligned = _aligned(a, b, homography)
    if aligned is None:
        return 1.0, 1.0
    grey, warped, inside = aligned
    window = config.content_window
    overlap = _inner(inside, window)
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
    if cover is not None:
        differs &= ~cover
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


def painted_cover(
    a: Keypoints, b: Keypoints, homography: np.ndarray, config: VerifyConfig
) -> np.ndarray | None:
    """Where, in A's grey copy, one of the two aligned pictures is painted over: flat
    (grey levels varying less than `painted_max_std` in each 3 x 3 window) where the other
    is not, in patches of at least `painted_min_area` of the overlap whose grey levels
    vary less than twice that over the whole patch.

    An overlay's rectangles and ellipses are fills of one colour; a photographed subject,
    even a plain garment, has shading across it. None without the check or grey copies.
    """
    cv2 = _cv2()
    aligned = _aligned(a, b, homography) if config.painted_max_std > 0 else None
    if aligned is None:
        return None
    grey, warped, inside = aligned
    overlap = _inner(inside, config.content_window)
    first = grey.astype(np.float32)

    def flat(values: np.ndarray) -> np.ndarray:
        mean = cv2.blur(values, (3, 3))
        spread = np.sqrt(np.maximum(cv2.blur(values * values, (3, 3)) - mean * mean, 0.0))
        return spread < config.painted_max_std

    flat_a = flat(first)
    one_flat = (flat_a ^ flat(warped)) & overlap
    count, labels, stats, _ = cv2.connectedComponentsWithStats(one_flat.astype(np.uint8), None, 8)
    paint = np.where(flat_a, first, warped)[one_flat]  # the flat picture's grey levels
    patch = labels[one_flat]
    size = np.maximum(np.bincount(patch, minlength=count), 1)
    mean = np.bincount(patch, paint, minlength=count) / size
    variance = np.bincount(patch, paint * paint, minlength=count) / size - mean**2
    painted = stats[:, cv2.CC_STAT_AREA] >= config.painted_min_area * overlap.sum()
    painted &= variance < (2 * config.painted_max_std) ** 2
    painted[0] = False  # the background label
    return painted[labels]


def _inner(inside: np.ndarray, window: int) -> np.ndarray:
    """The overlap without its rim, where windows and interpolation reach outside it."""
    return _cv2().erode(inside, np.ones((window, window), np.uint8)).astype(bool)


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


def centre_match_rate(
    a: Keypoints, b: Keypoints, found: Match, cover: np.ndarray | None = None
) -> tuple[float, float]:
    """Shares of A's keypoints that are inliers, in the centre of the overlap and around it.

    The overlap: A's keypoints that the homography maps inside B; its centre: the middle
    half of them along each axis. Keypoints under or beside `cover` (painted cover, in A's
    grey frame: nothing there can match) are not counted. A copy matches about as well in
    the middle as around it; two subjects photographed in one place match on the
    background around them only.
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
    matched = np.zeros(len(points), dtype=bool)
    matched[found.rows] = True
    rates = _centre_and_around(points, inside, matched)
    if cover is not None and a.grey is not None and rates[0] < 1.0:
        near = cv2.dilate(cover.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        rows = (points[:, 1] * a.grey.shape[0] / a.shape[0]).astype(int)
        cols = (points[:, 0] * a.grey.shape[1] / a.shape[1]).astype(int)
        rows = np.clip(rows, 0, a.grey.shape[0] - 1)
        cols = np.clip(cols, 0, a.grey.shape[1] - 1)
        covered = near[rows, cols]
        # The centre of the whole overlap, and that of its uncovered part: paint over the
        # middle moves what is left of the picture's centre; either may show it.
        rates = max(
            rates,
            _centre_and_around(points, inside, matched, covered),
            _centre_and_around(points, inside & ~covered, matched),
        )
    return rates


def _centre_and_around(
    points: np.ndarray,
    inside: np.ndarray,
    matched: np.ndarray,
    left_out: np.ndarray | None = None,
) -> tuple[float, float]:
    """Shares of matched points in the middle half (each axis) of the `inside` points and
    around it, not counting `left_out` ones; (0, 0) with fewer than 8 points inside."""
    if inside.sum() < 8:
        return 0.0, 0.0
    x, y = points[inside, 0], points[inside, 1]
    (left, right), (top, bottom) = np.percentile(x, [25, 75]), np.percentile(y, [25, 75])
    central = np.zeros(len(points), dtype=bool)
    central[inside] = (x >= left) & (x <= right) & (y >= top) & (y <= bottom)
    outer = inside & ~central
    if left_out is not None:
        central &= ~left_out
        outer &= ~left_out
    rate = [float(matched[part].mean()) if part.any() else 0.0 for part in (central, outer)]
    return rate[0], rate[1]
