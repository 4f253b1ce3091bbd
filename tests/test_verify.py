"""Geometric verification: copies under geometric edits confirm, unrelated pictures do not."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from conftest import make_picture
from lookalike.augment import apply_edit, composite
from lookalike.verify import (
    AGREES,
    NOTHING,
    SHOT,
    Keypoints,
    Matches,
    Verified,
    VerifyConfig,
    content_disagreement,
    count_inliers,
    extract_both,
    extract_keypoints,
    fuse_evidence,
    fuse_similarity,
    judge_match,
    match_keypoints,
    nearest_two,
    painted_cover,
    residual_motion,
    single_threaded_search,
    verified_inliers,
    verified_match,
)
from photo_support import scene_photo, second_shot

CONFIG = VerifyConfig()
CHECKED = VerifyConfig(max_disagreement=0.2, max_centre_disagreement=0.3)


def _photo(seed: int) -> Image.Image:
    """A textured picture with many corners: shapes over multi-scale random texture."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((360, 480, 3), dtype=np.float32)
    for cells in (6, 24, 96):
        grid = rng.uniform(-1, 1, (cells * 3 // 4, cells, 3)).astype(np.float32)
        layer = Image.fromarray(((grid + 1) * 127.5).astype(np.uint8), "RGB")
        texture += np.asarray(layer.resize((480, 360), Image.Resampling.BICUBIC), np.float32)
    shapes = np.asarray(make_picture(seed, (480, 360)), dtype=np.float32)
    mixed = 0.5 * shapes + 0.5 * (texture / 3)
    return Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8), "RGB")


@pytest.mark.parametrize("family", ["crop", "rotation", "angle", "border", "jpeg", "overlay"])
def test_edited_copy_has_many_inliers(family: str) -> None:
    original = _photo(1)
    copy = apply_edit(original, family, seed=5, strength=0.5)
    inliers = count_inliers(
        extract_keypoints(original, CONFIG), extract_keypoints(copy, CONFIG), CONFIG
    )
    assert inliers >= 40


def test_mirrored_keypoints_confirm_a_flip() -> None:
    original = _photo(2)
    flipped = ImageOps.mirror(original)
    mirrored = count_inliers(
        extract_keypoints(original, CONFIG, mirrored=True),
        extract_keypoints(flipped, CONFIG),
        CONFIG,
    )
    assert mirrored >= 40


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_mirrored_keypoints_from_the_direct_ones_are_those_of_the_mirror_image(
    seed: int,
) -> None:
    # extract_both mirrors the direct keypoints instead of detecting them again on the
    # mirror image: nearly every keypoint is the same, with the same descriptor.
    picture = _photo(seed)
    direct, mirrored = extract_both(picture, CONFIG)
    detected = extract_keypoints(ImageOps.mirror(picture), CONFIG)
    again = extract_keypoints(picture, CONFIG, mirrored=True)
    assert (again.points == mirrored.points).all() and again.phash == mirrored.phash
    assert len(mirrored.points) == len(detected.points) == len(direct.points) > 100

    def keys(found: Keypoints) -> set[tuple[float, float, bytes]]:
        assert found.descriptors is not None
        places = np.round(found.points, 2).tolist()
        return {(x, y, d.tobytes()) for (x, y), d in zip(places, found.descriptors, strict=True)}

    assert len(keys(mirrored) & keys(detected)) >= 0.97 * len(detected.points)
    assert mirrored.phash == detected.phash != direct.phash
    assert mirrored.detail == pytest.approx(detected.detail)
    assert mirrored.grey is not None and detected.grey is not None
    assert np.abs(mirrored.grey.astype(int) - detected.grey).max() <= 1


