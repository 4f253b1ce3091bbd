"""Test support for the review page: a scanned folder with hostile names, a live server,
and Debian's headless Chromium driven by Selenium (no browser is ever downloaded)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import SyntheticFolder, make_picture, missing_part
from lookalike.scan import scan_folder
from scan_support import content_model

HOSTILE_NAME = "<img src=x onerror=\"document.title='pwned'\">.jpg"
"""A file name that is HTML: shown as text on the page, never run."""

REVIEW_CUTOFFS = {"min_similarity": 0.9995, "review_min_similarity": 0.999}
"""The scan's cut-offs: resized copies fall between them (seen only by lowering the slider)."""

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def scan_review_folder(synthetic: SyntheticFolder, base: Path) -> tuple[Path, Path]:
    """A scanned copy of the synthetic folder with extras: (photos, index).

    Extras: an exact copy of original_1, an edited copy of original_0 whose name is
    HTML, and a symbolic link inside the folder to an image outside it (a copy of
    original_2, so it joins that group, smaller, so not as its keeper).
    """
    photos = Path(shutil.copytree(synthetic.root, base / "photos"))
    shutil.copyfile(photos / "original_1.png", photos / "copies" / "exact_1.png")
    make_picture(100).save(photos / "copies" / HOSTILE_NAME, quality=70)
    outside = base / "outside"
    outside.mkdir()
    make_picture(102).save(outside / "secret.jpg", quality=85)
    (photos / "link_out.jpg").symlink_to(outside / "secret.jpg")
    index = base / "idx.lookalike"
    scan_folder([photos], index, model=content_model(), workers=1, **REVIEW_CUTOFFS)
    return photos, index


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free local port in a thread; yields its URL."""
    from lookalike.web.server import listen, make_server, page_url

    sock = listen("127.0.0.1", 0)
    server = make_server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the review server did not start")
            time.sleep(0.05)
        yield page_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def chromium(profile: Path, width: int = 1280, height: int = 900) -> Any:
    """Headless Debian Chromium through Debian's chromedriver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        missing_part(
            f"needs Debian's Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): "
            "apt-get install chromium chromium-driver, or run `bash .ci/run`"
        )

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
