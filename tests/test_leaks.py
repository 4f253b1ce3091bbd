"""find_leaks / `lookalike leaks`: duplicates across splits and across class folders."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_picture
from lookalike.augment import apply_edit
from lookalike.cli import app
from lookalike.model import load_model, save_model
from lookalike.scan import ScanError, find_leaks, scan_folder
from lookalike.verify import VerifyConfig
from scan_support import content_model

runner = CliRunner()


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """train/ and test/ with class folders; test/cat/leak.jpg is an edit of a train photo,
    test/dog/same.png a byte copy of another, filed under a different class."""
    root = tmp_path / "data"
    for split, offset in (("train", 0), ("test", 100)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for k in range(3):
                make_picture(offset + k + (10 if label == "dog" else 0)).save(folder / f"{k}.png")
    picture = make_picture(1)  # train/cat/1.png
    apply_edit(picture, "jpeg", seed=0, strength=0.3).save(root / "test" / "cat" / "leak.jpg")
    shutil.copyfile(root / "train" / "cat" / "2.png", root / "test" / "dog" / "same.png")
    return root


def test_every_image_with_a_duplicate_in_another_split_is_listed(dataset: Path) -> None:
    report = find_leaks([dataset / "train", dataset / "test"], model=content_model())
    pairs = {
        (leak.path.name, leak.split, m.path.name) for leak in report.leaks for m in leak.matches
    }
    train, test = str(dataset / "train"), str(dataset / "test")
    assert pairs == {
        ("1.png", train, "leak.jpg"),
        ("2.png", train, "same.png"),
        ("leak.jpg", test, "1.png"),
        ("same.png", test, "2.png"),
    }
    assert report.split_counts == {f"{train}|{test}": 4}
    assert report.folder_counts == {
        str(dataset / "train" / "cat"): 2,
        str(dataset / "test" / "cat"): 1,
        str(dataset / "test" / "dog"): 1,
    }
    exact = [m for leak in report.leaks for m in leak.matches if m.path.name == "same.png"]
    assert exact[0].exact and exact[0].similarity == 1.0
    assert report.label_conflicts == ()


def test_labels_from_folders_reports_conflicting_copies(dataset: Path) -> None:
    report = find_leaks(
        [dataset / "train", dataset / "test"], model=content_model(), labels_from_folders=True
    )
    (conflict,) = report.label_conflicts
    assert conflict.labels == ("cat", "dog")
    assert {m.path.name for m in conflict.members} == {"2.png", "same.png"}


def test_three_splits_and_index_files_as_splits(dataset: Path, tmp_path: Path) -> None:
    model = content_model()
    val = dataset / "val"
    val.mkdir()
    shutil.copyfile(dataset / "test" / "dog" / "0.png", val / "x.png")
    train_index = tmp_path / "train.lookalike"
    scan_folder([dataset / "train"], train_index, model=model, workers=1)
    report = find_leaks([train_index, val, dataset / "test"], model=model)
    assert set(report.split_counts) == {
        f"{train_index}|{dataset / 'test'}",
        f"{val}|{dataset / 'test'}",
    }
    assert report.split_counts[f"{val}|{dataset / 'test'}"] == 2


def test_no_leaks_between_clean_splits(dataset: Path) -> None:
    (dataset / "test" / "cat" / "leak.jpg").unlink()
    (dataset / "test" / "dog" / "same.png").unlink()
    report = find_leaks([dataset / "train", dataset / "test"], model=content_model())
    assert report.leaks == () and report.split_counts == {}


def test_bad_splits_are_refused(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="at least two"):
        find_leaks([dataset / "train"], model=content_model())
    with pytest.raises(ScanError, match="not a folder or a lookalike index"):
        find_leaks([dataset / "train", tmp_path / "missing"], model=content_model())


def test_cli_exit_codes(dataset: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    base = ["leaks", "--model", str(tiny_checkpoint), "--min-similarity", "1"]
    found = runner.invoke(app, [*base, str(dataset / "train"), str(dataset / "test"), "--json"])
    assert found.exit_code == 1, found.output
    doc = json.loads(found.stdout)
    assert {Path(leak["path"]).name for leak in doc["leaks"]} == {"2.png", "same.png"}
    assert set(doc) >= {"schema_version", "leaks", "split_counts", "folder_counts"}
    splits = [str(dataset / "train"), str(dataset / "test")]
    verifying = tmp_path / "verifying.pt"
    save_model(replace(load_model(tiny_checkpoint), verify=VerifyConfig()), verifying)
    checked = ["leaks", "--model", str(verifying), "--min-similarity", "1", *splits]
    nearest = runner.invoke(app, [*checked, "--json", "--verify-nearest", "1"])
    assert nearest.exit_code == 1, nearest.output
    assert json.loads(nearest.stdout)["leaks"] == doc["leaks"]
    for depth in ("0", "99"):
        refused = runner.invoke(app, [*checked, "--verify-nearest", depth])
        assert refused.exit_code == 2 and "--verify-nearest" in " ".join(refused.output.split())
    labels = runner.invoke(
        app, [*base, str(dataset / "train"), str(dataset / "test"), "--labels-from-folders"]
    )
    assert labels.exit_code == 1 and "labels cat / dog" in labels.stdout
    (dataset / "test" / "dog" / "same.png").unlink()
    clean = runner.invoke(app, [*base, str(dataset / "train"), str(dataset / "test")])
    assert clean.exit_code == 0, clean.output
    assert "no leaks" in clean.stdout
    error = runner.invoke(app, [*base, str(dataset / "train"), str(tmp_path / "missing")])
    assert error.exit_code == 2
    mismatch_index = tmp_path / "other.lookalike"
    scan_folder([dataset / "train"], mismatch_index, model=content_model(), workers=1)
    mismatch = runner.invoke(app, [*base, str(mismatch_index), str(dataset / "test")])
    assert mismatch.exit_code == 2 and "rescan" in " ".join(mismatch.output.split())
