"""quarantine / restore: nothing moves before the manifest, nothing is ever lost."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SyntheticFolder
from lookalike.cli import app
from lookalike.scan import ScanError, quarantine, read_manifest, restore, scan_folder
from lookalike.scan import cleanup as quarantine_module
from scan_support import content_model


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), symbolic links as their target."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = b"link:" + os.readlink(path).encode()
        elif path.is_file():
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


@pytest.fixture()
def scanned(synthetic_folder: SyntheticFolder, tmp_path: Path) -> tuple[Path, Path]:
    """A scanned copy of the synthetic folder (with an exact copy too): (photos, index)."""
    photos = Path(shutil.copytree(synthetic_folder.root, tmp_path / "photos"))
    shutil.copyfile(photos / "original_1.png", photos / "copies" / "exact_1.png")
    index = tmp_path / "idx.lookalike"
    scan_folder([photos], index, model=content_model(), workers=1)
    return photos, index


def _duplicates(index: Path) -> set[Path]:
    from lookalike.scan import read_result

    return {d for g in read_result(index).groups for d in g.duplicates}


def test_round_trip_leaves_the_tree_byte_identical(
    scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, index = scanned
    before = _tree(photos)
    duplicates = _duplicates(index)
    assert len(duplicates) >= 8
    stats_before = {p: p.stat() for p in duplicates}
    outcome = quarantine(index, tmp_path / "q")
    assert outcome.skipped == ()
    assert {m.src for m in outcome.done} == duplicates
    for move in outcome.done:
        assert not move.src.exists()
        rel = move.src.relative_to(photos)
        assert move.dst == tmp_path / "q" / "photos" / rel
        assert move.dst.read_bytes() == before[str(rel)]
    kept = set(_tree(photos))
    assert kept == set(before) - {str(p.relative_to(photos)) for p in duplicates}
    manifest = [json.loads(line) for line in outcome.manifest.read_text().splitlines()]
    assert {Path(e["src"]) for e in manifest} == duplicates
    assert all(set(e) == {"src", "dst", "sha256", "op"} and e["op"] == "move" for e in manifest)

    back = restore(outcome.manifest)
    assert back.skipped == ()
    assert len(back.done) == len(duplicates)
    assert _tree(photos) == before
    for path, st in stats_before.items():
        assert path.stat().st_mtime_ns == st.st_mtime_ns


def test_dry_run_moves_nothing(scanned: tuple[Path, Path], tmp_path: Path) -> None:
    photos, index = scanned
    before = _tree(photos)
    outcome = quarantine(index, tmp_path / "q", dry_run=True)
    assert outcome.dry_run and outcome.manifest is None
    assert {m.src for m in outcome.done} == _duplicates(index)
    assert _tree(photos) == before
    assert not (tmp_path / "q").exists()


def test_manifest_is_on_disk_before_the_first_move(
    scanned: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, index = scanned
    seen: list[list[str]] = []
    real_move = quarantine_module.move_file

    def watching(src: Path, dst: Path, sha256: str) -> None:
        (manifest,) = (tmp_path / "q").glob("manifest-*.jsonl")
        seen.append(manifest.read_text().splitlines())
        real_move(src, dst, sha256)

    monkeypatch.setattr(quarantine_module, "move_file", watching)
    outcome = quarantine(index, tmp_path / "q")
    assert seen and all(len(lines) == len(outcome.done) for lines in seen)


def test_a_name_clash_is_reported_and_both_files_kept(
    scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, index = scanned
    victim = sorted(_duplicates(index))[0]
    clash = tmp_path / "q" / "photos" / victim.relative_to(photos)
    clash.parent.mkdir(parents=True)
    clash.write_bytes(b"someone else's file")
    outcome = quarantine(index, tmp_path / "q")
    assert [(e.path, "name clash" in e.reason) for e in outcome.skipped] == [(victim, True)]
    assert victim.exists()
    assert clash.read_bytes() == b"someone else's file"
    assert len(outcome.done) == len(_duplicates(index)) - 1


def test_a_file_that_cannot_be_removed_stays_and_is_reported(
    scanned: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, index = scanned
    victim = sorted(_duplicates(index))[0]
    content = victim.read_bytes()
    real_unlink = os.unlink

    def read_only(path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        if Path(path) == victim:  # as in a read-only folder (root ignores chmod)
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", read_only)
    outcome = quarantine(index, tmp_path / "q")
    (skipped,) = outcome.skipped
    assert skipped.path == victim and "Permission denied" in skipped.reason
    assert victim.read_bytes() == content
    assert not (tmp_path / "q" / "photos" / victim.relative_to(photos)).exists()


def test_vanished_and_changed_files_are_left_alone(
    scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    _, index = scanned
    first, second = sorted(_duplicates(index))[:2]
    first.unlink()
    second.write_bytes(second.read_bytes() + b"edited since the scan")
    outcome = quarantine(index, tmp_path / "q")
    reasons = {e.path: e.reason for e in outcome.skipped}
    assert "vanished" in reasons[first]
    assert "changed since the scan" in reasons[second]
    assert second.exists()


def test_a_group_whose_keeper_changed_is_left_alone(
    scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    from lookalike.scan import read_result

    _, index = scanned
    group = read_result(index).groups[0]
    group.keep.unlink()
    outcome = quarantine(index, tmp_path / "q")
    assert {e.path for e in outcome.skipped} == set(group.duplicates)
    assert all("keeper vanished" in e.reason for e in outcome.skipped)
    assert all(p.exists() for p in group.duplicates)


def _no_links(*args: object, **kwargs: object) -> None:
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def test_across_file_systems_the_copy_is_verified_before_the_source_goes(
    scanned: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, index = scanned
    before = _tree(photos)
    times = {p: p.stat().st_mtime_ns for p in photos.rglob("*") if p.is_file()}
    monkeypatch.setattr(os, "link", _no_links)
    outcome = quarantine(index, tmp_path / "q")
    assert outcome.skipped == () and outcome.done
    for move in outcome.done:
        assert not move.src.exists()
        assert move.dst.read_bytes() == before[str(move.src.relative_to(photos))]
    assert restore(outcome.manifest).skipped == ()
    assert _tree(photos) == before
    assert {p: p.stat().st_mtime_ns for p in times} == times  # times came back too


def test_a_corrupted_copy_never_replaces_the_original(
    scanned: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos, index = scanned
    before = _tree(photos)
    monkeypatch.setattr(os, "link", _no_links)
    real_copy = shutil.copyfileobj

    def bad_copy(source, target, length=0):  # type: ignore[no-untyped-def]
        real_copy(source, target, length)
        target.write(b"bit rot")

    monkeypatch.setattr(shutil, "copyfileobj", bad_copy)
    outcome = quarantine(index, tmp_path / "q")
    assert not outcome.done and outcome.skipped
    assert all("does not match" in e.reason for e in outcome.skipped)
    assert _tree(photos) == before
    assert not [p for p in (tmp_path / "q").rglob("*") if p.is_file() and "manifest" not in p.name]


def test_delete_writes_the_manifest_first_and_cannot_be_restored(
    scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    _, index = scanned
    duplicates = _duplicates(index)
    outcome = quarantine(index, tmp_path / "q", delete=True)
    assert {m.src for m in outcome.done} == duplicates
    assert not any(p.exists() for p in duplicates)
    entries = read_manifest(outcome.manifest)
    assert {e.src for e in entries} == duplicates and {e.op for e in entries} == {"delete"}
    back = restore(outcome.manifest)
    assert not back.done and all("deleted" in e.reason for e in back.skipped)


def test_restore_never_overwrites_and_finishes_interrupted_moves(
    scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    _, index = scanned
    outcome = quarantine(index, tmp_path / "q")
    occupied, interrupted = outcome.done[0], outcome.done[1]
    occupied.src.write_bytes(b"a new file in the old place")
    os.link(interrupted.dst, interrupted.src)  # killed between link and unlink
    back = restore(outcome.manifest)
    reasons = {e.path: e.reason for e in back.skipped}
    assert set(reasons) == {occupied.src}
    assert occupied.src.read_bytes() == b"a new file in the old place"
    assert occupied.dst.exists()  # still safe in quarantine
    assert interrupted.src.exists() and not interrupted.dst.exists()
    assert len(back.done) == len(outcome.done) - 1


def test_quarantine_refuses_a_folder_inside_a_scanned_root(
    scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    photos, index = scanned
    with pytest.raises(ScanError, match="inside the scanned folder"):
        quarantine(index, photos / "trash")
    hidden = quarantine(index, photos / ".trash", dry_run=True)
    assert hidden.done


def test_only_limits_the_clean_up_and_keepers_are_never_moved(
    scanned: tuple[Path, Path], tmp_path: Path
) -> None:
    from lookalike.scan import read_result

    _, index = scanned
    group = read_result(index).groups[0]
    outcome = quarantine(index, tmp_path / "q", only=[group.keep, group.duplicates[0]])
    assert [m.src for m in outcome.done] == [group.duplicates[0]]
    assert group.keep.exists()


def test_cli_quarantine_dry_run_and_restore(scanned: tuple[Path, Path], tmp_path: Path) -> None:
    photos, index = scanned
    before = _tree(photos)
    runner = CliRunner()
    dry = runner.invoke(app, ["quarantine", str(index), "--to", str(tmp_path / "q"), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would move" in dry.stdout and _tree(photos) == before
    moved = runner.invoke(app, ["quarantine", str(index), "--to", str(tmp_path / "q"), "--json"])
    assert moved.exit_code == 0, moved.output
    doc = json.loads(moved.stdout)
    assert doc["done"] and doc["skipped"] == []
    back = runner.invoke(app, ["restore", doc["manifest"]])
    assert back.exit_code == 0, back.output
    assert f"restored {len(doc['done'])} files" in back.stdout
    assert _tree(photos) == before
    missing = runner.invoke(app, ["restore", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2
