"""The keep policies: `best` keeps the original among its edits and says why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_picture
from lookalike.augment import apply_edit
from lookalike.scan import KEEP_REASONS, Candidate, choose_keeper
from lookalike.scan.keepers import measure_traits


def _file(path: Path, image: Image.Image, mtime: int = 10**18, **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save)
    os.utime(path, ns=(mtime, mtime))
    return path


def _candidates(*paths: Path) -> list[Candidate]:
    out = []
    for n, path in enumerate(paths):
        stat = path.stat()
        with Image.open(path) as image:
            width, height = image.size
        traits = measure_traits(path)
        out.append(
            Candidate(
                n,
                str(path),
                width,
                height,
                stat.st_size,
                stat.st_mtime_ns,
                n,
                f"h{n}",
                traits=traits,
            )
        )
    return out


def test_traits_read_jpeg_quality_and_leave_a_frame_out(tmp_path: Path) -> None:
    picture = make_picture(1, (200, 150))
    fine = measure_traits(_file(tmp_path / "fine.jpg", picture, quality=90))
    coarse = measure_traits(_file(tmp_path / "coarse.jpg", picture, quality=40))
    lossless = measure_traits(_file(tmp_path / "lossless.png", picture))
    assert fine.jpeg_quality is not None and abs(fine.jpeg_quality - 90) <= 2
    assert coarse.jpeg_quality is not None and abs(coarse.jpeg_quality - 40) <= 2
    assert lossless.jpeg_quality is None
    canvas = Image.new("RGB", (400, 300), (0, 0, 0))
    canvas.paste(picture, (100, 75))
    framed = measure_traits(_file(tmp_path / "framed.png", canvas))
    assert framed.pixels == pytest.approx(200 * 150, rel=0.05)
    grey = measure_traits(_file(tmp_path / "grey.png", picture.convert("L")))
    assert grey.colour < 1 < lossless.colour


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_best_keeps_the_original_among_its_edits_whatever_their_names_and_times(
    tmp_path: Path, seed: int
) -> None:
    picture = make_picture(seed, (240, 180))
    # Every file has the same time, and names sort the original last: only content decides.
    # (Brightness and contrast changes and mild blur are left out: the small standardised
    # thumbnails barely see them, so such a copy ties with its original and the later
    # stages decide.)
    original = _file(tmp_path / "z_original.png", picture)
    edits = [
        _file(tmp_path / f"{family}.png", apply_edit(picture, family, seed=seed, strength=0.6))
        for family in ("jpeg", "noise", "saturation", "pixelate", "overlay", "grayscale")
    ]
    pool = _candidates(original, *edits)
    keeper, why = choose_keeper(pool, "best")
    assert keeper.path == str(original), why
    assert why == "closest-to-others"
    # "largest" ties on pixels and keeps the one with the most bytes: the noisy copy.
    assert choose_keeper(pool, "largest")[0].path == str(tmp_path / "noise.png")


def test_best_in_a_pair_prefers_pixels_then_colour_then_the_older_file(tmp_path: Path) -> None:
    picture = make_picture(7, (240, 180))
    original = _file(tmp_path / "b.png", picture, mtime=10**18)
    smaller = _file(tmp_path / "a_small.png", picture.resize((120, 90)), mtime=10**17)
    grey = _file(tmp_path / "a_grey.png", picture.convert("L").convert("RGB"), mtime=10**17)
    newer = _file(tmp_path / "a_newer.png", picture, mtime=2 * 10**18)
    canvas = Image.new("RGB", (480, 360), (0, 0, 0))
    canvas.paste(picture, (120, 90))
    framed = _file(tmp_path / "a_framed.png", canvas, mtime=2 * 10**18)
    expected = {smaller: "most-pixels", grey: "more-colour", newer: "oldest", framed: "oldest"}
    for copy, reason in expected.items():
        pool = _candidates(original, copy)
        assert choose_keeper(pool, "best") == (pool[0], reason), copy.name
    # The frame wins "largest": more pixels, though not more picture.
    assert choose_keeper(_candidates(original, framed), "largest")[0].path == str(framed)


def test_best_prefers_the_member_that_is_a_duplicate_of_the_most_others(tmp_path: Path) -> None:
    picture = make_picture(9, (240, 180))
    paths = [
        _file(tmp_path / f"{n}.png", apply_edit(picture, "jpeg", seed=n, strength=0.2))
        for n in range(3)
    ]
    pool = _candidates(*paths)
    assert choose_keeper(pool, "best", {0: 1, 1: 2, 2: 1}) == (pool[1], "most-duplicates")


def test_every_policy_names_its_reason_and_refuses_unknown_names(tmp_path: Path) -> None:
    picture = make_picture(11)
    pool = _candidates(
        _file(tmp_path / "a.png", picture, mtime=2 * 10**18),
        _file(tmp_path / "bb.png", picture, mtime=10**18),
    )
    for policy in ("best", "largest", "oldest", "newest", "shortest-path", "first"):
        assert choose_keeper(pool, policy)[1] in KEEP_REASONS, policy
    with pytest.raises(ValueError, match="keep policy"):
        choose_keeper(pool, "biggest")
    # Without measured traits `best` still decides, on the file's size and time.
    bare = [
        Candidate(c.id, c.path, c.width, c.height, c.size, c.mtime_ns, c.order, c.hash)
        for c in pool
    ]
    assert choose_keeper(bare, "best")[0].path.endswith("bb.png")
