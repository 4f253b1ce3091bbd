"""Local features: ORB keypoints of one image and the plausible homography between two."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import faiss
import numpy as np
from PIL import Image

from lookalike.io import load_image


@dataclass(frozen=True)
class VerifyConfig:
    """Settings of the local-feature check (stored in the checkpoint with the model)."""

    side: int = 320
    features: int = 500
    fast_threshold: int = 10
    """ORB's FAST corner threshold (grey levels) on the grey copy."""
    thumbnail_side: int = 0
    """A picture whose longer side is at most this many pixels (a thumbnail) is scaled up
    severalfold to `side`, which smooths its corners: fewer reach `fast_threshold`, and a
    copy of it is left with too few keypoints to match. Its keypoints are found with
    `thumbnail_fast_threshold` instead (0: no picture is a thumbnail)."""
    thumbnail_fast_threshold: int = 10
    """The FAST threshold for thumbnails' grey copies."""
    thumbnail_reprojection_px: float = 0.0
    """`reprojection_px` for a pair with a thumbnail: one of its pixels spans several at
    `side`, so its keypoints are placed less exactly (0: `reprojection_px`)."""
    ratio: float = 0.8
    reprojection_px: float = 5.0
    min_spread: float = 0.02
    min_inlier_share: float = 0.25
    inlier_offset: float = 10.0
    inlier_scale: float = 20.0
    min_cnn_similarity: float = 0.8
    """Lower edge of the verification band, on the CNN's scale (`lookalike.score`)."""
    confident_cnn_similarity: float = 1.0
    """Upper edge: at or above it the CNN alone is sure (calibration sets it)."""
    confident_lift: float = 0.0
    """How much a CNN-confident pair's similarity is raised, as local-feature evidence
    would raise it: 1 - (1 - s) * exp(-confident_lift). The CNN is sure of such a pair,
    so it ranks with pairs that many matches verify, not below weakly verified ones; the
    decision at a cut-off under `confident_cnn_similarity` does not change (0: no lift)."""
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
    painted_max_std: float = 0.0
    """Painted cover (an overlay's flat shapes) in the content and centre checks: places
    where one picture is flat (grey levels varying less than this in each 3 x 3 window of
    the grey copies, and less than twice this over the whole patch) and the other is not,
    in patches of at least `painted_min_area` of the overlap, are left out of both checks:
    a copy under paint still agrees everywhere else, and a photographed subject has
    shading (0: no exemption; see `painted_cover`)."""
    painted_min_area: float = 0.01
    """Smallest patch of painted cover, as a share of the overlap."""
    min_centre_inlier_share: float = 0.0
    """Share of A's keypoints in the centre of the overlap that must be inliers: a match
    that leaves the centre out matched the background only (0: no check; see
    `centre_match_rate`)."""
    clear_agreement: float = 0.0
    """Content disagreement, over the overlap and over its centre, at or below which two
    aligned pictures agree place for place: the centre and motion checks are then not
    asked (a pixelated or blurred copy has no keypoints in its centre, and a warped one
    can leave flow noise; a different subject or a moved one disagrees in places).
    0: they are always asked. Needs the content check (`max_disagreement` < 1)."""
    max_motion: float = 0.0
    """Largest median motion (pixels at `side`) left after aligning B onto A for an edited
    copy; beyond it the match shows two shots of one scene (0: no check; see
    `residual_motion`)."""
    first_candidates: int = 0
    """Round one in two steps: each image's this many nearest neighbours first; its further
    ones (up to `candidates_per_image`) only where the image or that neighbour is already
    in a sure pair (a picture that has copies), so a collection of strangers is not
    verified ten deep. 0: all `candidates_per_image` at once."""
    hash_max_bits: int = -1
    """Hash evidence, for copies local features cannot read (pixelated, blurred, tiny): a
    pair no match verifies, whose pictures' perceptual hashes (`perceptual_hash` of the
    grey copies, direct or mirrored) are at most this many bits apart and whose CNN
    similarity is at least `hash_min_cnn_similarity`, is raised as a CNN-confident pair is
    (`confident_lift`). -1: no hash evidence."""
    hash_min_cnn_similarity: float = 1.0
    """The CNN similarity hash evidence needs beside the hash (near-flat pictures score 0)."""
    hash_min_detail: float = 0.0
    """The detail (`Keypoints.detail`) both pictures need for hash evidence: the hashes of
    two near-plain pictures agree whatever they show."""
    expand_neighbours: int = 0
    """Second round: for each sure pair (similarity >= confident_cnn_similarity), the partner's
    this many nearest neighbours become candidates too. Copies of a picture that has many
    copies crowd its own neighbour list; their neighbours are where the others are."""

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> VerifyConfig:
        """Settings as saved in a checkpoint or config file; older files' names
        (`candidate_min_similarity`, `confident_similarity`) are read too."""
        renamed = {LEGACY_NAMES.get(k, k): v for k, v in settings.items()}
        return cls(**renamed)

    def fingerprint_settings(self) -> dict[str, Any]:
        """The settings under their older saved names, so a rule's fingerprint (and the
        verified pairs an index keeps under it) survive the renaming; settings added later
        are left out while they keep the value that changes nothing, and so are those that
        choose which pairs are verified but not what a verification finds
        (`PAIR_CHOICE`)."""
        old = {new: old for old, new in LEGACY_NAMES.items()}
        return {
            old.get(k, k): v
            for k, v in asdict(self).items()
            if not (k in NEUTRAL_SETTINGS and NEUTRAL_SETTINGS[k] == v) and k not in PAIR_CHOICE
        }


