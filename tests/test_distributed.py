"""The Ray engine: same scan results as the local engine, Parquet shards, sharded search,
workers that die, unreadable files; and Ray stays out of the core install.

One local Ray instance (2 CPUs) serves the whole module. Tests that need Ray are
skipped only when the `ray` extra is not installed; CI installs it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SyntheticFolder, make_picture, require_module
from lookalike.embed import Prepared, embed_all, prepare_file
from lookalike.model import Model, Preprocess, load_model
from lookalike.records import ScanResult
from lookalike.scan import scan_folder

ROOT = Path(__file__).resolve().parents[1]


def _needs(module: str) -> None:
    require_module(module, "needs the [ray] extra: pip install -e '.[ray]'")


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[object]:
    """A local Ray instance with 2 CPUs, started once for this module."""
    _needs("ray")
    _needs("ray.data")
    import logging

    import ray

    # The decode functions below live in this test module, which Ray's workers cannot
    # import: send them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def trained() -> Model:
    """The bundled model: a random one scores every synthetic pair ~0.999, so only a trained
    one gives several groups to compare."""
    return load_model()


@pytest.fixture()
def photos(synthetic_folder: SyntheticFolder, tmp_path: Path) -> Path:
    """The synthetic folder plus an empty file and a text file posing as images."""
    folder = tmp_path / "photos"
    shutil.copytree(synthetic_folder.root, folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image")
    return folder


def _groups(result: ScanResult) -> list[tuple[str, list[tuple[str, float]]]]:
    return [
        (str(g.keep), sorted((str(m.path), m.similarity_to_keep) for m in g.members))
        for g in result.groups
    ]


def _assert_same_results(local: ScanResult, remote: ScanResult) -> None:
    assert [(k, [p for p, _ in m]) for k, m in _groups(local)] == [
        (k, [p for p, _ in m]) for k, m in _groups(remote)
    ]
    for (_, a), (_, b) in zip(_groups(local), _groups(remote), strict=True):
        np.testing.assert_allclose([s for _, s in a], [s for _, s in b], atol=1e-5)
    local_pairs = {(str(p.a), str(p.b)): p.similarity for p in local.pairs}
    remote_pairs = {(str(p.a), str(p.b)): p.similarity for p in remote.pairs}
    assert local_pairs.keys() == remote_pairs.keys()
    for key, similarity in local_pairs.items():
        assert abs(similarity - remote_pairs[key]) <= 1e-5, key
    assert sorted((str(e.path), e.reason) for e in local.errors) == sorted(
        (str(e.path), e.reason) for e in remote.errors
    )


# -- Ray stays optional ----------------------------------------------------------------


def test_core_and_local_scan_do_not_import_ray(
    synthetic_folder: SyntheticFolder, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    code = (
        "import sys, lookalike, lookalike.cli\n"
        "from lookalike.model import load_model\n"
        "from lookalike.scan import scan_folder\n"
        f"scan_folder([{str(synthetic_folder.root)!r}], {str(tmp_path / 'x.idx')!r},"
        f" model=load_model({str(tiny_checkpoint)!r}), workers=1)\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "assert 'lookalike.distributed' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_cli_refuses_ray_options_with_the_local_engine(
    synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    from lookalike.cli import app

    runner = CliRunner()
    index = str(tmp_path / "x.idx")
    folder = str(synthetic_folder.root)
    bad_engine = runner.invoke(app, ["scan", folder, "--index", index, "--engine", "spark"])
    assert bad_engine.exit_code == 2 and "--engine must be local or ray" in bad_engine.output
    address = runner.invoke(app, ["scan", folder, "--index", index, "--address", "auto"])
    assert address.exit_code == 2 and "need --engine ray" in address.output
    assert not Path(index).exists()


def test_ray_engine_without_ray_says_what_to_install(
    synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    code = (
        "import sys\n"
        "sys.modules['ray'] = sys.modules['pyarrow'] = None  # as if not installed\n"
        "from typer.testing import CliRunner\n"
        "from lookalike.cli import app\n"
        f"args = ['scan', {str(synthetic_folder.root)!r}, '--index', {str(tmp_path / 'x.idx')!r}]\n"
        "result = CliRunner().invoke(app, [*args, '--engine', 'ray'])\n"
        "print(result.exit_code, result.output)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 ") and "pip install 'lookalike[ray]'" in done.stdout


def test_unreachable_cluster_is_a_clear_error(
    synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    _needs("ray")
    import socket

    from lookalike.cli import app

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    index = tmp_path / "x.idx"
    args = ["scan", str(synthetic_folder.root), "--index", str(index), "--engine", "ray"]
    result = CliRunner().invoke(app, [*args, "--address", f"127.0.0.1:{port}"])
    assert result.exit_code == 2 and "cannot reach the Ray cluster" in result.output
    assert not index.exists()


# -- Shards and the sharded search (PyArrow only; the Ray engine further down) -----------


def _planted(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors where every 10th row has a few close copies planted after it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    for start in range(0, n - 4, 10):
        x[start + 1 : start + 4] = x[start] + rng.normal(scale=0.25, size=(3, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(x: np.ndarray, min_cosine: float) -> set[tuple[int, int]]:
    cosine = x.astype(np.float64) @ x.astype(np.float64).T
    i, j = np.nonzero(np.triu(cosine >= min_cosine, k=1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def _write_shards(x: np.ndarray, folder: Path, rows: int, error_every: int = 0) -> list[Path]:
    """Vectors as shard files of `rows` rows; every `error_every`-th row is an error row."""
    _needs("pyarrow")
    import pyarrow.parquet as pq

    from lookalike.distributed import shard_table

    folder.mkdir(parents=True, exist_ok=True)
    paths, k = [], 0
    for n, start in enumerate(range(0, len(x), rows)):
        block = x[start : start + rows]
        vectors, errors, names = [], [], []
        for row in block:
            if error_every and k % error_every == 0:  # an unreadable file: no vector
                vectors.append(np.zeros_like(row))
                errors.append("corrupt or truncated image")
                names.append(f"bad_{k}.jpg")
                k += 1
            vectors.append(row)
            errors.append(None)
            names.append(f"img_{k}.jpg")
            k += 1
        table = shard_table(
            np.arange(len(names)) + start,
            names,
            np.stack(vectors),
            [(10, 10)] * len(names),
            errors,
        )
        paths.append(folder / f"part-{n:03d}.parquet")
        pq.write_table(table, paths[-1])
    return paths


def test_shard_rows_keep_each_pictures_measured_detail(tmp_path: Path) -> None:
    _needs("pyarrow")
    import pyarrow.parquet as pq

    from lookalike.distributed import read_batches, shard_table

    table = shard_table(
        [0, 1, 2],
        ["a.jpg", "bad.jpg", "c.jpg"],
        np.eye(3, 4, dtype=np.float32),
        [(10, 10)] * 3,
        [None, "corrupt or truncated image", None],
        [0.05, 0.07, np.nan],
    )
    pq.write_table(table, tmp_path / "part-000.parquet")
    (batch,) = read_batches(tmp_path)
    assert batch.indices.tolist() == [0, 2]
    assert batch.measured()[0] == pytest.approx(0.05) and np.isnan(batch.measured()[1])
    older = table.drop_columns(["detail"])  # a shard written before the column
    pq.write_table(older, tmp_path / "part-000.parquet")
    (batch,) = read_batches(tmp_path)
    assert batch.details is None and np.isnan(batch.measured()).all()


def test_sharded_search_equals_brute_force_locally(tmp_path: Path) -> None:
    _needs("pyarrow")
    from lookalike.distributed import find_pairs_sharded, read_paths, shard_offsets

    x = _planted(1500, 24, seed=3)
    shards = _write_shards(x, tmp_path, rows=400, error_every=97)
    assert len(shards) == 4
    offsets = shard_offsets(shards)
    assert offsets.tolist() == [0, 400, 800, 1200, 1500]  # error rows are not numbered
    found = find_pairs_sharded(shards, 0.9, engine="local")  # cosine 0.8
    truth = _brute_force(x, 0.8)
    assert len(truth) > 300 and found.exact_search
    assert set(zip(found.i.tolist(), found.j.tolist(), strict=True)) == truth
    expected = np.einsum("ij,ij->i", x[found.i].astype(np.float64), x[found.j].astype(np.float64))
    np.testing.assert_allclose(found.cosine, expected, atol=1e-6)
    names = [p for s in shards for p in read_paths(s)]
    assert len(names) == 1500 and not any(p.startswith("bad_") for p in names)


def test_sharded_inverted_file_finds_the_planted_pairs(tmp_path: Path) -> None:
    _needs("pyarrow")
    from lookalike.distributed import find_pairs_sharded

    x = _planted(6000, 24, seed=4)
    shards = _write_shards(x, tmp_path, rows=3000)
    found = find_pairs_sharded(shards, 0.9, engine="local", exact_limit=1000, nprobe=8)
    truth = _brute_force(x, 0.8)
    got = set(zip(found.i.tolist(), found.j.tolist(), strict=True))
    assert not found.exact_search
    assert got <= truth  # every pair reported is at or above the cut-off
    assert len(got & truth) / len(truth) >= 0.97


# -- The Ray engine --------------------------------------------------------------------


def test_ray_scan_equals_local_scan(ray_instance: object, photos: Path, trained: Model) -> None:
    from lookalike.distributed import RayEmbedder, read_manifest, shard_files, shard_schema

    local = scan_folder([photos], photos.parent / "local.idx", model=trained)
    with RayEmbedder(photos.parent / "shards") as embedder:
        remote = scan_folder(
            [photos],
            photos.parent / "ray.idx",
            model=trained,
            embedder=embedder,
            verifier=embedder.verifier,
        )
    assert len(local.groups) >= 4  # the synthetic families: something to compare
    _assert_same_results(local, remote)
    bad = {str(photos / n) for n in ("broken.jpg", "empty.jpg", "notes.png")}
    assert {str(e.path) for e in remote.errors} == bad

    # The shards on disk: the documented schema, one row per embedded content, errors kept.
    import pyarrow.parquet as pq

    (job,) = embedder.jobs
    files = shard_files(job)
    assert files and all(f.suffix == ".parquet" for f in files)
    assert not (job / "retries").exists()
    dim = trained.encoder.config.embed_dim
    for f in files:
        assert pq.read_schema(f).remove_metadata().equals(shard_schema(dim))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert sorted(r["index"] for r in rows) == list(range(len(rows)))
    errors = {r["path"]: r["error"] for r in rows if r["error"] is not None}
    assert set(errors) == bad and all(r["vector"] is None for r in rows if r["error"])
    good = [r for r in rows if r["error"] is None]
    assert all(len(r["vector"]) == dim and r["width"] > 0 for r in good)
    manifest = read_manifest(job)
    assert (manifest.rows, manifest.errors, manifest.embed_dim) == (len(rows), len(bad), dim)
    assert manifest.files == [f.relative_to(job).as_posix() for f in files]

    # The stored embeddings and the pairs verified on the workers agree.
    from lookalike.index import open_index

    with open_index(photos.parent / "local.idx") as a, open_index(photos.parent / "ray.idx") as b:
        hashes_a, vectors_a = a.embedded_vectors()
        hashes_b, vectors_b = b.embedded_vectors()
        verified_a, verified_b = a.verified(), b.verified()
    assert hashes_a == hashes_b
    np.testing.assert_allclose(vectors_a, vectors_b, atol=1e-5)
    assert len(verified_a) >= 10 and verified_a.keys() == verified_b.keys()
    assert all(abs(verified_a[k] - verified_b[k]) <= 1e-6 for k in verified_a)


def test_ray_matcher_matches_like_the_model(
    ray_instance: Any, synthetic_folder: SyntheticFolder, trained: Model
) -> None:
    """Pairs split among two actors come back in order, as the model matches them here."""
    from lookalike.candidates import file_loader
    from lookalike.distributed import RayMatcher

    paths = [str(p) for p in [*synthetic_folder.originals, *synthetic_folder.edits]][:12]
    pairs = np.array([(i, j) for i in range(len(paths)) for j in range(i + 1, len(paths))])
    assert trained.verify is not None
    here = trained.match_counts(file_loader(paths, trained.verify), pairs, threads=1)
    with RayMatcher(paths, trained, actors=2) as matcher:
        assert len(matcher.actors) == 2
        there = matcher(pairs)
        again = matcher(pairs[::-1])  # keypoints from the actors' caches this time
        ray_instance.kill(matcher.actors[0], no_restart=False)
        restarted = matcher(pairs)  # the actor comes back (model and paths fetched again)
    for mine, theirs in zip(here, there, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(again.counts, here.counts[::-1])
    np.testing.assert_array_equal(restarted.counts, here.counts)
    assert (here.counts > 0).any() and (here.counts == 0).any()  # something to compare


def test_cli_scan_with_the_ray_engine(ray_instance: object, photos: Path, tmp_path: Path) -> None:
    from lookalike.cli import app

    runner = CliRunner()
    outputs = {}
    for engine in ("local", "ray"):
        index = tmp_path / f"{engine}.idx"
        result = runner.invoke(
            app, ["scan", str(photos), "--index", str(index), "--engine", engine, "--json"]
        )
        assert result.exit_code == 0, result.output
        outputs[engine] = json.loads(result.stdout)
    local, remote = outputs["local"], outputs["ray"]
    assert [g["keep"] for g in local["groups"]] == [g["keep"] for g in remote["groups"]]
    assert [g["duplicates"] for g in local["groups"]] == [g["duplicates"] for g in remote["groups"]]
    assert local["errors"] == remote["errors"]
    assert (tmp_path / "ray.idx.shards").is_dir() and not (tmp_path / "local.idx.shards").exists()


@pytest.mark.slow
def test_cli_scan_joins_an_existing_cluster(
    ray_instance: Any, photos: Path, tmp_path: Path
) -> None:
    """`--address`: another process's scan runs on this module's Ray instance, left running."""
    from lookalike.cli import app

    address = ray_instance.get_runtime_context().gcs_address
    index = tmp_path / "joined.idx"
    done = subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "scan", str(photos), "--index", str(index),
         "--engine", "ray", "--address", address, "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    joined = json.loads(done.stdout)
    local = json.loads(
        CliRunner()
        .invoke(app, ["scan", str(photos), "--index", str(tmp_path / "local.idx"), "--json"])
        .stdout
    )
    assert [(g["keep"], g["duplicates"]) for g in joined["groups"]] == [
        (g["keep"], g["duplicates"]) for g in local["groups"]
    ]
    assert joined["errors"] == local["errors"] and len(joined["errors"]) == 3
    (job,) = (tmp_path / "joined.idx.shards").iterdir()
    assert (job / "manifest.json").is_file()
    assert all(node["Alive"] for node in ray_instance.nodes())  # the cluster is still up


def _die_on(
    index: int, path: str, preprocess: Preprocess, *, victim: str, marker: str, always: bool
) -> Prepared:
    """prepare_file, except that the worker dies on `victim` (the first time, or always)."""
    if path == victim and (always or not os.path.exists(marker)):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return prepare_file(index, path, preprocess)


@pytest.mark.parametrize("always", [False, True], ids=["dies-once", "dies-every-time"])
def test_a_dying_worker_is_retried(
    ray_instance: object, photos: Path, tmp_path: Path, tiny_model: Model, always: bool
) -> None:
    from lookalike.distributed import embed_to_shards, read_batches

    paths = sorted(str(p) for p in photos.rglob("*.jpg"))
    victim, marker = paths[5], tmp_path / "died"
    decode = functools.partial(_die_on, victim=victim, marker=str(marker), always=always)
    out = embed_to_shards(
        paths, tiny_model, tmp_path / "shards", batch_size=4, files_per_task=8, decode=decode
    )
    assert marker.exists()  # a worker really died on the victim
    batches = list(read_batches(out))
    got = {int(i): v for b in batches for i, v in zip(b.indices, b.vectors, strict=True)}
    errors = {int(i): e for b in batches for i, e in b.errors}
    assert set(got) | set(errors) == set(range(len(paths)))  # every file has its row
    unreadable = {paths.index(str(p)) for p in (photos / "broken.jpg", photos / "empty.jpg")}
    expected_errors = unreadable | ({paths.index(victim)} if always else set())
    assert set(errors) == expected_errors
    if always:  # a file that keeps killing its worker ends as an error, not a stalled job
        assert "crashed" in errors[paths.index(victim)].reason
    local = embed_all(paths, tiny_model, workers=1)
    by_path = dict(zip(map(str, local.paths), local.vectors, strict=True))
    for i, vector in got.items():
        np.testing.assert_allclose(vector, by_path[paths[i]], atol=1e-5)


def test_sharded_search_on_ray_equals_brute_force(ray_instance: object, tmp_path: Path) -> None:
    from lookalike.distributed import find_pairs_sharded

    x = _planted(1200, 16, seed=5)
    shards = _write_shards(x, tmp_path, rows=300, error_every=50)
    seen: list[tuple[int, int]] = []
    found = find_pairs_sharded(
        shards, 0.875, engine="ray", on_progress=lambda d, t: seen.append((d, t))
    )
    assert set(zip(found.i.tolist(), found.j.tolist(), strict=True)) == _brute_force(x, 0.75)
    assert seen[-1] == (4, 4)


def test_embedding_folder_is_never_reused(
    ray_instance: object, tmp_path: Path, tiny_model: Model
) -> None:
    from lookalike.distributed import DistributedError, embed_to_shards

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("user data")
    picture = tmp_path / "a.png"
    make_picture(1).save(picture)
    with pytest.raises(DistributedError, match="not an empty folder"):
        embed_to_shards([picture], tiny_model, taken)
    assert (taken / "mine.txt").read_text() == "user data"


def test_benchmark_runs_in_its_tiny_mode(tmp_path: Path) -> None:
    _needs("pyarrow")
    out = tmp_path / "sharded.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sharded_search.py"), "--tiny", "--no-ray",
         "--processes", "2", "--json-out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    exact, ivf = report["exact"], report["ivf"]
    assert exact["capped"]["equal_to_brute_force"] and exact["shards"] == 4
    assert len(exact["capped"]["processes"]) == 2 and exact["capped"]["exact_search"]
    assert not ivf["capped"]["exact_search"] and ivf["capped"]["false_pairs"] == 0
    assert 0.9 <= ivf["capped"]["recall"] <= 1.0
