"""Reports: JSON, CSV, removal list and the paginated, escaped HTML report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import make_picture
from lookalike.records import FileError, Group, Member, Pair, ScanResult, ScanStats
from lookalike.report import scan_payload, write_csv, write_html, write_json, write_list


def _result(
    groups: list[Group], pairs: list[Pair], errors: tuple[FileError, ...] = ()
) -> ScanResult:
    stats = ScanStats(
        files=10,
        images=9,
        errors=len(errors),
        exact_duplicates=1,
        groups=len(groups),
        seconds=1.5,
        images_per_s=6.0,
    )
    return ScanResult(
        pairs=tuple(pairs),
        groups=tuple(groups),
        errors=errors,
        stats=stats,
        min_similarity=0.9,
        review_min_similarity=0.87,
        keep="largest",
        model="m",
        index=Path("idx"),
    )


def _pictures(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in enumerate(names):
        path = folder / name
        make_picture(k, (64, 48)).save(path)
        paths.append(path)
    return paths


def test_json_csv_and_list_say_the_same(tmp_path: Path) -> None:
    a, b, c = _pictures(tmp_path / "p", ["a.png", "b.png", "c.png"])
    pairs = [Pair(a, b, 1.0, True, True), Pair(a, c, 0.95, True), Pair(b, c, 0.88, False)]
    members = (Member(a, 1.0), Member(b, 1.0, exact=True), Member(c, 0.95, matches=31))
    group = Group(a, members, "most-pixels")
    result = _result([group], pairs, (FileError(tmp_path / "x.jpg", "empty file"),))
    doc = json.loads(write_json(result, tmp_path / "o" / "scan.json").read_text())
    assert doc == scan_payload(result)
    assert doc["groups"] == [
        {
            "keep": str(a),
            "keep_reason": "most-pixels",
            "duplicates": [str(b), str(c)],
            "members": [
                {"path": str(a), "similarity_to_keep": 1.0, "decided_by": "CNN"},
                {"path": str(b), "similarity_to_keep": 1.0, "decided_by": "exact copy"},
                {"path": str(c), "similarity_to_keep": 0.95, "decided_by": "verified, 31 matches"},
            ],
        }
    ]
    assert doc["errors"] == [{"path": str(tmp_path / "x.jpg"), "reason": "empty file"}]
    rows = list(csv.DictReader((write_csv(result, tmp_path / "o" / "p.csv")).open()))
    assert [(r["a"], r["b"], r["duplicate"], r["exact"]) for r in rows] == [
        (str(a), str(b), "true", "true"),
        (str(a), str(c), "true", "false"),
        (str(b), str(c), "false", "false"),
    ]
    # Every pair inside a group names the group, its keeper and why (b-c is inside too,
    # though not a duplicate pair).
    assert {(r["group"], r["keeper"], r["keep_reason"]) for r in rows} == {
        ("1", str(a), "most-pixels")
    }
    page = write_html(result, tmp_path / "report").read_text()
    assert "kept: most pixels" in page
    assert "exact copy" in page and "0.9500 · verified, 31 matches" in page
    listed, left_out = write_list(result, tmp_path / "o" / "rm.txt")
    assert listed.read_text().splitlines() == [str(b), str(c)]
    assert left_out == []


def test_a_name_with_a_line_break_never_reaches_the_removal_list(tmp_path: Path) -> None:
    keep, odd = Path("keep.png"), Path("evil\nkeep.png")
    result = _result([Group(keep, (Member(keep, 1.0), Member(odd, 0.99)))], [])
    listed, left_out = write_list(result, tmp_path / "rm.txt")
    assert listed.read_text() == ""
    assert left_out == [odd]


def test_html_escapes_file_names(tmp_path: Path) -> None:
    hostile = ["<script>alert(1)<\\script>.png", 'x" onerror="alert(2).png', "ok.png"]
    a, b, c = _pictures(tmp_path / "p", hostile)
    group = Group(c, (Member(c, 1.0), Member(a, 0.99), Member(b, 0.98)))
    result = _result(
        [group], [Pair(a, b, 0.88, False)], (FileError(Path("<b>bad</b>.jpg"), "<i>"),)
    )
    page = write_html(result, tmp_path / "report")
    html = "".join(p.read_text() for p in (tmp_path / "report").glob("*.html"))
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)" in html
    assert 'onerror="alert' not in html
    assert "<b>bad</b>" not in html and "&lt;b&gt;bad&lt;/b&gt;" in html
    assert page.name == "index.html"


def test_html_paginates_and_writes_each_thumbnail_once(tmp_path: Path) -> None:
    pictures = _pictures(tmp_path / "p", [f"{k}.png" for k in range(6)])
    groups = [
        Group(pictures[k % 6], (Member(pictures[k % 6], 1.0), Member(pictures[(k + 1) % 6], 0.95)))
        for k in range(12)
    ]
    result = _result(groups, [])
    out = tmp_path / "report"
    write_html(result, out, page_size=5)
    pages = sorted(p.name for p in out.glob("*.html"))
    assert pages == ["errors.html", "groups-2.html", "groups-3.html", "index.html"]
    thumbs = sorted(out.glob("thumbs/*.jpg"))
    assert len(thumbs) == 6
    first = {p: p.stat().st_mtime_ns for p in thumbs}
    index = (out / "index.html").read_text()
    assert index.count("<section") == 5
    assert index.count('class="keep"') == 5 and "0.9500" in index
    assert 'href="groups-3.html"' in index
    write_html(result, out, page_size=5)
    assert {p: p.stat().st_mtime_ns for p in out.glob("thumbs/*.jpg")} == first


def test_ten_thousand_groups_stay_light_pages(tmp_path: Path) -> None:
    groups = [
        Group(
            Path(f"/nowhere/{k}a.jpg"),
            (Member(Path(f"/nowhere/{k}a.jpg"), 1.0), Member(Path(f"/nowhere/{k}b.jpg"), 0.97)),
        )
        for k in range(10_000)
    ]
    out = tmp_path / "report"
    write_html(_result(groups, []), out, page_size=50)
    pages = [*out.glob("groups-*.html"), out / "index.html"]
    assert len(pages) == 200
    assert max(p.stat().st_size for p in pages) < 250_000
    assert "no preview" in (out / "index.html").read_text()  # missing files do not break it
