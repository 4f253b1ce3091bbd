"""The `lookalike compare` and `lookalike train` commands, global options, exit codes."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

import lookalike
import lookalike.model.checkpoint as model_module
from conftest import TINY_ENCODER, SyntheticFolder, make_picture
from lookalike.cli import app
from lookalike.model import load_model

runner = CliRunner()

JSON_KEYS = {"schema_version", "a", "b", "similarity", "duplicate", "min_similarity", "model"}


@pytest.fixture()
def in_folder(synthetic_folder: SyntheticFolder, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from inside the synthetic folder, so paths can be given relative."""
    monkeypatch.chdir(synthetic_folder.root)
    return synthetic_folder.root


def compare(*args: str | Path) -> Result:
    return runner.invoke(app, ["compare", *map(str, args)])


# ---------------------------------------------------------------- compare


def test_compare_text_output(tiny_checkpoint: Path, synthetic_folder: SyntheticFolder) -> None:
    a = synthetic_folder.originals[0]
    result = compare(a, a, "--model", tiny_checkpoint)
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"similarity 1\.0000  ->  duplicate  \(min_similarity 0\.9000, model tiny-test\)\n",
        result.stdout,
    )
    assert result.stderr == ""


def test_compare_quiet_output(tiny_checkpoint: Path, synthetic_folder: SyntheticFolder) -> None:
    a, b = synthetic_folder.originals[0], synthetic_folder.unrelated[0]
    result = runner.invoke(
        app,
        ["-q", "compare", str(a), str(b), "--model", str(tiny_checkpoint), "--min-similarity", "1"],
    )
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"0\.\d{4} not a duplicate\n", result.stdout)


