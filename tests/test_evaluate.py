"""Metrics, block-wise pair scoring, benchmark sets and peers (lookalike.evaluate)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import make_picture
from lookalike.augment import FAMILIES, apply_edit
from lookalike.evaluate import (
    CNN_SYSTEM,
    MODEL_SYSTEM,
    BenchmarkError,
    ScoreTally,
    evaluate_hash,
    evaluate_model,
    evaluate_pairs,
    evaluate_systems,
    hash_files,
    load_truth,
    make_benchmark,
    pair_layout,
    recall_at_precision,
    tally_pairs,
    write_plots,
)
from lookalike.evaluate.benchmark import IMAGES_DIR, MIN_TILE, tile_boxes
from lookalike.evaluate.peers import PEERS, hamming_scorer
from lookalike.records import Truth
from lookalike.verify import VerifyConfig

# ---------------------------------------------------------------- reference implementations


def loop_confusion(pos: list[float], neg: list[float], cut: float) -> tuple[int, int, int, int]:
    tp = sum(1 for p in pos if p >= cut)
    fp = sum(1 for n in neg if n >= cut)
    return tp, fp, len(pos) - tp, len(neg) - fp


def loop_recall_at(pos: list[float], neg: list[float], target: float) -> float:
    best = 0.0
    for cut in set(pos):
        tp, fp, _, _ = loop_confusion(pos, neg, cut)
        if tp / (tp + fp) >= target:
            best = max(best, tp / len(pos))
    return best


def loop_average_precision(pos: list[float], neg: list[float]) -> float:
    total = 0.0
    for cut in set(pos):
        tp, fp, _, _ = loop_confusion(pos, neg, cut)
        total += sum(1 for p in pos if p == cut) * tp / (tp + fp)
    return total / len(pos)


def loop_roc_auc(pos: list[float], neg: list[float]) -> float:
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


# ---------------------------------------------------------------- metrics


def test_hand_computed_confusion_and_curves() -> None:
    pos, neg = [0.9, 0.8, 0.6, 0.4], [0.85, 0.5, 0.3, 0.1, 0.7]
    m = evaluate_pairs(pos, neg, ["jpeg", "crop", "jpeg", "crop"], min_score=0.65)
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 2, 2, 3)
    assert (m.precision, m.recall, m.f1) == (0.5, 0.5, 0.5)
    assert m.recall_by_family == {"crop": 0.5, "jpeg": 0.5}
    assert m.positives_by_family == {"crop": 2, "jpeg": 2}
    # Only the cut at 0.9 is free of false positives.
    assert m.recall_at_p99 == m.recall_at_p999 == 0.25
    assert m.recall_by_family_at_p99 == {"crop": 0.0, "jpeg": 0.5}
    assert m.at_p99.min_score == 0.9
    assert m.roc_auc == pytest.approx(14 / 20)
    assert m.pr_auc == pytest.approx((1 + 2 / 3 + 3 / 5 + 4 / 7) / 4)


def test_ties_are_decided_together() -> None:
    pos, neg = [0.5, 0.5, 0.9], [0.5, 0.2]
    m = evaluate_pairs(pos, neg, min_score=0.5)
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 1, 0, 1)
    assert m.precision == 0.75
    assert m.recall_at_p99 == pytest.approx(1 / 3)  # 0.5 lets the tied negative in
    assert m.roc_auc == pytest.approx((1.5 + 1.5 + 2) / 6)
    tally = ScoreTally(pos, None, 0.5)
    tally.add_negatives(neg)
    assert tally.recall_at(0.75) == (1.0, 0.5)


def test_no_positives_and_no_negatives() -> None:
    m = evaluate_pairs([], [0.3, 0.7], min_score=0.5)
    assert (m.tp, m.fp, m.fn, m.tn) == (0, 1, 0, 1)
    assert (m.precision, m.recall, m.f1, m.recall_at_p99) == (0.0, 0.0, 0.0, 0.0)
    assert m.recall_by_family == {}
    assert math.isnan(m.pr_auc) and math.isnan(m.roc_auc)
    m = evaluate_pairs([0.6, 0.4], [], min_score=0.5)
    assert (m.tp, m.fp, m.fn, m.tn, m.precision) == (1, 0, 1, 0, 1.0)
    assert m.recall_at_p999 == 1.0 and m.pr_auc == 1.0 and math.isnan(m.roc_auc)


def test_nan_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        evaluate_pairs([0.5], [float("nan")])
    with pytest.raises(ValueError, match="families"):
        ScoreTally([0.5, 0.6], ["jpeg"], 0.5)


scores = st.lists(st.integers(0, 8).map(lambda v: v / 8), max_size=25)


@settings(max_examples=150, deadline=None)
@given(pos=scores, neg=scores, cut=st.integers(0, 9).map(lambda v: v / 8), data=st.data())
def test_metrics_match_plain_loops(
    pos: list[float], neg: list[float], cut: float, data: st.DataObject
) -> None:
    """Coarse scores force ties; the negatives arrive in random blocks."""
    tally = ScoreTally(pos, None, cut)
    rest = list(neg)
    while rest:
        size = data.draw(st.integers(1, len(rest)))
        tally.add_negatives(np.array(rest[:size], dtype=np.float32))
        rest = rest[size:]
    m = tally.metrics("x")
    assert (m.tp, m.fp, m.fn, m.tn) == loop_confusion(pos, neg, cut)
    if pos:
        for target in (0.5, 0.99):
            expected = loop_recall_at(pos, neg, target)
            assert tally.recall_at(target)[0] == pytest.approx(expected)
            assert recall_at_precision(np.array(pos), np.array(neg), target) == pytest.approx(
                tally.recall_at(target)
            )
        assert m.pr_auc == pytest.approx(loop_average_precision(pos, neg))
    if pos and neg:
        assert m.roc_auc == pytest.approx(loop_roc_auc(pos, neg))
        curve = np.array(tally.curves("x").roc)
        area = np.sum(np.diff(curve[:, 0]) * (curve[1:, 1] + curve[:-1, 1]) / 2)
        assert area == pytest.approx(m.roc_auc)
        assert np.all(np.diff(curve[:, 0]) >= 0) and np.all(np.diff(curve[:, 1]) >= 0)


def test_curves_and_histograms() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.uniform(0.5, 1.0, 40), rng.uniform(0.0, 0.8, 300)
    tally = ScoreTally(pos, None, 0.7)
    tally.add_negatives(neg)
    curves = tally.curves("x")
    assert curves.roc[0] == (0.0, 0.0) and curves.roc[-1] == (1.0, 1.0)
    assert curves.pr[-1][0] == 1.0
    assert sum(curves.positive_counts) == 40 and sum(curves.negative_counts) == 300
    assert len(curves.bin_edges) == len(curves.positive_counts) + 1


# ---------------------------------------------------------------- block scoring


def fake_truth(group_sizes: list[int], distractors: int) -> Truth:
    groups, edits = [], {}
    for g, size in enumerate(group_sizes):
        names = [f"o{g}"] + [f"e{g}_{k}" for k in range(size - 1)]
        groups.append(tuple(names))
        edits.update({n: FAMILIES[k % 3] for k, n in enumerate(names[1:])})
    return Truth(
        root=Path("/nowhere"),
        groups=tuple(groups),
        edits=edits,
        originals=tuple(g[0] for g in groups),
        distractors=tuple(f"d{k}" for k in range(distractors)),
    )


def brute_force_pairs(truth: Truth, score: np.ndarray) -> tuple[list, list, list]:
    group_of = {}
    for number, members in enumerate(truth.groups):
        group_of.update({name: number for name in members})
    names = truth.images
    pos, fams, neg = [], [], []
    for i, j in itertools.combinations(range(len(names)), 2):
        a, b = names[i], names[j]
        if a in group_of and b in group_of and group_of[a] == group_of[b]:
            if a in truth.originals or b in truth.originals:
                pos.append(score[i, j])
                fams.append(truth.edits[b if a in truth.originals else a])
        else:
            neg.append(score[i, j])
    return pos, fams, neg


@pytest.mark.parametrize("block_elements", [1, 7, 50, 10_000])
def test_block_scoring_matches_brute_force(block_elements: int) -> None:
    truth = fake_truth([4, 1, 3, 5], distractors=6)
    n = len(truth.images)
    rng = np.random.default_rng(block_elements)
    vectors = rng.normal(size=(n, 4)).astype(np.float32)
    vectors = np.round(vectors, 1)  # coarse, so some scores tie
    full = vectors @ vectors.T
    layout = pair_layout(truth)
    assert layout.positives == 4 + 0 + 2 + 3 and layout.ignored == 3 + 1 + 6
    tally = tally_pairs(layout, lambda r, c: full[np.ix_(r, c)], 0.3, block_elements=block_elements)
    pos, fams, neg = brute_force_pairs(truth, full)
    assert layout.negatives == len(neg) == tally.negatives
    assert sorted(tally.positives) == sorted(pos)
    assert tally.metrics("x") == evaluate_pairs(pos, neg, fams, min_score=0.3, system="x")


def test_unreadable_images_never_match() -> None:
    truth = fake_truth([3, 2], distractors=2)
    layout = pair_layout(truth)
    valid = np.ones(len(truth.images), dtype=bool)
    valid[1] = False  # an edit of the first original
    tally = tally_pairs(layout, lambda r, c: np.ones((r.size, c.size)), 0.5, valid=valid)
    m = tally.metrics("x")
    assert (m.tp, m.fn) == (2, 1)
    # Every negative pair with the unreadable image is a true negative.
    assert m.tn == len(truth.images) - 1 - 2 and m.fp == layout.negatives - m.tn


def test_hamming_scorer_matches_bit_counts() -> None:
    rng = np.random.default_rng(3)
    words = rng.integers(0, 2**63, size=(9, 4), dtype=np.uint64)
    hashes = hash_files([], "pdq")
    hashes.words, hashes.valid = words, np.ones(9, dtype=bool)
    got = hamming_scorer(hashes)(np.arange(9), np.arange(9))
    for i, j in itertools.product(range(9), repeat=2):
        distance = sum(
            bin(int(a) ^ int(b)).count("1") for a, b in zip(words[i], words[j], strict=True)
        )
        assert got[i, j] == 1 - distance / 256


# ---------------------------------------------------------------- benchmark sets


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for k in range(9):
        make_picture(k, (320, 240)).save(root / f"photo_{k}.jpg", quality=92)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture(scope="module")
def bench(photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Truth:
    names = [f"photo_{k}.jpg" for k in range(9)]
    return make_benchmark(
        photo_dir,
        tmp_path_factory.mktemp("bench") / "set",
        originals=3,
        distractors=4,
        seed=5,
        tiles=3,
        families=("jpeg", "flip", "crop", "border"),
        photo_names=names,
        workers=2,
    )


def test_truth_file_round_trip(bench: Truth) -> None:
    assert load_truth(bench.root) == bench
    assert load_truth(bench.root / "truth.json") == bench
    payload = json.loads((bench.root / "truth.json").read_text())
    assert {"groups", "edits", "originals", "distractors"} <= set(payload)
    assert payload["groups"] == [list(g) for g in bench.groups]


def test_benchmark_contents(bench: Truth) -> None:
    files = sorted(p.name for p in (bench.root / IMAGES_DIR).iterdir())
    assert files == sorted(bench.images)
    assert all(len(n) == 20 and n.endswith(".jpg") for n in files)  # 16 random hex digits
    assert len(bench.groups) == 3 and all(len(g) == 5 for g in bench.groups)
    assert sorted(bench.edits.values()) == sorted(["jpeg", "flip", "crop", "border"] * 3)
    assert 4 <= len(bench.distractors) <= 12
    for name in bench.images:
        with Image.open(bench.root / IMAGES_DIR / name) as image:
            assert image.format == "JPEG"
    # Each group holds one photo and its edits; no photo is both original and distractor.
    for group in bench.groups:
        assert len({bench.sources[n].photo for n in group}) == 1
    original_photos = {bench.sources[n].photo for n in bench.originals}
    assert not original_photos & {bench.sources[n].photo for n in bench.distractors}


def test_tiles_never_overlap_another_image(bench: Truth) -> None:
    by_photo: dict[str, list[tuple[int, int, int, int] | None]] = {}
    for name in bench.images:
        by_photo.setdefault(bench.sources[name].photo, []).append(bench.sources[name].box)
    tiled = {photo: boxes for photo, boxes in by_photo.items() if any(boxes)}
    assert tiled  # 320x240 photos give several tiles each
    for boxes in tiled.values():
        # A tiled photo is used for tiles only: never whole, never as an original.
        assert all(box is not None for box in boxes)
        for a, b in itertools.combinations(boxes, 2):
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    for name in bench.distractors:
        source = bench.sources[name]
        with Image.open(bench.root / IMAGES_DIR / name) as image:
            if source.box:
                left, top, right, bottom = source.box
                assert image.size == (right - left, bottom - top)
                assert min(image.size) >= MIN_TILE
                assert right <= source.size[0] and bottom <= source.size[1]


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(20, 3000), h=st.integers(20, 3000), k=st.integers(1, 12), seed=st.integers(0, 9)
)
def test_tile_boxes_are_disjoint_and_inside(w: int, h: int, k: int, seed: int) -> None:
    boxes = tile_boxes(w, h, k, np.random.default_rng(seed))
    assert len(boxes) <= k
    if min(w, h) >= MIN_TILE:
        assert boxes
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
        assert min(right - left, bottom - top) >= MIN_TILE
    for a, b in itertools.combinations(boxes, 2):
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_same_seed_same_set(photo_dir: Path, tmp_path: Path) -> None:
    first = make_benchmark(
        photo_dir,
        tmp_path / "a",
        originals=2,
        distractors=2,
        seed=1,
        families=("jpeg",),
        photo_names=["photo_1.jpg", "photo_2.jpg", "photo_3.jpg", "photo_4.jpg"],
        workers=1,
    )
    second = make_benchmark(
        photo_dir,
        tmp_path / "b",
        originals=2,
        distractors=2,
        seed=1,
        families=("jpeg",),
        photo_names=["photo_1.jpg", "photo_2.jpg", "photo_3.jpg", "photo_4.jpg"],
        workers=2,
    )
    assert first.groups == second.groups and first.distractors == second.distractors
    for name in first.images:
        a = (tmp_path / "a" / IMAGES_DIR / name).read_bytes()
        assert a == (tmp_path / "b" / IMAGES_DIR / name).read_bytes()


def test_unreadable_photos_are_skipped_and_duplicates_refused(
    photo_dir: Path, tmp_path: Path
) -> None:
    more = tmp_path / "more"
    more.mkdir()
    (more / "again.jpg").write_bytes((photo_dir / "photo_0.jpg").read_bytes())
    make_picture(77, (200, 150)).save(more / "new.jpg")
    truth = make_benchmark(
        photo_dir,
        tmp_path / "set",
        originals=0,
        distractors=10,  # every photo, the broken one included
        more_distractors=more,
        workers=1,
    )
    reasons = {e.path.name: e.reason for e in truth.skipped}
    assert reasons["again.jpg"] == "same bytes as photo_0.jpg"
    assert "broken.jpg" in reasons
    assert len(truth.distractors) == 10 and not truth.groups


def test_bad_requests_are_refused(photo_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="only 10 photos"):
        make_benchmark(photo_dir, tmp_path / "x", originals=6, distractors=5)
    with pytest.raises(BenchmarkError, match="unknown edit family"):
        make_benchmark(photo_dir, tmp_path / "x", originals=1, distractors=1, families=["zoom"])
    with pytest.raises(BenchmarkError, match="not in"):
        make_benchmark(photo_dir, tmp_path / "x", originals=1, distractors=0, photo_names=["no"])
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    with pytest.raises(BenchmarkError, match="not an empty folder"):
        make_benchmark(photo_dir, taken, originals=1, distractors=1)
    assert (taken / "mine.txt").read_text() == "keep me"
    with pytest.raises(BenchmarkError, match="not a benchmark set"):
        load_truth(tmp_path)


def test_damaged_truth_is_refused(bench: Truth, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bench.root, copy)
    (copy / IMAGES_DIR / bench.distractors[0]).unlink()
    with pytest.raises(BenchmarkError, match="missing"):
        load_truth(copy)
    (copy / "truth.json").write_text('{"groups": 3}')
    with pytest.raises(BenchmarkError, match="not a valid truth file"):
        load_truth(copy)


# ---------------------------------------------------------------- systems


def test_evaluate_model_and_peers_on_a_tiny_set(bench: Truth, tiny_model, tmp_path: Path) -> None:
    layout = pair_layout(bench)
    model_eval = evaluate_model(bench.root, tiny_model, min_similarity=0.95, workers=2)
    m = model_eval.metrics
    assert m.system == "lookalike"
    assert m.tp + m.fn == layout.positives == 12
    assert m.fp + m.tn == layout.negatives
    assert m.positives_by_family == {"crop": 3, "flip": 3, "jpeg": 3, "border": 3}
    assert m.min_similarity == 0.95 and m.unreadable == 0
    assert m.seconds > 0 and m.images_per_s > 0 and m.peak_rss_mb > 50
    assert 0 <= m.cpu_util <= 1.5
    peer = evaluate_hash(bench, "phash", workers=2).metrics
    assert peer.tp + peer.fn == 12 and peer.fp + peer.tn == layout.negatives
    # pHash survives JPEG re-compression and misses mirror images.
    assert peer.recall_by_family["jpeg"] == 1.0 and peer.recall_by_family["flip"] == 0.0
    assert peer.max_distance == 10 and peer.min_score == 1 - 10 / 64
    paths = write_plots([model_eval, evaluate_hash(bench, "pdq")], tmp_path / "plots")
    assert [p.name for p in paths] == [
        "pr.png",
        "roc.png",
        "recall_by_family.png",
        "scores_lookalike.png",
        "scores_pdq.png",
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            image.verify()
    with pytest.raises(FileExistsError):
        write_plots([model_eval], tmp_path / "plots")


def test_the_cnn_alone_is_reported_beside_the_rule(bench: Truth, tiny_model) -> None:
    rule = replace(
        tiny_model, verify=VerifyConfig(min_cnn_similarity=0.5, confident_cnn_similarity=0.97)
    )
    run = evaluate_systems(bench, rule, workers=2)
    assert [e.metrics.system for e in run.evaluations] == [MODEL_SYSTEM, CNN_SYSTEM]
    alone = run.evaluations[1].metrics
    assert alone.verified_pairs == 0 and alone.min_similarity == 0.97
    plain = evaluate_model(bench, rule.without_verification(), workers=2).metrics
    assert (alone.tp, alone.fp, alone.fn) == (plain.tp, plain.fp, plain.fn)
    assert alone.recall_at_p99 == plain.recall_at_p99
    # Without verification there is nothing to report apart.
    assert len(evaluate_systems(bench, tiny_model, workers=2).evaluations) == 1


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_hash_of_a_jpeg_copy_is_close(name: str, tmp_path: Path) -> None:
    picture = make_picture(11, (400, 300))
    picture.save(tmp_path / "a.png")
    apply_edit(picture, "jpeg", seed=0, strength=0.0).save(tmp_path / "b.jpg", quality=95)
    make_picture(12, (400, 300)).save(tmp_path / "c.png")
    (tmp_path / "d.jpg").write_bytes(b"broken")
    hashes = hash_files([tmp_path / n for n in ("a.png", "b.jpg", "c.png", "d.jpg")], name)
    assert hashes.valid.tolist() == [True, True, True, False]
    assert [e.path.name for e in hashes.errors] == ["d.jpg"]
    distance = (1 - hamming_scorer(hashes)(np.arange(3), np.arange(3))) * PEERS[name].bits
    assert distance[0, 1] <= PEERS[name].max_distance
    assert distance[0, 2] > distance[0, 1]


def test_blank_tiles_are_not_distractors(tmp_path: Path) -> None:
    """Single-colour tiles are the same image as each other, so they are left out."""
    from PIL import Image as PILImage

    from conftest import make_picture
    from lookalike.evaluate import make_benchmark

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, name in ((1, "a.png"), (2, "b.png")):
        half_blank = make_picture(seed, (320, 240))
        half_blank.paste(PILImage.new("RGB", (160, 240), (255, 255, 255)), (160, 0))
        half_blank.save(photos / name)
    truth = make_benchmark(
        photos,
        tmp_path / "bench",
        originals=1,
        distractors=1,
        tiles=4,
        seed=0,
        families=["jpeg"],
        workers=1,
    )
    for name in truth.distractors:
        grey = np.asarray(PILImage.open(truth.root / "images" / name).convert("L"), float)
        assert grey.std() >= 2.0
    assert 1 <= len(truth.distractors) < 4


def test_composites_are_distractors_of_one_place_counted_apart(
    photo_dir: Path, tiny_model, tmp_path: Path
) -> None:
    names = [f"photo_{k}.jpg" for k in range(9)]
    truth = make_benchmark(
        photo_dir,
        tmp_path / "set",
        originals=1,
        distractors=2,
        composites=1,
        families=("jpeg",),
        photo_names=names,
        seed=3,
        workers=1,
    )
    assert load_truth(truth.root) == truth
    (siblings,) = truth.composites
    assert len(siblings) == 3 and set(siblings) <= set(truth.distractors)
    assert len({truth.sources[n].photo for n in siblings}) == 1  # one background
    pixels = [np.asarray(Image.open(truth.root / IMAGES_DIR / n)) for n in siblings]
    assert not np.array_equal(pixels[0], pixels[1])  # different subjects pasted
    used = {truth.sources[n].photo for n in truth.images}
    assert len(used) == 1 + 2 + 1  # subjects' photos appear nowhere else in the set
    layout = pair_layout(truth)
    assert len(layout.siblings) == 3
    everything = evaluate_model(truth, tiny_model, min_similarity=0.0, workers=1).metrics
    assert (everything.sibling_pairs, everything.sibling_fp) == (3, 3)
    nothing = evaluate_model(truth, tiny_model, min_similarity=1.0, workers=1).metrics
    assert nothing.sibling_fp == 0
    with pytest.raises(BenchmarkError, match="composite backgrounds need 8 photos"):
        make_benchmark(
            photo_dir,
            tmp_path / "too-many",
            originals=1,
            distractors=2,
            composites=2,
            photo_names=names,
        )
