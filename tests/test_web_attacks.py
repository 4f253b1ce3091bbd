"""The review page under attack, on a real server on 127.0.0.1: nothing served from outside
the scanned folders, nothing run from a file name, nothing changed without the token, and
the server still answering after oversized or malformed requests.

(tests/test_web.py checks the same guards through FastAPI's TestClient, which cleans up a
URL before sending it; here the exact bytes an attacker would send go over a socket.)
"""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from conftest import SyntheticFolder, make_picture
from lookalike.index import open_index
from lookalike.scan import KEEP_POLICIES, Candidate, build_groups, scan_folder
from lookalike.web import create_app
from scan_support import content_model
from web_support import REVIEW_CUTOFFS, chromium, running_server, scan_review_folder

TOKEN = "x-lookalike-token"
SECRETS = (b"root:", b"[project]", b"def create_app", b"lookalike-token")
"""Bytes of files an attacker would like to read (/etc/passwd, pyproject.toml, app.py);
the last one only on the page itself."""


@dataclass
class Site:
    url: str
    host: str
    port: int
    token: str
    photos: Path
    index: Path
    quarantine: Path
    outside: Path

    def post(self, path: str, body: object, token: str | None = None) -> httpx.Response:
        headers = {TOKEN: self.token if token is None else token}
        return httpx.post(self.url + path.lstrip("/"), json=body, headers=headers, timeout=30)

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path.lstrip("/"), timeout=30, **kwargs)  # type: ignore[arg-type]

    def raw(self, request: bytes) -> tuple[int | None, bytes]:
        """Send bytes as they are; (status or None if no HTTP answer, everything received)."""
        received = b""
        with socket.create_connection((self.host, self.port), timeout=30) as sock:
            try:
                sock.sendall(request)
                while not _whole(received) and (chunk := sock.recv(1 << 16)):
                    received += chunk
            except (ConnectionResetError, BrokenPipeError):
                pass  # refused mid-request
        match = re.match(rb"HTTP/1\.[01] (\d{3}) ", received)
        return (int(match.group(1)) if match else None), received

    def get_raw(self, target: str | bytes, headers: bytes = b"") -> tuple[int | None, bytes]:
        line = target if isinstance(target, bytes) else target.encode("latin-1")
        return self.raw(
            b"GET " + line + b" HTTP/1.1\r\nHost: " + f"{self.host}:{self.port}".encode()
            + b"\r\n" + headers + b"Connection: close\r\n\r\n"
        )  # fmt: skip

    def file_id(self, relative: str) -> int:
        with open_index(self.index) as store:
            row = store.file_by_path(self.photos / relative)
        assert row is not None, relative
        return row.id

    def alive(self) -> bool:
        return self.get("/api/summary").status_code == 200


def _whole(answer: bytes) -> bool:
    """Whether an HTTP answer has arrived whole (the server may keep the connection open)."""
    head, end, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    return bool(end) and length is not None and len(body) >= int(length.group(1))


def _extras(photos: Path, outside: Path) -> None:
    """Links out of the folder: a byte copy of original_1 that sorts first (ties with it
    under every keep policy), a bigger copy of original_3 (wins `largest`), a folder."""
    shutil.copyfile(photos / "original_1.png", outside / "twin_1.png")
    (photos / "a_link_twin.png").symlink_to(outside / "twin_1.png")
    big = outside / "big_3.png"
    with Image.open(photos / "original_3.png") as picture:
        picture.resize((320, 240), Image.Resampling.BICUBIC).save(big)
    (photos / "a_link_big.png").symlink_to(big)
    (outside / "folder").mkdir()
    make_picture(104).save(outside / "folder" / "inside.png")
    (photos / "linked_folder").symlink_to(outside / "folder")


@pytest.fixture()
def site(synthetic_folder: SyntheticFolder, tmp_path: Path) -> Iterator[Site]:
    photos, index = scan_review_folder(synthetic_folder, tmp_path)
    outside = tmp_path / "outside"
    _extras(photos, outside)
    scan_folder([photos], index, model=content_model(), workers=1, **REVIEW_CUTOFFS)
    quarantine = tmp_path / "quarantine"
    app = create_app(
        index, quarantine_to=quarantine, cache_dir=tmp_path / "cache", model=content_model()
    )
    with running_server(app) as url:
        parts = urlsplit(url)
        page = httpx.get(url, timeout=30)
        token = re.search(r'name="lookalike-token" content="([^"]+)"', page.text)
        assert token, "no token on the page"
        assert parts.hostname and parts.port
        yield Site(
            url, parts.hostname, parts.port, token.group(1), photos, index, quarantine, outside
        )


