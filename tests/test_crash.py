"""Crash safety: scans and quarantines SIGKILLed at random moments lose and change nothing.

Each trial kills a `lookalike` command (and its decode workers) after a seeded random
delay spread over the time a whole run takes, then checks what was left: a scan run
again to completion holds every file exactly once and the photos are untouched; a
quarantine killed mid-move has every file at its old or its new place, whole, and
`restore` brings every one back byte-identical.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from conftest import TINY_ENCODER, TINY_PREPROCESS, make_picture
from crash_support import VERIFY_CHUNK, Launcher, count_rows, digest, digests, wait_stopped
from lookalike.model import load_model, new_model, save_model
from lookalike.records import ScanProgress, ScanResult
from lookalike.scan import read_manifest, read_result, restore, scan_folder
from lookalike.verify import VerifyConfig
from scan_support import content_model, write_copied_pictures

pytestmark = pytest.mark.slow

TRIALS = 20
"""Kills per test (the issue asks for at least 20)."""


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    with Launcher() as started:
        yield started


def _timed(launcher: Launcher, *args: str | Path, setup: str | None = None) -> float:
    """Seconds a whole run of the command takes (it must succeed)."""
    started = time.monotonic()
    assert launcher.run(*args, setup=setup) == 0, args
    return time.monotonic() - started


def _kill_after(
    launcher: Launcher, delay: float, *args: str | Path, setup: str | None = None
) -> bool:
    """Run the command and SIGKILL it after `delay` seconds; True if it was killed."""
    pid = launcher.start(*args, setup=setup)
    time.sleep(delay)
    launcher.kill(pid)
    return launcher.wait(pid) == -9


def _ended(pid: int) -> bool:
    """Whether a started command has exited (gone, or a zombie its launcher has not reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _any_gone(paths: list[Path]) -> Callable[[], bool]:
    """A test of whether any of `paths` has gone (been moved away)."""
    return lambda: not all(path.exists() for path in paths)


def _kill_when(
    launcher: Launcher,
    started: Callable[[], bool],
    delay: float,
    *args: str | Path,
    setup: str | None = None,
) -> bool:
    """Run the command, SIGKILL it `delay` s after `started()` holds (or it has ended);
    True if it was killed."""
    pid = launcher.start(*args, setup=setup)
    deadline = time.monotonic() + 60
    while not started() and not _ended(pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(delay)
    launcher.kill(pid)
    return launcher.wait(pid) == -9


def _kill_once_moving(
    launcher: Launcher, folder: Path, delay: float, *args: str | Path, setup: str | None = None
) -> bool:
    """Run a quarantine into `folder`, SIGKILL it `delay` s after its manifest appears.

    The manifest is written before the first move, so on a loaded machine too the kill
    lands among the moves (or just after them); True if it was killed.
    """
    return _kill_when(
        launcher, lambda: any(folder.glob("manifest-*.jsonl")), delay, *args, setup=setup
    )


# -- scan ---------------------------------------------------------------------------------


def _photos(root: Path) -> Path:
    """Tiny pictures, byte copies, a hard link, a link to a file, an unreadable file."""
    root.mkdir(parents=True)
    (root / "sub").mkdir()
    for k in range(120):
        make_picture(6000 + k, (48, 40)).save(root / ("sub" if k % 3 else ".") / f"p{k:03d}.png")
    for k in range(0, 120, 7):
        name = f"p{k:03d}.png"
        shutil.copyfile((root / "sub" / name) if k % 3 else (root / name), root / f"copy_{name}")
    (root / "hard.png").hardlink_to(root / "p000.png")
    (root / "soft.png").symlink_to(root / "sub" / "p001.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root


def _scan_args(root: Path, index: Path, checkpoint: Path) -> list[str | Path]:
    return ["scan", root, "--index", index, "--model", checkpoint, "--min-similarity", "1"]


def _groups(index: Path) -> set[tuple[str, frozenset[str]]]:
    result = read_result(index)
    return {(str(g.keep), frozenset(str(m.path) for m in g.members)) for g in result.groups}


def _check_index(index: Path, root: Path) -> None:
    """Every file under root is in the index exactly once, and every content embedded once."""
    on_disk = {str(p) for p in root.rglob("*") if p.is_file() or p.is_symlink()}
    with sqlite3.connect(index) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        paths = [p for (p,) in conn.execute("SELECT path FROM files")]
        assert len(paths) == len(set(paths)) and set(paths) == on_disk
        files = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT dev || ':' || inode) FROM files WHERE same_as IS NULL"
        ).fetchone()
        assert files[0] == files[1]  # one path per file; its other paths point to it
        members = [f for (f,) in conn.execute("SELECT file_id FROM members")]
        assert len(members) == len(set(members))  # no file in two groups
        contents = {
            h
            for (h,) in conn.execute(
                "SELECT hash FROM files WHERE error IS NULL AND same_as IS NULL"
            )
        }
        embedded = [h for (h,) in conn.execute("SELECT hash FROM embeddings")]
        assert len(embedded) == len(set(embedded)) and set(embedded) == contents
        unfinished = conn.execute("SELECT COUNT(*) FROM scans WHERE finished IS NULL").fetchone()
    assert unfinished[0] <= 1  # the killed scan's record, never finished


def _progress(index: Path) -> tuple[int, int, int]:
    """(files, embeddings, finished scans) a killed scan left behind."""
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True) as conn:
            return tuple(  # type: ignore[return-value]
                conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("files", "embeddings", "scans WHERE finished IS NOT NULL")
            )
    except sqlite3.Error:  # killed before the tables were made
        return (0, 0, 0)


