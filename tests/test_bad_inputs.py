"""Bad, odd and changing inputs (tests/bad_inputs.py): opened one by one, then scanned."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bad_inputs import BROKEN, GOOD, SKIPPED, BadCorpus, assert_plain, write_bad_corpus
from lookalike.cli import app
from lookalike.io import UnreadableImage, iter_image_files, open_image

runner = CliRunner()


@pytest.fixture()
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BadCorpus:
    """The corpus, its races set to happen inside the next scan."""
    written = write_bad_corpus(tmp_path / "corpus")
    written.install_races(monkeypatch)
    return written


def test_the_corpus_has_every_kind_the_issue_names(tmp_path: Path) -> None:
    corpus = write_bad_corpus(tmp_path / "corpus")
    assert len(corpus.kinds) >= 30
    for kind in (
        "empty file",
        "truncated JPEG",
        "HTML named .jpg",
        "zero bytes",
        "only a PNG signature",
        "PNG declaring 100000x100000",
        "JPEG declaring 65500x65500",
        "CMYK JPEG",
        "16-bit greyscale PNG",
        "palette PNG",
        "RGBA PNG",
        "LA PNG",
        "1-bit PNG",
        "float TIFF (with a NaN)",
        "animated GIF",
        "WebP",
        "BMP",
        "PPM",
        "TIFF (LZW)",
        "JPEG bytes named .png",
        "upper-case extension",
        "unicode and spaces in the name",
        "deep nesting (40 folders)",
        "1x1 image",
        "2000x2 image",
        "flat grey image",
        "EXIF orientation 2-8",
        "hidden file",
        "non-image file (text)",
        "symlink loop (folder)",
        "symlink loop (file)",
        "dangling symlink",
        "file deleted while the scan runs",
        "file that grows while being read",
    ):
        assert kind in corpus.kinds, kind
    assert len([c for c in corpus.cases if c.kind == "EXIF orientation 2-8"]) == 7
    assert {c.outcome for c in corpus.cases} == {GOOD, BROKEN, SKIPPED}
    assert len(corpus.planted) == 3 and all(len(p) == 6 for p in corpus.planted)


def test_the_walk_lists_every_image_name_once_and_nothing_skipped(tmp_path: Path) -> None:
    corpus = write_bad_corpus(tmp_path / "corpus")
    found = list(iter_image_files([corpus.root]))
    assert len(found) == len(set(found))
    assert set(found) == corpus.paths(GOOD) | corpus.paths(BROKEN)


def test_each_file_opens_or_gets_a_plain_reason(tmp_path: Path) -> None:
    """The loader alone, before any race: good files at their upright size, broken ones refused."""
    corpus = write_bad_corpus(tmp_path / "corpus")
    races = {corpus.vanish_after_listing, corpus.vanish_after_hashing, corpus.growing}
    for case in corpus.cases:
        if case.outcome == SKIPPED or case.path in races or case.kind.startswith("named pipe"):
            continue  # (a pipe would block a reader; the scan checks for regular files first)
        if case.outcome == GOOD:
            decoded = open_image(case.path, min_side=64)
            assert decoded.image.mode == "RGB", case.kind
            assert (decoded.width, decoded.height) == case.size, case.kind
        else:
            with pytest.raises(UnreadableImage) as info:
                open_image(case.path, min_side=64)
            assert case.reason and case.reason in info.value.reason, (case.kind, info.value)
            assert_plain(info.value.reason)


def _stored(index: Path) -> dict[Path, tuple[int | None, int | None, str | None]]:
    with sqlite3.connect(index) as conn:
        rows = conn.execute("SELECT path, width, height, error FROM files").fetchall()
    return {Path(p): (w, h, e) for p, w, h, e in rows}


def _scan(corpus: BadCorpus, index: Path) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, ["scan", str(corpus.root), "--index", str(index), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_scan_of_the_corpus_reads_every_good_file_and_finds_the_planted_copies(
    corpus: BadCorpus, tmp_path: Path
) -> None:
    """`lookalike scan` with the bundled model: exit 0, every broken file under errors with
    its reason, every good one read at its size, the planted copies grouped."""
    index = tmp_path / "corpus.lookalike"
    doc = _scan(corpus, index)

    errors = {Path(e["path"]): e["reason"] for e in doc["errors"]}
    assert set(errors) == corpus.paths(BROKEN)
    for path, reason in errors.items():
        case = corpus.case(path)
        assert case.reason and case.reason in reason, (case.kind, reason)
        assert_plain(reason)

    stored = _stored(index)
    good = corpus.paths(GOOD)
    assert {p: (w, h) for p, (w, h, e) in stored.items() if e is None} == {
        p: corpus.case(p).size for p in good
    }  # the growing file at its final size: it was decoded once complete
    assert not corpus.paths(SKIPPED) & set(stored)
    assert doc["stats"]["images"] == len(good)
    assert doc["stats"]["errors"] == len(corpus.paths(BROKEN))

    groups = [{Path(m["path"]) for m in g["members"]} for g in doc["groups"]]
    planted = set().union(*corpus.planted)
    for copies in corpus.planted:
        assert copies in groups, [g for g in groups if g & copies]
    assert all(g in corpus.planted for g in groups if g & planted)
    oriented = {c.path for c in corpus.cases if "EXIF orientation" in c.kind}
    assert oriented in groups  # all eleven shown upright (HEIC and AVIF too): one picture

    # Run again: the same outcome, less the two deleted files; the grown file read afresh.
    again = _scan(corpus, index)
    vanished = {corpus.vanish_after_listing, corpus.vanish_after_hashing}
    assert {Path(e["path"]) for e in again["errors"]} == corpus.paths(BROKEN) - vanished
    assert sorted(map(json.dumps, again["groups"])) == sorted(map(json.dumps, doc["groups"]))
    assert again["stats"]["images"] == len(good)
    with sqlite3.connect(index) as conn:
        (size,) = conn.execute(
            "SELECT size FROM files WHERE path = ?", (str(corpus.growing),)
        ).fetchone()
    assert corpus.growing and size == corpus.growing.stat().st_size  # read again, whole
