"""The persistent index (SQLite, schema, model identity, review marks) and the pair search."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SyntheticFolder
from lookalike.index import (
    SCHEMA_VERSION,
    IndexSchemaError,
    ModelMismatch,
    build_index,
    find_pairs,
    nearest,
    open_index,
)
from lookalike.model import Model, fingerprint
from scan_support import content_model


def test_new_index_records_schema_and_model(tmp_path: Path, tiny_model: Model) -> None:
    path = tmp_path / "idx.lookalike"
    with build_index(path, tiny_model) as index:
        meta = index.meta()
        mode = index._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert meta["model_id"] == "tiny-test"
    assert meta["model_fingerprint"] == fingerprint(tiny_model)
    assert '"input_size": 64' in meta["preprocess"]


def test_missing_or_foreign_files_are_refused_untouched(tmp_path: Path, tiny_model: Model) -> None:
    with pytest.raises(IndexSchemaError, match="no index there"):
        open_index(tmp_path / "nothing.lookalike")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 not a database at all" * 50)
    before = photo.read_bytes()
    with pytest.raises(IndexSchemaError, match="not a lookalike index"):
        build_index(photo, tiny_model)
    with pytest.raises(IndexSchemaError, match="not a lookalike index"):
        open_index(photo)
    assert photo.read_bytes() == before
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(IndexSchemaError, match="no meta table"):
        build_index(other, tiny_model)


@pytest.mark.parametrize(("version", "message"), [(SCHEMA_VERSION + 1, "upgrade"), (0, "rescan")])
def test_other_schema_versions_are_refused_clearly(
    tmp_path: Path, tiny_model: Model, version: int, message: str
) -> None:
    path = tmp_path / "idx.lookalike"
    build_index(path, tiny_model).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    with pytest.raises(IndexSchemaError, match=message):
        open_index(path)


def test_another_model_drops_embeddings_and_check_model_refuses(
    tmp_path: Path, tiny_model: Model
) -> None:
    path = tmp_path / "idx.lookalike"
    with build_index(path, tiny_model) as index, index.transaction() as conn:
        conn.execute("INSERT INTO embeddings (hash, vector) VALUES ('h', x'00000000')")
    other = content_model(seed=3)
    with open_index(path) as index, pytest.raises(ModelMismatch, match="tiny-test"):
        index.check_model(other)
    with build_index(path, other) as index:
        assert index._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0
        assert index.model_id == "content-3"
        index.check_model(other)


def test_new_verification_settings_drop_verified_similarities_but_keep_embeddings(
    tmp_path: Path, tiny_model: Model
) -> None:
    from dataclasses import replace

    from lookalike.verify import VerifyConfig

    path = tmp_path / "idx.lookalike"
    checked = replace(tiny_model, verify=VerifyConfig())
    with build_index(path, checked) as index:
        with index.transaction() as conn:
            conn.execute("INSERT INTO embeddings (hash, vector) VALUES ('h', x'00000000')")
        index.store_verified([("a", "b", 0.999, 30, 0.8, False, -1)])
    with build_index(path, replace(checked, verify=None)) as index:  # --no-verify keeps them
        assert index.verified() == {("a", "b"): 0.999}
    with build_index(path, checked) as index:  # the same rule: still valid
        assert index.verified() == {("a", "b"): 0.999}
    stricter = replace(checked, verify=VerifyConfig(max_centre_disagreement=0.5))
    with build_index(path, stricter) as index:
        assert index.verified() == {}
        assert index._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1


def test_verified_pairs_keep_what_raised_them(tmp_path: Path, tiny_model: Model) -> None:
    """Matches and coverage, or the perceptual hashes' distance, come back by pair and are
    said in words; a pair nothing raised is not listed."""
    from lookalike.records import Verification, decided_by

    with build_index(tmp_path / "idx.lookalike", tiny_model) as index:
        index.store_verified(
            [
                ("b", "a", 0.999, 30, 0.8, False, -1),
                ("c", "d", 0.9998, 0, 0.0, False, 3),
                ("e", "f", 0.7, 0, 0.0, False, -1),
            ]
        )
        found = index.verified_matches()
    assert found == {("a", "b"): Verification(30, 0.8), ("c", "d"): Verification(0, 0.0, 3)}
    assert decided_by(False, 30, 0.8) == "verified, 30 matches over 80 % of the picture"
    assert decided_by(False, 0, 0.0, 3) == "CNN and perceptual hash, 3 bits apart"
    assert decided_by(False, None) == "CNN"


def test_a_reader_sees_committed_state_while_a_writer_holds_a_transaction(
    tmp_path: Path, tiny_model: Model
) -> None:
    path = tmp_path / "idx.lookalike"
    writer = build_index(path, tiny_model)
    reader = open_index(path)
    with writer.transaction() as conn:
        conn.execute("INSERT INTO embeddings (hash, vector) VALUES ('a', x'00000000')")
        # Mid-transaction: the reader is not blocked and sees the last commit.
        assert reader._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0
    assert reader._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1
    writer.close()
    reader.close()


def test_not_duplicate_marks_are_stored_by_sorted_content_hash(
    tmp_path: Path, tiny_model: Model
) -> None:
    with build_index(tmp_path / "idx.lookalike", tiny_model) as index:
        index.mark_not_duplicate("bbb", "aaa")
        index.mark_not_duplicate("aaa", "bbb")
        assert index.not_duplicate_marks() == {("aaa", "bbb")}
        with pytest.raises(ValueError, match="byte-identical"):
            index.mark_not_duplicate("aaa", "aaa")


def _planted(n: int, copies: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors with planted near-duplicate clusters (not plain noise)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim)).astype(np.float32)
    parents = rng.choice(n, size=copies)
    noise = rng.uniform(0.05, 0.45, size=(copies, 1)).astype(np.float32)
    near = (
        base[parents] + noise * rng.normal(size=(copies, dim)).astype(np.float32) / np.sqrt(dim) * 4
    )
    x = np.concatenate([base, near])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _oracle(x: np.ndarray, min_cosine: float) -> set[tuple[int, int]]:
    scores = x @ x.T
    i, j = np.nonzero(np.triu(scores >= min_cosine, k=1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def test_exact_search_finds_exactly_the_brute_force_pairs() -> None:
    x = _planted(1500, 400, 32, seed=1)
    found = find_pairs(x, 0.8)
    assert found.exact_search
    assert set(zip(found.i.tolist(), found.j.tolist(), strict=True)) == _oracle(x, 0.8)
    assert np.all(found.i < found.j)
    assert np.allclose(found.cosine, np.sum(x[found.i] * x[found.j], axis=1), atol=1e-5)


def test_approximate_search_recall_against_brute_force() -> None:
    x = _planted(6000, 1500, 64, seed=2)
    truth = _oracle(x, 0.8)
    found = find_pairs(x, 0.8, exact_limit=1000)
    assert not found.exact_search
    got = set(zip(found.i.tolist(), found.j.tolist(), strict=True))
    assert len(truth) > 1000
    assert len(got & truth) / len(truth) >= 0.99
    assert np.all(np.sum(x[found.i] * x[found.j], axis=1) >= 0.8 - 1e-4)


def test_nearest_matches_a_sort() -> None:
    x = _planted(500, 50, 16, seed=3)
    rows, scores = nearest(x, x[7], 5)
    order = np.argsort(-(x @ x[7]), kind="stable")[:5]
    assert rows[0] == 7
    assert set(rows.tolist()) == set(order.tolist())
    assert np.all(np.diff(scores) <= 0)


def test_ann_scale_benchmark_runs_in_tiny_mode(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ann_scale.py"
    out = tmp_path / "ann.json"
    done = subprocess.run(
        [sys.executable, str(script), "--tiny", "--min-similarity", "0.97", "--json-out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["search"].startswith("IVF") and report["vectors"] == 20_000
    assert report["recall"]["min_similarity"]["true_pairs"] > 0
    assert 0.0 <= report["recall"]["min_similarity"]["recall"] <= 1.0


def test_keeper_traits_are_measured_once_and_again_after_a_new_version(
    tmp_path: Path, synthetic_folder: SyntheticFolder
) -> None:
    from lookalike.scan import scan_folder
    from lookalike.scan.keepers import TRAITS_VERSION

    index = tmp_path / "idx"
    result = scan_folder([synthetic_folder.root], index, model=content_model(), workers=1)
    in_groups = {m.path.name for g in result.groups for m in g.members}
    with open_index(index) as store:
        rows = store.files()
        ids = [r.id for r in rows if r.hash is not None]
        hashes = {r.hash for r in rows if r.path.name in in_groups}
        assert hashes <= set(store.traits())  # every group member was measured
        missing = {h for h, _ in store.hashes_without_traits(ids, TRAITS_VERSION)}
        assert missing == {r.hash for r in rows if r.id in ids} - set(store.traits())
        again = store.hashes_without_traits(ids, TRAITS_VERSION + 1)
        assert store.traits() == {}  # measured by another version: dropped
        assert {h for h, _ in again} == {r.hash for r in rows if r.id in ids}


def test_an_index_from_before_keeper_traits_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "idx.lookalike"
    model = content_model()
    with build_index(path, model) as index, index.transaction() as conn:
        conn.execute("DROP TABLE traits")
    with open_index(path) as index:
        assert index.traits() == {}  # read-only use of the older index still works
    with build_index(path, model) as index:
        index.store_traits([])
        assert index.traits() == {}


def test_embeddings_keep_their_measured_detail_and_a_gate_that_reads_it_measures_old_ones(
    tmp_path: Path, synthetic_folder: SyntheticFolder
) -> None:
    """A scan stores each picture's measured detail beside its vector; an index from
    before the column reads as unknown (NaN), is kept by a model that does not need the
    measure, and is embedded again, once, by one whose gate reads it (`clear_detail`), even
    when the embedder measures nothing."""
    from collections.abc import Iterator
    from dataclasses import replace

    from lookalike.embed import EmbeddedBatch, embed_paths
    from lookalike.model import DetailGate, load_prepared, measure_detail
    from lookalike.scan import scan_folder

    index = tmp_path / "idx"
    model = content_model()
    first = scan_folder([synthetic_folder.root], index, model=model, workers=1)
    with open_index(index) as store:
        hashes, _ = store.embedded_vectors()
        details = store.details(hashes)
        path = store.files_with_contents(hashes[:1])[0].path
    assert len(hashes) == first.stats.embedded and np.isfinite(details).all()
    assert details[0] == pytest.approx(measure_detail(load_prepared(path, model.preprocess)))

    with build_index(index, model) as store, store.transaction() as conn:
        conn.execute("ALTER TABLE embeddings DROP COLUMN detail")  # as an older index
    with open_index(index) as store:
        assert np.isnan(store.details(hashes)).all()  # read-only: not known, no error
    kept = scan_folder([synthetic_folder.root], index, model=model, workers=1)
    assert kept.stats.embedded == 0  # the read-out gate (or none) needs no measure
    with open_index(index) as store:
        assert np.isnan(store.details(hashes)).all()

    gate = DetailGate((0.0,) * 65, min_detail=0.0, side=16, clear_detail=0.06)
    gated = replace(model, detail=gate)
    again = scan_folder([synthetic_folder.root], index, model=gated, workers=1)
    assert again.stats.embedded == len(hashes)
    with open_index(index) as store:
        np.testing.assert_allclose(store.details(hashes), details)

    def unmeasured(paths: list[str], model: Model, **options: object) -> Iterator[EmbeddedBatch]:
        for batch in embed_paths(paths, model, **options):  # type: ignore[arg-type]
            yield replace(batch, details=None)  # an embedder that measures nothing

    with build_index(index, model) as store, store.transaction() as conn:
        conn.execute("UPDATE embeddings SET detail = NULL")
    once = scan_folder([synthetic_folder.root], index, model=gated, workers=1, embedder=unmeasured)
    assert once.stats.embedded == len(hashes)  # embedded again once, not again and again
    with open_index(index) as store:
        assert np.isnan(store.details(hashes)).all()
