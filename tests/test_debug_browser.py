"""/debug in a real browser (docs/ui.md 3): what the detector sees, drawn for an admin.

Debian's Chromium (tests/handheld_browser.py's driver, as a desktop) against the real API app
under uvicorn on loopback, and a real frames server holding a real Mall frame with the boxes the
real detector and pipeline found in it (scene rules on: some are ruled out). The admin logs in
with a key (a session cookie), sees every box drawn, counted ones apart from the others with
their reason, the zones and the ignore mask; Refresh brings the next frame; the page switches
to Chinese; a viewer is told the page is for admins. Screenshot: docs/img/debug-view.png with
LOBBYWATCH_SCREENSHOTS=docs/img.
"""

from __future__ import annotations

from datetime import datetime, timezone

import cv2
import httpx
import pytest

from api.auth import hash_key
from edge.config import parse_config
from edge.pipeline import CameraPipeline, build_detector
from edge.runtime.frames import serve_frames
from edge.types import Frame
from tests.handheld_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    Phone,
    require_chromium,
    screenshot_dir,
)
from tests.test_api_support import KEYS, served

pytestmark = pytest.mark.browser

CONFIG = """\
site: {{id: branch-7, name: Branch 7, timezone: Europe/Berlin}}
detector: {{model: yolox_nano, confidence: 0.2, threads: 1, tiling: {{enabled: false}}, fusion: {{models: []}}}}
cameras:
  - id: hall
    name: Hall
    source: rtsp://127.0.0.1/hall
    gating: {{enabled: false}}
    zones:
      - {{id: waiting, name: Waiting area, role: waiting, polygon: [[0, 0.3], [0.5, 0.3], [0.5, 1], [0, 1]]}}
      - {{id: queue, name: Counter queue, role: queue, polygon: [[0.5, 0.3], [1, 0.3], [1, 0.75], [0.5, 0.75]]}}
    ignore:
      - {{id: plant, polygon: [[0.75, 0.75], [1, 0.75], [1, 1], [0.75, 1]], reason: plant and poster}}
storage: {{path: "{db}", interval_s: 60}}
mqtt: {{enabled: false}}
alerts: {{language: en}}
api:
  keys: [{{id: it, role: admin, sha256: {admin}}}, {{id: supervisor, role: viewer, sha256: {viewer}}}]
  snapshots: {{enabled: true}}
"""


@pytest.fixture
def site(tmp_path, data_dir, models_dir, monkeypatch):
    """The API and a frames server holding Mall frame 1 as the pipeline counted it."""
    require_chromium()
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    frames = data_dir / "mall" / "frames"
    if not frames.exists():
        pytest.skip(f"Mall frames not found at {frames}")
    text = CONFIG.format(
        db=tmp_path / "lw.db", admin=hash_key(KEYS["admin"]), viewer=hash_key(KEYS["viewer"])
    )
    config = parse_config(text, base_dir=tmp_path, environ={})
    pipeline = CameraPipeline(config.cameras[0], build_detector(config.detector), config.occupancy)
    holder, server = serve_frames(config)
    assert holder is not None and server is not None

    def offer(index: int) -> int:
        image = cv2.imread(str(frames / f"seq_{index + 1:06d}.jpg"), cv2.IMREAD_COLOR)
        frame = Frame("hall", index, image, datetime.now(timezone.utc), float(index))
        result = pipeline.process(frame, float(index))
        held = holder.offer(frame, result.detections, result.zone_of, result.dropped,
                            result.rejected, result.rejected_why)  # fmt: skip
        return len(held.boxes)

    offer(0)
    try:
        with served(config) as base:
            yield base, offer
    finally:
        server.stop()