def test_a_scan_killed_at_random_moments_resumes_with_every_file_once(
    launcher: Launcher, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    root = _photos(tmp_path / "photos")
    before = digests(root)
    reference = tmp_path / "reference.lookalike"
    whole = _timed(launcher, *_scan_args(root, reference, tiny_checkpoint))
    expected = _groups(reference)
    assert len(expected) >= 10
    rng = random.Random(20261125)
    killed, partial = 0, 0
    for trial in range(3 * TRIALS):  # a run that finishes before its kill does not count
        if killed == TRIALS:
            break
        index = tmp_path / f"trial{trial}.lookalike"
        args = _scan_args(root, index, tiny_checkpoint)
        if _kill_after(launcher, rng.uniform(0.0, 0.9 * whole), *args):
            killed += 1
            files, embeddings, finished = _progress(index)
            partial += finished == 0 and files + embeddings > 0
        assert digests(root) == before
        assert launcher.run(*args) == 0, f"trial {trial}: the rerun failed"
        _check_index(index, root)
        assert _groups(index) == expected, f"trial {trial}"
        assert digests(root) == before
    assert killed == TRIALS, f"only {killed} runs were killed before they finished"
    assert partial > 0  # some kills landed mid-scan, not only before or after it


def test_a_scan_killed_during_verification_keeps_its_stored_chunks_and_resumes_the_same(
    launcher: Launcher, tmp_path: Path
) -> None:
    """kill -9 mid-verification loses at most the chunk in progress: the rerun verifies only
    the pairs not stored yet and ends with the groups and pairs of an uninterrupted scan."""
    root = tmp_path / "photos"
    root.mkdir()
    for k in range(60):  # pictures and an edited copy of each (a crop, scaled back)
        picture = make_picture(8000 + k, (128, 96))
        picture.save(root / f"p{k:02d}.png")
        picture.crop((10, 8, 118, 88)).resize((128, 96)).save(root / f"p{k:02d}_crop.png")
    model = replace(
        new_model(TINY_ENCODER, TINY_PREPROCESS, seed=0, model_id="tiny-verify"),
        verify=VerifyConfig(  # every image's 4 nearest neighbours go to verification
            min_cnn_similarity=0.0, confident_cnn_similarity=1.0, candidates_per_image=4
        ),
    )
    checkpoint = save_model(model, tmp_path / "verify.pt")
    args = ["scan", root, "--index", tmp_path / "killed.lookalike", "--model", checkpoint]
    pid = launcher.start(*args, setup="small_slow_verify_chunks")
    deadline = time.monotonic() + 120
    while count_rows(tmp_path / "killed.lookalike", "verified") < 2 * VERIFY_CHUNK:
        assert time.monotonic() < deadline, "verification did not start in time"
        time.sleep(0.002)
    launcher.kill(pid)
    assert launcher.wait(pid) == -9, "the scan finished before it could be killed"
    stored = count_rows(tmp_path / "killed.lookalike", "verified")
    assert stored % VERIFY_CHUNK == 0  # whole chunks only, each in one transaction

    def scan(index: Path) -> tuple[ScanResult, int]:
        fresh = [0]

        def note(progress: ScanProgress) -> None:
            if progress.stage == "verify" and progress.total is not None:
                fresh[0] = max(fresh[0], progress.total)

        model = load_model(checkpoint)
        result = scan_folder([root], index, model=model, min_similarity=0.999, on_progress=note)
        return result, fresh[0]

    resumed, verified_again = scan(tmp_path / "killed.lookalike")
    whole, verified_once = scan(tmp_path / "whole.lookalike")
    assert verified_once > stored + VERIFY_CHUNK  # the kill landed mid-verification
    assert verified_again == verified_once - stored  # nothing stored is verified twice
    assert count_rows(tmp_path / "killed.lookalike", "verified") == verified_once

    def seen(result: ScanResult) -> tuple[object, ...]:
        return (
            sorted((str(p.a), str(p.b), round(p.similarity, 9)) for p in result.pairs),
            sorted(sorted(str(m.path) for m in g.members) for g in result.groups),
        )

    assert seen(resumed) == seen(whole)
    assert whole.groups  # the crops were found


# -- quarantine and restore ---------------------------------------------------------------


@dataclass(frozen=True)
class Scanned:
    photos: Path
    index: Path
    moves: dict[Path, Path]  # each duplicate -> its path relative to the quarantine folder
    before: dict[str, str]


@pytest.fixture()
def scanned(tmp_path: Path) -> Scanned:
    """90 pictures, each with two byte copies in subfolders: 180 files to move."""
    photos = tmp_path / "photos"
    write_copied_pictures(photos, 90, seed=7000)
    index = tmp_path / "idx.lookalike"
    result = scan_folder([photos], index, model=content_model(), workers=1)
    moves = {
        Path(d): Path("photos") / Path(d).relative_to(photos)
        for g in result.groups
        for d in g.duplicates
    }
    assert len(moves) == 180
    return Scanned(photos, index, moves, digests(photos))


def _check_nothing_lost(scanned: Scanned, folder: Path, when: str) -> None:
    """Each file is whole at its old place or its new one (both: a move half done)."""
    hashes = {scanned.photos / name: h for name, h in scanned.before.items()}
    for src, rel in scanned.moves.items():
        places = [p for p in (src, folder / rel) if p.exists()]
        assert places, f"{when}: {src} is lost"
        for place in places:
            assert digest(place) == hashes[src], f"{when}: {place} differs"
    for path, expected in hashes.items():
        if path not in scanned.moves:  # keepers (and nothing else) stay as they were
            assert digest(path) == expected, f"{when}: {path} changed"


def _leftovers(folder: Path) -> list[Path]:
    """Files in a quarantine folder other than its manifests."""
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("manifest-")]