def test_compare_json(tiny_checkpoint: Path, in_folder: Path) -> None:
    copy, (original, _) = next(iter(_edits(in_folder).items()))
    result = compare(copy, original, "--model", tiny_checkpoint, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == JSON_KEYS
    assert payload["schema_version"] == 1
    assert (payload["a"], payload["b"]) == (copy, original)  # paths exactly as given
    expected = load_model(tiny_checkpoint).compare(in_folder / copy, in_folder / original)
    assert payload["similarity"] == round(expected.similarity, 4)
    assert payload["min_similarity"] == 0.9
    assert payload["duplicate"] is expected.duplicate
    assert payload["model"] == "tiny-test"
    for key in ("similarity", "min_similarity"):
        assert isinstance(payload[key], float)
        assert len(repr(payload[key]).split(".")[1]) <= 4


def _edits(root: Path) -> dict[str, tuple[str, str]]:
    """The synthetic folder's truth, as paths relative to its root."""
    truth = json.loads((root.parent / f"{root.name}_truth.json").read_text())
    return {
        str(Path(k).relative_to(root)): (str(Path(v[0]).relative_to(root)), v[1])
        for k, v in truth["edits"].items()
    }


def test_compare_exit_0_for_duplicates_and_not(
    tiny_checkpoint: Path, synthetic_folder: SyntheticFolder
) -> None:
    a, b = synthetic_folder.originals[0], synthetic_folder.unrelated[1]
    same = compare(a, a, "--model", tiny_checkpoint, "--json")
    assert same.exit_code == 0 and json.loads(same.stdout)["duplicate"] is True
    different = compare(a, b, "--model", tiny_checkpoint, "--json", "--min-similarity", "1.0")
    assert different.exit_code == 0, different.output
    payload = json.loads(different.stdout)
    assert payload["duplicate"] is False and payload["min_similarity"] == 1.0
    lenient = compare(a, b, "--model", tiny_checkpoint, "--json", "--min-similarity", "0")
    assert lenient.exit_code == 0 and json.loads(lenient.stdout)["duplicate"] is True


def test_compare_unreadable_image_exits_1_with_one_line(
    tiny_checkpoint: Path, synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    # A long name: the message must not be wrapped over several lines when piped.
    folder = tmp_path / ("a_folder_with_a_rather_long_name_" * 3)
    folder.mkdir()
    corrupt = folder / "broken.jpg"
    shutil.copy(synthetic_folder.corrupt, corrupt)
    result = compare(synthetic_folder.originals[0], corrupt, "--model", tiny_checkpoint)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert str(corrupt) in lines[0] and lines[0].startswith("error: cannot read")
    assert "Traceback" not in result.output


def test_error_names_the_file_exactly_even_with_brackets(
    tiny_checkpoint: Path, synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    odd = tmp_path / "[b]holiday" / "[red]copy [1].jpg"
    odd.parent.mkdir()
    shutil.copy(synthetic_folder.corrupt, odd)
    result = compare(odd, synthetic_folder.originals[0], "--model", tiny_checkpoint)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot read {odd}: ")


def test_compare_missing_image_exits_1_naming_it(
    tiny_checkpoint: Path, synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.jpg"
    result = compare(missing, synthetic_folder.originals[0], "--model", tiny_checkpoint, "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: cannot read {missing}: file not found"


@pytest.mark.parametrize(
    "args",
    [
        ["compare"],
        ["compare", "a.jpg"],
        ["compare", "a.jpg", "b.jpg", "--min-similarity", "1.5"],
        ["compare", "a.jpg", "b.jpg", "--min-similarity", "-0.1"],
        ["compare", "a.jpg", "b.jpg", "--min-similarity", "high"],
        ["compare", "a.jpg", "b.jpg", "--no-such-option"],
        ["--threads", "0", "compare", "a.jpg", "b.jpg"],
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


def test_missing_model_exits_2(synthetic_folder: SyntheticFolder, tmp_path: Path) -> None:
    a = synthetic_folder.originals[0]
    result = compare(a, a, "--model", tmp_path / "none.pt")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'none.pt'}: no checkpoint file there"


def test_corrupt_model_exits_2(
    synthetic_folder: SyntheticFolder, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    a = synthetic_folder.originals[0]
    broken = tmp_path / "broken.pt"
    broken.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    result = compare(a, a, "--model", broken)
    assert result.exit_code == 2
    assert "not a readable checkpoint" in result.stderr and str(broken) in result.stderr
    future = tmp_path / "future.pt"
    payload = torch.load(tiny_checkpoint, weights_only=True)
    torch.save({**payload, "format": 99}, future)
    result = compare(a, a, "--model", future)
    assert result.exit_code == 2
    assert "format 99 is not supported" in result.stderr


def test_missing_bundled_model_exits_2(
    synthetic_folder: SyntheticFolder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(model_module, "DEFAULT_CHECKPOINT", tmp_path / "default.pt")
    a = synthetic_folder.originals[0]
    result = compare(a, a)
    assert result.exit_code == 2
    assert "bundled default model is missing" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_compare_with_the_bundled_model(synthetic_folder: SyntheticFolder) -> None:
    a = synthetic_folder.originals[0]
    result = compare(a, a, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert payload["model"] == load_model().model_id


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"lookalike {lookalike.__version__}\n"


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("compare", "train"):
        assert command in result.stdout


# ---------------------------------------------------------------- train


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_train") / "photos"
    root.mkdir()
    for i in range(12):
        make_picture(300 + i, (150, 110)).save(root / f"photo_{i:02d}.jpg", quality=92)
    (root / "notes.txt").write_text("not a photo")
    return root


def _tiny_config(path: Path) -> Path:
    config = {
        "epochs": 2,
        "steps_per_epoch": 4,
        "batch_photos": 6,
        "synthetic_per_batch": 2,
        "warmup_steps": 2,
        "tiles_per_photo": 0,
        "cache_side": 96,
        "val_edits_per_photo": 4,
        "workers": 0,
        "threads": 1,
        "model_id": "cli-tiny",
        "encoder": asdict(TINY_ENCODER),
        "preprocess": {"input_size": 64},
    }
    path.write_text(json.dumps(config))
    return path


def test_train_prints_epochs_and_writes_a_checkpoint_compare_uses(
    train_folder: Path, tmp_path: Path
) -> None:
    threads = torch.get_num_threads()
    out = tmp_path / "model.pt"
    log = tmp_path / "train.jsonl"
    config = _tiny_config(tmp_path / "tiny.json")
    try:
        result = runner.invoke(
            app,
            [
                "train",
                str(train_folder),
                "--out",
                str(out),
                "--config",
                str(config),
                "--log",
                str(log),
            ],
        )
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for number, line in enumerate(epoch_lines, start=1):
        assert re.match(rf"epoch {number}/2  loss \d+\.\d{{4}}  val_loss -?\d+\.\d{{4}}", line)
    assert "checkpoint" in result.stdout.splitlines()[-1]
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["epoch"] for e in entries] == [1, 2]
    assert {"loss", "val_loss", "val_recall_at_p99"} <= set(entries[0])

    image = sorted(train_folder.glob("*.jpg"))[0]
    used = compare(image, image, "--model", out, "--json")
    assert used.exit_code == 0, used.output
    assert json.loads(used.stdout)["model"] == "cli-tiny"
    assert json.loads(used.stdout)["min_similarity"] == round(load_model(out).min_similarity, 4)


def test_train_options_override_the_config(train_folder: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    out = tmp_path / "model.pt"
    config = _tiny_config(tmp_path / "tiny.json")
    try:
        result = runner.invoke(
            app,
            [
                "train", str(train_folder), "--out", str(out), "--config", str(config),
                "--epochs", "1", "--steps-per-epoch", "2", "--seed", "4",
            ],
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 1 and epoch_lines[0].startswith("epoch 1/1 ")
    meta = load_model(out).meta["train_config"]
    assert (meta["epochs"], meta["steps_per_epoch"], meta["seed"]) == (1, 2, 4)


def test_train_usage_errors(train_folder: Path, tmp_path: Path) -> None:
    not_a_folder = runner.invoke(app, ["train", str(tmp_path / "none"), "--out", "m.pt"])
    assert not_a_folder.exit_code == 2
    assert "not a folder" in not_a_folder.stderr
    no_out = runner.invoke(app, ["train", str(train_folder)])
    assert no_out.exit_code == 2
    few = tmp_path / "few"
    few.mkdir()
    make_picture(1).save(few / "one.png")
    too_few = runner.invoke(
        app,
        [
            "train",
            str(few),
            "--out",
            str(tmp_path / "m.pt"),
            "--config",
            str(_tiny_config(tmp_path / "c.json")),
        ],
    )
    assert too_few.exit_code == 2
    assert "at least 2" in too_few.stderr
    assert not (tmp_path / "m.pt").exists()