class Desktop(Phone):
    """tests/handheld_browser.py's browser, as an IT desk's screen rather than a phone."""

    def __init__(self, base_url: str, *, name: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--no-first-run", "--window-size=1100,1000"):  # fmt: skip
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.name, self.base_url = name, base_url
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def browser_for(base: str, key: str) -> Desktop:
    """A desktop Chromium logged in with `key` (a session cookie, as the login page gets)."""
    browser = Desktop(base, name="admin")
    browser.open("/debug/debug.css")  # any page of the site, to log in from
    status = browser.driver.execute_async_script(
        "fetch('/v1/session', {method: 'POST', credentials: 'same-origin', headers: "
        "{'Content-Type': 'application/json', 'X-Lobbywatch-App': '1'}, "
        "body: JSON.stringify({key: arguments[0]})}).then(r => arguments[1](r.status));",
        key,
    )
    assert status == 200
    return browser


def detections(base: str) -> dict:
    headers = {"Authorization": f"Bearer {KEYS['admin']}"}
    return httpx.get(f"{base}/v1/cameras/hall/detections", headers=headers, timeout=10).json()


def drawn(browser: Phone) -> list[dict]:
    return list(
        browser.js(
            "return [...document.querySelectorAll('#frame g.detection')].map(g => ({"
            " counted: g.classList.contains('counted'), zone: g.dataset.zone || null,"
            " reason: g.dataset.reason || null, colour: getComputedStyle("
            "  g.querySelector('rect')).stroke, label: g.querySelector('text').textContent}))"
        )
    )


WHY = {
    "ignored": "in an ignore mask",
    "scene": "ruled out by the scene",
    "no zone": "outside every zone",
}


def table(browser: Phone) -> list[str]:
    """The box table's last column: "yes", or why the box does not count."""
    return list(browser.js("return [...document.querySelectorAll('#boxes tbody tr')]"
                           ".map(r => r.lastChild.textContent)"))  # fmt: skip


def test_an_admin_sees_every_box_counted_or_why_not_over_the_zones_and_masks(site, tmp_path):
    base, offer = site
    shots = screenshot_dir(tmp_path / "shots")
    browser = browser_for(base, KEYS["admin"])
    try:
        browser.open("/debug")
        browser.wait(lambda: browser.js("return document.documentElement.dataset.seq"), 20,
                     "the frame drawn")  # fmt: skip
        seq = int(browser.js("return document.documentElement.dataset.seq"))
        served_boxes = detections(base)["boxes"]
        assert detections(base)["seq"] == seq
        boxes = drawn(browser)
        assert [(b["counted"], b["zone"], b["reason"]) for b in boxes] == [
            (b["counted"], b["zone"], b["reason"]) for b in served_boxes
        ]
        assert len(boxes) >= 10 and any(b["counted"] for b in boxes)
        not_counted = [b for b in boxes if not b["counted"]]
        assert not_counted, "the frame has boxes that do not count (masks, scene, outside)"
        assert {b["colour"] for b in boxes if b["counted"]} != {b["colour"] for b in not_counted}
        assert len({b["colour"] for b in boxes if b["counted"]}) == 1
        for box, shown in zip(boxes, table(browser), strict=True):  # each one said in words
            assert shown == ("yes" if box["counted"] else WHY[box["reason"]]) or (
                box["reason"] == "scene" and shown.startswith(WHY["scene"] + ": ")
            )
            mark = box["zone"] if box["counted"] else "✕"
            assert mark in box["label"]
        assert browser.js("return document.querySelectorAll('#frame polygon.zone').length") == 2
        assert browser.js("return document.querySelectorAll('#frame polygon.mask').length") == 1
        href = browser.js("return document.querySelector('#frame image').getAttribute('href')")
        assert href.startswith("blob:")  # the JPEG, fetched with the page's cookie
        assert browser.js("return document.getElementById('frame').getBBox().width") > 500
        height = browser.js("return document.documentElement.scrollHeight")
        browser.driver.set_window_size(1100, min(int(height) + 140, 1150))
        browser.screenshot(shots / "debug-view.png")

        offer(1)  # the camera moves on: Refresh shows the next frame and its boxes
        browser.tap("#refresh")
        browser.wait(lambda: browser.js("return document.documentElement.dataset.seq") == str(seq + 1),
                     20, "the next frame")  # fmt: skip
        assert len(drawn(browser)) == len(detections(base)["boxes"])

        browser.tap("#lang")
        assert browser.text("h1") == "检测器所见"
        assert "计入" in browser.text("#status")
        assert not [m for m in browser.console() if "SEVERE" in m]
    finally:
        browser.quit()


def test_a_viewer_is_told_the_page_is_for_admins_and_sees_no_frame(site):
    base, _ = site
    browser = browser_for(base, KEYS["viewer"])
    try:
        browser.open("/debug")
        browser.wait(lambda: browser.text("#message"), 20, "the refusal")
        assert "Only admins" in browser.text("#message")
        assert browser.js("return document.querySelector('#frame image')") is None
        assert browser.js("return document.getElementById('view').hidden") is True
    finally:
        browser.quit()
