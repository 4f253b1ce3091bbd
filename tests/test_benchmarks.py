"""The benchmark scripts run end to end in their tiny mode, so they cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import SyntheticFolder

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_quality_tiny(
    synthetic_folder: SyntheticFolder, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    photos = synthetic_folder.originals + synthetic_folder.unrelated
    listing = tmp_path / "photos.txt"
    listing.write_text("\n".join(p.relative_to(synthetic_folder.root).as_posix() for p in photos))
    out = tmp_path / "quality.json"
    result = run(
        "quality.py", str(synthetic_folder.root), "--photos-list", str(listing),
        "--model", str(tiny_checkpoint), "--tiny", "--json-out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "mean over 2 set(s)" in result.stdout and "positives found per edit family" in result.stdout
    )
    report = json.loads(out.read_text())
    assert [r["seed"] for r in report["runs"]] == [0, 1]
    for payload in report["runs"]:
        assert list(payload["systems"]) == ["lookalike", "phash", "pdq"]
        assert payload["benchmark"]["positives"] == 6  # 2 originals x 3 families
    assert report["machine"]["cores"] >= 1 and "--tiny" in report["command"]


def test_steps_add_up(
    synthetic_folder: SyntheticFolder, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "steps.json"
    result = run(
        "steps.py", str(synthetic_folder.root / "*.*"), "--model", str(tiny_checkpoint),
        "--json-out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = json.loads(out.read_text())["ms_per_image"]
    assert {"decode (reduced size)", "trim + resize", "standardise"} <= set(steps)
    assert "pHash (imagehash, from the file)" in steps and all(v > 0 for v in steps.values())
    assert "pHash ÷ lookalike per image" in result.stdout
    assert "1 unreadable file(s) left out" in result.stdout  # the corrupt one


def test_throughput_tiny(
    synthetic_folder: SyntheticFolder, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "throughput.json"
    result = run(
        "throughput.py", str(synthetic_folder.root), "--model", str(tiny_checkpoint), "--tiny",
        "--json-out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "lookalike ÷ this" in result.stdout
    report = json.loads(out.read_text())
    assert report["files"] == 8
    assert [s["system"] for s in report["systems"]] == ["lookalike (tiny-test)", "phash"]
    assert all(s["images_per_s"] > 0 for s in report["systems"])


def test_scan_scale_tiny_small_images(
    synthetic_folder: SyntheticFolder, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in synthetic_folder.originals:
        (photos / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "scale.json"
    result = run(
        "scan_scale.py", str(tmp_path / "work"), "--tiny", "--photos", str(photos),
        "--copies", "0.5", "--squash", "32", "--peer", "phash-plain", "--no-report",
        "--model", str(tiny_checkpoint), "--json-out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "whole scan ÷ phash-plain throughput" in result.stdout
    report = json.loads(out.read_text())
    assert report["images"] == 40 and report["squash"] == 32
    assert report["peer"]["name"] == "phash-plain" and report["peer"]["errors"] == 0
    assert report["scan"]["images_per_s"] > 0 and report["scan"]["verified_pairs"] >= 0
    sizes = {Image.open(p).size for p in (tmp_path / "work" / "images").rglob("*.jpg")}
    assert sizes == {(32, 32)}