def _state(site: Site) -> tuple[object, ...]:
    """Everything a request could change: the photos, the marks, the stored groups."""
    files = {
        str(p.relative_to(site.photos)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(site.photos.rglob("*"))
    }
    with open_index(site.index) as store:
        marks = (store.keep_marks(), store.not_duplicate_marks())
        groups = [(g.keep, g.keep_by, g.members) for g in store.groups()]
    return files, marks, groups, site.quarantine.exists()


# -- traversal -----------------------------------------------------------------------------

TRAVERSALS = [
    "/static/../pyproject.toml",
    "/static/../../../../../../etc/passwd",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/%2e%2e%2fapp.py",
    "/static/%2E%2E%2F%2E%2E%2F%2E%2E%2Fpyproject.toml",
    "/static/..%2f..%2f..%2fpyproject.toml",
    "/static/%252e%252e%252fapp.py",  # encoded twice
    "/static/%c0%ae%c0%ae/app.py",  # an overlong UTF-8 dot
    "/static/..%c0%afapp.py",
    "/static/..\\app.py",
    "/static/..%5capp.py",
    "/static/review.css%00../../app.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/....//....//app.py",
    "//etc/passwd",
    "/../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/thumb/../../../etc/passwd",
    "/thumb/..%2f..%2f..%2fetc%2fpasswd",
    "/thumb/%2fetc%2fpasswd",
    "/thumb/1/../../../../etc/passwd",
    "/thumb/1%2f..%2f..%2fetc%2fpasswd",
    "/thumb/1;/etc/passwd",
    "/thumb/1%00",
    "/thumb/0x1",
    "/image/%2e%2e",
    "/image/~root",
    "/overlay/1/2/..%2f..%2fetc%2fpasswd",
    "/overlay/1/2/c",
    "/api/pair?a=/etc/passwd&b=1",
    "/api/pair?a=1&b=..%2f..%2fetc%2fpasswd",
    "/api/groups?offset=-1",
    "/api/manifests/../../etc/passwd",
    "/templates/review.html",
    "/.git/config",
]


def test_traversal_attempts_are_never_served(site: Site) -> None:
    for target in TRAVERSALS:
        status, answer = site.get_raw(target)
        assert status in (400, 403, 404, 405, 422), (target, status, answer[:200])
        assert not any(secret in answer for secret in SECRETS), target
    # Absolute-form request targets, and a path in the Host header.
    for target in (f"http://{site.host}:{site.port}/static/../../pyproject.toml", "*"):
        status, answer = site.get_raw(target)
        assert status != 200 and b"[project]" not in answer, target
    status, answer = site.raw(
        b"GET /static/review.css HTTP/1.1\r\nHost: 127.0.0.1/../..\r\nConnection: close\r\n\r\n"
    )
    assert status == 400
    assert site.alive()


def test_absolute_paths_and_files_outside_the_folders_are_refused(site: Site) -> None:
    for name in ("a_link_twin.png", "a_link_big.png", "link_out.jpg"):
        file_id = site.file_id(name)
        for route in ("thumb", "image"):
            response = site.get(f"/{route}/{file_id}")
            assert response.status_code == 403, (name, route)
            assert "outside" in response.json()["detail"]
    with open_index(site.index) as store:  # a link to a folder is not followed by a scan
        assert store.file_by_path(site.photos / "linked_folder" / "inside.png") is None
        assert not [f for f in store.files() if "linked_folder" in str(f.path)]
    for path in ("/etc/passwd", str(site.outside / "big_3.png"), str(site.photos)):
        response = site.post("/api/quarantine/preview", {"files": [path]})
        assert response.status_code == 422  # files are ids, never paths
        response = site.post("/api/keeper", {"file": path})
        assert response.status_code == 422


def test_a_forged_manifest_cannot_point_the_page_outside_the_quarantine_folder(
    site: Site,
) -> None:
    """The page looks quarantined files up in the manifests; a manifest naming a place
    outside the quarantine folder, or a quarantined file swapped for a link, gets nothing."""
    victim = site.photos / "copies" / "copy_2_jpeg.jpg"
    victim_id = site.file_id("copies/copy_2_jpeg.jpg")
    victim.unlink()
    site.quarantine.mkdir()
    forged = {"src": str(victim), "dst": str(site.outside / "big_3.png"), "sha256": "0"}
    (site.quarantine / "manifest-20260101-000000.jsonl").write_text(
        json.dumps({**forged, "op": "move"}) + "\n"
    )
    response = site.get(f"/thumb/{victim_id}")
    assert response.status_code == 403 and "outside" in response.json()["detail"]

    moved_id = site.file_id("copies/copy_0_jpeg.jpg")
    preview = site.post("/api/quarantine/preview", {"files": [moved_id]}).json()
    assert site.post("/api/quarantine", {"preview": preview["preview"]}).status_code == 200
    (moved,) = (site.quarantine / "photos" / "copies").glob("copy_0_jpeg.jpg")
    moved.unlink()
    moved.symlink_to(site.outside / "big_3.png")
    response = site.get(f"/image/{moved_id}")
    assert response.status_code == 403 and "outside" in response.json()["detail"]


# -- links out of the folders never keep a group ----------------------------------------------


def test_a_link_out_of_the_folder_is_never_a_keeper(site: Site) -> None:
    """A byte copy whose link sorts first, is walked first and has the shortest path, and a
    bigger copy: under every policy a real file inside the folder keeps the group."""
    links = ("a_link_twin.png", "a_link_big.png")
    for policy in KEEP_POLICIES:
        index = site.index.with_name(f"{policy}.lookalike")
        result = scan_folder(
            [site.photos], index, model=content_model(), workers=1, keep=policy, **REVIEW_CUTOFFS
        )
        for link in links:
            (group,) = [g for g in result.groups if any(m.path.name == link for m in g.members)]
            assert not group.keep.is_symlink(), (policy, link, group.keep)
            assert group.keep.parent in (site.photos, site.photos / "copies")
    groups = site.get("/api/groups", params={"limit": 100}).json()["groups"]
    link_ids = {site.file_id(name) for name in (*links, "link_out.jpg")}
    keepers = {m["file"]["id"] for g in groups for m in g["members"] if m["keeper"]}
    assert keepers and not keepers & link_ids
    for link_id in link_ids:  # nor can the page make one a keeper
        response = site.post("/api/keeper", {"file": link_id})
        assert response.status_code == 409 and "link" in response.json()["detail"]
    with open_index(site.index) as store:
        assert store.keep_marks() == set()


def test_a_group_of_links_only_still_has_a_keeper() -> None:
    links = {
        n: Candidate(n, f"/photos/link{n}.png", 10, 10, 100, 0, n, "h", outside=True)
        for n in (1, 2)
    }
    real = Candidate(3, "/photos/z.png", 1, 1, 1, 0, 3, "h")
    (group,) = build_groups(links, [(1, 2, 1.0, True)], min_similarity=0.9)
    assert group.keep == 1
    (group,) = build_groups(
        {**links, 3: real}, [(1, 3, 1.0, True), (2, 3, 1.0, True)], min_similarity=0.9
    )
    assert group.keep == 3


# -- file names that are HTML or script --------------------------------------------------------

HOSTILE_NAMES = [
    "<script>window.pwned=1<\\script>.png",
    '"><svg onload="window.pwned=2">.png',
    "' onmouseover='window.pwned=3' x='.png",
    "<iframe srcdoc='&lt;img src=x onerror=parent.pwned=4&gt;'>.png",
    "javascript:window.pwned=5.png",
    "{{7*7}} ${7*7} <%= 7*7 %>.png",
    "&lt;b&gt;already escaped&amp;amp;.png",
    "\u202egnp.exe.png",  # right-to-left override
    "line\nbreak.png",
]


@dataclass
class Hostile:
    url: str
    folder: Path  # its name is HTML too
    quarantine: Path


@pytest.fixture()
def hostile(synthetic_folder: SyntheticFolder, tmp_path: Path) -> Iterator[Hostile]:
    """A served folder with byte copies of original_2 under every name of HOSTILE_NAMES."""
    photos = Path(shutil.copytree(synthetic_folder.root, tmp_path / "photos"))
    folder = photos / '"><img src=x onerror=alert(9)>'
    folder.mkdir()
    for name in HOSTILE_NAMES:
        shutil.copyfile(photos / "original_2.png", folder / name)
    index = tmp_path / "idx.lookalike"
    scan_folder([photos], index, model=content_model(), workers=1)
    quarantine = tmp_path / "q"
    app = create_app(index, quarantine_to=quarantine, cache_dir=tmp_path / "cache")
    with running_server(app) as url:
        yield Hostile(url, folder, quarantine)


def test_hostile_file_names_are_data_in_every_answer(hostile: Hostile) -> None:
    """The names come back as JSON strings, exactly, and the page has no copy of them."""
    page = httpx.get(hostile.url, timeout=30)
    answer = httpx.get(hostile.url + "api/groups", timeout=30)
    assert page.headers["content-type"].startswith("text/html")
    assert not any(name.split(".")[0] in page.text for name in HOSTILE_NAMES[:5])
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-content-type-options"] == "nosniff"
    paths = {m["file"]["path"] for g in answer.json()["groups"] for m in g["members"]}
    assert {str(hostile.folder / name) for name in HOSTILE_NAMES} <= paths
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]


