"""Write docs/review-page.png: the review page of the demo photos, in headless Chromium.

    python scripts/make_review_screenshot.py [--model PATH] [--out docs/review-page.png]

Writes the demo folder (`lookalike demo`'s bundled photos and edited copies) into a
temporary folder, scans it with the model, serves the review page on a free local port
and photographs it with Debian's Chromium (apt-get install chromium chromium-driver;
selenium comes with the dev extra). One duplicate is marked for quarantine, so the
selection bar shows too. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from lookalike.model import load_model
from lookalike.scan import scan_folder, write_demo_folder
from lookalike.web import create_app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from web_support import chromium, running_server  # noqa: E402  (test support, shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: bundled)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "review-page.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args()
    out = args.out.resolve()
    model = load_model(args.model)
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory(prefix="lookalike-screenshot-") as tmp:
        os.chdir(tmp)  # paths on the page as a user would give them: photos/...
        write_demo_folder("demo")
        result = scan_folder(["demo/photos"], "demo.lookalike", model=model)
        app = create_app("demo.lookalike", model=model)
        with running_server(app) as url:
            browser = chromium(Path(tmp) / "profile", args.width, args.height)
            try:
                browser.get(url)
                wait = WebDriverWait(browser, 60, poll_frequency=0.1)
                wait.until(lambda d: d.find_elements("css selector", "article.group"))
                wait.until(
                    lambda d: d.execute_script(
                        "return [...document.querySelectorAll('figure img')]"
                        ".every(i => i.complete && i.naturalWidth > 0)"
                    )
                )
                boxes = browser.find_elements("css selector", "input.mark-quarantine")
                if boxes:
                    boxes[0].click()
                browser.save_screenshot(str(out))
            finally:
                browser.quit()
    print(f"{out}: {result.stats.groups} groups of {result.stats.images} demo images")


if __name__ == "__main__":
    main()
