"""Concurrency: serve while a scan writes the index, quarantines racing each other, restores
racing each other, and a burst of concurrent clients on the review page."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import SyntheticFolder, make_picture
from crash_support import Launcher, digest, digests
from lookalike.index import open_index
from lookalike.records import Quarantine
from lookalike.scan import ScanError, quarantine, read_manifest, read_result, restore, scan_folder
from lookalike.web import create_app
from scan_support import content_model, write_copied_pictures
from web_support import running_server, scan_review_folder

TOKEN = "x-lookalike-token"

_SLOW_SCAN = """
import sys, time
sys.path.insert(0, {tests!r})
from scan_support import content_model
from lookalike.scan import scan_folder

print("scanning", flush=True)
# Paced (a pause after each committed batch of 2), so the page is read mid-scan often.
scan_folder([{photos!r}], {index!r}, model=content_model(), batch_size=2, workers=1,
            on_progress=lambda progress: time.sleep(0.01))
"""


@pytest.mark.slow
def test_the_page_keeps_answering_while_a_scan_writes_its_index(
    synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    photos = Path(shutil.copytree(synthetic_folder.root, tmp_path / "photos"))
    index = tmp_path / "idx.lookalike"
    scan_folder([photos], index, model=content_model(), workers=1)
    before = len(read_result(index).groups)
    new = photos / "new"
    new.mkdir()
    for k in range(120):
        make_picture(3000 + k, (48, 40)).save(new / f"n{k:03d}.png")
    for k in range(6):  # six new groups
        shutil.copyfile(new / f"n{k:03d}.png", new / f"n{k:03d}_copy.png")
    app = create_app(index, quarantine_to=tmp_path / "q", cache_dir=tmp_path / "cache")
    with open_index(index) as store:
        some = store.file_by_path(photos / "original_0.png")
    assert some is not None
    urls = ["", "api/summary", "api/groups", "api/groups?offset=2&limit=3", "api/manifests"]
    urls += [f"thumb/{some.id}", f"api/pair?a={some.id}&b={some.id}"]
    answers: list[tuple[str, int, str, bool]] = []
    with running_server(app) as url:
        script = _SLOW_SCAN.format(
            tests=str(Path(__file__).parent), photos=str(photos), index=str(index)
        )
        scan = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert scan.stdout is not None and scan.stdout.readline().strip() == "scanning"

        def read(offset: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                k = offset
                while scan.poll() is None:
                    response = client.get(urls[k % len(urls)])
                    answers.append(
                        (urls[k % len(urls)], response.status_code, response.text[:300], True)
                    )
                    k += 1
                for path in urls:
                    response = client.get(path)
                    answers.append((path, response.status_code, response.text[:300], False))

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(read, range(4)))
        assert scan.wait(timeout=120) == 0
        final = httpx.get(url + "api/groups", params={"limit": 100}, timeout=60).json()
    failed = [(path, status, text) for path, status, text, _ in answers if status != 200]
    assert failed == []
    assert not any("locked" in text for _, _, text, _ in answers)
    assert sum(during for *_, during in answers) >= 40  # the page was read throughout the scan
    stored = read_result(index)
    assert len(stored.groups) == before + 6 == final["total"]
    shown = {m["file"]["path"] for g in final["groups"] for m in g["members"]}
    assert {str(new / f"n{k:03d}_copy.png") for k in range(6)} <= shown


# -- quarantines and restores racing ------------------------------------------------------------


@pytest.fixture()
def scanned(tmp_path: Path) -> tuple[Path, Path, dict[Path, Path]]:
    """60 pictures with two byte copies each: (photos, index, duplicate -> relative place)."""
    photos = tmp_path / "photos"
    write_copied_pictures(photos, 60, seed=8000)
    index = tmp_path / "idx.lookalike"
    result = scan_folder([photos], index, model=content_model(), workers=1)
    moves = {d: Path("photos") / d.relative_to(photos) for g in result.groups for d in g.duplicates}
    assert len(moves) == 120
    return photos, index, moves


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    with Launcher() as started:
        yield started


@pytest.mark.slow
@pytest.mark.parametrize("same_folder", [True, False])
def test_racing_quarantines_move_each_file_once_and_restore_everything(
    launcher: Launcher,
    scanned: tuple[Path, Path, dict[Path, Path]],
    tmp_path: Path,
    same_folder: bool,
) -> None:
    photos, index, moves = scanned
    before = digests(photos)
    for round_ in range(4):
        folders = [tmp_path / f"q{round_}"] * 2 if same_folder else [
            tmp_path / f"q{round_}a", tmp_path / f"q{round_}b"
        ]  # fmt: skip
        pids = [launcher.start("quarantine", index, "--to", folder) for folder in folders]
        codes = [launcher.wait(pid) for pid in pids]
        assert sorted(codes) in ([0, 0], [0, 2]), codes  # 2: the index was busy
        for src, rel in moves.items():  # moved, once, whole
            places = [f / rel for f in set(folders) if (f / rel).exists()]
            assert not src.exists() and len(places) == 1, (src, places)
            assert digest(places[0]) == before[str(src.relative_to(photos))]
        manifests = sorted({m for f in folders for m in f.glob("manifest-*.jsonl")})
        listed = Counter(m.src for manifest in manifests for m in read_manifest(manifest))
        assert set(listed) == set(moves)
        # Two restores of every manifest at once: each file comes back once.
        pids = [launcher.start("restore", m) for m in manifests for _ in range(2)]
        assert [launcher.wait(pid) for pid in pids] == [0] * len(pids)
        for manifest in manifests:
            restore(manifest)
        assert digests(photos) == before, f"round {round_}"
        for folder in set(folders):
            left = [p for p in folder.rglob("*") if p.is_file()]
            assert all(p.name.startswith("manifest-") for p in left), left


def test_quarantines_racing_in_threads_of_one_process_move_each_file_once(
    scanned: tuple[Path, Path, dict[Path, Path]], tmp_path: Path
) -> None:
    photos, index, moves = scanned
    before = digests(photos)
    start = threading.Barrier(4)
    outcomes: list[object] = []

    def run(k: int) -> None:
        start.wait()
        try:
            outcomes.append(quarantine(index, tmp_path / f"q{k % 2}"))
        except ScanError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 4
    busy = [o for o in outcomes if isinstance(o, ScanError)]
    assert all("in use" in str(e) for e in busy)
    done = [m.src for o in outcomes if isinstance(o, Quarantine) for m in o.done]
    assert sorted(done) == sorted(moves)  # each file moved by exactly one of them
    for manifest in sorted(tmp_path.glob("q*/manifest-*.jsonl")):
        restore(manifest)
    assert digests(photos) == before


# -- a burst of clients ------------------------------------------------------------------------

CLIENTS = 50
REQUESTS = 20


@pytest.mark.slow
def test_a_burst_of_50_clients_times_20_requests_is_answered(
    synthetic_folder: SyntheticFolder, tmp_path: Path
) -> None:
    _, index = scan_review_folder(synthetic_folder, tmp_path)
    app = create_app(index, quarantine_to=tmp_path / "q", cache_dir=tmp_path / "cache")
    stored = read_result(index)
    with open_index(index) as store:
        rows = [store.file_by_path(m.path) for g in stored.groups for m in g.members]
    ids = [row.id for row in rows if row is not None and not row.path.is_symlink()]
    expected = {
        "": 200,
        "api/summary": 200,
        "api/groups": 200,
        "api/groups?offset=1&limit=2": 200,
        "static/review.js": 200,
        "api/manifests": 200,
        f"api/pair?a={ids[0]}&b={ids[1]}": 200,
        **{f"thumb/{i}": 200 for i in ids[:6]},
        "post:api/keeper": 403,  # without the token: refused, every time
    }
    plan = list(expected)
    statuses: Counter[tuple[str, int]] = Counter()
    errors: list[BaseException] = []
    with running_server(app) as url:
        go = threading.Barrier(CLIENTS)

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=120) as http:
                go.wait()
                for n in range(REQUESTS):
                    path = plan[(k + n) % len(plan)]
                    try:
                        if path.startswith("post:"):
                            response = http.post(path[5:], json={"file": ids[0]})
                        else:
                            response = http.get(path)
                    except httpx.HTTPError as exc:
                        errors.append(exc)
                        continue
                    statuses[(path, response.status_code)] += 1

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(client, range(CLIENTS)))
        seconds = time.monotonic() - started
        assert httpx.get(url + "api/summary", timeout=30).status_code == 200
    assert errors == []
    assert sum(statuses.values()) == CLIENTS * REQUESTS
    assert all(status == expected[path] for path, status in statuses), statuses
    assert seconds < 120, f"{CLIENTS * REQUESTS} requests took {seconds:.0f} s"
    with open_index(index) as store:
        assert store.keep_marks() == set()