PAIR_CHOICE = frozenset({"first_candidates"})
"""Settings that only choose which pairs get verified: a pair's verified similarity is the
same whatever they are, so verifications stored under one value serve another."""


NEUTRAL_SETTINGS: dict[str, Any] = {
    "painted_max_std": 0.0,
    "painted_min_area": 0.01,
    "confident_lift": 0.0,
    "clear_agreement": 0.0,
    "hash_max_bits": -1,
    "hash_min_cnn_similarity": 1.0,
    "hash_min_detail": 0.0,
    "fast_threshold": 10,
    "thumbnail_side": 0,
    "thumbnail_fast_threshold": 10,
    "thumbnail_reprojection_px": 0.0,
}
"""Settings added after rules were first fingerprinted, with the value that changes nothing."""


LEGACY_NAMES = {
    "candidate_min_similarity": "min_cnn_similarity",
    "confident_similarity": "confident_cnn_similarity",
}
"""Settings renamed when the two similarity scales got distinct names."""


@dataclass(frozen=True)
class Keypoints:
    """ORB keypoints of one image: positions (N, 2), binary descriptors (N, 32), image shape,
    and a small grey copy (longer side `content_side`) for the content check."""

    points: np.ndarray
    descriptors: np.ndarray | None
    shape: tuple[int, int]
    grey: np.ndarray | None = None
    phash: int = 0
    """`perceptual_hash` of the grey copy the keypoints were found on."""
    detail: float = 1.0
    """`grey_detail` of that grey copy."""
    thumbnail: bool = False
    """Found on a thumbnail (`VerifyConfig.thumbnail_side`)."""


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
    if mirrored:  # as `extract_both` finds them, so every caller gets the same keypoints
        return extract_both(image, config)[1]
    grey, thumbnail = _grey(image, config)
    return _keypoints_of_grey(grey, config, thumbnail)


def extract_both(image: Image.Image, config: VerifyConfig) -> tuple[Keypoints, Keypoints]:
    """`extract_keypoints` of the image and of its mirror image, from one grey copy (the
    grey copy of a mirrored picture is the mirrored grey copy, pixel for pixel).

    The mirror image's keypoints are the direct ones mirrored (FAST, the Harris score and
    the pyramid are symmetric; an orientation θ becomes 180° - θ), so only their
    descriptors are computed on the mirrored copy: for all but about 1 % of them the same
    keypoints and descriptors as a second detection gives, in about half its time.
    Its content copy is the direct one mirrored and its hash the direct DCT's with the odd
    horizontal frequencies negated (equal to computing them again but for rounding)."""
    grey, thumbnail = _grey(image, config)
    orb = _orb(config, thumbnail)
    found, descriptors = orb.detectAndCompute(grey, None)
    mirrored_found, mirrored_descriptors = orb.compute(
        _mirror(grey), _mirrored_keypoints(found, grey.shape[1])
    )
    content = _content_copy(grey, config)
    low = _low_frequencies(grey)
    direct = Keypoints(
        _points(found),
        descriptors,
        grey.shape,
        content,
        _hash_bits(low),
        grey_detail(grey),
        thumbnail,
    )
    mirrored = replace(
        direct,
        points=_points(mirrored_found),
        descriptors=mirrored_descriptors,
        grey=_mirror(content),
        phash=_hash_bits(low * _MIRRORED_SIGNS),
    )
    return direct, mirrored


ORB_SCALE_FACTOR = 1.2
"""ORB's pyramid scale factor (OpenCV's default, which `_orb` keeps)."""


def _mirrored_keypoints(found: Any, width: int) -> list[Any]:
    """ORB keypoints mirrored left to right in a grey copy `width` pixels wide. A
    keypoint's position is in level-0 pixels but it was found on its pyramid level, so it
    is mirrored within that level's width (as ORB rounds it) and scaled back."""
    cv2 = _cv2()
    levels = 1 + max((k.octave for k in found), default=0)
    scales = [ORB_SCALE_FACTOR**level for level in range(levels)]
    edge = [(round(width / scale) - 1) * scale for scale in scales]
    return [
        cv2.KeyPoint(
            edge[k.octave] - k.pt[0],
            k.pt[1],
            k.size,
            (180.0 - k.angle) % 360.0,
            k.response,
            k.octave,
        )
        for k in found
    ]


