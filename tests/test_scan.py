"""scan_folder: exact and near duplicates, groups and keepers, incremental and resumed scans."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SyntheticFolder, make_picture
from lookalike.index import open_index
from lookalike.records import ScanProgress
from lookalike.scan import (
    Candidate,
    ScanError,
    build_groups,
    choose_keeper,
    find_leaks,
    quarantine,
    read_result,
    regroup,
    scan_folder,
)
from lookalike.scan.run import index_lock
from scan_support import content_model, new_and_archive


@pytest.fixture()
def photos(synthetic_folder: SyntheticFolder, tmp_path: Path) -> Path:
    """A private copy of the synthetic folder (tests change files in it)."""
    return Path(shutil.copytree(synthetic_folder.root, tmp_path / "photos"))


def _groups(result) -> set[frozenset[str]]:  # type: ignore[no-untyped-def]
    return {frozenset(Path(m.path).name for m in g.members) for g in result.groups}


def _file_rows(index: Path) -> list[str]:
    with sqlite3.connect(index) as conn:
        return [p for (p,) in conn.execute("SELECT path FROM files")]


def test_groups_edited_copies_with_their_original(
    photos: Path, tmp_path: Path, synthetic_folder: SyntheticFolder
) -> None:
    result = scan_folder([photos], tmp_path / "idx", model=content_model(), workers=1)
    # The content model sees re-compressed, resized and lightened copies, not crops.
    expected = {
        frozenset(
            [original.name]
            + [
                copy.name
                for copy, (source, family) in synthetic_folder.edits.items()
                if source == original and family in ("jpeg", "resize", "lightness")
            ]
        )
        for original in synthetic_folder.originals
    }
    groups = _groups(result)
    assert groups == expected
    for group in groups:  # no group mixes two pictures
        assert len({name.split("_")[1].split(".")[0] for name in group}) == 1
    assert result.stats.images == len(list(photos.rglob("*.*"))) - 1
    assert [e.path.name for e in result.errors] == ["broken.jpg"]
    for group in result.groups:
        assert group.keep == group.members[0].path
        assert group.members[0].similarity_to_keep == 1.0
        assert all(m.similarity_to_keep >= result.min_similarity for m in group.members)


def test_unreadable_files_are_listed_and_the_scan_goes_on(photos: Path, tmp_path: Path) -> None:
    (photos / "empty.png").write_bytes(b"")
    (photos / "text.jpg").write_text("<html>not an image</html>")
    os.symlink(photos / "does-not-exist.jpg", photos / "dangling.jpg")
    result = scan_folder([photos], tmp_path / "idx", model=content_model(), workers=1)
    reasons = {e.path.name: e.reason for e in result.errors}
    assert set(reasons) == {"broken.jpg", "empty.png", "text.jpg", "dangling.jpg"}
    assert reasons["dangling.jpg"] == "broken symbolic link"
    assert reasons["empty.png"] == "empty file"
    assert result.stats.errors == 4
    assert result.groups  # the readable images were still grouped


def test_exact_copies_are_grouped_and_embedded_once(photos: Path, tmp_path: Path) -> None:
    for n in range(3):
        shutil.copyfile(photos / "other" / "unrelated_1.jpg", photos / f"dup_{n}.jpg")
    model = content_model()
    result = scan_folder([photos], tmp_path / "idx", model=model, workers=1)
    distinct = result.stats.images - result.stats.exact_duplicates
    assert result.stats.exact_duplicates == 3
    assert result.stats.embedded == distinct
    exact = [p for p in result.pairs if p.exact]
    assert len(exact) == 6  # 4 identical files
    assert all(p.similarity == 1.0 and p.duplicate for p in exact)
    group = next(g for g in result.groups if g.keep.name.startswith(("dup", "unrelated_1")))
    assert {m.path.name for m in group.members} == {
        "dup_0.jpg",
        "dup_1.jpg",
        "dup_2.jpg",
        "unrelated_1.jpg",
    }
    with open_index(tmp_path / "idx") as index:
        assert len(index.embedded_vectors()[0]) == distinct


def test_hard_links_and_symlinks_are_one_file_not_copies(photos: Path, tmp_path: Path) -> None:
    os.link(photos / "other" / "unrelated_2.jpg", photos / "hard.jpg")
    os.symlink(photos / "other" / "unrelated_2.jpg", photos / "soft.jpg")
    result = scan_folder([photos], tmp_path / "idx", model=content_model(), workers=1)
    assert result.stats.same_file == 2
    assert result.stats.exact_duplicates == 0
    names = {p.a.name for p in result.pairs} | {p.b.name for p in result.pairs}
    names |= {m.path.name for g in result.groups for m in g.members}
    assert not {"hard.jpg", "soft.jpg", "unrelated_2.jpg"} & names


def test_review_pairs_sit_between_the_two_cut_offs(photos: Path, tmp_path: Path) -> None:
    result = scan_folder(
        [photos],
        tmp_path / "idx",
        model=content_model(),
        min_similarity=0.95,
        review_min_similarity=0.8,
        workers=1,
    )
    review = [p for p in result.pairs if not p.duplicate]
    assert review, "crops score between 0.8 and 0.95 with the content model"
    assert all(0.8 <= p.similarity < 0.95 for p in review)
    assert all(p.similarity >= 0.95 for p in result.pairs if p.duplicate and not p.exact)
    names = {frozenset((p.a.name, p.b.name)) for p in review}
    assert frozenset({"original_1.png", "copy_1_crop.jpg"}) in names


def test_incremental_rescan_embeds_only_new_and_changed_files(photos: Path, tmp_path: Path) -> None:
    model = content_model()
    index = tmp_path / "idx"
    first = scan_folder([photos], index, model=model, workers=1)
    again = scan_folder([photos], index, model=model, workers=1)
    assert (again.stats.embedded, again.stats.hashed) == (0, 0)
    assert _groups(again) == _groups(first)

    make_picture(77).save(photos / "new.png")
    changed = photos / "other" / "unrelated_0.jpg"
    make_picture(78, (140, 140)).save(changed, quality=90)
    os.utime(changed, ns=(10**18, 10**18))
    (photos / "copies" / "copy_0_jpeg.jpg").unlink()
    third = scan_folder([photos], index, model=model, workers=1)
    assert third.stats.embedded == 2
    assert third.stats.hashed == 2
    paths = _file_rows(index)
    assert str(photos / "new.png") in paths
    assert str(photos / "copies" / "copy_0_jpeg.jpg") not in paths
    assert all("copy_0_jpeg" not in str(p.a) + str(p.b) for p in third.pairs)
    assert third.stats.files == first.stats.files


def test_a_different_model_re_embeds_everything(photos: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    first = scan_folder([photos], index, model=content_model(seed=0), workers=1)
    second = scan_folder([photos], index, model=content_model(seed=1), workers=1)
    distinct = first.stats.images - first.stats.exact_duplicates
    assert second.stats.embedded == distinct
    assert second.model == "content-1"
    with open_index(index) as store:
        assert len(store.embedded_vectors()[0]) == distinct


class _Stop(Exception):
    pass


def test_a_scan_stopped_mid_embedding_resumes_without_redoing_work(
    photos: Path, tmp_path: Path
) -> None:
    model = content_model()
    index = tmp_path / "idx"

    def stop_after_two_batches(event: ScanProgress) -> None:
        if event.stage == "embed" and event.done >= 4:
            raise _Stop

    with pytest.raises(_Stop):
        scan_folder(
            [photos],
            index,
            model=model,
            batch_size=2,
            workers=1,
            on_progress=stop_after_two_batches,
        )
    with open_index(index) as store:
        stored = len(store.embedded_vectors()[0])
    resumed = scan_folder([photos], index, model=model, batch_size=2, workers=1)
    fresh = scan_folder([photos], tmp_path / "fresh", model=model, workers=1)
    assert 3 <= stored < fresh.stats.embedded  # two batches kept (one file is unreadable)
    assert resumed.stats.embedded == fresh.stats.embedded - stored
    assert _groups(resumed) == _groups(fresh)
    paths = _file_rows(index)
    assert len(paths) == len(set(paths)) == fresh.stats.files


def test_a_scan_killed_mid_walk_leaves_the_last_result_readable(
    photos: Path, tmp_path: Path
) -> None:
    model = content_model()
    index = tmp_path / "idx"
    first = scan_folder([photos], index, model=model, workers=1)

    def stop_at_walk(event: ScanProgress) -> None:
        if event.stage == "walk":
            raise _Stop

    (photos / "copies" / "copy_1_jpeg.jpg").unlink()
    with pytest.raises(_Stop):
        scan_folder([photos], index, model=model, workers=1, on_progress=stop_at_walk)
    # The stored outcome is still the last finished scan's, whole.
    assert _groups(read_result(index)) == _groups(first)


def test_keep_policies_choose_the_keeper(photos: Path, tmp_path: Path) -> None:
    source = photos / "other" / "unrelated_3.jpg"
    short = photos / "u.jpg"
    long = photos / "other" / "a_much_longer_name.jpg"
    shutil.copyfile(source, short)
    shutil.copyfile(source, long)
    os.utime(source, ns=(2 * 10**18, 2 * 10**18))
    os.utime(short, ns=(3 * 10**18, 3 * 10**18))
    os.utime(long, ns=(1 * 10**18, 1 * 10**18))
    model = content_model()
    # The walk yields a folder's own files before its subfolders: u.jpg comes first.
    expected = {
        "oldest": long,
        "newest": short,
        "shortest-path": short,
        "first": short,
        "largest": long,  # same pixels and bytes: the path that sorts first
        "best": long,  # the same picture three times: the oldest
    }
    for policy, keeper in expected.items():
        result = scan_folder([photos], tmp_path / "idx", model=model, keep=policy, workers=1)
        group = next(g for g in result.groups if source in {m.path for m in g.members})
        assert group.keep == keeper, policy


def test_not_duplicate_marks_and_chosen_keepers_survive_a_rescan(
    photos: Path, tmp_path: Path
) -> None:
    model = content_model()
    index = tmp_path / "idx"
    first = scan_folder([photos], index, model=model, workers=1)
    family = {"original_2.png", "copy_2_jpeg.jpg", "copy_2_resize.jpg", "copy_2_lightness.jpg"}
    assert family in _groups(first)
    with open_index(index) as store:
        rows = {r.path.name: r for r in store.files()}
        group_id = next(g.id for g in store.groups() if g.keep in {rows[n].id for n in family})
        store.set_keeper(group_id, rows["copy_2_resize.jpg"].id)
        store.mark_not_duplicate(
            rows["copy_2_resize.jpg"].hash or "", rows["copy_2_jpeg.jpg"].hash or ""
        )
        live = regroup(store, 0.95)
    again = scan_folder([photos], index, model=model, workers=1)
    group = next(g for g in again.groups if "original_2.png" in {m.path.name for m in g.members})
    assert group.keep.name == "copy_2_resize.jpg"
    # copy_2_jpeg is no duplicate of the chosen keeper any more: the guard splits it off.
    assert {m.path.name for m in group.members} == family - {"copy_2_jpeg.jpg"}
    pair = next(
        p for p in again.pairs if {p.a.name, p.b.name} == {"copy_2_resize.jpg", "copy_2_jpeg.jpg"}
    )
    assert not pair.duplicate
    live_group = next(g for g in live if g.keep == rows["copy_2_resize.jpg"].id)
    assert {f for f, _ in live_group.members} == {rows[n].id for n in family - {"copy_2_jpeg.jpg"}}


def test_files_from_and_hidden_files(photos: Path, tmp_path: Path) -> None:
    hidden = photos / ".cache"
    hidden.mkdir()
    shutil.copyfile(photos / "original_0.png", hidden / "thumb.png")
    model = content_model()
    plain = scan_folder([photos], tmp_path / "a", model=model, workers=1)
    assert all(".cache" not in str(p.a) + str(p.b) for p in plain.pairs)
    shown = scan_folder([photos], tmp_path / "b", model=model, include_hidden=True, workers=1)
    assert any(p.exact and ".cache" in str(p.a) + str(p.b) for p in shown.pairs)
    listed = tmp_path / "list.txt"
    listed.write_text(f"{photos / 'original_0.png'}\n{photos / 'copies' / 'copy_0_jpeg.jpg'}\n\n")
    result = scan_folder([], tmp_path / "c", model=model, files_from=listed, workers=1)
    assert result.stats.files == 2
    assert _groups(result) == {frozenset({"original_0.png", "copy_0_jpeg.jpg"})}


def test_paths_are_reported_as_given(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(photos.parent)
    result = scan_folder(["photos"], tmp_path / "idx", model=content_model(), workers=1)
    assert all(str(p.a).startswith("photos/") for p in result.pairs)
    assert all(str(g.keep).startswith("photos/") for g in result.groups)


def test_bad_options_and_a_busy_index_are_refused(photos: Path, tmp_path: Path) -> None:
    model = content_model()
    with pytest.raises(ScanError, match="keep policy"):
        scan_folder([photos], tmp_path / "idx", model=model, keep="biggest")
    with pytest.raises(ScanError, match="not a folder"):
        scan_folder([tmp_path / "missing"], tmp_path / "idx", model=model)
    with pytest.raises(ScanError, match="review_min_similarity"):
        scan_folder([photos], tmp_path / "idx", model=model, review_min_similarity=0.99)
    with index_lock(tmp_path / "idx", "test"), pytest.raises(ScanError, match="in use"):
        scan_folder([photos], tmp_path / "idx", model=model)


def _candidate(n: int, path: str, pixels: int = 100, size: int = 10, mtime: int = 0) -> Candidate:
    return Candidate(n, path, pixels, 1, size, mtime, n, f"h{n}")


def test_chaining_guard_splits_members_that_are_not_duplicates_of_the_keeper() -> None:
    # A-B and B-C are duplicates, A-C is not: C must not ride along into A's group.
    # C-D makes the split-off part a group of its own.
    files = {
        1: _candidate(1, "a", pixels=400),
        2: _candidate(2, "b"),
        3: _candidate(3, "c", pixels=300),
        4: _candidate(4, "d"),
    }
    pairs = [(1, 2, 0.97, False), (2, 3, 0.96, False), (1, 3, 0.5, False), (3, 4, 0.99, False)]
    plans = build_groups(files, pairs, min_similarity=0.9, keep="largest")
    assert [(g.keep, [m for m, _ in g.members]) for g in plans] == [(1, [1, 2]), (3, [3, 4])]
    assert plans[0].members == ((1, 1.0), (2, 0.97))


def test_largest_means_pixels_then_bytes_then_path() -> None:
    files = {
        1: _candidate(1, "b", pixels=100, size=50),
        2: _candidate(2, "a", pixels=100, size=50),
        3: _candidate(3, "c", pixels=100, size=90),
        4: _candidate(4, "d", pixels=99, size=999),
    }
    pairs = [(a, b, 0.99, False) for a in files for b in files if a < b]
    plan = build_groups(files, pairs, min_similarity=0.9, keep="largest")[0]
    assert (plan.keep, plan.keep_by) == (3, "more-bytes")
    del files[3]
    plan = build_groups(files, pairs, min_similarity=0.9, keep="largest")[0]
    assert (plan.keep, plan.keep_by) == (2, "first-by-path")
    assert choose_keeper([files[1], files[4]], "oldest")[0] == files[1]
    with pytest.raises(ValueError, match="keep policy"):
        choose_keeper([files[1]], "random")


def test_groups_come_largest_first_and_exact_pairs_always_count() -> None:
    files = {n: _candidate(n, f"p{n}") for n in range(1, 6)}
    pairs = [(1, 2, 0.2, True), (3, 4, 0.99, False), (4, 5, 0.99, False), (3, 5, 0.99, False)]
    plans = build_groups(files, pairs, min_similarity=0.95, keep="first")
    assert [len(g.members) for g in plans] == [3, 2]
    assert plans[1].members == ((1, 1.0), (2, 1.0))


def test_scan_scale_benchmark_runs_in_tiny_mode(
    synthetic_folder: SyntheticFolder, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "scan_scale.py"
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "work"), "--tiny", "--photos",
         str(synthetic_folder.root / "other"), "--model", str(tiny_checkpoint),
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["images"] == 40
    assert report["scan"]["images_per_s"] > 0 and report["peer"]["name"] == "phash"
    assert "scan ÷ phash throughput" in done.stdout
    assert list((tmp_path / "work").glob("report-*/index.html"))


def test_another_process_holding_the_index_blocks_a_scan(photos: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom lookalike.scan.run import index_lock\n"
         f"with index_lock(Path({str(index)!r}), 'test'):\n"
         "    print('held', flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ScanError, match="in use"):
            scan_folder([photos], index, model=content_model(), workers=1)
    finally:
        holder.communicate("")
    assert scan_folder([photos], index, model=content_model(), workers=1).groups


def test_a_file_vanishing_before_decoding_does_not_lose_its_identical_copy(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.scan import run

    first, second = photos / "a_twin.png", photos / "z_twin.png"
    shutil.copyfile(photos / "original_3.png", first)
    shutil.copyfile(photos / "original_3.png", second)
    real = run.embed_paths

    def vanishing(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(first) in map(str, paths):
            first.unlink()  # deleted between the walk and the decoding
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(run, "embed_paths", vanishing)
    result = scan_folder([photos], tmp_path / "idx", model=content_model(), workers=1)
    errors = {e.path.name: e.reason for e in result.errors}
    assert errors["a_twin.png"] == "file vanished during the scan"
    group = next(g for g in result.groups if "original_3.png" in {m.path.name for m in g.members})
    assert "z_twin.png" in {m.path.name for m in group.members}


def test_a_reader_sees_whole_results_while_a_scan_writes(photos: Path, tmp_path: Path) -> None:
    import threading

    model = content_model()
    index = tmp_path / "idx"
    first = scan_folder([photos], index, model=model, workers=1)
    for k in range(30):
        make_picture(300 + k).save(photos / f"extra_{k}.png")
    stop, seen, failures = threading.Event(), [], []

    def read_loop() -> None:
        while not stop.is_set():
            try:
                result = read_result(index)
                seen.append(len(result.groups))
                assert all(g.keep == g.members[0].path for g in result.groups)
            except Exception as exc:  # reported below: any failure fails the test
                failures.append(exc)

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        second = scan_folder([photos], index, model=model, batch_size=4, workers=1)
    finally:
        stop.set()
        reader.join()
    assert failures == []
    assert seen and set(seen) <= {len(first.groups), len(second.groups)}


def _count_verified(model, monkeypatch: pytest.MonkeyPatch) -> list[int]:  # type: ignore[no-untyped-def]
    """The number of pairs in each `match_counts` call the model makes from now on."""
    calls: list[int] = []
    real_counts = type(model).match_counts

    def counting(self, load, pairs, threads=None, cache=None):  # type: ignore[no-untyped-def]
        calls.append(len(pairs))
        return real_counts(self, load, pairs, threads, cache)

    monkeypatch.setattr(type(model), "match_counts", counting)
    return calls


def test_a_verifying_model_confirms_crops_and_rescans_reuse_its_scores(
    photos: Path, tmp_path: Path, synthetic_folder: SyntheticFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from lookalike.verify import VerifyConfig

    model = replace(content_model(), verify=VerifyConfig(min_cnn_similarity=0.7))
    calls = _count_verified(model, monkeypatch)
    index = tmp_path / "idx"
    result = scan_folder([photos], index, model=model, workers=1)
    # With local-feature verification the crops join their originals (the CNN alone
    # scores them 0.75-0.87), and no group mixes two pictures.
    expected = {
        frozenset(
            [original.name]
            + [
                copy.name
                for copy, (source, family) in synthetic_folder.edits.items()
                if source == original and family in ("jpeg", "resize", "lightness", "crop")
            ]
        )
        for original in synthetic_folder.originals
    }
    assert _groups(result) == expected
    assert sum(calls) > 0
    # Each crop says the matches that verified it; the JSON and the pairs say the same.
    crops = [m for g in result.groups for m in g.members if "_crop" in m.path.name]
    assert crops and all(m.matches and m.decided_by.startswith("verified, ") for m in crops)
    # ... and how much of the picture they cover (a crop keeps most of it).
    assert all(m.coverage is not None and 0.2 < m.coverage <= 1.0 for m in crops)
    assert all(m.decided_by.endswith("% of the picture") for m in crops)
    with open_index(index) as store:
        assert len(store.verified()) == sum(calls)
    calls.clear()
    again = scan_folder([photos], index, model=model, workers=1)
    assert calls == []  # every verified score came from the index
    assert _groups(again) == expected


def test_verifying_the_nearest_first_keeps_what_the_index_verified(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from lookalike.model import rule_fingerprint
    from lookalike.verify import VerifyConfig

    model = replace(content_model(), verify=VerifyConfig(min_cnn_similarity=0.7))
    quick = model.verifying_nearest(1)
    assert quick.verify is not None and quick.verify.first_candidates == 1
    assert rule_fingerprint(quick) == rule_fingerprint(model)  # the same verdicts
    most = model.verify.candidates_per_image if model.verify else 0
    for wrong in (0, most + 1):
        with pytest.raises(ValueError, match=f"1 to {most}"):
            model.verifying_nearest(wrong)
    with pytest.raises(ValueError, match="does not verify"):
        replace(model, verify=None).verifying_nearest(1)
    calls = _count_verified(model, monkeypatch)
    full = scan_folder([photos], tmp_path / "full", model=model, workers=1)
    everything = sum(calls)
    calls.clear()
    index = tmp_path / "idx"
    first = scan_folder([photos], index, model=quick, workers=1)
    assert 0 < sum(calls) < everything
    with open_index(index) as store:
        assert len(store.verified()) == sum(calls)
    # A later full-depth scan verifies only the pairs the quick one left, and groups alike.
    verified_first = sum(calls)
    calls.clear()
    again = scan_folder([photos], index, model=model, workers=1)
    assert verified_first + sum(calls) == everything
    assert _groups(again) == _groups(full)
    assert all(any(group <= whole for whole in _groups(full)) for group in _groups(first))


def test_no_verify_scans_with_the_cnn_alone_at_its_own_cut_off(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from lookalike.verify import VerifyConfig

    model = replace(
        content_model(),
        verify=VerifyConfig(min_cnn_similarity=0.7, confident_cnn_similarity=0.95),
    )
    calls: list[int] = []

    def counting(self, load, pairs, similarities, threads=None, cache=None):  # type: ignore[no-untyped-def]
        calls.append(len(pairs))
        return similarities

    monkeypatch.setattr(type(model), "refine", counting)
    result = scan_folder([photos], tmp_path / "idx", model=model, workers=1, verify=False)
    assert calls == []
    assert result.min_similarity == pytest.approx(0.95)
    assert all(p.similarity >= 0.95 for p in result.pairs if p.duplicate)


@pytest.mark.slow
def test_different_subjects_on_one_background_form_no_group(tmp_path: Path) -> None:
    """Photos of one place are not copies: the shipped rule keeps them apart, yet still
    groups a real edited copy of one of them."""
    from PIL import Image

    from lookalike.augment import apply_edit, composite
    from lookalike.model import load_model
    from lookalike.scan.demo import SAMPLES

    samples = [Image.open(p).convert("RGB") for p in sorted(SAMPLES.glob("*.jpg"))]
    folder = tmp_path / "place"
    folder.mkdir()
    for k, background in enumerate(samples[:3]):
        subjects = [s for s in samples if s is not background][:3]
        for j, subject in enumerate(subjects):
            made = composite(background, subject, seed=10 * k + j, area=(0.25, 0.45))
            made.save(folder / f"bg{k}_subject{j}.jpg", quality=92)
    copy = apply_edit(Image.open(folder / "bg0_subject0.jpg"), "crop", seed=1, strength=0.3)
    copy.save(folder / "bg0_subject0_crop.jpg", quality=92)
    result = scan_folder(folder, tmp_path / "idx", model=load_model())
    grouped = [sorted(m.path.name for m in g.members) for g in result.groups]
    assert grouped == [["bg0_subject0.jpg", "bg0_subject0_crop.jpg"]]


def test_find_duplicates_takes_files_and_folders_and_keeps_no_index(
    synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    import tempfile

    from lookalike import find_duplicates

    before = set(Path(tempfile.gettempdir()).glob("lookalike-*"))
    model = content_model()
    scanned = scan_folder([synthetic_folder.root], tmp_path / "idx", model=model, workers=1)
    found = find_duplicates(synthetic_folder.root, model=model, workers=1)
    assert found.index is None
    assert [g.members for g in found.groups] == [g.members for g in scanned.groups]
    original = synthetic_folder.originals[0]
    copies = [c for c, (o, _) in synthetic_folder.edits.items() if o == original]
    files = find_duplicates([original, *copies, synthetic_folder.unrelated[0]], model=model)
    (group,) = files.groups
    assert {m.path for m in group.members} <= {original, *copies}
    assert set(Path(tempfile.gettempdir()).glob("lookalike-*")) == before


def test_reference_folders_are_never_cleaned_up(
    synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    new, archive = new_and_archive(synthetic_folder, tmp_path)
    shutil.copyfile(synthetic_folder.originals[0], archive / "again_0.png")  # a copy inside
    # The copies are older than the archive's files: only the reference rule keeps these.
    for path in new.iterdir():
        os.utime(path, ns=(10**18, 10**18))
    index = tmp_path / "idx"
    result = scan_folder([new], index, model=content_model(), workers=1, reference=[archive])
    in_archive = {str(p) for p in archive.iterdir()}
    assert result.groups
    for group in result.groups:
        names = {str(m.path) for m in group.members}
        if names & in_archive:
            assert str(group.keep) in in_archive and group.keep_reason == "reference"
        assert not {str(d) for d in group.duplicates} & in_archive
    assert all(str(g.keep) in in_archive for g in result.groups if g.keep_reason == "reference")
    assert not [p for p in result.pairs if {str(p.a), str(p.b)} <= in_archive]
    moves = quarantine(index, tmp_path / "q", dry_run=True).done
    assert moves and not [m for m in moves if str(m.src) in in_archive]
    leaks = find_leaks([new], reference=[archive], model=content_model())
    assert leaks.leaks and all(leak.split == str(new) for leak in leaks.leaks)
    assert all(m.split == str(archive) for leak in leaks.leaks for m in leak.matches)
    with pytest.raises(ScanError, match="reference must be a folder"):
        scan_folder([new], index, model=content_model(), reference=[tmp_path / "missing"])


def test_a_scan_scores_cnn_confident_pairs_as_compare_does_with_confident_lift(
    photos: Path, tmp_path: Path
) -> None:
    """With `confident_lift` a scan reports a CNN-confident pair raised above its CNN
    similarity, exactly as `compare` scores it; every other pair scores as without, and
    the same files are grouped."""
    from dataclasses import replace

    from lookalike.verify import VerifyConfig

    base = content_model()
    no_verify = scan_folder([photos], tmp_path / "plain", model=base, workers=1)
    close = sorted(p.similarity for p in no_verify.pairs if not p.exact)
    assert len(close) >= 4
    middle = len(close) // 2  # half of the near pairs are CNN-confident (a cut-off
    sure_from = (close[middle - 1] + close[middle]) / 2  # between two pairs, not on one)
    rule = VerifyConfig(min_cnn_similarity=0.9, confident_cnn_similarity=sure_from)
    plain = replace(base, verify=rule)
    lifted = replace(base, verify=replace(rule, confident_lift=7.0))
    before = scan_folder([photos], tmp_path / "before", model=plain, workers=1)
    after = scan_folder([photos], tmp_path / "after", model=lifted, workers=1)
    assert _groups(after) == _groups(before)
    cnn = {(p.a, p.b): p.similarity for p in no_verify.pairs}
    raw = {(p.a, p.b): p.similarity for p in before.pairs}
    raised = 0
    for pair in after.pairs:
        if pair.exact:
            continue
        if cnn.get((pair.a, pair.b), 0.0) >= sure_from:  # not verified: the CNN is sure
            assert pair.similarity > raw[(pair.a, pair.b)] == cnn[(pair.a, pair.b)]
            assert lifted.compare(pair.a, pair.b).similarity == pytest.approx(pair.similarity)
            raised += 1
        else:
            assert pair.similarity == pytest.approx(raw[(pair.a, pair.b)])
    assert raised >= 1
