"""Scan results -> JSON, CSV, a removal list and a paginated HTML report (formatting only).

Everything here formats what a scan stored; nothing is searched or regrouped. The HTML
report writes each thumbnail once as a file beside its pages, so a report of 10,000
groups stays a set of light pages.
"""

import csv
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import xxhash
from jinja2 import Environment, FileSystemLoader, select_autoescape

from lookalike.io import UnreadableImage, load_image
from lookalike.records import (
    Group,
    Pair,
    ScanResult,
)
from lookalike.report.payloads import scan_payload
from lookalike.scan.keepers import KEEP_REASONS

TEMPLATES = Path(__file__).parent.parent / "templates"


def _atomic_text(path: Path, text: str) -> None:
    """Write a whole file or nothing (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, path)
    except OSError:  # a full disk: nothing half-written is left behind
        tmp.unlink(missing_ok=True)
        raise


def write_json(result: ScanResult, path: str | os.PathLike[str]) -> Path:
    """Write `scan_payload(result)` as a JSON file."""
    out = Path(path)
    _atomic_text(out, json.dumps(scan_payload(result), indent=1, ensure_ascii=False) + "\n")
    return out


def write_csv(result: ScanResult, path: str | os.PathLike[str]) -> Path:
    """One row per pair: a, b, similarity, duplicate, exact, and for a pair inside a group
    the group's number (from 1, as in the report), keeper and why it is the keeper."""
    import io

    group_of: dict[Path, int] = {}
    for n, g in enumerate(result.groups, 1):
        group_of.update((m.path, n) for m in g.members)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "a",
            "b",
            "similarity",
            "duplicate",
            "exact",
            "decided_by",
            "group",
            "keeper",
            "keep_reason",
        ]
    )
    for p in result.pairs:
        number = group_of.get(p.a)
        group = result.groups[number - 1] if number and group_of.get(p.b) == number else None
        writer.writerow(
            [
                str(p.a),
                str(p.b),
                f"{p.similarity:.6f}",
                str(p.duplicate).lower(),
                str(p.exact).lower(),
                p.decided_by,
                number if group else "",
                str(group.keep) if group else "",
                group.keep_reason if group else "",
            ]
        )
    out = Path(path)
    _atomic_text(out, buffer.getvalue())
    return out


def write_list(result: ScanResult, path: str | os.PathLike[str]) -> tuple[Path, list[Path]]:
    """The files to remove (every group's non-keepers), one per line, for `xargs`.

    A path with a line break would read as two paths, so such paths are left out and
    returned as the second element, for the caller to mention.
    """
    kept: list[Path] = []
    left_out: list[Path] = []
    for group in result.groups:
        for duplicate in group.duplicates:
            (left_out if "\n" in str(duplicate) or "\r" in str(duplicate) else kept).append(
                duplicate
            )
    out = Path(path)
    _atomic_text(out, "".join(f"{p}\n" for p in kept))
    return out, left_out


# -- HTML ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tile:
    path: str
    uri: str
    thumb: str | None
    similarity: float
    keep: bool
    decided_by: str = ""


def _thumb_name(path: Path) -> str:
    """A stable file name for a picture's thumbnail (its path, size and time)."""
    try:
        st = path.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return xxhash.xxh3_64(f"{os.path.abspath(path)}|{stamp}".encode()).hexdigest() + ".jpg"


def _make_thumbnail(src: Path, dst: Path, size: int) -> bool:
    if dst.exists():
        return True
    try:
        image = load_image(src, min_side=size)
    except UnreadableImage:
        return False
    image.thumbnail((size, size))
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        image.save(tmp, "JPEG", quality=80)
        os.replace(tmp, dst)
    except OSError:  # a full disk: no half-written thumbnail is left behind
        tmp.unlink(missing_ok=True)
        raise
    return True


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _uri(path: Path) -> str:
    return Path(os.path.abspath(path)).as_uri()


def _page_name(kind: str, number: int) -> str:
    if kind == "groups":
        return "index.html" if number == 1 else f"groups-{number}.html"
    return f"{kind}-{number}.html"


def write_html(
    result: ScanResult,
    out_dir: str | os.PathLike[str],
    *,
    page_size: int = 50,
    thumb_size: int = 160,
    workers: int | None = None,
) -> Path:
    """Write the report: index.html (first page of groups), more group pages, review,
    near-duplicate shot and error pages, and thumbnails under thumbs/. Returns the path of
    index.html.

    Each group shows its members side by side, the keeper marked, with the similarity
    of each to the keeper; pairs between the review and duplicate cut-offs get pages of
    their own. Thumbnails already written (same path, size and time) are reused.
    """
    out = Path(out_dir)
    thumbs = out / "thumbs"
    thumbs.mkdir(parents=True, exist_ok=True)
    review = [p for p in result.pairs if not p.duplicate]
    pictures = {m.path for g in result.groups for m in g.members}
    pictures |= {p for pair in review for p in (pair.a, pair.b)}
    pictures |= {p for shot in result.shots for p in (shot.a, shot.b)}
    names = {p: _thumb_name(p) for p in pictures}
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        made = dict(
            zip(
                names,
                pool.map(lambda p: _make_thumbnail(p, thumbs / names[p], thumb_size), names),
                strict=True,
            )
        )

    def tile(path: Path, similarity: float, keep: bool, decided: str = "") -> _Tile:
        thumb = f"thumbs/{names[path]}" if made.get(path) else None
        return _Tile(str(path), _uri(path), thumb, similarity, keep, decided)

    env = _environment()
    template = env.get_template("report.html")
    group_pages = max(1, math.ceil(len(result.groups) / page_size))
    review_pages = math.ceil(len(review) / page_size)
    shot_pages = math.ceil(len(result.shots) / page_size)
    common = {
        "result": result,
        "stats": result.stats,
        "group_pages": group_pages,
        "review_pages": review_pages,
        "review_count": len(review),
        "shot_pages": shot_pages,
        "shot_count": len(result.shots),
        "page_name": _page_name,
    }
    for number in range(1, group_pages + 1):
        chunk: Sequence[Group] = result.groups[(number - 1) * page_size : number * page_size]
        groups = [
            (
                [
                    tile(m.path, m.similarity_to_keep, m.path == g.keep, m.decided_by)
                    for m in g.members
                ],
                KEEP_REASONS.get(g.keep_reason, g.keep_reason),
            )
            for g in chunk
        ]
        html = template.render(
            kind="groups", number=number, groups=groups, first=(number - 1) * page_size, **common
        )
        _atomic_text(out / _page_name("groups", number), html)
    for number in range(1, review_pages + 1):
        part: Sequence[Pair] = review[(number - 1) * page_size : number * page_size]
        pairs = [
            (tile(p.a, 1.0, False), tile(p.b, p.similarity, False, p.decided_by)) for p in part
        ]
        html = template.render(kind="review", number=number, pairs=pairs, **common)
        _atomic_text(out / _page_name("review", number), html)
    for number in range(1, shot_pages + 1):
        shots = result.shots[(number - 1) * page_size : number * page_size]
        pairs = [
            (
                tile(t.a, 1.0, False),
                tile(t.b, t.similarity, False, f"match over {round(100 * t.coverage)} %"),
            )
            for t in shots
        ]
        html = template.render(kind="shots", number=number, pairs=pairs, **common)
        _atomic_text(out / _page_name("shots", number), html)
    _atomic_text(
        out / "errors.html",
        template.render(kind="errors", number=1, errors=result.errors, **common),
    )
    return out / "index.html"


# -- other commands' JSON ----------------------------------------------------------------
