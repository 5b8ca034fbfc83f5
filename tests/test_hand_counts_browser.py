"""/debug's "Count heads" in a real browser (docs/ui.md 6): an admin clicks heads on a real Mall
frame, sees them counted per zone, undoes one, saves, and the saved hand count is listed (and
kept in the store with that frame's boxes, no image); deleting it empties the list.

Debian's Chromium against the real API under uvicorn and a real frames server holding a Mall
frame as the real detector and pipeline found it (tests/test_debug_browser.py's site).
Screenshot: docs/img/debug-hand-counts.png with LOBBYWATCH_SCREENSHOTS=docs/img.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.handheld_browser import Phone, screenshot_dir
from tests.test_api_support import KEYS
from tests.test_debug_browser import browser_for, site  # noqa: F401 (the fixture)

pytestmark = pytest.mark.browser

#: Three real heads of the frame (the Mall's ground truth, normalized): two in the waiting zone
#: (left half, below 0.3), one in the queue (right half, 0.3-0.75).
CLICKS = [(0.231, 0.403), (0.329, 0.464), (0.569, 0.527)]


def click(browser: Phone, x: float, y: float) -> None:
    """A real mouse click at (x, y) of the frame (normalized), at the point of the viewport
    where the SVG draws it (its own transform, so any scaling of the image is the page's)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    px, py = browser.js(
        "const svg = document.getElementById('frame');"
        "svg.scrollIntoView({block: 'center'});"
        "const [w, h] = [svg.viewBox.baseVal.width, svg.viewBox.baseVal.height];"
        "const p = new DOMPoint(arguments[0] * w, arguments[1] * h)"
        "  .matrixTransform(svg.getScreenCTM());"
        "return [p.x, p.y];",
        x, y,
    )  # fmt: skip
    actions = ActionBuilder(browser.driver)
    actions.pointer_action.move_to_location(round(px), round(py)).click()
    actions.perform()


def listed(browser: Phone) -> list[str]:
    return list(browser.js("return [...document.querySelectorAll('#hand-counts tbody tr')]"
                           ".map(r => r.dataset.id)"))  # fmt: skip


def stored(base: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {KEYS['admin']}"}
    answer = httpx.get(f"{base}/v1/cameras/hall/hand-counts", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["hand_counts"])


def test_an_admin_clicks_heads_sees_them_per_zone_saves_and_the_list_shows_it(
    site,  # noqa: F811
    tmp_path,
    data_dir,
):
    base, _ = site
    shots = screenshot_dir(tmp_path / "shots")
    browser = browser_for(base, KEYS["admin"])
    try:
        browser.open("/debug")
        browser.wait(lambda: browser.js("return document.documentElement.dataset.seq"), 20,
                     "the frame drawn")  # fmt: skip
        seq = int(browser.js("return document.documentElement.dataset.seq"))
        browser.tap("#count")
        browser.wait(lambda: browser.text("#saved-summary"), 20, "the list of hand counts")
        assert "No hand counts" in browser.text("#saved-summary")

        for x, y in CLICKS:
            click(browser, x, y)
        assert browser.js("return document.querySelectorAll('#frame .head-mark').length") == 3
        assert browser.text("#heads") == "3 heads clicked · waiting 2 · queue 1"
        browser.tap("#undo")
        assert browser.text("#heads") == "2 heads clicked · waiting 2 · queue 0"
        click(browser, *CLICKS[2])
        assert browser.text("#heads") == "3 heads clicked · waiting 2 · queue 1"

        browser.tap("#save")
        browser.wait(lambda: listed(browser), 20, "the saved hand count listed")
        (saved,) = stored(base)
        assert listed(browser) == [str(saved["id"])]
        assert saved["seq"] == seq and saved["heads_per_zone"] == {"waiting": 2, "queue": 1}
        for (x, y), (sx, sy) in zip(CLICKS, saved["heads"], strict=True):
            assert abs(sx - x) < 0.01 and abs(sy - y) < 0.01  # where the mouse was
        assert f"Saved as hand count {saved['id']}" in browser.text("#count-message")
        assert "1 kept for this camera" in browser.text("#saved-summary")
        assert "--from-store --camera hall" in browser.text("#saved-summary")
        row = browser.text("#hand-counts tbody tr")
        assert "waiting 2 / " in row and "queue 1 / " in row and "it" in row
        assert browser.js("return document.querySelectorAll('#frame .head-mark').length") == 0

        truth = json.loads((data_dir / "mall" / "gt_heads.json").read_text())["seq_000001.jpg"]
        for x, y in truth["heads_xy"]:  # every head of the frame, for the picture
            click(browser, x / 640, y / 480)
        assert browser.text("#heads").startswith(f"{truth['count']} heads clicked · waiting ")
        height = browser.js("return document.documentElement.scrollHeight")
        browser.driver.set_window_size(1100, min(int(height) + 140, 1500))
        browser.screenshot(shots / "debug-hand-counts.png")

        browser.tap("#lang")
        assert browser.text("#heads").startswith(f"已点击 {truth['count']} 个人头 · waiting ")
        assert "已保存 1 条" in browser.text("#saved-summary")

        browser.tap("#hand-counts tbody tr button.delete")
        browser.wait(lambda: not listed(browser), 20, "the list emptied")
        assert stored(base) == []
        assert not [m for m in browser.console() if "SEVERE" in m]
    finally:
        browser.quit()