@pytest.mark.parametrize("setup", [None, "cross_device"])
def test_a_quarantine_killed_mid_move_loses_nothing_and_restores_every_file(
    launcher: Launcher, scanned: Scanned, tmp_path: Path, setup: str | None
) -> None:
    """Also across file systems (copy, verify, then remove), and with restore killed too."""
    reference = tmp_path / "reference-q"
    whole = _timed(launcher, "quarantine", scanned.index, "--to", reference, setup=setup)
    (manifest,) = reference.glob("manifest-*.jsonl")
    started = time.monotonic()
    assert restore(manifest).skipped == ()
    back = time.monotonic() - started
    assert digests(scanned.photos) == scanned.before
    rng = random.Random(7 if setup else 11)
    killed = restores_killed = mid_move = 0
    for trial in range(3 * TRIALS // 2):
        if killed == TRIALS // 2:
            break
        folder = tmp_path / f"q{trial}"
        args = ("quarantine", scanned.index, "--to", folder)
        if trial % 2:  # aimed at the moves, whatever the machine's load
            delay = rng.uniform(0.0, 0.02)
            killed += _kill_once_moving(launcher, folder, delay, *args, setup=setup)
        else:
            killed += _kill_after(launcher, rng.uniform(0.0, 0.9 * whole), *args, setup=setup)
        _check_nothing_lost(scanned, folder, f"trial {trial}, quarantine killed")
        moved = sum((folder / rel).exists() for rel in scanned.moves.values())
        mid_move += 0 < moved < len(scanned.moves)
        manifests = list(folder.glob("manifest-*.jsonl"))
        if not manifests:  # killed before the manifest: nothing may have moved
            assert digests(scanned.photos) == scanned.before
            continue
        (manifest,) = manifests
        assert {m.src for m in read_manifest(manifest)} == set(scanned.moves)
        if trial % 2:  # aimed at the moves back: a partial restore takes milliseconds
            held = [folder / rel for rel in scanned.moves.values() if (folder / rel).exists()]
            restores_killed += _kill_when(
                launcher,
                _any_gone(held),
                rng.uniform(0.0, 0.005),
                "restore",
                manifest,
                setup=setup,
            )
        else:
            delay = rng.uniform(0.0, back * 1.5)
            restores_killed += _kill_after(launcher, delay, "restore", manifest, setup=setup)
        _check_nothing_lost(scanned, folder, f"trial {trial}, restore killed")
        restore(manifest)
        assert digests(scanned.photos) == scanned.before, f"trial {trial}"
        assert _leftovers(folder) == [], f"trial {trial}"
    assert killed == TRIALS // 2, f"only {killed} quarantines were killed before they finished"
    assert restores_killed > 0 and mid_move > 0  # some kills landed among the moves


def test_a_copy_killed_half_written_never_leaves_part_of_a_file_under_its_name(
    launcher: Launcher, scanned: Scanned, tmp_path: Path
) -> None:
    """Across file systems, quarantine and then restore are each killed mid-copy."""
    folder = tmp_path / "q"
    pid = launcher.start("quarantine", scanned.index, "--to", folder, setup="stop_mid_copy")
    wait_stopped(pid)
    launcher.kill(pid)
    assert launcher.wait(pid) == -9
    _check_nothing_lost(scanned, folder, "quarantine killed mid-copy")
    assert _leftovers(folder)  # the half copy, under a hidden name of its own
    assert all(p.name.startswith(".") for p in _leftovers(folder))
    (manifest,) = folder.glob("manifest-*.jsonl")
    back = restore(manifest)  # nothing had moved yet
    assert back.done == () and len(back.skipped) == len(scanned.moves)
    assert digests(scanned.photos) == scanned.before and _leftovers(folder) == []

    again = launcher.run("quarantine", scanned.index, "--to", folder, setup="cross_device")
    assert again == 0 and not any(src.exists() for src in scanned.moves)
    (second,) = set(folder.glob("manifest-*.jsonl")) - {manifest}
    pid = launcher.start("restore", second, setup="stop_mid_copy")
    wait_stopped(pid)
    launcher.kill(pid)
    assert launcher.wait(pid) == -9
    _check_nothing_lost(scanned, folder, "restore killed mid-copy")
    back = restore(second)
    assert back.skipped == () and len(back.done) == len(scanned.moves)
    assert digests(scanned.photos) == scanned.before and _leftovers(folder) == []
