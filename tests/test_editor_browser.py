"""/editor in a real browser (docs/ui.md 5): an admin draws a zone on the camera's picture and
the site's config file holds it.

Debian's Chromium (tests/test_debug_browser.py's desktop, tests/handheld_browser.py's driver)
against the real API app under uvicorn on loopback, started over a real config file in tmp
(`create_app(config_path=...)`, as `lobbywatch api --config` does) and, for the backdrop, a real
frames server holding one picture (a Mall frame where the data is at hand, else a drawn one).
The admin logs in with a key (a session cookie), clicks four points on the picture, drags one,
adds and right-clicks away a fifth, names the zone and saves: the file on disk then loads with
edge.config.load_config and holds the zone at the points clicked, within a pixel. A refused
save shows the loader's message beside the zone it names, a save over someone else's is told
and offers to reload, and with snapshots off the page draws on a grey frame and says how to
turn them on, in both languages. Screenshots docs/img/editor-en.png and editor-zh.png with
LOBBYWATCH_SCREENSHOTS=docs/img.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.auth import hash_key
from edge.config import LobbyConfig, load_config
from edge.runtime.frames import serve_frames
from edge.store import Store
from edge.types import Detections, Frame
from tests.conftest import REPO_ROOT
from tests.handheld_browser import require_chromium, screenshot_dir
from tests.test_api_support import KEYS, Monotonic, write_live
from tests.test_dashboard_browser import serve
from tests.test_debug_browser import Desktop, browser_for

pytestmark = pytest.mark.browser

CONFIG = """\
# The branch's site config (a comment the editor's save must keep).
site: {{id: branch-7, name: Branch 7, timezone: Europe/Berlin}}
cameras:
  - id: hall
    name: Hall
    source: rtsp://127.0.0.1/hall
    offline_after_s: 3600
    zones:
      - {{id: waiting, name: Waiting area, role: waiting, polygon: [[0, 0.5], [0.5, 0.5], [0.5, 1], [0, 1]]}}
      - {{id: queue, name: Counter queue, role: queue, priority: 1, polygon: [[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1]]}}
    ignore:
      - {{id: plant, polygon: [[0.85, 0.05], [1, 0.05], [1, 0.3], [0.85, 0.3]], reason: plant}}
storage: {{path: "{db}", interval_s: 60}}
mqtt: {{enabled: false}}
alerts: {{language: en}}
api:
  keys: [{{id: it, role: admin, sha256: {admin}}}]
  snapshots: {{enabled: {snapshots}}}