def test_nearest_two_agrees_with_opencv_brute_force() -> None:
    import threading

    import cv2
    import faiss

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    queries = base[rng.integers(0, 300, 200)].copy()
    flips = rng.random(queries.shape) < 0.03  # near copies: a few bits flipped
    queries[flips] ^= rng.integers(1, 256, int(flips.sum()), dtype=np.uint8)
    queries = np.concatenate([queries, rng.integers(0, 256, (100, 32), dtype=np.uint8)])

    distances, rows = nearest_two(queries, base)

    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(queries, base, k=2)
    assert distances.tolist() == [[int(m.distance) for m in two] for two in knn]
    unique_best = distances[:, 0] < distances[:, 1]
    assert unique_best.sum() > 250  # ties aside, the same nearest row
    best = [knn[q][0].trainIdx for q in np.flatnonzero(unique_best)]
    assert rows[unique_best, 0].tolist() == best

    threads: list[int] = []

    def worker() -> None:
        single_threaded_search()
        threads.append(faiss.omp_get_max_threads())

    before = faiss.omp_get_max_threads()
    runner = threading.Thread(target=worker)
    runner.start()
    runner.join()
    assert threads == [1]
    assert faiss.omp_get_max_threads() == before  # the caller's own searches keep every core


def test_unrelated_pictures_do_not_verify() -> None:
    counts = [
        count_inliers(
            extract_keypoints(_photo(a), CONFIG), extract_keypoints(_photo(b), CONFIG), CONFIG
        )
        for a, b in [(3, 4), (5, 6), (7, 8)]
    ]
    assert max(counts) < CONFIG.inlier_offset + 10


def test_flat_image_has_no_evidence() -> None:
    flat = Image.new("RGB", (300, 200), (90, 120, 200))
    assert (
        count_inliers(extract_keypoints(flat, CONFIG), extract_keypoints(flat, CONFIG), CONFIG) == 0
    )


def test_fusion_is_monotone_and_bounded() -> None:
    sims = np.array([0.5, 0.8, 0.8, 0.8, 0.95])
    inliers = np.array([100, 0, 30, 100, 5])
    fused = fuse_similarity(sims, inliers, CONFIG)
    assert np.all(fused >= sims) and np.all(fused <= 1.0)
    assert fused[1] == pytest.approx(0.8)  # no evidence, no change
    assert fused[1] < fused[2] < fused[3]
    assert fused[4] == pytest.approx(0.95)


def test_model_refine_raises_a_verified_copy(tiny_model) -> None:  # type: ignore[no-untyped-def]

    model = replace(tiny_model, verify=CONFIG)
    images = [_photo(9), apply_edit(_photo(9), "crop", seed=1, strength=0.4), _photo(10)]
    pairs = np.array([[0, 1], [0, 2]])
    fused = model.refine(lambda n: images[n], pairs, np.array([0.8, 0.8]))
    assert fused[0] > 0.95
    assert fused[1] == pytest.approx(0.8, abs=0.02)
    unchanged = tiny_model.refine(lambda n: images[n], pairs, np.array([0.8, 0.8]))
    assert np.allclose(unchanged, 0.8)


def test_verdict_is_deterministic() -> None:
    a = extract_keypoints(_photo(11), CONFIG)
    b = extract_keypoints(apply_edit(_photo(11), "angle", seed=2, strength=0.8), CONFIG)
    assert len({count_inliers(a, b, CONFIG) for _ in range(5)}) == 1


def _crowded_layout() -> tuple[np.ndarray, list[Image.Image]]:
    """Rows: 0 a picture, 1-3 near-identical copies crowding its neighbour list, 4 a copy c
    close to both a and 5, 5 a far copy b (a's 6th neighbour), 6 an unrelated picture
    near b. Returns unit vectors and the images."""
    e = np.eye(8, dtype=np.float32)
    rows = [e[0]] + [e[0] + 0.1 * e[k] for k in (1, 2, 3)]
    rows += [e[0] + 0.8 * e[5], 0.3 * e[0] + e[5], e[5] + 0.5 * e[6]]
    vectors = np.stack([r / np.linalg.norm(r) for r in rows])
    photo = _photo(12)
    images = [photo] + [apply_edit(photo, "jpeg", seed=k, strength=0.3) for k in (1, 2, 3)]
    images += [
        apply_edit(photo, "crop", seed=4, strength=0.3),
        apply_edit(photo, "rotation", seed=5, strength=0.3),
        _photo(13),
    ]
    return vectors, images


