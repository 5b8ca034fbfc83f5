"""Issue 15 end to end: a real browser against the real service replaying frames.

Debian's Chromium (tests/test_debug_browser.py's desktop) against a real Service (frames replayed
from a file source, the stand-in detector TwoPeopleLeft: feet at x 0.15 and 0.35, a real
Mosquitto, the API child it starts from the config file, snapshots on). An admin logs in at
/login, the dashboard shows the counts GET /v1/occupancy reports; on /editor the admin draws a
zone `door` over the left quarter of the camera's picture, above `left`, and saves: the file
validates, the service takes it up in process (its API child restarted) and the person at
x 0.15 counts in `door`. The pieces are tested alone in tests/test_dashboard_browser.py,
tests/test_editor_browser.py and tests/test_config_reload.py; this test joins them.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from edge.config import load_config
from edge.service import Service
from tests.handheld_browser import require_chromium
from tests.test_api_support import KEYS
from tests.test_config_reload import SITE, Site
from tests.test_debug_browser import Desktop
from tests.test_editor_browser import at, click, frame_rect, new_zone_card, saved, type_into
from tests.test_service import TwoPeopleLeft
from tests.test_snapshots_service import Running
from tests.waiting import wait_for

pytestmark = pytest.mark.browser

#: The door zone's corners, clicked as fractions of the picture: the left quarter, the person
#: whose feet are at (0.15, 0.9) inside it, the one at (0.35, 0.8) outside.
DOOR = [(0.01, 0.01), (0.25, 0.01), (0.25, 0.99), (0.01, 0.99)]


class SnapshotSite(Site):
    """tests/test_config_reload.py's site with snapshots on (the editor's backdrop)."""

    def write(self, zones: str, alerts: str = "") -> None:
        temp = self.path.with_name(".lobbywatch.yaml.tmp")
        text = SITE + "  snapshots: {{enabled: true}}\n"
        temp.write_text(text.format(zones=zones, alerts=alerts, **self.values))
        os.replace(temp, self.path)


def occupancy(base: str) -> dict[str, float | None] | None:
    """GET /v1/occupancy as the admin: count by zone, or None while the API is not answering
    (starting, or restarted by a reload)."""
    headers = {"Authorization": f"Bearer {KEYS['admin']}"}
    try:
        response = httpx.get(f"{base}/v1/occupancy", headers=headers, timeout=2)
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    return {z["zone_id"]: z["count"] for z in response.json()["zones"]}


def shown_counts(browser: Desktop) -> dict[str, tuple[float | None, str]]:
    """The dashboard's zones: (count from data-count, the text shown), as
    tests/test_dashboard_browser.py reads them."""
    shown = browser.js(
        "return Object.fromEntries([...document.querySelectorAll('.zone')].map("
        "e => [e.dataset.zoneId, [e.dataset.count, e.querySelector('.count').textContent]]))"
    )
    return {
        zone: (None if data == "unknown" else float(data), text)
        for zone, (data, text) in shown.items()
    }


def test_the_dashboard_shows_the_apis_counts_and_a_drawn_zone_counts_once_saved(
    tmp_path: Path, broker
):
    require_chromium()
    site = SnapshotSite(tmp_path, broker.port, api=True)
    config = site.config()
    assert config.api.snapshots.enabled
    service = Service(config, config_path=site.path, detector_factory=TwoPeopleLeft,
                      config_loader=load_config)  # fmt: skip
    base = site.api_base
    with Running(service):
        wait_for(lambda: (occupancy(base) or {}).get("left") == 2.0, 60, "two on the left")
        browser = Desktop(base, name="admin")
        try:
            browser.driver.set_window_size(1280, 900)
            browser.open("/login?next=/dashboard")
            browser.wait(lambda: browser.text("#login-form label"), 10, "the login page")
            browser.driver.find_element("css selector", "#key").send_keys(KEYS["admin"])
            browser.tap("#submit")
            browser.wait(
                lambda: browser.js("return location.pathname === '/dashboard' && "
                                   "document.documentElement.dataset.ready === '1'"),
                20, "the dashboard loaded",
            )  # fmt: skip

            # The lobby now: the page says what the API says.
            api_counts = occupancy(base)
            assert api_counts == {"left": 2.0, "right": 0.0}
            assert shown_counts(browser) == {
                zone: (count, "unknown" if count is None else f"{count:g}")
                for zone, count in api_counts.items()
            }

            # The editor: the door drawn over the left quarter, above `left`, saved.
            browser.open("/editor")
            browser.wait(lambda: browser.js("return document.documentElement.dataset.ready"),
                         20, "the editor loaded")  # fmt: skip
            href = browser.wait(
                lambda: browser.js(
                    "return document.querySelector('#frame image')?.getAttribute('href')"
                ),
                20, "the camera's picture",
            )  # fmt: skip
            assert href.startswith("blob:")  # the service's frame, not a grey stand-in
            browser.tap("#new-zone")
            card = new_zone_card(browser)
            rect = frame_rect(browser)
            for fx, fy in DOOR:
                click(browser, at(rect, fx, fy))
            type_into(browser, f"{card} .field-id", "door")
            type_into(browser, f"{card} .field-priority", "1")
            browser.tap("#save")
            browser.wait(lambda: saved(browser, 1), 20, "the save answered")
            assert browser.js("return document.getElementById('result').dataset.kind") == "saved"
        finally:
            browser.quit()

        zones = {z.id: z for z in load_config(site.path, environ={}).cameras[0].zones}
        assert set(zones) == {"left", "right", "door"}
        door = zones["door"]
        assert door.priority == 1 > zones["left"].priority
        xs = [x for x, _ in door.polygon]
        assert min(xs) < 0.15 < max(xs) <= 0.26  # the person at 0.15 in, the one at 0.35 out

        # Taken up in process: the restarted API child reports the door's person.
        after = {"left": 1.0, "right": 0.0, "door": 1.0}
        wait_for(lambda: occupancy(base) == after, 60, "door counted, left down to 1")
