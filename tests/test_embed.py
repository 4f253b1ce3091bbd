"""Streaming embedding of many files: parallel decode, errors apart, same vectors as Model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SyntheticFolder
from lookalike.embed import embed_all, embed_paths, prepare_file
from lookalike.model import Model


@pytest.fixture(scope="module")
def all_files(synthetic_folder: SyntheticFolder) -> list[Path]:
    """Every file of the synthetic folder, the corrupt one in the middle."""
    good = [*synthetic_folder.originals, *synthetic_folder.edits, *synthetic_folder.unrelated]
    middle = len(good) // 2
    return [*good[:middle], synthetic_folder.corrupt, *good[middle:]]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_embed_all_returns_every_good_file_and_lists_the_corrupt_one(
    tiny_model: Model, synthetic_folder: SyntheticFolder, all_files: list[Path], workers: int
) -> None:
    result = embed_all(all_files, tiny_model, batch_size=4, workers=workers)
    good = [p for p in all_files if p != synthetic_folder.corrupt]
    assert result.paths == good
    assert result.vectors.shape == (len(good), tiny_model.encoder.config.embed_dim)
    assert [e.path for e in result.errors] == [synthetic_folder.corrupt]
    assert result.errors[0].reason  # a reason a user can read
    vectors, measured = tiny_model.embed_measured(good)
    np.testing.assert_allclose(result.vectors, vectors, atol=1e-5)
    np.testing.assert_allclose(result.details, measured)  # measured beside each vector
    assert measured.shape == (len(good),) and (measured > 0).all()


def test_worker_counts_agree(tiny_model: Model, all_files: list[Path]) -> None:
    one = embed_all(all_files, tiny_model, batch_size=3, workers=1)
    two = embed_all(all_files, tiny_model, batch_size=3, workers=2)
    assert one.paths == two.paths
    np.testing.assert_allclose(one.vectors, two.vectors, atol=1e-6)
    assert one.errors == two.errors


def test_embed_paths_streams_batches_in_input_order(
    tiny_model: Model, synthetic_folder: SyntheticFolder, all_files: list[Path]
) -> None:
    progress: list[int] = []
    batches = list(
        embed_paths(all_files, tiny_model, batch_size=5, workers=2, on_progress=progress.append)
    )
    assert len(batches) == -(-len(all_files) // 5)
    assert sum(progress) == len(all_files)
    seen = []
    for batch in batches:
        assert len(batch.indices) == len(batch.vectors) == len(batch.sizes)
        seen.extend(int(i) for i in batch.indices)
        seen.extend(i for i, _ in batch.errors)
    assert seen == list(range(len(all_files)))
    (corrupt_index, error), *_ = [e for b in batches for e in b.errors]
    assert all_files[corrupt_index] == synthetic_folder.corrupt == error.path


def test_sizes_are_the_full_picture_sizes(tiny_model: Model, all_files: list[Path]) -> None:
    sizes = {}
    for batch in embed_paths(all_files, tiny_model, batch_size=8, workers=0):
        for index, size in zip(batch.indices, batch.sizes, strict=True):
            sizes[all_files[int(index)]] = size
    for path, size in sizes.items():
        with Image.open(path) as image:
            assert size == image.size


def test_missing_and_vanished_files_are_errors(
    tiny_model: Model, synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    missing = tmp_path / "gone.jpg"
    folder = tmp_path / "folder.png"
    folder.mkdir()
    result = embed_all(
        [missing, synthetic_folder.originals[0], folder], tiny_model, workers=0, batch_size=2
    )
    assert result.paths == [synthetic_folder.originals[0]]
    reasons = {e.path: e.reason for e in result.errors}
    assert reasons[missing] == "file not found"
    assert "folder" in reasons[folder]


def test_nothing_to_embed(tiny_model: Model) -> None:
    result = embed_all([], tiny_model, workers=2)
    assert result.paths == [] and result.errors == []
    assert result.vectors.shape == (0, tiny_model.encoder.config.embed_dim)


def test_prepare_file_never_raises(tiny_model: Model, synthetic_folder: SyntheticFolder) -> None:
    bad = prepare_file(3, str(synthetic_folder.corrupt), tiny_model.preprocess)
    assert bad.index == 3 and bad.pixels is None and bad.error
    good = prepare_file(0, str(synthetic_folder.originals[0]), tiny_model.preprocess)
    size = tiny_model.preprocess.input_size
    assert good.error is None and good.pixels is not None
    assert good.pixels.shape == (size, size, 3)


def test_decode_workers_run_the_exported_network(tiny_model: Model, all_files: list[Path]) -> None:
    from lookalike.embed import _prepared_stream

    chunks = list(_prepared_stream(all_files, tiny_model.preprocess, 2, 4, tiny_model.onnx_bytes()))
    good = [p for chunk in chunks for p in chunk if p.error is None]
    assert good and all(p.vector is not None and p.pixels is None for p in good)
    vectors = np.stack([p.vector for p in good])
    expected = tiny_model.embed([all_files[p.index] for p in good])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