def test_neighbours_of_sure_pairs_are_verified_too(tiny_model) -> None:  # type: ignore[no-untyped-def]

    from lookalike.candidates import candidate_scores
    from lookalike.index import nearest_of

    vectors, images = _crowded_layout()
    near = nearest_of(vectors, np.array([0, 5]), 2)
    assert [set(r) for r in near.tolist()] == [{1, 2}, {4, 6}]
    config = replace(
        CONFIG, min_cnn_similarity=0.6, confident_cnn_similarity=0.99, candidates_per_image=2
    )
    single = candidate_scores(replace(tiny_model, verify=config), vectors, images.__getitem__)
    assert (0, 4) in single and single[(0, 4)] >= 0.99  # a-c verified sure in round one
    assert (0, 5) not in single  # a's list is crowded, b's holds c and the unrelated row
    expanded = replace(tiny_model, verify=replace(config, expand_neighbours=2))
    scores = candidate_scores(expanded, vectors, images.__getitem__)
    assert scores[(0, 5)] > 0.99  # met through c: c's neighbours are b and a
    raw = float(tiny_model.cnn_similarity(vectors[5], vectors[6])[0])
    assert scores[(5, 6)] == pytest.approx(raw, abs=0.01)  # verified: no evidence, unchanged
    assert set(single) <= set(scores)


def test_strangers_are_stored_but_not_kept_in_memory(tiny_model) -> None:  # type: ignore[no-untyped-def]
    from lookalike.candidates import KnownPairs, candidate_scores

    vectors, images = _crowded_layout()
    config = replace(
        CONFIG,
        min_cnn_similarity=0.6,
        confident_cnn_similarity=0.99,
        candidates_per_image=2,
        expand_neighbours=2,
    )
    model = replace(tiny_model, verify=config)
    load = images.__getitem__
    everything = candidate_scores(model, vectors, load)
    stored: dict[tuple[int, int], float] = {}

    def remember(pairs: np.ndarray, fused: np.ndarray, _matches: object) -> None:
        stored.update(zip(map(tuple, pairs.tolist()), fused.tolist(), strict=True))

    kept = candidate_scores(model, vectors, load, keep_from=0.95, on_verified=remember)
    assert stored == everything  # every verified pair still reaches the index, once
    assert kept == {pair: s for pair, s in everything.items() if s >= 0.95}
    assert (5, 6) in everything and (5, 6) not in kept  # the stranger
    # Reused pairs are not verified again, and count as scored for round two.
    stored.clear()
    reused = candidate_scores(
        model, vectors, load, reuse=everything, keep_from=0.95, on_verified=remember
    )
    assert stored == {} and reused == kept
    # The same from the arrays a scan builds from its index, half of them known.
    half = dict(list(everything.items())[::2])
    arrays = KnownPairs(np.array(list(half)), np.array(list(half.values())), len(vectors))
    stored.clear()
    assert candidate_scores(model, vectors, load, reuse=arrays, keep_from=0.95) == kept
    found, values = arrays.find(np.array(list(everything)))
    assert found.tolist() == [pair in half for pair in everything]
    assert values.tolist() == list(half.values())


