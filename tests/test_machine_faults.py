"""Faults of the machine: a full disk or a read-only place gets one line, exit code 3.

As root (CI), a size-limited tmpfs and a read-only remount are used; otherwise an
unwritable folder (the full-disk cases then need root and are skipped, failing under CI).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SyntheticFolder, missing_part
from lookalike.cli import app
from lookalike.cli._app import EXIT_MACHINE

runner = CliRunner()


def _mount(path: Path, size_kb: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture()
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder nothing can be written into."""
    place = tmp_path / "ro"
    if os.geteuid() == 0:
        if not _mount(place, 1024):
            missing_part("needs to mount a tmpfs (root without mount rights)")
        subprocess.run(["mount", "-o", "remount,ro", str(place)], check=True)
        yield place
        subprocess.run(["umount", "-l", str(place)], check=False)
    else:
        place.mkdir()
        place.chmod(0o500)
        yield place
        place.chmod(0o700)


@pytest.fixture()
def nearly_full(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs with about 800 KB left (room for the files, not for the pairs)."""
    place = tmp_path / "full"
    if os.geteuid() != 0 or not _mount(place, 16384):
        missing_part("needs root to mount a size-limited tmpfs")
    (place / "filler").write_bytes(b"\0" * (16384 - 800) * 1024)
    yield place
    subprocess.run(["umount", "-l", str(place)], check=False)


@pytest.fixture()
def photos(synthetic_folder: SyntheticFolder, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synthetic_folder.root, tmp_path / "photos"))


def _one_line(result: object, *expected: str) -> None:
    assert result.exit_code == EXIT_MACHINE, result.output  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    for text in expected:
        assert text in lines[0]


def test_an_index_on_a_read_only_place(
    photos: Path, read_only: Path, tiny_checkpoint: Path
) -> None:
    result = runner.invoke(
        app,
        ["scan", str(photos), "--index", str(read_only / "idx"), "--model", str(tiny_checkpoint)],
    )
    _one_line(result, str(read_only), "choose a place you may write to", "--index")


@pytest.mark.slow
def test_a_full_disk_during_a_scan_then_a_resumed_scan(
    photos: Path, nearly_full: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    import numpy as np
    from PIL import Image

    for k in range(600):  # enough images that the index outgrows the space left
        pixels = np.random.default_rng(k).integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(photos / f"more_{k}.png")
    index = nearly_full / "idx"
    args = ["scan", str(photos), "--index", str(index), "--model", str(tiny_checkpoint)]
    result = runner.invoke(app, args)
    _one_line(result, str(index), "free some space", "run the scan again")
    with closing(sqlite3.connect(index)) as conn:  # it failed during the scan, work kept
        assert conn.execute("SELECT COUNT(*) FROM files").fetchone()[0] > 0
    (nearly_full / "filler").unlink()
    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0, again.output
    fresh = runner.invoke(
        app,
        [
            "scan",
            str(photos),
            "--index",
            str(tmp_path / "fresh"),
            "--model",
            str(tiny_checkpoint),
            "--json",
        ],
    )
    import json

    resumed, whole = json.loads(again.stdout), json.loads(fresh.stdout)
    assert resumed["groups"] == whole["groups"] and resumed["pairs"] == whole["pairs"]


@pytest.mark.parametrize("option", ["--html-out", "--json-out", "--csv-out", "--list-out"])
def test_a_report_into_a_read_only_place(
    photos: Path, read_only: Path, tmp_path: Path, tiny_checkpoint: Path, option: str
) -> None:
    target = read_only / "report"
    args = ["scan", str(photos), "--index", str(tmp_path / "idx"), "--model", str(tiny_checkpoint)]
    result = runner.invoke(app, [*args, option, str(target)])
    _one_line(result, str(read_only), option)
    assert not any(read_only.iterdir())


def test_quarantine_into_a_read_only_place_moves_nothing(
    photos: Path, read_only: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    index = tmp_path / "idx"
    shutil.copyfile(photos / "original_0.png", photos / "twin.png")
    scanned = runner.invoke(
        app, ["scan", str(photos), "--index", str(index), "--model", str(tiny_checkpoint)]
    )
    assert scanned.exit_code == 0, scanned.output
    before = sorted(p.relative_to(photos) for p in photos.rglob("*"))
    result = runner.invoke(app, ["quarantine", str(index), "--to", str(read_only / "q")])
    _one_line(result, str(read_only), "--to")
    assert sorted(p.relative_to(photos) for p in photos.rglob("*")) == before


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs (as root only)."""
    place = tmp_path / "small"
    if os.geteuid() != 0 or not _mount(place, 1024):
        missing_part("needs root to mount a size-limited tmpfs")
    yield place
    subprocess.run(["umount", "-l", str(place)], check=False)


def _copies(photos: Path, count: int) -> list[Path]:
    """`count` byte-identical copies of one incompressible 300 KB picture (one group)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photos / "big.png")
    out = []
    for k in range(count):
        copy = photos / "copies" / f"big_{k}.png"
        shutil.copyfile(photos / "big.png", copy)
        out.append(copy)
    return out


def test_quarantine_meeting_a_full_disk_midway(
    photos: Path, small_disk: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    from lookalike.scan import read_manifest

    copies = _copies(photos, 6)  # 1.8 MB to move onto a 1 MB disk
    index = tmp_path / "idx"
    scanned = runner.invoke(
        app, ["scan", str(photos), "--index", str(index), "--model", str(tiny_checkpoint)]
    )
    assert scanned.exit_code == 0, scanned.output
    before = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["quarantine", str(index), "--to", str(small_disk / "q")])
    _one_line(result, "quarantine stopped", "no space left", "run quarantine again")
    (manifest,) = (small_disk / "q").glob("manifest-*.jsonl")
    moves = read_manifest(manifest)
    assert {m.src for m in moves} >= set(copies)
    moved = [m for m in moves if m.dst is not None and m.dst.exists()]
    assert moved and len(moved) < len(moves)  # some moved before the disk filled
    for move in moves:  # every file in one place only, its bytes unchanged
        assert move.src.exists() != (move.dst is not None and move.dst.exists())
        where = move.src if move.src.exists() else move.dst
        assert where is not None and where.read_bytes() == before[move.src]
    assert not [p for p in (small_disk / "q").rglob(".lookalike-partial-*")]
    back = runner.invoke(app, ["restore", str(manifest)])
    assert back.exit_code == 0, back.output
    assert {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()} == before


def test_restore_into_a_place_turned_read_only(
    synthetic_folder: SyntheticFolder, small_disk: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    photos = Path(shutil.copytree(synthetic_folder.root, small_disk / "photos"))
    shutil.copyfile(photos / "original_0.png", photos / "twin.png")
    index = tmp_path / "idx"
    scanned = runner.invoke(
        app, ["scan", str(photos), "--index", str(index), "--model", str(tiny_checkpoint)]
    )
    assert scanned.exit_code == 0, scanned.output
    moved = runner.invoke(app, ["quarantine", str(index), "--to", str(tmp_path / "q")])
    assert moved.exit_code == 0, moved.output
    (manifest,) = (tmp_path / "q").glob("manifest-*.jsonl")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = runner.invoke(app, ["restore", str(manifest)])
    _one_line(result, "restore stopped", "read-only", "run restore again")
    assert any((tmp_path / "q").rglob("*.png"))  # still safe in quarantine
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    again = runner.invoke(app, ["restore", str(manifest)])
    assert again.exit_code == 0, again.output
    assert not any((tmp_path / "q").rglob("*.png"))


def test_leaks_with_its_indexes_on_a_read_only_place(
    photos: Path, read_only: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    other = Path(shutil.copytree(photos / "other", tmp_path / "test"))
    result = runner.invoke(
        app,
        [
            "leaks",
            str(photos),
            str(other),
            "--index-dir",
            str(read_only / "idx"),
            "--model",
            str(tiny_checkpoint),
        ],
    )
    _one_line(result, str(read_only), "choose a place you may write to")


def test_explain_and_demo_into_a_read_only_place(
    photos: Path, read_only: Path, tiny_checkpoint: Path
) -> None:
    a, b = photos / "original_0.png", photos / "original_1.png"
    model = ["--model", str(tiny_checkpoint)]
    explained = runner.invoke(
        app, ["explain", str(a), str(b), "--out", str(read_only / "why"), *model]
    )
    _one_line(explained, str(read_only), "--out")
    demo = runner.invoke(app, ["demo", str(read_only / "demo"), *model])
    _one_line(demo, str(read_only), "the demo folder")
    assert not any(read_only.iterdir())


def test_the_review_page_says_the_quarantine_folder_is_read_only_and_keeps_running(
    photos: Path, read_only: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    from fastapi.testclient import TestClient

    from lookalike.web import create_app

    shutil.copyfile(photos / "original_0.png", photos / "twin.png")
    index = tmp_path / "idx"
    scanned = runner.invoke(
        app, ["scan", str(photos), "--index", str(index), "--model", str(tiny_checkpoint)]
    )
    assert scanned.exit_code == 0, scanned.output
    base = "http://127.0.0.1:8765"
    page = create_app(index, quarantine_to=read_only / "q", cache_dir=tmp_path / "cache")
    with TestClient(page, base_url=base) as client:
        html = client.get("/").text
        token = html.split('name="lookalike-token" content="')[1].split('"')[0]
        groups = client.get("/api/groups").json()["groups"]
        chosen = [m["file"]["id"] for g in groups for m in g["members"] if not m["keeper"]]
        headers = {"x-lookalike-token": token}
        preview = client.post("/api/quarantine/preview", json={"files": chosen}, headers=headers)
        assert preview.status_code == 200, preview.text
        done = client.post(
            "/api/quarantine", json={"preview": preview.json()["preview"]}, headers=headers
        )
        assert done.status_code in (409, 507), done.text
        assert str(read_only) in done.json()["detail"]
        assert "choose a place you may write to" in done.json()["detail"]
        assert client.get("/api/groups").status_code == 200  # still serving
    assert (photos / "twin.png").exists() and not any(read_only.iterdir())