_INJECTED = (
    "return [window.pwned, document.title,"
    ' document.querySelectorAll(\'iframe, svg, script:not([src]), img[src="x"],'
    " [onerror], [onload], [onmouseover]').length]"
)


@pytest.mark.slow
def test_hostile_file_names_run_nothing_in_a_browser(hostile: Hostile, tmp_path: Path) -> None:
    """Shown as text in the groups, the pair view, the quarantine confirmation and its
    outcome; no element or script of theirs ever appears."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium(tmp_path / "profile")
    try:
        wait = WebDriverWait(browser, 30, poll_frequency=0.1)
        browser.get(hostile.url)
        wait.until(lambda d: d.find_elements("css selector", "article.group"))
        title = browser.title
        shown = {}  # each tile's path (its title) -> the text of its folder and name lines
        for tile in browser.find_elements("css selector", "figure.member"):
            lines = tile.find_elements("css selector", ".folder, .name")
            shown[tile.get_attribute("title")] = "".join(e.text for e in lines[::-1])
        for name in HOSTILE_NAMES:
            path = str(hostile.folder / name)
            assert " ".join(shown[path].split()) == " ".join(path.split()), path
        assert browser.execute_script(_INJECTED) == [None, title, 0]

        def hostile_tiles() -> list[Any]:
            return [
                t
                for t in browser.find_elements("css selector", "figure.member:not(.keeper)")
                if str(hostile.folder) in (t.get_attribute("title") or "")
            ]

        hostile_tiles()[0].find_element("css selector", "button.thumb").click()
        wait.until(lambda d: d.find_element("id", "pair-view").is_displayed())
        assert browser.execute_script(_INJECTED) == [None, title, 0]
        browser.find_element("css selector", "body").send_keys("\ue00c")  # Escape
        wait.until(lambda d: not d.find_element("id", "pair-view").is_displayed())

        for tile in hostile_tiles():  # (clicked by script: the selection bar may cover them)
            box = tile.find_element("css selector", "input.mark-quarantine")
            browser.execute_script("arguments[0].click()", box)
        browser.find_element("id", "review-quarantine").click()
        wait.until(lambda d: d.find_element("id", "confirm-view").is_displayed())
        listed = browser.find_element("id", "confirm-body").text
        assert str(hostile.folder / HOSTILE_NAMES[0]) in listed
        assert browser.execute_script(_INJECTED) == [None, title, 0]
        browser.find_element("id", "confirm-quarantine").click()
        wait.until(lambda d: "Moved" in d.find_element("id", "message").text)
        assert list(hostile.quarantine.rglob("*.png"))
        assert browser.execute_script(_INJECTED) == [None, title, 0]
    finally:
        browser.quit()


# -- no change without the token ---------------------------------------------------------------


def test_the_token_only_counts_in_its_header_and_only_for_this_server(
    site: Site, tmp_path: Path
) -> None:
    before = _state(site)
    member = site.file_id("copies/copy_1_jpeg.jpg")
    other = create_app(site.index, quarantine_to=tmp_path / "q2", cache_dir=tmp_path / "c2")
    with running_server(other) as other_url:
        page = httpx.get(other_url, timeout=30).text
        foreign = re.search(r'name="lookalike-token" content="([^"]+)"', page)
    assert foreign and foreign.group(1) != site.token
    keeper = json.dumps({"file": member}).encode()
    attempts = [
        site.post("/api/keeper", {"file": member}, token=foreign.group(1)),
        site.post(f"/api/keeper?token={site.token}", {"file": member}, token=""),
        httpx.post(
            site.url + "api/keeper",
            json={"file": member},
            cookies={TOKEN: site.token, "token": site.token},
            timeout=30,
        ),
        httpx.post(  # what a form on another site can send without asking
            site.url + "api/keeper",
            data={"file": str(member), "token": site.token, TOKEN: site.token},
            timeout=30,
        ),
        httpx.post(
            site.url + "api/keeper",
            content=keeper,
            headers={"content-type": "text/plain", "authorization": f"Bearer {site.token}"},
            timeout=30,
        ),
        httpx.post(site.url + "api/keeper", content=keeper, headers={TOKEN: site.token.upper()}),
        httpx.post(site.url + "api/keeper", content=keeper, headers={TOKEN: site.token * 2}),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts)
    for method in ("GET", "HEAD", "OPTIONS"):  # no change through a method without the check
        for url in ("api/keeper", "api/not-duplicate", "api/quarantine", "api/restore"):
            response = httpx.request(method, site.url + url, params={"file": member}, timeout=30)
            assert response.status_code in (404, 405), (method, url)
    preflight = httpx.options(
        site.url + "api/keeper",
        headers={
            "origin": "http://evil.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": TOKEN,
        },
        timeout=30,
    )
    assert "access-control-allow-origin" not in preflight.headers
    cross = site.get("/api/groups", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in cross.headers
    assert _state(site) == before
    assert site.post("/api/keeper", {"file": member}).status_code == 200  # the right token works


# -- oversized and malformed requests -------------------------------------------------------------


def test_oversized_and_malformed_requests_are_refused_and_the_server_goes_on(site: Site) -> None:
    before = _state(site)
    huge_target = "/api/groups?x=" + "A" * 200_000
    status, _ = site.get_raw(huge_target)
    assert status in (None, 400, 413, 414, 431)
    many_headers = b"".join(b"X-Filler-%d: %s\r\n" % (k, b"y" * 100) for k in range(2_000))
    status, _ = site.get_raw("/api/summary", many_headers)
    assert status in (None, 400, 413, 431)
    token = site.token.encode()
    for declared in (b"1000000000000", b"99999999999999999999999999"):
        status, _ = site.raw(
            b"POST /api/keeper HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"X-Lookalike-Token: " + token + b"\r\nContent-Length: " + declared
            + b"\r\nConnection: close\r\n\r\n{"
        )  # fmt: skip
        assert status in (None, 400, 413), declared
    for garbage in (
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\r\n\r\n",
        b"G\xc3\xa9T / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"POST /api/keeper HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    ):
        status, _ = site.raw(garbage)
        assert status in (None, 400, 403, 404, 405, 413, 422, 505), garbage
    # Clients that promise a huge body and stall, or send headers a byte at a time, hold
    # their own connection only: the others are answered meanwhile.
    stalled = [socket.create_connection((site.host, site.port), timeout=30) for _ in range(8)]
    try:
        for k, sock in enumerate(stalled):
            sock.sendall(
                b"POST /api/keeper HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                b"X-Lookalike-Token: " + token + b"\r\n\r\nfffffffffffffff\r\n"
                if k % 2
                else b"GET /api/summary HTTP/1.1\r\nHost: 127"
            )
        assert site.alive() and site.get("/").status_code == 200
    finally:
        for sock in stalled:
            sock.close()
    bodies = [
        b'{"file": NaN}',
        b'{"file": Infinity}',
        b'{"files": [1e999]}',
        b'{"file": ' + b"1" * 5_000 + b"}",
        b'{"files": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"file": 1, "file": 1, "extra": {"__proto__": 1}}',
        b"\xff\xfe\x00garbage",
        b"[]",
        b"null",
    ]
    for body in bodies:
        for url in ("api/keeper", "api/not-duplicate", "api/quarantine/preview", "api/restore"):
            response = httpx.post(
                site.url + url,
                content=body,
                headers={TOKEN: site.token, "content-type": "application/json"},
                timeout=30,
            )
            assert 400 <= response.status_code < 500, (url, body[:40], response.text[:200])
    for query in (
        "min_similarity=nan",
        "min_similarity=-inf",
        "offset=99999999999999999999999",
        "offset=" + "9" * 5_000,
        "limit=0",
        "limit=1e9",
    ):
        assert site.get(f"/api/groups?{query}").status_code == 422, query
    assert _state(site) == before
    assert site.alive() and site.get("/").status_code == 200
