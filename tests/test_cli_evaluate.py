"""The `lookalike make-benchmark` and `lookalike evaluate` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import SyntheticFolder
from lookalike.cli import app
from lookalike.evaluate import METRIC_KEYS

runner = CliRunner()


def text(output: str) -> str:
    """Output with Rich's line wrapping undone."""
    return " ".join(output.split())


@pytest.fixture(scope="module")
def photos_list(
    synthetic_folder: SyntheticFolder, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Distinct photos of the synthetic folder only (its edited copies would be duplicates)."""
    names = [p.relative_to(synthetic_folder.root).as_posix() for p in synthetic_folder.originals]
    names += [p.relative_to(synthetic_folder.root).as_posix() for p in synthetic_folder.unrelated]
    path = tmp_path_factory.mktemp("lists") / "photos.txt"
    path.write_text("# distinct photos\n" + "\n".join(names) + "\n\n")
    return path


@pytest.fixture(scope="module")
def bench_dir(
    synthetic_folder: SyntheticFolder, photos_list: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("cli") / "bench"
    result = runner.invoke(
        app,
        [
            "make-benchmark",
            str(synthetic_folder.root),
            str(out),
            "--originals", "3",
            "--distractors", "4",
            "--tiles", "2",
            "--seed", "3",
            "--families", "jpeg,resize,flip",
            "--photos-list", str(photos_list),
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["benchmark"]
    assert counts["originals"] == 3 and counts["edits"] == 9
    assert counts["positives"] == 9 and counts["ignored_pairs"] == 9
    assert counts["images"] == 12 + counts["distractors"]
    return out


def test_evaluate_json_has_every_field(
    bench_dir: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    plots = tmp_path / "plots"
    result = runner.invoke(
        app,
        [
            "evaluate", str(bench_dir),
            "--model", str(tiny_checkpoint),
            "--peers", "phash,pdq",
            "--json",
            "--plots", str(plots),
            "--workers", "2",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["schema_version"] == 1
    assert payload["model"]["id"] == "tiny-test"
    assert payload["benchmark"]["positives_by_family"] == {"jpeg": 3, "resize": 3, "flip": 3}
    assert list(payload["systems"]) == ["lookalike", "phash", "pdq"]
    negatives = payload["benchmark"]["negatives"]
    for name, system in payload["systems"].items():
        assert set(METRIC_KEYS) <= set(system), name
        assert system["tp"] + system["fn"] == 9
        assert system["fp"] + system["tn"] == negatives
        assert set(system["recall_by_family"]) == {"jpeg", "resize", "flip"}
        assert set(system["recall_by_family_at_p99"]) == {"jpeg", "resize", "flip"}
        assert 0.0 <= system["recall_at_p999"] <= system["recall_at_p99"] <= 1.0
        assert system["images_per_s"] > 0 and system["peak_rss_mb"] > 0
    assert payload["systems"]["phash"]["max_distance"] == 10
    assert payload["systems"]["pdq"]["max_distance"] == 31
    assert payload["systems"]["lookalike"]["min_similarity"] == 0.9  # the tiny model's default
    written = sorted(p.name for p in plots.iterdir())
    assert written == sorted(
        ["pr.png", "roc.png", "recall_by_family.png"]
        + [f"scores_{s}.png" for s in ("lookalike", "phash", "pdq")]
    )
    for name in written:
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(plots / name) as image:
            image.load()
    # The plots are never overwritten: a second run stops before measuring anything.
    again = runner.invoke(
        app, ["evaluate", str(bench_dir), "--model", str(tiny_checkpoint), "--plots", str(plots)]
    )
    assert again.exit_code == 2 and "already exists" in text(again.output)


def test_evaluate_table(bench_dir: Path, tiny_checkpoint: Path) -> None:
    result = runner.invoke(
        app,
        [
            "evaluate", str(bench_dir),
            "--model", str(tiny_checkpoint),
            "--min-similarity", "0.99",
            "--peers", "dhash",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for label in ("lookalike", "dhash", "similarity ≥ 0.9900", "distance ≤ 10", "recall @ p0.99"):
        assert label in result.stdout
    assert "resize" in result.stdout  # the per-family table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--peers", "md5"], "unknown peer"),
        (["--model", "/no/such.pt"], "no checkpoint"),
    ],
)
def test_evaluate_usage_errors(bench_dir: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["evaluate", str(bench_dir), *args])
    assert result.exit_code == 2
    assert message in text(result.output)


def test_evaluate_refuses_a_folder_without_truth(tmp_path: Path, tiny_checkpoint: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--model", str(tiny_checkpoint)])
    assert result.exit_code == 2 and "not a benchmark set" in text(result.output)


def test_make_benchmark_errors(synthetic_folder: SyntheticFolder, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["make-benchmark", str(synthetic_folder.root), str(tmp_path / "b"), "--originals", "99"],
    )
    assert result.exit_code == 2 and "photos to draw from" in text(result.output)
    result = runner.invoke(app, ["make-benchmark", str(tmp_path / "none"), str(tmp_path / "c")])
    assert result.exit_code == 2 and "not found" in text(result.output)
    result = runner.invoke(
        app,
        [
            "make-benchmark", str(synthetic_folder.root), str(tmp_path / "d"),
            "--photos-list", str(tmp_path / "missing.txt"),
        ],
    )  # fmt: skip
    assert result.exit_code == 2 and "cannot read photo list" in text(result.output)


def test_make_benchmark_text_output(
    synthetic_folder: SyntheticFolder, photos_list: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "make-benchmark", str(synthetic_folder.root), str(tmp_path / "set"),
            "--originals", "1", "--distractors", "1", "--families", "blur",
            "--photos-list", str(photos_list),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 3 images" in text(result.stdout) and "1 positive" in text(result.stdout)


def test_calibrate_writes_a_checkpoint_meeting_the_target(
    bench_dir: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from lookalike.evaluate import evaluate_model, load_truth
    from lookalike.model import load_model

    out = tmp_path / "calibrated.pt"
    result = runner.invoke(
        app, ["calibrate", str(tiny_checkpoint), str(bench_dir), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    calibrated = load_model(out)
    assert calibrated.min_similarity == pytest.approx(payload["min_similarity"])
    assert calibrated.verify is not None
    assert calibrated.verify.confident_cnn_similarity <= 1.0
    metrics = evaluate_model(load_truth(bench_dir), calibrated).metrics
    # On the set it was calibrated on, the chosen cut-off meets the target (or finds none).
    assert metrics.precision >= 0.99 or metrics.tp == 0


def test_calibrate_keeps_a_given_confident_cut_off(
    bench_dir: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from lookalike.model import load_model

    out = tmp_path / "calibrated.pt"
    args = ["calibrate", str(tiny_checkpoint), str(bench_dir), "--out", str(out)]
    result = runner.invoke(app, [*args, "--confident", "0.9987", "--json"])
    assert result.exit_code == 0, result.output
    calibrated = load_model(out)
    assert calibrated.verify is not None
    assert calibrated.verify.confident_cnn_similarity == pytest.approx(0.9987)
    assert "CNN-confident from 0.9987" in json.loads(result.output)["method"]
    args[-1] = str(tmp_path / "other.pt")
    refused = runner.invoke(app, [*args, "--confident", "1.5"])
    assert refused.exit_code == 2 and not (tmp_path / "other.pt").exists()