"""

#: Where the new zone's corners are clicked, as fractions of the picture (x right, y down).
CLICKS = [(0.08, 0.08), (0.42, 0.1), (0.4, 0.42), (0.1, 0.38)]
#: Where the third corner is dragged to.
DRAGGED = (0.45, 0.46)


def put_exists(app: FastAPI) -> bool:
    paths = app.openapi()["paths"]
    return "put" in paths.get("/v1/cameras/{camera_id}/geometry", {})


def api_app(config: LobbyConfig, path: Path) -> FastAPI:
    """The API as `lobbywatch api --config path` makes it; skips, saying why, while the
    geometry PUT (docs/ui.md 5, built beside this page) is not in the app."""
    if "config_path" not in inspect.signature(create_app).parameters:
        pytest.skip("create_app(config_path=...) and PUT /v1/cameras/{id}/geometry not built yet")
    app = create_app(config, config_path=path, monotonic=Monotonic(), rollup_every_s=None)
    if not put_exists(app):
        pytest.skip("PUT /v1/cameras/{id}/geometry not built yet (docs/ui.md 5)")
    return app


def picture() -> np.ndarray:
    """A Mall frame (a real lobby, 640x480) where the data is at hand, else a drawn 16:9 one."""
    data = Path(os.environ.get("LOBBYWATCH_DATA") or REPO_ROOT.parent / "shared" / "data")
    frame = data / "mall" / "frames" / "seq_000001.jpg"
    if frame.exists():
        import cv2

        image = cv2.imread(str(frame), cv2.IMREAD_COLOR)
        if image is not None:
            return image
    image = np.full((360, 640, 3), 180, np.uint8)
    image[200:, :] = (90, 110, 130)  # a floor
    image[40:200, 80:240] = (40, 60, 160)  # a counter
    return image


def write_site(directory: Path, *, snapshots: bool) -> tuple[Path, LobbyConfig]:
    path = directory / "site.yaml"
    path.write_text(
        CONFIG.format(
            db=directory / "lw.db", admin=hash_key(KEYS["admin"]), snapshots=str(snapshots).lower()
        )
    )
    return path, load_config(path, environ={})


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path, tuple[int, int]]]:
    """Snapshots on: the API over tmp/site.yaml and the frames server holding one picture of
    the hall; the waiting zone's live count 3, the queue's unknown. Yields the base URL, the
    config file and the picture's (width, height)."""
    require_chromium()
    path, config = write_site(tmp_path, snapshots=True)
    now = datetime.now(timezone.utc)
    with Store(config.storage.path, site_id=config.site.id) as store:
        write_live(store, now, {"waiting": 3.0, "queue": None}, camera_id="hall")
    app = api_app(config, path)
    holder, server = serve_frames(config)
    assert holder is not None and server is not None
    image = picture()
    holder.offer(Frame("hall", 0, image, now, 0.0), Detections(), [])
    try:
        with serve(app, config) as base:
            yield base, path, (image.shape[1], image.shape[0])
    finally:
        server.stop()


