"""The scan commands: scan (JSON schema, outputs, kill -9 and resume), query, demo."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from conftest import SyntheticFolder, make_picture
from crash_support import count_rows
from lookalike.cli import app
from lookalike.scan import KEEP_REASONS

runner = CliRunner()

CLI = [sys.executable, "-c", "from lookalike.cli import app; app(prog_name='lookalike')"]


@pytest.fixture()
def photos(synthetic_folder: SyntheticFolder, tmp_path: Path) -> Path:
    """The synthetic folder plus two byte-identical copies of one original."""
    root = Path(shutil.copytree(synthetic_folder.root, tmp_path / "photos"))
    shutil.copyfile(root / "original_0.png", root / "copy_a.png")
    shutil.copyfile(root / "original_0.png", root / "copies" / "copy_b.png")
    return root


def _scan(*args: object) -> object:
    return runner.invoke(app, ["scan", *[str(a) for a in args]])


def test_scan_json_follows_the_documented_schema(
    photos: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    index = tmp_path / "idx.lookalike"
    result = _scan(
        photos,
        "--index",
        index,
        "--model",
        tiny_checkpoint,
        "--min-similarity",
        1.0,
        "--review-min-similarity",
        0.9,
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {
        "schema_version",
        "pairs",
        "groups",
        "near_duplicate_shots",
        "errors",
        "stats",
    }
    assert doc["near_duplicate_shots"] == []  # found by verification only
    assert doc["schema_version"] == 1
    assert set(doc["stats"]) == {
        "files",
        "images",
        "errors",
        "exact_duplicates",
        "groups",
        "seconds",
        "images_per_s",
    }
    for pair in doc["pairs"]:
        assert set(pair) == {
            "a",
            "b",
            "similarity",
            "duplicate",
            "exact",
            "matches",
            "coverage",
            "decided_by",
        }
        assert pair["decided_by"] == ("exact copy" if pair["exact"] else "CNN")  # no verify
        assert pair["similarity"] >= 0.9
        assert pair["duplicate"] == (pair["similarity"] >= 1.0)
        if pair["exact"]:
            assert pair["similarity"] == 1.0
    for group in doc["groups"]:
        assert set(group) == {"keep", "keep_reason", "duplicates", "members"}
        assert group["keep_reason"] in KEEP_REASONS
        assert all(set(m) == {"path", "similarity_to_keep", "decided_by"} for m in group["members"])
        assert group["keep"] not in group["duplicates"]
        assert {m["path"] for m in group["members"]} == {group["keep"], *group["duplicates"]}
    assert doc["errors"] == [
        {"path": str(photos / "broken.jpg"), "reason": doc["errors"][0]["reason"]}
    ]
    (group,) = doc["groups"]  # with the random model only the exact copies are duplicates
    assert {Path(p).name for p in [group["keep"], *group["duplicates"]]} == {
        "original_0.png",
        "copy_a.png",
        "copy_b.png",
    }
    assert doc["stats"]["exact_duplicates"] == 2
    exact = [p for p in doc["pairs"] if p["exact"]]
    assert len(exact) == 3


def test_scan_writes_every_output_file(photos: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "out"
    result = _scan(
        photos,
        "--index",
        tmp_path / "idx",
        "--model",
        tiny_checkpoint,
        "--min-similarity",
        1.0,
        "--keep",
        "shortest-path",
        "--json-out",
        out / "scan.json",
        "--csv-out",
        out / "pairs.csv",
        "--list-out",
        out / "remove.txt",
        "--html-out",
        out / "report",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "scan.json").read_text())
    csv_lines = (out / "pairs.csv").read_text().splitlines()
    assert csv_lines[0] == "a,b,similarity,duplicate,exact,decided_by,group,keeper,keep_reason"
    assert len(csv_lines) == 1 + len(doc["pairs"])
    removal = (out / "remove.txt").read_text().splitlines()
    assert sorted(removal) == sorted(d for g in doc["groups"] for d in g["duplicates"])
    assert str(photos / "copy_a.png") not in removal  # shortest path is the keeper
    assert (out / "report" / "index.html").is_file()
    assert "index:" in result.stdout and "1 duplicate groups" in " ".join(result.stdout.split())


def test_files_from_stdin(photos: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    listed = f"{photos / 'original_0.png'}\n{photos / 'copy_a.png'}\n"
    result = runner.invoke(
        app,
        [
            "scan",
            "--files-from",
            "-",
            "--index",
            str(tmp_path / "idx"),
            "--model",
            str(tiny_checkpoint),
            "--min-similarity",
            "1",
            "--json",
        ],
        input=listed,
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["stats"]["files"] == 2 and len(doc["groups"]) == 1


def test_scan_refuses_bad_input_with_exit_code_2(
    photos: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    not_an_index = tmp_path / "notes.txt"
    not_an_index.write_text("my notes")
    result = _scan(photos, "--index", not_an_index, "--model", tiny_checkpoint)
    assert result.exit_code == 2
    assert "not a lookalike index" in " ".join(result.output.split())
    assert not_an_index.read_text() == "my notes"
    assert _scan(photos, "--index", tmp_path / "i", "--keep", "biggest").exit_code == 2
    assert (
        _scan(tmp_path / "missing", "--index", tmp_path / "i", "--model", tiny_checkpoint).exit_code
        == 2
    )
    assert _scan("--index", tmp_path / "i").exit_code == 2
    for depth in (["0"], ["1", "--no-verify"], ["99"]):
        refused = _scan(
            photos, "-i", tmp_path / "i", "-m", tiny_checkpoint, "--verify-nearest", *depth
        )
        assert refused.exit_code == 2, depth
        assert "--verify-nearest" in " ".join(refused.output.split())
    assert not (tmp_path / "i").exists()


def test_query_lists_the_nearest_indexed_images(
    photos: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    index = tmp_path / "idx"
    assert _scan(photos, "--index", index, "--model", tiny_checkpoint).exit_code == 0
    result = runner.invoke(
        app,
        [
            "query",
            str(photos / "copy_a.png"),
            "--index",
            str(index),
            "--model",
            str(tiny_checkpoint),
            "-k",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    matches = json.loads(result.stdout)["matches"]
    assert len(matches) == 4
    assert {Path(m["path"]).name for m in matches[:3]} == {
        "original_0.png",
        "copy_a.png",
        "copy_b.png",
    }
    assert all(m["exact"] and m["similarity"] == 1.0 for m in matches[:3])
    assert not matches[3]["exact"] and matches[3]["similarity"] <= 1.0
    other = tmp_path / "other.pt"
    from conftest import TINY_ENCODER, TINY_PREPROCESS
    from lookalike.model import new_model, save_model

    save_model(new_model(TINY_ENCODER, TINY_PREPROCESS, seed=5, model_id="other"), other)
    mismatch = runner.invoke(
        app, ["query", str(photos / "copy_a.png"), "--index", str(index), "--model", str(other)]
    )
    assert mismatch.exit_code == 2 and "rescan" in " ".join(mismatch.output.split())


def test_demo_writes_photos_and_a_report(tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = tmp_path / "demo"
    result = runner.invoke(app, ["demo", str(folder), "--model", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    assert (folder / "report" / "index.html").is_file()
    assert str((folder / "report" / "index.html").resolve()) in " ".join(result.stdout.split())
    photos = sorted(p.name for p in (folder / "photos").rglob("*.jpg"))
    assert len(photos) >= 10 and "camera.jpg" in photos
    assert sum(p.stat().st_size for p in (folder / "photos").rglob("*.jpg")) < 1_000_000
    again = runner.invoke(app, ["demo", str(folder), "--model", str(tiny_checkpoint)])
    assert again.exit_code == 0, again.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"precious")
    refused = runner.invoke(app, ["demo", str(mine), "--model", str(tiny_checkpoint)])
    assert refused.exit_code == 2 and "not empty" in " ".join(refused.output.split())
    assert (mine / "holiday.jpg").read_bytes() == b"precious"


# -- kill -9 and resume -------------------------------------------------------------------


def _kill_when(command: list[str], index: Path, ready) -> int:  # type: ignore[no-untyped-def]
    """Start a scan, SIGKILL it once `ready(files, embeddings)`; return its exit status.

    Its decode workers are killed with it, as when a machine or container goes down.
    """
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if ready(count_rows(index, "files"), count_rows(index, "embeddings")):
            workers = psutil.Process(process.pid).children(recursive=True)
            process.send_signal(signal.SIGKILL)
            for worker in workers:
                with contextlib.suppress(psutil.Error):
                    worker.kill()
            break
        time.sleep(0.005)
    return process.wait()


def _many_pictures(root: Path, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        make_picture(5000 + k, (72, 56)).save(root / f"p{k:04d}.png")
    for k in range(0, n, 25):  # some byte-identical copies, so there are groups
        shutil.copyfile(root / f"p{k:04d}.png", root / f"p{k:04d}_copy.png")


def _scan_args(root: Path, index: Path, checkpoint: Path) -> list[str]:
    return [
        "scan",
        str(root),
        "--index",
        str(index),
        "--model",
        str(checkpoint),
        "--min-similarity",
        "1",
        "--json",
    ]


@pytest.mark.parametrize("stage", ["walk", "embed"])
def test_a_scan_killed_with_sigkill_resumes_to_the_same_result(
    tmp_path: Path, tiny_checkpoint: Path, stage: str
) -> None:
    def ready(files: int, embeddings: int) -> bool:
        if stage == "walk":
            return files > 0 and embeddings == 0
        return embeddings > 0

    for attempt in range(3):  # a machine fast enough to finish first gets a bigger folder
        root = tmp_path / f"many{attempt}"
        _many_pictures(root, 400 * 2**attempt)
        index = tmp_path / f"idx{attempt}.lookalike"
        status = _kill_when(CLI + _scan_args(root, index, tiny_checkpoint), index, ready)
        if status == -signal.SIGKILL:
            break
    assert status == -signal.SIGKILL, "the scan finished before it could be killed"
    embedded_before = count_rows(index, "embeddings")
    resumed = runner.invoke(app, _scan_args(root, index, tiny_checkpoint))
    assert resumed.exit_code == 0, resumed.output
    doc = json.loads(resumed.stdout)
    fresh = runner.invoke(app, _scan_args(root, tmp_path / "fresh", tiny_checkpoint))
    clean = json.loads(fresh.stdout)
    with sqlite3.connect(index) as conn:
        paths = [p for (p,) in conn.execute("SELECT path FROM files")]
        embedded = conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    total = len(list(root.iterdir()))
    assert len(paths) == len(set(paths)) == total
    assert embedded == clean["stats"]["images"] - clean["stats"]["exact_duplicates"]
    assert sorted(map(json.dumps, doc["groups"])) == sorted(map(json.dumps, clean["groups"]))
    assert doc["stats"]["files"] == clean["stats"]["files"] == total
    if stage == "embed":
        assert embedded_before > 0  # work done before the kill was kept, not redone


@pytest.mark.slow
def test_demo_with_the_bundled_model_groups_only_copies_of_one_photo(tmp_path: Path) -> None:
    from lookalike.report import scan_payload
    from lookalike.scan import read_result

    folder = tmp_path / "demo"
    result = runner.invoke(app, ["demo", str(folder)])
    assert result.exit_code == 0, result.output
    doc = scan_payload(read_result(folder / "demo.lookalike"))
    stems = [{Path(m["path"]).stem.split("_")[0] for m in g["members"]} for g in doc["groups"]]
    assert all(len(s) == 1 for s in stems), stems  # no group mixes two photos
    assert {"coffee"} in stems  # the byte-identical copy at least
    assert len(stems) >= 2  # and some edited copies
    # The default keeper is the photo itself, not an edited copy or the backup.
    photos = folder / "photos"
    assert [Path(g["keep"]).parent for g in doc["groups"]] == [photos] * len(doc["groups"])
    assert all(g["keep_reason"] for g in doc["groups"])


def test_global_options_work_after_the_command_too(
    photos: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    from lookalike.cli._app import hoist_global_options

    assert hoist_global_options(["scan", "d", "-q", "--threads", "1", "--", "-v"]) == [
        "-q",
        "--threads",
        "1",
        "scan",
        "d",
        "--",
        "-v",
    ]
    assert hoist_global_options(["--threads", "2", "scan", "d", "-v"]) == [
        "--threads",
        "2",
        "-v",
        "scan",
        "d",
    ]
    args = [photos, "--model", tiny_checkpoint]
    before = runner.invoke(app, ["-q", "scan", *map(str, args), "--index", str(tmp_path / "a")])
    after = runner.invoke(
        app, ["scan", *map(str, args), "--index", str(tmp_path / "b"), "-q", "--threads=1"]
    )
    assert before.exit_code == after.exit_code == 0, after.output
    # Quiet both ways: the same summary (up to its timings), nothing else.
    assert after.stdout.split(";")[0] == before.stdout.split(";")[0]
    assert len(after.stdout.splitlines()) == len(before.stdout.splitlines())


def test_help_shows_extras_in_brackets() -> None:
    result = runner.invoke(app, ["scan", "--help"])
    assert result.exit_code == 0
    assert "extra [ray]" in " ".join(result.stdout.split())