def test_chunked_verification_matches_one_pass_and_loads_each_image_once(
    tiny_model,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collections import Counter

    from lookalike import candidates as pairs_module

    model = replace(tiny_model, verify=CONFIG)
    photo = _photo(14)
    images = [photo, apply_edit(photo, "crop", seed=1, strength=0.3), _photo(15)]
    images += [apply_edit(images[2], "rotation", seed=2, strength=0.3), _photo(16)]
    pairs = np.array([[0, 1], [2, 3], [1, 2], [0, 4], [3, 4], [1, 3]])
    raw = np.full(len(pairs), 0.8)
    whole = model.refine(images.__getitem__, pairs, raw)
    loads: Counter[int] = Counter()

    def load(n: int) -> Image.Image:
        loads[n] += 1
        return images[n]

    monkeypatch.setattr(pairs_module, "CHUNK", 2)
    seen: list[tuple[int, int]] = []
    chunked = pairs_module.verify_pairs(
        model, pairs, raw, load, on_chunk=lambda p, _s, _m: seen.extend(map(tuple, p.tolist()))
    )
    assert np.allclose(chunked, whole)
    assert sorted(seen) == sorted(map(tuple, pairs.tolist()))
    assert max(loads.values()) <= 2  # once, and once more for mirrored keypoints at most
    assert chunked[0] > 0.95 and chunked[1] > 0.95 and chunked[2] < 0.85


def test_keypoints_carry_over_to_a_later_round_within_the_bound(
    tiny_model,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collections import Counter

    from lookalike import candidates as pairs_module

    model = replace(tiny_model, verify=CONFIG)
    images = [_photo(20), _photo(21), _photo(22), _photo(23)]
    loads: Counter[int] = Counter()

    def load(n: int) -> Image.Image:
        loads[n] += 1
        return images[n]

    # Round two's first images were first in round one too (their mirrored keypoints exist).
    first, second = np.array([[0, 1], [1, 2], [2, 3]]), np.array([[0, 2], [1, 3]])
    raw = np.full(3, 0.8)
    cache: dict = {}
    pairs_module.verify_pairs(model, first, raw, load, cache=cache)
    loaded = sum(loads.values())
    again = pairs_module.verify_pairs(model, second, raw[:2], load, cache=cache)
    assert sum(loads.values()) == loaded  # round two decoded nothing again
    assert np.allclose(again, model.refine(images.__getitem__, second, raw[:2]))

    monkeypatch.setattr(pairs_module, "KEYPOINT_CACHE", 1)
    monkeypatch.setattr(pairs_module, "CHUNK", 1)
    small: dict = {}
    bounded = pairs_module.verify_pairs(model, first, raw, load, cache=small)
    assert len(small) <= 2  # (image, side) entries for one image's worth
    assert np.allclose(bounded, model.refine(images.__getitem__, first, raw))


def test_local_order_is_a_permutation_that_keeps_components_together() -> None:
    from lookalike.candidates import local_order

    pairs = np.array([[0, 50], [7, 8], [50, 90], [8, 9], [90, 0], [9, 30]])
    order = local_order(pairs)
    assert sorted(order.tolist()) == list(range(len(pairs)))
    component = [0 if 0 in p or 50 in p else 1 for p in pairs[order].tolist()]
    assert component == sorted(component)
    assert len(local_order(np.zeros((0, 2), dtype=np.int64))) == 0


def test_local_order_takes_a_large_graph_region_by_region_of_embedding_space(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lookalike import candidates as pairs_module

    # Two far-apart regions of 6 images each (even rows near one axis, odd near another),
    # joined by a chain across them: each region's own pairs must come together.
    rng = np.random.default_rng(0)
    vectors = np.zeros((12, 4), dtype=np.float32)
    vectors[0::2, 0], vectors[1::2, 1] = 1.0, 1.0
    vectors += rng.normal(0, 0.01, vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chain = [[i, i + 1] for i in range(11)]
    inside = [[i, i + 2] for i in range(10)]
    pairs = np.array(chain + inside)
    monkeypatch.setattr(pairs_module, "REGION_IMAGES", 3)
    order = pairs_module.local_order(pairs, vectors)
    assert sorted(order.tolist()) == list(range(len(pairs)))
    kinds = [
        "even" if a % 2 == 0 else "odd"
        for a, _ in pairs[order][pairs[order, 1] % 2 == pairs[order, 0] % 2]
    ]
    assert kinds in (sorted(kinds), sorted(kinds, reverse=True))
    plain = pairs_module.local_order(pairs)  # without vectors: one region, as before
    assert sorted(plain.tolist()) == list(range(len(pairs)))


def _disagreement(a: Image.Image, b: Image.Image, mirrored: bool = False) -> tuple[float, float]:
    first = extract_keypoints(a, CONFIG, mirrored=mirrored)
    second = extract_keypoints(b, CONFIG)
    found = match_keypoints(first, second, CONFIG)
    assert found is not None
    return content_disagreement(first, second, found.homography, CONFIG)


@pytest.mark.parametrize(
    "family", ["crop", "rotation", "angle", "border", "contrast", "grayscale", "lightness"]
)
def test_a_copy_agrees_in_content_after_alignment(family: str) -> None:
    original = _photo(30)
    share, centre = _disagreement(original, apply_edit(original, family, seed=3, strength=0.6))
    assert share < 0.05 and centre < 0.05


def test_a_mirrored_copy_agrees_through_the_mirrored_keypoints() -> None:
    original = _photo(31)
    share, centre = _disagreement(original, ImageOps.mirror(original), mirrored=True)
    assert share < 0.05 and centre < 0.05


def test_a_light_overlay_differs_only_where_it_was_painted() -> None:
    original = _photo(32)
    share, _ = _disagreement(original, apply_edit(original, "overlay", seed=0, strength=0.2))
    assert 0.0 < share < 0.2


def test_two_subjects_on_one_background_share_geometry_but_not_content() -> None:
    background = _photo(33)
    a = composite(background, _photo(34), seed=1, area=(0.35, 0.35))
    b = composite(background, _photo(35), seed=1, area=(0.35, 0.35))
    plain = count_inliers(extract_keypoints(a, CONFIG), extract_keypoints(b, CONFIG), CONFIG)
    assert plain >= 40  # the background alone aligns them: geometry cannot tell
    _, centre = _disagreement(a, b)
    assert centre > CHECKED.max_centre_disagreement
    checked = verified_inliers(
        extract_keypoints(a, CHECKED),
        extract_keypoints(a, CHECKED, mirrored=True),
        extract_keypoints(b, CHECKED),
        CHECKED,
    )
    assert checked == 0
    copy = apply_edit(a, "crop", seed=2, strength=0.4)
    assert (
        verified_inliers(
            extract_keypoints(a, CHECKED), None, extract_keypoints(copy, CHECKED), CHECKED
        )
        >= 40
    )


def test_a_match_on_the_background_alone_leaves_the_centre_out() -> None:
    from lookalike.verify import centre_match_rate

    background = _photo(36)
    a = composite(background, _photo(37), seed=2, area=(0.4, 0.4))
    b = composite(background, _photo(38), seed=2, area=(0.4, 0.4))
    first, second = extract_keypoints(a, CONFIG), extract_keypoints(b, CONFIG)
    found = match_keypoints(first, second, CONFIG)
    assert found is not None and found.inliers >= 20  # the shared background
    middle, around = centre_match_rate(first, second, found)
    assert middle < 0.02 < around
    copy = extract_keypoints(apply_edit(a, "rotation", seed=4, strength=0.3), CONFIG)
    found = match_keypoints(first, copy, CONFIG)
    assert found is not None
    middle, around = centre_match_rate(first, copy, found)
    assert middle > 0.5 * around > 0.02
    strict = VerifyConfig(min_centre_inlier_share=0.02)
    assert verified_inliers(first, None, second, strict) == 0
    assert verified_inliers(first, None, copy, strict) > 0


SHIPPED_CHECKS = VerifyConfig(
    max_disagreement=0.25,
    max_centre_disagreement=0.5,
    content_min_correlation=0.3,
    min_centre_inlier_share=0.02,
)


def _painted_over(photo: Image.Image) -> Image.Image:
    """The photo with flat shapes painted over its middle, as an overlay paints them."""
    out = photo.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    draw.rectangle((0.3 * w, 0.25 * h, 0.62 * w, 0.7 * h), fill=(200, 30, 40))
    draw.ellipse((0.5 * w, 0.35 * h, 0.75 * w, 0.75 * h), fill=(250, 230, 60))
    return out


def test_paint_over_the_centre_still_makes_a_copy_but_a_pasted_subject_does_not() -> None:
    photo = _photo(40)
    painted = _painted_over(photo)
    lenient = replace(SHIPPED_CHECKS, painted_max_std=0.5)
    a, b = extract_keypoints(photo, lenient), extract_keypoints(painted, lenient)
    assert judge_match(a, b, SHIPPED_CHECKS)[1] != AGREES  # the paint reads as a new subject
    found, verdict = judge_match(a, b, lenient)
    assert verdict == AGREES and found is not None and found.inliers >= 40
    # The cover is where the paint is: about a fifth of the overlap, none of it elsewhere.
    cover = painted_cover(a, b, found.homography, lenient)
    assert cover is not None and 0.1 < cover.mean() < 0.35
    # A photographed subject pasted on the same background is not paint: still refused.
    background = _photo(41)
    one = composite(background, _photo(42), seed=1, area=(0.35, 0.35))
    other = composite(background, _photo(43), seed=1, area=(0.35, 0.35))
    first, second = extract_keypoints(one, lenient), extract_keypoints(other, lenient)
    assert match_keypoints(first, second, lenient) is not None  # the background aligns them
    assert judge_match(first, second, lenient)[1] != AGREES


@pytest.mark.parametrize("family", ["crop", "rotation", "angle", "border", "jpeg", "overlay"])
def test_an_edited_copy_moves_as_one_picture(family: str) -> None:
    """Once aligned by the homography, nothing of a copy is left moving."""
    photo = _photo(1)
    edited = apply_edit(photo, family, seed=5, strength=0.5)
    a, b = extract_keypoints(photo, CONFIG), extract_keypoints(edited, CONFIG)
    found = match_keypoints(a, b, CONFIG)
    assert found is not None
    assert residual_motion(a, b, found.homography) < 4.0


@pytest.mark.parametrize("seed", range(4))
def test_a_second_shot_of_one_scene_is_a_shot_not_a_copy(seed: int) -> None:
    """The scene shot again (parts displaced ~8 px): keypoints match and the content
    agrees, but parts still move once aligned; with `max_motion` set, it is a shot."""
    photo = scene_photo(seed)
    again = second_shot(photo, seed + 50)
    a, b = extract_keypoints(photo, CONFIG), extract_keypoints(again, CONFIG)
    found = match_keypoints(a, b, CONFIG)
    assert found is not None
    assert residual_motion(a, b, found.homography) > 5.0
    sure = replace(SHIPPED_CHECKS, max_motion=5.0)
    assert judge_match(a, b, sure)[1] == SHOT
    assert judge_match(a, b, SHIPPED_CHECKS)[1] == AGREES  # without the check: counted
    verdict = verified_match(a, None, b, sure)
    assert verdict.shot and verdict.inliers == 0 and verdict.coverage > 0.1
    copy = extract_keypoints(apply_edit(photo, "jpeg", seed=seed), CONFIG)
    assert verified_match(a, None, copy, sure).inliers > 0  # a copy still counts


@pytest.mark.parametrize(("seed", "family"), [(4, "angle"), (5, "heavy")])
def test_a_copy_that_agrees_place_for_place_needs_no_centre_keypoints(
    seed: int, family: str
) -> None:
    """A strongly edited copy whose centre kept no matching keypoints is refused by the
    centre check alone; its aligned content agrees almost everywhere, which is enough
    with `clear_agreement`. A second shot and a pasted subject still disagree too much."""
    shipped = replace(SHIPPED_CHECKS, max_motion=5.0, painted_max_std=0.5)
    clear = replace(shipped, clear_agreement=0.05)
    photo = scene_photo(seed)
    a = extract_keypoints(photo, shipped)
    b = extract_keypoints(apply_edit(photo, family, seed=seed, strength=0.9), shipped)
    assert judge_match(a, b, shipped)[1] == "misses the centre"
    found, verdict = judge_match(a, b, clear)
    assert verdict == AGREES and found is not None
    assert max(content_disagreement(a, b, found.homography, clear)) <= 0.05
    again = extract_keypoints(second_shot(photo, seed + 50), shipped)
    assert judge_match(a, again, clear)[1] != AGREES
    background = _photo(seed + 60)
    one = composite(background, _photo(seed + 61), seed=1, area=(0.35, 0.35))
    other = composite(background, _photo(seed + 62), seed=1, area=(0.35, 0.35))
    first, second = extract_keypoints(one, clear), extract_keypoints(other, clear)
    assert match_keypoints(first, second, clear) is not None
    assert judge_match(first, second, clear)[1] != AGREES


def test_a_pixelated_copy_without_keypoints_is_vouched_for_by_its_perceptual_hash() -> None:
    """Pixelation can leave ORB nothing to match; the pictures' perceptual hashes still
    agree (direct, or mirrored for a mirrored copy), and an unrelated picture's do not.
    A near-plain picture's hash vouches for nothing (`hash_min_detail`), and the hash
    raises a pair only beside a CNN similarity that reaches its floor."""
    hashed = replace(SHIPPED_CHECKS, hash_max_bits=4, hash_min_cnn_similarity=0.9)
    photo = scene_photo(5)
    a, a_mirrored = extract_both(photo, hashed)
    copy = extract_keypoints(apply_edit(photo, "pixelate", seed=5, strength=1.0), hashed)
    assert verified_match(a, a_mirrored, copy, SHIPPED_CHECKS) == NOTHING
    found = verified_match(a, a_mirrored, copy, hashed)
    assert found.inliers == 0 and 0 <= found.hash_bits <= 4
    flipped = ImageOps.mirror(apply_edit(photo, "pixelate", seed=5, strength=1.0))
    mirrored = verified_match(a, a_mirrored, extract_keypoints(flipped, hashed), hashed)
    assert 0 <= mirrored.hash_bits <= 4
    for seed in (20, 21, 22):
        other = extract_keypoints(scene_photo(seed), hashed)
        assert verified_match(a, a_mirrored, other, hashed) == NOTHING
    floored = replace(hashed, hash_min_detail=0.006)  # the photo has detail; a plain wall not
    assert verified_match(a, a_mirrored, copy, floored).hash_bits == found.hash_bits
    wall = Image.new("RGB", (320, 240), (200, 190, 170))
    ImageDraw.Draw(wall).rectangle((100, 80, 220, 160), fill=(202, 192, 172))
    plain = extract_keypoints(wall, floored)
    assert plain.detail < 0.006 < a.detail
    assert verified_match(plain, None, plain, floored) == NOTHING
    assert verified_match(plain, None, plain, hashed).hash_bits == 0
    lifted = replace(hashed, confident_lift=7.0)
    matches = Matches.of([found, found, NOTHING, Verified(30, 0.5)])
    fused = fuse_evidence(np.array([0.95, 0.85, 0.95, 0.95]), matches, lifted)
    assert fused[0] > 0.9997  # raised as a CNN-confident pair is
    assert fused[1] == pytest.approx(0.85) and fused[2] == pytest.approx(0.95)
    assert fused[3] == pytest.approx(fuse_similarity(np.array([0.95]), np.array([30]), lifted)[0])


def test_a_thumbnail_keeps_keypoints_enough_to_confirm_its_rotated_copy() -> None:
    """A 32-px picture is scaled up tenfold for ORB, which smooths its corners away; a
    lower FAST threshold for thumbnails (`thumbnail_fast_threshold`) finds them again, and
    leaves the keypoints of a larger picture as they were."""
    lower = replace(SHIPPED_CHECKS, thumbnail_side=64, thumbnail_fast_threshold=4)
    photo = _photo(3)
    thumbnail = photo.resize((32, 32), Image.Resampling.BILINEAR)
    rotated = apply_edit(photo, "rotation", seed=3, strength=0.5)
    copy = rotated.resize((32, 32), Image.Resampling.BILINEAR)
    found = []
    for config in (SHIPPED_CHECKS, lower):
        a, a_mirrored = extract_both(thumbnail, config)
        found.append(verified_match(a, a_mirrored, extract_keypoints(copy, config), config))
    assert found[0].inliers == 0 and found[1].inliers > 4 * lower.inlier_offset
    larger = photo.resize((96, 72), Image.Resampling.BILINEAR)
    full = [extract_keypoints(larger, config) for config in (SHIPPED_CHECKS, lower)]
    assert np.array_equal(full[0].points, full[1].points)
    a, a_mirrored = extract_both(thumbnail, lower)
    for seed in (20, 21, 22):
        other = scene_photo(seed).resize((32, 32), Image.Resampling.BILINEAR)
        assert verified_match(a, a_mirrored, extract_keypoints(other, lower), lower) == NOTHING


def test_a_pair_with_a_thumbnail_is_aligned_to_the_thumbnails_tolerance() -> None:
    """Keypoints of a thumbnail are placed to within its own pixels, several pixels at the
    matching side: `thumbnail_reprojection_px` applies when either picture is one."""
    rng = np.random.default_rng(0)
    points = rng.uniform(20, 300, (200, 2)).astype(np.float32)
    descriptors = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    moved = points * 0.9 + np.float32(12) + rng.uniform(-7, 7, points.shape).astype(np.float32)
    config = replace(CONFIG, thumbnail_reprojection_px=12.0)

    def keys(at: np.ndarray, thumbnail: bool) -> Keypoints:
        return Keypoints(at, descriptors, (320, 320), thumbnail=thumbnail)

    counts = {
        (first, second): count_inliers(keys(points, first), keys(moved, second), config)
        for first in (False, True)
        for second in (False, True)
    }
    assert counts[(True, False)] == counts[(False, True)] == counts[(True, True)]
    assert counts[(True, True)] > 1.5 * counts[(False, False)] > 0


def test_settings_saved_under_their_older_names_are_read_and_fingerprinted_alike() -> None:
    old = {"candidate_min_similarity": 0.6, "confident_similarity": 0.99, "features": 400}
    config = VerifyConfig.from_dict(old)
    assert (config.min_cnn_similarity, config.confident_cnn_similarity) == (0.6, 0.99)
    assert config.features == 400
    assert VerifyConfig.from_dict(asdict(config)) == config
    saved = config.fingerprint_settings()
    assert saved["candidate_min_similarity"] == 0.6 and "min_cnn_similarity" not in saved
    with pytest.raises(TypeError):
        VerifyConfig.from_dict({"no_such_setting": 1})


def test_further_neighbours_are_verified_only_where_a_picture_has_copies(tiny_model) -> None:  # type: ignore[no-untyped-def]
    from lookalike.candidates import candidate_scores
    from lookalike.index import nearest_of

    config = replace(
        CONFIG, min_cnn_similarity=0.0, confident_cnn_similarity=0.99, candidates_per_image=4
    )
    staged = replace(tiny_model, verify=replace(config, first_candidates=1))
    verified: list[tuple[int, int]] = []

    def remember(pairs: np.ndarray, _fused: np.ndarray, _matches: object) -> None:
        verified.extend(map(tuple, pairs.tolist()))

    # Strangers only: each picture's first neighbour is verified, nothing further.
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    photos = [_photo(30 + k) for k in range(6)]
    candidate_scores(staged, vectors, photos.__getitem__, on_verified=remember)
    first = nearest_of(vectors, np.arange(6), 1)[:, 0]
    assert set(verified) == {(min(i, j), max(i, j)) for i, j in enumerate(first.tolist())}
    # A picture with copies (rows 1-3, CNN-confident with row 0): its further neighbours
    # are verified too, and the crop c (row 0's 4th neighbour) is found.
    vectors, images = _crowded_layout()
    verified.clear()
    scores = candidate_scores(staged, vectors, images.__getitem__, on_verified=remember)
    assert scores[(0, 4)] >= 0.99
    everything = candidate_scores(replace(tiny_model, verify=config), vectors, images.__getitem__)
    assert set(verified) <= set(everything)


def test_pairs_scored_block_by_block_equal_pairs_scored_at_once(tiny_model) -> None:  # type: ignore[no-untyped-def]
    from lookalike import candidates
    from lookalike.candidates import score_in_blocks

    model = replace(tiny_model, verify=VerifyConfig(min_cnn_similarity=0.6), detail=None)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[40:] = vectors[0] + rng.normal(scale=0.02, size=(10, 8))  # near copies of row 0
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = np.array([(i, j) for i in range(50) for j in range(i + 1, 50)], dtype=np.int64)
    at_once = model.cnn_similarity(vectors[pairs[:, 0]], vectors[pairs[:, 1]])
    blocks = score_in_blocks(model.cnn_similarity, vectors, pairs, block=7)
    np.testing.assert_array_equal(blocks, at_once)
    assert score_in_blocks(model.cnn_similarity, vectors, pairs[:0]).shape == (0,)
    raw, check = model.verification_prior(vectors[pairs[:, 0]], vectors[pairs[:, 1]])
    kept, scores = candidates._ambiguous(model, vectors, pairs)
    assert check.any() and not check.all()
    np.testing.assert_array_equal(kept, pairs[check])
    np.testing.assert_array_equal(scores, raw[check])