@pytest.fixture
def site_without_snapshots(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    require_chromium()
    path, config = write_site(tmp_path, snapshots=False)
    app = api_app(config, path)
    with serve(app, config) as base:
        yield base, path


@pytest.fixture
def admin(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory: a desktop Chromium logged in as the admin at a base URL (quit at the end)."""
    browsers: list[Desktop] = []

    def open_editor(base: str) -> Desktop:
        browser = browser_for(base, KEYS["admin"])
        browser.driver.set_window_size(1280, 900)
        browsers.append(browser)
        browser.open("/editor")
        browser.wait(lambda: browser.js("return document.documentElement.dataset.ready"), 20,
                     "the editor loaded")  # fmt: skip
        return browser

    yield open_editor
    for browser in browsers:
        browser.quit()


def frame_rect(browser: Desktop) -> dict[str, float]:
    """The picture's box on screen, CSS pixels of the viewport."""
    return dict(
        browser.js(
            "const f = document.getElementById('frame'); f.scrollIntoView({block: 'nearest'});"
            "const r = f.getBoundingClientRect();"
            "return {left: r.left, top: r.top, width: r.width, height: r.height};"
        )
    )


def at(rect: dict[str, float], fx: float, fy: float) -> tuple[int, int]:
    """The viewport pixel nearest to fraction (fx, fy) of the picture."""
    return round(rect["left"] + fx * rect["width"]), round(rect["top"] + fy * rect["height"])


def pointer(browser: Desktop) -> Any:
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    return ActionBuilder(browser.driver)


def click(browser: Desktop, xy: tuple[int, int], *, right: bool = False) -> None:
    from selenium.webdriver.common.actions.mouse_button import MouseButton

    actions = pointer(browser)
    actions.pointer_action.move_to_location(*xy)
    if right:
        actions.pointer_action.click(button=MouseButton.RIGHT)
    else:
        actions.pointer_action.click()
    actions.perform()


def drag(browser: Desktop, start: tuple[int, int], end: tuple[int, int]) -> None:
    actions = pointer(browser)
    middle = ((start[0] + end[0]) // 2, (start[1] + end[1]) // 2)
    actions.pointer_action.move_to_location(*start).pointer_down()
    actions.pointer_action.move_to_location(*middle).move_to_location(*end).pointer_up()
    actions.perform()


def type_into(browser: Desktop, selector: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    field = browser.driver.find_element(By.CSS_SELECTOR, selector)
    field.clear()
    field.send_keys(text)


def pick(browser: Desktop, selector: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(browser.driver.find_element(By.CSS_SELECTOR, selector)).select_by_value(value)


def new_zone_card(browser: Desktop) -> str:
    index = browser.js("return document.querySelectorAll('#zones .shape').length") - 1
    return f'#zones .shape[data-index="{index}"]'


def counts(browser: Desktop) -> dict[str, str]:
    return dict(
        browser.js(
            "return Object.fromEntries([...document.querySelectorAll('.count[data-zone]')]"
            ".map(s => [s.dataset.zone, s.dataset.state]))"
        )
    )


def saved(browser: Desktop, n: int) -> bool:
    return browser.js("return document.documentElement.dataset.saved") == str(n)


def test_an_admin_draws_a_zone_on_the_picture_and_the_config_file_holds_it(site, admin, tmp_path):
    base, path, (width, _) = site
    before = path.read_bytes()
    shots = screenshot_dir(tmp_path / "shots")
    browser = admin(base)
    href = browser.js("return document.querySelector('#frame image').getAttribute('href')")
    assert href.startswith("blob:")  # the JPEG, fetched with the session cookie
    assert browser.js("return document.getElementById('frame').viewBox.baseVal.width") == width
    assert browser.js("return document.querySelectorAll('#frame polygon.zone').length") == 2
    assert browser.js("return document.querySelectorAll('#frame polygon.mask').length") == 1
    browser.wait(lambda: counts(browser) == {"waiting": "known", "queue": "unknown"}, 10,
                 "the live counts")  # fmt: skip
    assert "3" in browser.text('.count[data-zone="waiting"]')
    assert "unknown" in browser.text('.count[data-zone="queue"]')

    browser.tap("#new-zone")
    card = new_zone_card(browser)
    rect = frame_rect(browser)
    for fx, fy in CLICKS:
        click(browser, at(rect, fx, fy))
    click(browser, at(rect, 0.25, 0.25))  # a fifth point, then taken away again
    assert browser.js("return document.querySelectorAll('#frame .handle').length") == 5
    click(browser, at(rect, 0.25, 0.25), right=True)
    assert browser.js("return document.querySelectorAll('#frame .handle').length") == 4
    drag(browser, at(rect, *CLICKS[2]), at(rect, *DRAGGED))
    type_into(browser, f"{card} .field-id", "teller")
    type_into(browser, f"{card} .field-name", "Teller line")
    pick(browser, f"{card} .field-role", "queue")
    type_into(browser, f"{card} .field-priority", "2")
    assert browser.js("return document.getElementById('dirty').dataset.dirty") == "1"
    browser.tap("#save")
    browser.wait(lambda: saved(browser, 1), 20, "the save answered")

    assert browser.js("return document.getElementById('result').dataset.kind") == "saved"
    assert "saved; the service takes it up in a few seconds" in browser.text("#result").lower()
    assert browser.js("return document.getElementById('dirty').dataset.dirty") == "0"
    config = load_config(path, environ={})  # the file on disk validates
    (camera,) = config.cameras
    zones = {z.id: z for z in camera.zones}
    assert set(zones) == {"waiting", "queue", "teller"}
    teller = zones["teller"]
    assert (teller.name, teller.role, teller.priority) == ("Teller line", "queue", 2)
    wanted = [CLICKS[0], CLICKS[1], DRAGGED, CLICKS[3]]
    assert len(teller.polygon) == 4
    for (x, y), (wx, wy) in zip(teller.polygon, wanted, strict=True):  # within a pixel
        assert abs(x - wx) <= 1 / rect["width"] and abs(y - wy) <= 1 / rect["height"], (x, y)
    assert zones["queue"].priority == 1 and [m.id for m in camera.ignore] == ["plant"]
    assert path.read_bytes() != before and "# The branch's site config" in path.read_text()
    # The page shows the saved zone as the server answered it: drawn, and counted from now on
    # (unknown until the service's new config has counted it, never "not saved yet").
    assert browser.js(
        "return document.querySelector('#frame polygon[data-zone=\"teller\"]') !== null"
    )
    browser.wait(lambda: counts(browser).get("teller") == "unknown", 10, "the new zone's count")

    browser.tap(f"{card} .pick")  # its points shown, for the picture
    height = browser.js("return document.documentElement.scrollHeight")
    browser.driver.set_window_size(1280, min(int(height) + 140, 1300))
    browser.screenshot(shots / "editor-en.png")
    browser.tap("#lang")
    assert browser.text("h1") == "区域编辑"
    assert browser.text("#result").startswith("已保存")
    assert "未知" in browser.text('.count[data-zone="queue"]')
    browser.screenshot(shots / "editor-zh.png")
    assert not [m for m in browser.console() if "SEVERE" in m]


def test_a_refused_save_names_the_zone_and_a_save_over_another_is_told(
    site_without_snapshots, admin
):
    base, path = site_without_snapshots
    browser = admin(base)
    # Snapshots off: a grey frame, and how to turn them on, in both languages.
    assert browser.js("return document.querySelector('#frame image')") is None
    assert browser.js("return document.querySelector('#frame rect.grey') !== null")
    assert "api.snapshots.enabled: true" in browser.text("#backdrop-note")
    browser.tap("#lang")
    assert "api.snapshots.enabled: true" in browser.text("#backdrop-note")
    assert "快照" in browser.text("#backdrop-note")
    browser.tap("#lang")

    # A zone of two points: the loader refuses the file; its message stands by that zone.
    before = path.read_bytes()
    browser.tap("#new-zone")
    card = new_zone_card(browser)
    rect = frame_rect(browser)
    for fx, fy in CLICKS[:2]:
        click(browser, at(rect, fx, fy))
    browser.tap("#save")
    browser.wait(lambda: browser.js("return document.getElementById('result').dataset.kind")
                 == "invalid", 20, "the refusal")  # fmt: skip
    assert path.read_bytes() == before  # nothing written
    errors = browser.js(
        f"return [...document.querySelectorAll('{card} .field-error')].map(e => e.textContent)"
    )
    assert errors and any("polygon" in e for e in errors), errors

    # Someone else saves meanwhile: the page says so, writes nothing, and offers their version.
    click(browser, at(rect, 0.3, 0.4))
    other = path.read_text().replace("Counter queue", "Counter queue (edited)")
    path.write_text(other)
    browser.tap("#save")
    browser.wait(lambda: browser.js("return document.getElementById('result').dataset.kind")
                 == "conflict", 20, "the conflict")  # fmt: skip
    assert "someone else saved" in browser.text("#result")
    assert path.read_text() == other
    browser.tap("#reload-theirs")  # the file as it is now: the unsaved zone gone, saving works
    browser.wait(lambda: browser.js("return document.querySelectorAll('#zones .shape').length")
                 == 2, 20, "their version loaded")  # fmt: skip
    assert browser.js("return document.getElementById('result').hidden") is True
    theirs = '#zones .shape[data-index="1"] .field-name'
    assert (
        browser.js(f"return document.querySelector('{theirs}').value") == "Counter queue (edited)"
    )
    browser.tap('#zones .shape[data-index="0"] .pick')
    type_into(browser, '#zones .shape[data-index="0"] .field-name', "Seats")
    browser.tap("#save")
    browser.wait(lambda: saved(browser, 1), 20, "the save over their version")
    names = {z.id: z.name for z in load_config(path, environ={}).cameras[0].zones}
    assert names == {"waiting": "Seats", "queue": "Counter queue (edited)"}  # theirs kept