def _mirror(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(grey[:, ::-1])


def load_for_matching(path: str | os.PathLike[str], config: VerifyConfig) -> Image.Image:
    """A file decoded as verification reads it (shorter side at least `config.side`).
    Every caller that matches files (scans, evaluations, comparisons, explanations) reads
    them this way, so a cut-off calibrated in one holds in the others. Raises
    `UnreadableImage`."""
    return load_image(path, min_side=config.side)


def _grey(image: Image.Image, config: VerifyConfig) -> tuple[np.ndarray, bool]:
    """The grey copy at `config.side`, and whether the picture is a thumbnail."""
    scale = config.side / max(image.size)
    size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    grey = np.asarray(image.convert("L").resize(size, Image.Resampling.BILINEAR))
    return grey, max(image.size) <= config.thumbnail_side


def _orb(config: VerifyConfig, thumbnail: bool) -> Any:
    cv2 = _cv2()
    threshold = config.thumbnail_fast_threshold if thumbnail else config.fast_threshold
    return cv2.ORB_create(
        nfeatures=config.features,
        scaleFactor=ORB_SCALE_FACTOR,
        fastThreshold=threshold,
        edgeThreshold=15,
        patchSize=15,
    )


def _keypoints_of_grey(grey: np.ndarray, config: VerifyConfig, thumbnail: bool) -> Keypoints:
    """ORB keypoints of a grey copy already at `config.side`, and its small content copy."""
    found, descriptors = _orb(config, thumbnail).detectAndCompute(grey, None)
    return _keypoints_of(grey, found, descriptors, config, thumbnail)


def _keypoints_of(
    grey: np.ndarray,
    found: Any,
    descriptors: np.ndarray | None,
    config: VerifyConfig,
    thumbnail: bool,
) -> Keypoints:
    """`Keypoints` of ORB keypoints `found` on a grey copy at `config.side`."""
    return Keypoints(
        _points(found),
        descriptors,
        grey.shape,
        _content_copy(grey, config),
        perceptual_hash(grey),
        grey_detail(grey),
        thumbnail,
    )


def _points(found: Any) -> np.ndarray:
    """Positions (N, 2) float32 of OpenCV keypoints."""
    return np.asarray(_cv2().KeyPoint_convert(found), dtype=np.float32).reshape(-1, 2)


def _content_copy(grey: np.ndarray, config: VerifyConfig) -> np.ndarray:
    """The small grey copy (longer side `content_side`) of the content check."""
    cv2 = _cv2()
    factor = max(8, config.content_side) / config.side
    height, width = grey.shape
    small_size = (max(4, round(width * factor)), max(4, round(height * factor)))
    return np.asarray(cv2.resize(grey, small_size, interpolation=cv2.INTER_AREA))


def grey_detail(grey: np.ndarray) -> float:
    """Mean absolute difference of neighbouring grey levels (0-1, both directions summed)
    of a grey picture shrunk to 64 x 64: a clear sky about 0.002, a photo about 0.06
    (the measure `lookalike.model.detail` reads from embeddings)."""
    cv2 = _cv2()
    small = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA)
    return neighbour_difference(small)


def neighbour_difference(small: np.ndarray) -> float:
    """Mean absolute difference of neighbouring grey levels (0-1, across and down summed)
    of a small uint8 grey picture: the detail measure of `grey_detail` and of
    `lookalike.model.detail_of_pixels`."""
    levels = np.asarray(small, dtype=np.float64) / 255.0
    return float(np.abs(np.diff(levels, axis=1)).mean() + np.abs(np.diff(levels, axis=0)).mean())


def perceptual_hash(grey: np.ndarray) -> int:
    """pHash of a grey picture as a 64-bit integer: the picture shrunk to 32 x 32, its
    8 x 8 lowest DCT frequencies, each bit set where one is above their median (as
    imagehash's `phash`). A blurred, pixelated or recoloured copy keeps it within a few bits."""
    return _hash_bits(_low_frequencies(grey))


def _low_frequencies(grey: np.ndarray) -> np.ndarray:
    """The 8 x 8 lowest DCT frequencies (rows vertical, columns horizontal) of a grey
    picture shrunk to 32 x 32."""
    cv2 = _cv2()
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.asarray(cv2.dct(small)[:8, :8])


_MIRRORED_SIGNS = np.where(np.arange(8) % 2, -1.0, 1.0).astype(np.float32)
"""What mirroring a picture left to right does to its DCT: odd horizontal frequencies
change sign."""


def _hash_bits(low: np.ndarray) -> int:
    bits = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hash_distance(a: Keypoints, b: Keypoints) -> int:
    """Bits apart of two keypoint sets' perceptual hashes."""
    return (a.phash ^ b.phash).bit_count()


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
    tolerance = config.reprojection_px
    if (a.thumbnail or b.thumbnail) and config.thumbnail_reprojection_px > 0.0:
        tolerance = config.thumbnail_reprojection_px
    homography, mask = cv2.findHomography(src, dst, cv2.USAC_FAST, tolerance)
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
