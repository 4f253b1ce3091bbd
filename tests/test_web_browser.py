"""The review page in a real browser: Debian's headless Chromium, driven by Selenium.

The server runs in a thread on a free local port, over a small scanned folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import SyntheticFolder
from lookalike.index import open_index
from lookalike.scan import read_result
from lookalike.web import create_app
from scan_support import content_model
from web_support import (
    HOSTILE_NAME,
    chromium,
    running_server,
    scan_review_folder,
)

pytestmark = pytest.mark.slow


@dataclass
class Site:
    url: str
    photos: Path
    index: Path
    quarantine: Path

    def file_id(self, name: str) -> int:
        with open_index(self.index) as store:
            row = store.file_by_path(self.photos / name)
        assert row is not None, name
        return row.id


@pytest.fixture()
def site(synthetic_folder: SyntheticFolder, tmp_path: Path) -> Iterator[Site]:
    photos, index = scan_review_folder(synthetic_folder, tmp_path)
    quarantine = tmp_path / "quarantine"
    app = create_app(
        index, quarantine_to=quarantine, cache_dir=tmp_path / "cache", model=content_model()
    )
    with running_server(app) as url:
        yield Site(url, photos, index, quarantine)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = chromium(tmp_path / "profile")  # skips (fails under CI) without Chromium
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Callable[[Any], Any], seconds: float = 30) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page re-renders its groups after each change: an element may go stale mid-check.
    wait = WebDriverWait(
        driver, seconds, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
    )
    return wait.until(condition)


def _open(driver: Any, site: Site) -> None:
    driver.get(site.url)
    _wait(driver, lambda d: d.find_elements("css selector", "article.group"))


def _tile(driver: Any, file_id: int) -> Any:
    return driver.find_element("css selector", f'figure[data-file="{file_id}"]')


def _script_errors(driver: Any) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and entry.get("source") == "javascript"
    ]


def test_groups_and_a_pair_with_its_overlays(site: Site, browser: Any, tmp_path: Path) -> None:
    _open(browser, site)
    stored = read_result(site.index)
    cards = browser.find_elements("css selector", "article.group")
    assert len(cards) == len(stored.groups)
    assert [len(c.find_elements("css selector", "figure.member")) for c in cards] == [
        len(g.members) for g in stored.groups
    ]
    assert len(browser.find_elements("css selector", "figure.member.keeper")) == len(cards)
    # The file name that is HTML shows as text and runs nothing.
    names = [p.text for p in browser.find_elements("css selector", "figure .name")]
    assert HOSTILE_NAME in names
    paths = [f.get_attribute("title") for f in browser.find_elements("css selector", "figure")]
    assert str(site.photos / "copies" / HOSTILE_NAME) in paths
    assert browser.title == "lookalike · idx.lookalike"
    assert browser.find_elements("css selector", 'img[src="x"]') == []
    thumbs = browser.find_elements("css selector", "figure.member img")
    _wait(
        browser, lambda d: all(d.execute_script("return arguments[0].complete", t) for t in thumbs)
    )
    loaded = [browser.execute_script("return arguments[0].naturalWidth", t) for t in thumbs]
    assert all(width > 0 for width in loaded)
    # The link out of the folder gets no picture.
    link = _tile(browser, site.file_id("link_out.jpg"))
    assert link.find_elements("css selector", ".no-thumb")

    # The pair view of original_0's group: its keeper and a member (a copy, not a link).
    group = next(g for g in stored.groups if "original_0.png" in {m.path.name for m in g.members})
    keeper_id = site.file_id(str(group.keep.relative_to(site.photos)))
    shown = next(
        m.path for m in group.members if m.path != group.keep and "link" not in str(m.path)
    )
    member_id = site.file_id(str(shown.relative_to(site.photos)))
    member = _tile(browser, member_id)
    member.find_element("css selector", "button.thumb").click()
    sheet = _wait(browser, lambda d: d.find_element("id", "pair-view").is_displayed())
    assert sheet
    title = browser.find_element("id", "pair-title").text
    with open_index(site.index) as store:
        a, b = keeper_id, member_id
        similarity = {(x, y): s for x, y, s, _ in store.pairs()}[(min(a, b), max(a, b))]
    assert title.startswith(f"similarity {similarity:.4f} · ")  # and what decided it
    overlays = _wait(
        browser,
        lambda d: (
            len(d.find_elements("css selector", ".overlay-image")) == 2
            and d.find_elements("css selector", ".overlay-image")
        ),
    )
    for image in [*browser.find_elements("css selector", "img.large"), *overlays]:
        _wait(
            browser,
            lambda d, image=image: d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", image
            ),
        )
    shot = tmp_path / "review-pair.png"
    assert browser.save_screenshot(str(shot))
    with Image.open(shot) as picture:
        assert picture.size[0] >= 1000
    browser.find_element("css selector", "body").send_keys("\ue00c")  # Escape
    _wait(browser, lambda d: not d.find_element("id", "pair-view").is_displayed())
    assert _script_errors(browser) == []


def test_change_a_keeper_quarantine_and_restore(site: Site, browser: Any, tmp_path: Path) -> None:
    _open(browser, site)
    group = next(
        g
        for g in read_result(site.index).groups
        if "original_3.png" in {m.path.name for m in g.members}
    )
    old = group.keep.relative_to(site.photos)  # becomes a duplicate once another is chosen
    other = next(m.path for m in group.members if m.path != group.keep)
    chosen = site.file_id(str(other.relative_to(site.photos)))
    _tile(browser, chosen).find_element("css selector", "button.make-keeper").click()
    _wait(browser, lambda d: "keeper" in _tile(d, chosen).get_attribute("class").split())
    with open_index(site.index) as store:
        assert store.file(chosen).hash in store.keep_marks()
    assert "keeper chosen by you" in browser.page_source

    victim = site.photos / old
    content = victim.read_bytes()
    victim_id = site.file_id(str(old))
    _tile(browser, victim_id).find_element("css selector", "input.mark-quarantine").click()
    _wait(browser, lambda d: d.find_element("id", "selection-bar").is_displayed())
    assert "1 file marked" in browser.find_element("id", "selection-count").text
    browser.find_element("id", "review-quarantine").click()
    _wait(browser, lambda d: d.find_element("id", "confirm-view").is_displayed())
    assert str(victim) in browser.find_element("id", "confirm-body").text
    assert victim.exists()  # nothing moves before the confirmation
    browser.find_element("id", "confirm-quarantine").click()
    _wait(browser, lambda d: "in quarantine" in _tile(d, victim_id).text)
    assert not victim.exists()
    assert (site.quarantine / "photos" / old).read_bytes() == content
    assert browser.save_screenshot(str(tmp_path / "review-quarantined.png"))

    browser.find_element("id", "show-quarantine").click()
    restore = _wait(browser, lambda d: d.find_element("css selector", "button.restore"))
    restore.click()
    _wait(browser, lambda d: "in quarantine" not in _tile(d, victim_id).text)
    assert victim.read_bytes() == content
    assert "Restored 1 file." in browser.find_element("id", "message").text
    assert _script_errors(browser) == []


def test_a_not_duplicate_mark_is_undone_from_the_page(site: Site, browser: Any) -> None:
    _open(browser, site)
    keeper, member = site.file_id("original_2.png"), site.file_id("copies/copy_2_jpeg.jpg")

    def together(driver: Any) -> bool:
        return any(
            {str(keeper), str(member)}
            <= {f.get_attribute("data-file") for f in card.find_elements("css selector", "figure")}
            for card in driver.find_elements("css selector", "article.group")
        )

    assert together(browser)
    _tile(browser, member).find_element("css selector", "button.not-duplicate").click()
    undo = _wait(browser, lambda d: d.find_element("id", "undo-not-duplicate"))
    _wait(browser, lambda d: not together(d))
    with open_index(site.index) as store:
        assert len(store.not_duplicate_marks()) == 1
    undo.click()
    _wait(browser, lambda d: "mark is undone" in d.find_element("id", "message").text)
    _wait(browser, together)
    with open_index(site.index) as store:
        assert store.not_duplicate_marks() == set()
    assert _script_errors(browser) == []


def test_the_slider_regroups_live(site: Site, browser: Any) -> None:
    _open(browser, site)
    stored = read_result(site.index)
    before = len(browser.find_elements("css selector", "figure.member"))
    slider = browser.find_element("id", "cutoff")
    assert float(slider.get_attribute("min")) == pytest.approx(stored.review_min_similarity)
    browser.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
        slider,
        stored.review_min_similarity,
    )
    _wait(browser, lambda d: len(d.find_elements("css selector", "figure.member")) > before)
    assert f"≥ {stored.review_min_similarity:.4f}" in browser.find_element("id", "summary").text
    assert _script_errors(browser) == []


def test_the_page_sends_its_token_and_a_forged_request_is_refused(site: Site, browser: Any) -> None:
    """A script without the page's token (as another site's would be) changes nothing."""
    _open(browser, site)
    member = site.file_id("copies/copy_2_jpeg.jpg")
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/keeper', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({file: arguments[0]})}).then(r => done(r.status));",
        member,
    )
    assert status == 403
    with open_index(site.index) as store:
        assert store.keep_marks() == set()
