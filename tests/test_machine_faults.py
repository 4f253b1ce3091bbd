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
