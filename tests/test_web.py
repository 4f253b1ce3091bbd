"""The review page's API (FastAPI TestClient): groups, pairs, marks, quarantine, security."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from conftest import SyntheticFolder
from lookalike.cli import app as cli_app
from lookalike.index import build_index, open_index
from lookalike.scan import read_result, regroup, scan_folder
from lookalike.scan.walk import Found, walk_into
from lookalike.web import create_app
from lookalike.web.pictures import PREVIEW_SIDE, THUMB_SIDE
from scan_support import content_model, new_and_archive
from web_support import HOSTILE_NAME, REVIEW_CUTOFFS, scan_review_folder

BASE = "http://127.0.0.1:8765"
TOKEN = "x-lookalike-token"


@dataclass
class Served:
    photos: Path
    index: Path
    client: TestClient
    token: str
    cache: Path
    quarantine: Path

    def post(self, url: str, body: object) -> httpx.Response:
        return self.client.post(url, json=body, headers={TOKEN: self.token})

    def groups(self, **query: object) -> dict:
        response = self.client.get("/api/groups", params=query)
        assert response.status_code == 200, response.text
        return response.json()

    def file_id(self, name: str) -> int:
        with open_index(self.index) as store:
            row = store.file_by_path(self.photos / name)
        assert row is not None, name
        return row.id


def _token(html: str) -> str:
    match = re.search(r'<meta name="lookalike-token" content="([^"]+)">', html)
    assert match, "the page carries no session token"
    return match.group(1)


@pytest.fixture()
def served(synthetic_folder: SyntheticFolder, tmp_path: Path) -> Iterator[Served]:
    photos, index = scan_review_folder(synthetic_folder, tmp_path)
    cache, quarantine = tmp_path / "cache", tmp_path / "quarantine"
    app = create_app(index, quarantine_to=quarantine, cache_dir=cache, model=content_model())
    with TestClient(app, base_url=BASE) as client:
        page = client.get("/")
        assert page.status_code == 200
        yield Served(photos, index, client, _token(page.text), cache, quarantine)


def _ids(page: dict) -> list[tuple[int, list[int]]]:
    return [
        (
            next(m["file"]["id"] for m in g["members"] if m["keeper"]),
            [m["file"]["id"] for m in g["members"]],
        )
        for g in page["groups"]
    ]


def _plans(index: Path, cut: float) -> list[tuple[int, list[int]]]:
    with open_index(index) as store:
        return [(p.keep, [f for f, _ in p.members]) for p in regroup(store, cut)]


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), symbolic links as their target."""
    return {
        str(p.relative_to(root)): (
            b"link:" + os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
        )
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


# -- the page and its listing ----------------------------------------------------------------


def test_page_carries_a_token_and_strict_headers(served: Served) -> None:
    page = served.client.get("/")
    assert len(served.token) >= 32
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert served.client.get("/static/review.js").status_code == 200
    # A new app, a new token.
    other = create_app(served.index, quarantine_to=served.quarantine, cache_dir=served.cache)
    assert _token(TestClient(other, base_url=BASE).get("/").text) != served.token


def test_groups_are_the_library_regroup_largest_first(served: Served) -> None:
    cut = read_result(served.index).min_similarity
    page = served.groups(limit=100)
    assert page["min_similarity"] == pytest.approx(cut)
    assert _ids(page) == _plans(served.index, cut)
    sizes = [len(g["members"]) for g in page["groups"]]
    assert sizes == sorted(sizes, reverse=True) and page["total"] == len(sizes) >= 4
    with open_index(served.index) as store:
        for group in page["groups"]:
            assert sum(m["keeper"] for m in group["members"]) == 1
            for member in group["members"]:
                row = store.file(member["file"]["id"])
                shown = member["file"]
                assert (shown["path"], shown["size"]) == (row.shown, row.size)
                assert (shown["width"], shown["height"]) == (row.width, row.height)
                assert shown["status"] == "present"
    everyone = {m["file"]["path"] for g in page["groups"] for m in g["members"]}
    assert str(served.photos / "copies" / HOSTILE_NAME) in everyone  # data, as it is


def test_the_slider_regroups_from_the_stored_pairs(served: Served) -> None:
    stored = read_result(served.index)
    members = []
    for cut in (stored.review_min_similarity, stored.min_similarity, 0.9998, 1.0):
        page = served.groups(min_similarity=cut, limit=100)
        assert _ids(page) == _plans(served.index, cut)
        members.append(sum(len(g["members"]) for g in page["groups"]))
    assert members == sorted(members, reverse=True) and members[0] > members[-1]
    below = served.client.get(
        "/api/groups", params={"min_similarity": stored.review_min_similarity - 0.01}
    )
    assert below.status_code == 422 and "review cut-off" in below.json()["detail"]
    assert served.client.get("/api/groups", params={"min_similarity": 1.5}).status_code == 422


def test_changes_made_elsewhere_show_at_once(served: Served) -> None:
    """A scan or another page writing the index: the next listing shows its state."""
    first = served.groups()
    group = first["groups"][0]
    keeper, member = group["members"][0]["file"], group["members"][1]["file"]
    with open_index(served.index) as other:  # held open: its log stays, as a scan's does
        a, b = other.file(keeper["id"]).hash, other.file(member["id"]).hash
        other.mark_not_duplicate(a, b)
        after = served.groups()
    assert after != first
    assert _ids(after) == _plans(served.index, read_result(served.index).min_similarity)


# -- 10,000 groups ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10,000 stored groups (every third of three files) made with the index's own
    storage functions: tiny distinct files walked in, pairs and groups stored."""
    base = tmp_path_factory.mktemp("big")
    root = base / "photos"
    root.mkdir()
    groups = [
        [root / f"g{g:05d}_{k}.jpg" for k in range(3 if g % 3 == 0 else 2)] for g in range(10_000)
    ]
    for group in groups:
        for path in group:
            path.write_bytes(path.name.encode())
    index = base / "big.lookalike"
    with build_index(index, content_model()) as store:
        (root_row,) = store.set_roots([(root, str(root))])
        with store.transaction() as conn:
            scan = conn.execute(
                "INSERT INTO scans (started, roots, settings) VALUES (0, '[]', '{}')"
            ).lastrowid
        found = (Found(str(p), str(p), root_row.id) for group in groups for p in group)
        walk_into(store, int(scan or 0), found)
        ids = {str(f.path): f.id for f in store.files()}
        pairs, plans = [], []
        for number, group in enumerate(groups):
            keep, *rest = (ids[str(p)] for p in group)
            similarity = 0.96 + (number % 40) / 1000
            pairs += [(keep, other, similarity, False) for other in rest]
            plans.append((keep, "policy", [(keep, 1.0), *((o, similarity) for o in rest)]))
        with store.transaction() as conn:
            store.store_results(conn, pairs, plans)
            settings = {"min_similarity": 0.95, "review_min_similarity": 0.92, "keep": "largest"}
            store.set_meta(conn, settings=settings)
    return index


def test_ten_thousand_groups_come_a_page_at_a_time(big_index: Path, tmp_path: Path) -> None:
    app = create_app(big_index, quarantine_to=tmp_path / "q", cache_dir=tmp_path / "c")
    client = TestClient(app, base_url=BASE)
    first = client.get("/api/groups", params={"limit": 100}).json()
    assert first["total"] == 10_000 and len(first["groups"]) == 100
    assert [g["number"] for g in first["groups"]] == list(range(1, 101))
    assert all(len(g["members"]) == 3 for g in first["groups"])  # largest first
    assert len(client.get("/api/groups").json()["groups"]) == 25  # the default page
    last = client.get("/api/groups", params={"offset": 9_990, "limit": 100}).json()
    assert [g["number"] for g in last["groups"]] == list(range(9_991, 10_001))
    beyond = client.get("/api/groups", params={"offset": 20_000}).json()
    assert beyond["groups"] == [] and beyond["total"] == 10_000
    for limit in (0, 101, 10_000):
        assert client.get("/api/groups", params={"limit": limit}).status_code == 422
    assert client.get("/api/groups", params={"offset": -1}).status_code == 422
    higher = client.get("/api/groups", params={"min_similarity": 0.98, "limit": 1}).json()
    assert higher["total"] == sum(1 for n in range(10_000) if 0.96 + (n % 40) / 1000 >= 0.98)


# -- pair view and pictures ----------------------------------------------------------------


def _jpeg(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    return image


def test_pair_view_large_pictures_and_grad_cam_overlays(served: Served) -> None:
    group = served.groups()["groups"][0]
    keeper, member = group["members"][0]["file"], group["members"][1]["file"]
    pair = served.client.get("/api/pair", params={"a": keeper["id"], "b": member["id"]}).json()
    with open_index(served.index) as store:
        stored = {(a, b): s for a, b, s, _ in store.pairs()}
    key = (min(keeper["id"], member["id"]), max(keeper["id"], member["id"]))
    assert pair["similarity"] == pytest.approx(stored[key])
    assert (pair["a"]["id"], pair["b"]["id"]) == (keeper["id"], member["id"])
    for shown in (keeper, member):
        thumb = _jpeg(served.client.get(f"/thumb/{shown['id']}"))
        large = _jpeg(served.client.get(f"/image/{shown['id']}"))
        assert max(thumb.size) <= THUMB_SIDE and max(large.size) <= PREVIEW_SIDE
        assert large.size == (shown["width"], shown["height"])  # small photos stay as they are
    overlays = [
        _jpeg(served.client.get(f"/overlay/{keeper['id']}/{member['id']}/{side}")) for side in "ab"
    ]
    assert overlays[0].size == (keeper["width"], keeper["height"])
    assert overlays[1].size == (member["width"], member["height"])
    # The pair side by side (what decided it written under it), as wide as both together.
    matches = _jpeg(served.client.get(f"/overlay/{keeper['id']}/{member['id']}/m"))
    assert matches.width > max(overlays[0].width, overlays[1].width)
    assert served.client.get(f"/overlay/{keeper['id']}/{member['id']}/c").status_code == 422


def test_pictures_are_made_once_and_cached_on_disk(served: Served) -> None:
    member = served.groups()["groups"][0]["members"][1]["file"]
    first = served.client.get(f"/thumb/{member['id']}")
    assert first.headers["cache-control"].startswith("private, max-age=")
    cached = {p: p.stat().st_mtime_ns for p in served.cache.rglob("*.jpg")}
    assert len(cached) == 1
    again = served.client.get(f"/thumb/{member['id']}")
    assert again.content == first.content
    assert {p: p.stat().st_mtime_ns for p in served.cache.rglob("*.jpg")} == cached


def test_overlays_of_another_model_are_refused_with_a_reason(served: Served) -> None:
    app = create_app(
        served.index,
        quarantine_to=served.quarantine,
        cache_dir=served.cache,
        model=content_model(seed=1),
    )
    group = served.groups()["groups"][0]
    a, b = (m["file"]["id"] for m in group["members"][:2])
    response = TestClient(app, base_url=BASE).get(f"/overlay/{a}/{b}/a")
    assert response.status_code == 409
    assert "not available" in response.json()["detail"]


# -- marks -------------------------------------------------------------------------------


def test_a_new_keeper_is_stored_and_kept_by_later_scans(served: Served) -> None:
    group = served.groups()["groups"][0]
    chosen = next(
        m["file"] for m in group["members"] if not m["keeper"] and "link" not in m["file"]["path"]
    )
    response = served.post("/api/keeper", {"file": chosen["id"]})
    assert response.status_code == 200, response.text
    after = served.groups()["groups"]
    mine = next(g for g in after if any(m["file"]["id"] == chosen["id"] for m in g["members"]))
    assert mine["keep_by"] == "user"
    assert next(m for m in mine["members"] if m["keeper"])["file"]["id"] == chosen["id"]
    with open_index(served.index) as store:
        row = store.file(chosen["id"])
        assert row.hash in store.keep_marks()
    rescanned = scan_folder(
        [served.photos], served.index, model=content_model(), workers=1, **REVIEW_CUTOFFS
    )
    assert str(row.path) in {str(g.keep) for g in rescanned.groups}


def test_not_duplicate_marks_split_groups_now_and_in_later_scans(served: Served) -> None:
    group = served.groups()["groups"][0]
    keeper, member = group["members"][0]["file"], group["members"][1]["file"]
    assert served.post("/api/not-duplicate", {"a": keeper["id"], "b": member["id"]}).json()
    for page in (
        served.groups(),
        served.groups(min_similarity=read_result(served.index).review_min_similarity),
    ):
        for g in page["groups"]:
            ids = {m["file"]["id"] for m in g["members"]}
            keep = next(m["file"]["id"] for m in g["members"] if m["keeper"])
            assert not (
                {keeper["id"], member["id"]} <= ids and keep in (keeper["id"], member["id"])
            )
    with open_index(served.index) as store:
        a, b = store.file(keeper["id"]).hash, store.file(member["id"]).hash
        assert (min(a, b), max(a, b)) in store.not_duplicate_marks()
    rescanned = scan_folder(
        [served.photos], served.index, model=content_model(), workers=1, **REVIEW_CUTOFFS
    )
    for g in rescanned.groups:
        paths = {str(m.path) for m in g.members}
        assert not (
            {keeper["path"], member["path"]} <= paths
            and str(g.keep) in paths & {keeper["path"], member["path"]}
        )


def test_a_not_duplicate_mark_can_be_undone(served: Served) -> None:
    before = served.groups()
    group = before["groups"][0]
    pair = {"a": group["members"][0]["file"]["id"], "b": group["members"][1]["file"]["id"]}
    assert served.post("/api/not-duplicate", pair).status_code == 200
    assert served.groups() != before
    undone = served.post("/api/not-duplicate/undo", pair)
    assert undone.status_code == 200 and undone.json()["removed"] is True
    assert served.groups() == before
    with open_index(served.index) as store:
        assert store.not_duplicate_marks() == set()
    again = served.post("/api/not-duplicate/undo", pair)
    assert again.status_code == 200 and again.json()["removed"] is False
    forged = served.client.post("/api/not-duplicate/undo", json=pair)  # no session token
    assert forged.status_code == 403


def test_byte_identical_files_cannot_be_marked_apart(served: Served) -> None:
    a, b = served.file_id("original_1.png"), served.file_id("copies/exact_1.png")
    response = served.post("/api/not-duplicate", {"a": a, "b": b})
    assert response.status_code == 409 and "byte-identical" in response.json()["detail"]


# -- quarantine and restore ---------------------------------------------------------------


def test_quarantine_is_previewed_confirmed_and_restored(served: Served) -> None:
    before = _tree(served.photos)
    (group,) = (
        g
        for g in served.groups()["groups"]
        if any(m["file"]["path"].endswith("original_0.png") for m in g["members"])
    )
    keeper = next(m["file"] for m in group["members"] if m["keeper"])
    duplicates = [m["file"] for m in group["members"] if not m["keeper"]]
    chosen = [f["id"] for f in duplicates] + [keeper["id"]]
    preview = served.post("/api/quarantine/preview", {"files": chosen}).json()
    assert preview["dry_run"] and _tree(served.photos) == before
    assert {m["src"] for m in preview["done"]} == {f["path"] for f in duplicates}
    assert [r["path"] for r in preview["refused"]] == [keeper["path"]]

    done = served.post("/api/quarantine", {"preview": preview["preview"]}).json()
    assert {m["src"] for m in done["done"]} == {f["path"] for f in duplicates}
    for move in done["done"]:
        assert not Path(move["src"]).exists()
        assert (
            _tree(served.quarantine)[str(Path(move["dst"]).relative_to(served.quarantine))]
            == before[str(Path(move["src"]).relative_to(served.photos))]
        )
        assert Path(move["dst"]).is_relative_to(served.quarantine)
    assert Path(keeper["path"]).exists()
    statuses = {
        m["file"]["id"]: m["file"]["status"]
        for g in served.groups()["groups"]
        for m in g["members"]
    }
    assert {statuses[f["id"]] for f in duplicates} == {"quarantined"}
    assert statuses[keeper["id"]] == "present"
    _jpeg(served.client.get(f"/thumb/{duplicates[0]['id']}"))  # still shown, from quarantine
    again = served.post("/api/quarantine", {"preview": preview["preview"]})
    assert again.status_code == 404  # a preview is used once

    (listed,) = served.client.get("/api/manifests").json()["manifests"]
    assert listed == {
        "name": done["manifest"],
        "files": len(duplicates),
        "in_quarantine": len(duplicates),
    }
    back = served.post("/api/restore", {"manifest": done["manifest"]}).json()
    assert len(back["done"]) == len(duplicates) and back["skipped"] == []
    assert _tree(served.photos) == before
    assert served.client.get("/api/manifests").json()["manifests"][0]["in_quarantine"] == 0


def test_files_below_the_stored_cut_off_are_not_taken(served: Served) -> None:
    """Quarantine acts on the groups the scan stored; the slider's extra members stay."""
    stored = read_result(served.index)
    low = served.groups(min_similarity=stored.review_min_similarity, limit=100)
    stored_duplicates = {str(d) for g in stored.groups for d in g.duplicates}
    extra = [
        m["file"]
        for g in low["groups"]
        for m in g["members"]
        if not m["keeper"] and m["file"]["path"] not in stored_duplicates
    ]
    if not extra:
        pytest.fail("the folder should have a member only below the scan's cut-off")
    preview = served.post(
        "/api/quarantine/preview",
        {"files": [f["id"] for f in extra], "min_similarity": stored.review_min_similarity},
    ).json()
    assert preview["done"] == []
    assert {r["path"] for r in preview["refused"]} == {f["path"] for f in extra}


# -- security ------------------------------------------------------------------------------


def test_no_change_without_the_session_token(served: Served) -> None:
    before = _tree(served.photos)
    group = served.groups()["groups"][0]
    a, b = (m["file"]["id"] for m in group["members"][:2])
    ok = served.post("/api/quarantine/preview", {"files": [b]}).json()
    bodies = {
        "/api/keeper": {"file": b},
        "/api/not-duplicate": {"a": a, "b": b},
        "/api/not-duplicate/undo": {"a": a, "b": b},
        "/api/quarantine/preview": {"files": [b]},
        "/api/quarantine": {"preview": ok["preview"]},
        "/api/restore": {"manifest": "manifest-20260101-000000.jsonl"},
    }
    for url, body in bodies.items():
        for headers in ({}, {TOKEN: "wrong"}, {TOKEN: served.token[:-1]}, {TOKEN: ""}):
            response = served.client.post(url, json=body, headers=headers)
            assert response.status_code == 403, (url, headers)
    for method in ("put", "delete", "patch"):
        assert served.client.request(method, "/api/keeper", json={"file": b}).status_code == 403
    with open_index(served.index) as store:
        assert store.keep_marks() == set() and store.not_duplicate_marks() == set()
    assert _tree(served.photos) == before and not served.quarantine.exists()
    # The token that came with the page works (the preview was never confirmed).
    assert served.post("/api/quarantine", {"preview": ok["preview"]}).status_code == 200


def test_only_indexed_files_are_served_and_never_by_path(served: Served) -> None:
    secret = (served.photos.parent / "outside" / "secret.jpg").read_bytes()
    attempts = [
        "/thumb/../../etc/passwd",
        "/thumb/..%2F..%2Fetc%2Fpasswd",
        "/thumb/%2e%2e/%2e%2e/etc/passwd",
        "/image/%2Fetc%2Fpasswd",
        "/image//etc/passwd",
        "/thumb/0",
        "/thumb/-1",
        "/thumb/1e3",
        "/thumb/99999999",
        f"/thumb/{2**70}",
        "/static/../pyproject.toml",
        "/static/..%2F..%2F..%2F..%2Fpyproject.toml",
        "/static/%2e%2e/app.py",
        "/static/%2e%2e%2fapp.py",
        "/overlay/1/2/..%2F..%2Fetc%2Fpasswd",
        f"/thumb/{served.photos}/original_0.png",
        "/api/pair?a=1&b=/etc/passwd",
    ]
    for url in attempts:
        response = served.client.get(url)
        assert response.status_code in (400, 404, 405, 422), (url, response.status_code)
        assert b"root:" not in response.content and b"FastAPI" not in response.content
    with open_index(served.index) as store:
        broken = store.file_by_path(served.photos / "broken.jpg")
    assert served.client.get(f"/thumb/{broken.id}").status_code == 404  # unreadable: no picture

    link = served.file_id("link_out.jpg")
    group = next(
        g for g in served.groups()["groups"] if any(m["file"]["id"] == link for m in g["members"])
    )
    keeper = next(m["file"]["id"] for m in group["members"] if m["keeper"])
    for url in (f"/thumb/{link}", f"/image/{link}", f"/overlay/{keeper}/{link}/a"):
        response = served.client.get(url)
        assert response.status_code == 403, url
        assert secret not in response.content
    assert "outside" in served.client.get(f"/thumb/{link}").json()["detail"]


def test_a_file_swapped_for_a_link_or_changed_after_the_scan_is_refused(served: Served) -> None:
    swapped, edited = served.file_id("other/unrelated_0.jpg"), served.file_id("original_3.png")
    target = served.photos / "other" / "unrelated_0.jpg"
    target.unlink()
    target.symlink_to("/etc/passwd")
    response = served.client.get(f"/thumb/{swapped}")
    assert response.status_code == 403 and b"root:" not in response.content
    with open(served.photos / "original_3.png", "ab") as handle:
        handle.write(b"more")
    assert served.client.get(f"/thumb/{edited}").status_code == 409


def test_restore_takes_only_manifest_names_of_the_quarantine_folder(served: Served) -> None:
    served.quarantine.mkdir()
    decoy = served.photos.parent / "manifest-20260101-000000.jsonl"
    decoy.write_text('{"src": "/tmp/x", "dst": "/tmp/y", "sha256": "0", "op": "move"}\n')
    (served.quarantine / "manifest-20260101-000001.jsonl").symlink_to(decoy)
    for name in (
        "../manifest-20260101-000000.jsonl",
        str(decoy),
        "manifest-20260101-000001.jsonl",  # a link, not a manifest written here
        "manifest-20260101-000002.jsonl",
        "idx.lookalike",
        "manifest-20260101-000000.jsonl/../../idx.lookalike",
    ):
        response = served.post("/api/restore", {"manifest": name})
        assert response.status_code == 404, name
    assert served.post("/api/restore", {"manifest": "x" * 300}).status_code == 422


def test_a_foreign_host_name_is_refused(served: Served) -> None:
    """A page whose name was made to resolve to 127.0.0.1 (DNS rebinding) gets nothing."""
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example", ""):
        response = served.client.get("/", headers={"host": host})
        assert response.status_code == 400, host
        assert served.token not in response.text
    for host in ("localhost:8765", "127.0.0.1", "[::1]:8765"):
        assert served.client.get("/", headers={"host": host}).status_code == 200, host
    anywhere = create_app(served.index, quarantine_to=served.quarantine, hosts=None)
    assert TestClient(anywhere, base_url="http://192.0.2.7:80").get("/").status_code == 200


def test_request_bodies_are_limited(served: Served) -> None:
    headers = {TOKEN: served.token, "content-type": "application/json"}
    big = b'{"files": [' + b"1," * 200_000 + b"1]}"
    assert (
        served.client.post("/api/quarantine/preview", content=big, headers=headers).status_code
        == 413
    )

    def chunks() -> Iterator[bytes]:
        yield b'{"files": ['
        for _ in range(100):
            yield b"1," * 2_000
        yield b"1]}"

    streamed = served.client.post("/api/quarantine/preview", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    many = served.post("/api/quarantine/preview", {"files": list(range(1, 10_002))})
    assert many.status_code == 422
    extra = served.post("/api/keeper", {"file": 1, "path": "/etc/passwd"})
    assert extra.status_code == 422


def test_file_names_are_escaped_in_the_page(served: Served, tmp_path: Path) -> None:
    hostile = tmp_path / '<img src=x onerror="alert(1)">.lookalike'
    shutil.copyfile(served.index, hostile)
    page = TestClient(create_app(hostile, quarantine_to=served.quarantine), base_url=BASE).get("/")
    assert '<img src=x onerror="alert(1)">' not in page.text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page.text


# -- the serve command ----------------------------------------------------------------------


def test_serve_prints_a_local_url_and_answers(served: Served, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lookalike",
            "serve",
            str(served.index),
            "--port",
            "0",
            "--cache-dir",
            str(tmp_path / "cache2"),
            "--quarantine-to",
            str(tmp_path / "q2"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:(\d+)/)$", line.strip())
        assert match, line + process.stderr.read() if process.poll() is not None else line
        page = httpx.get(match.group(1), timeout=30)
        assert page.status_code == 200 and 'name="lookalike-token"' in page.text
        listing = httpx.get(match.group(1) + "api/groups", timeout=30).json()
        assert listing["total"] == served.groups()["total"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def test_serve_refuses_what_is_not_a_scanned_index(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli_app, ["serve", str(tmp_path / "nothing.lookalike")])
    assert missing.exit_code == 2 and "not found" in missing.output
    bogus = tmp_path / "bogus.lookalike"
    bogus.write_text("not an index")
    refused = runner.invoke(cli_app, ["serve", str(bogus)])
    assert refused.exit_code == 2 and "not a lookalike index" in refused.output
    with build_index(tmp_path / "empty.lookalike", content_model()):
        pass
    empty = runner.invoke(cli_app, ["serve", str(tmp_path / "empty.lookalike")])
    assert empty.exit_code == 2 and "no finished scan" in empty.output


def test_reference_files_are_keepers_the_page_marks_and_never_quarantines(
    synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    new, archive = new_and_archive(synthetic_folder, tmp_path)
    index = tmp_path / "idx"
    scan_folder([new], index, model=content_model(), workers=1, reference=[archive])
    app = create_app(index, quarantine_to=tmp_path / "q", cache_dir=tmp_path / "c")
    with TestClient(app, base_url=BASE) as client:
        token = _token(client.get("/").text)
        groups = client.get("/api/groups").json()["groups"]
        members = [m for g in groups for m in g["members"]]
        refs = [m for m in members if m["file"]["reference"]]
        assert refs and all(m["keeper"] for m in refs)
        assert all(
            g["keep_by"] == "reference"
            for g in groups
            if any(m["file"]["reference"] for m in g["members"])
        )
        chosen = [m["file"]["id"] for m in members]
        preview = client.post(
            "/api/quarantine/preview", json={"files": chosen}, headers={TOKEN: token}
        ).json()
    moved = {m["src"] for m in preview["done"]}
    assert moved and not {m["file"]["path"] for m in refs} & moved


def test_near_duplicate_shots_are_listed_apart_and_open_as_a_pair(served: Served) -> None:
    """A pair verification found to be two shots of one scene: /api/shots lists it, the
    pair view names it, and it joins no group."""
    with open_index(served.index) as store:
        rows = [store.file(i) for i, _ in sorted(store.content_hashes().items())]
        grouped = {
            f for p in regroup(store, store.settings()["min_similarity"]) for f, _ in p.members
        }  # type: ignore[arg-type]
        a, b = [r for r in rows if r is not None and r.id not in grouped][:2]
        assert a.hash and b.hash and a.hash != b.hash
        store.store_verified([(a.hash, b.hash, 0.93, 0, 0.6, True, -1)])
    listed = served.client.get("/api/shots").json()
    assert listed["total"] == 1
    (shot,) = listed["shots"]
    assert {shot["a"]["id"], shot["b"]["id"]} == {a.id, b.id}
    assert shot["similarity"] == pytest.approx(0.93) and shot["coverage"] == pytest.approx(0.6)
    pair = served.client.get("/api/pair", params={"a": a.id, "b": b.id}).json()
    assert pair["shot"] and "near-duplicate shot" in pair["decided_by"]
    members = {m["file"]["id"] for g in served.groups()["groups"] for m in g["members"]}
    assert a.id not in members and b.id not in members
