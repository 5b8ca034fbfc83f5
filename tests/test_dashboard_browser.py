"""The supervisor's dashboard in a real browser (docs/ui.md 2, issue #15's browser test).

Debian's Chromium (tests/handheld_browser.py's driver) against the real API app under uvicorn
on loopback, over a store the real `Store` wrote: eight past same weekdays and today of history,
the live counts of one camera (the other never reported: its zone is unknown, not 0), two
alerts, one accepted and its pass done with its effect measured. A supervisor logs in with a
key, sees the counts the API reports, downloads a CSV, switches to Chinese and logs out.
Screenshots: docs/img/ with LOBBYWATCH_SCREENSHOTS=docs/img.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.auth import hash_key
from api.server import uvicorn_options
from edge.config import LobbyConfig, parse_config
from edge.store import Store
from tests.handheld_browser import Phone, Tls, require_chromium, screenshot_dir
from tests.mqtt_broker import free_port
from tests.test_api_support import Monotonic, insert_alert, write_history, write_live
from tests.waiting import wait_for

pytestmark = pytest.mark.browser

KEY = "supervisor-key-0123456789abcdef"
TZ = ZoneInfo("Europe/Berlin")
CONFIG = """\
site: {{id: branch-7, name: Branch 7 Mitte, timezone: Europe/Berlin}}
cameras:
  - id: lobby
    name: Lobby
    source: rtsp://127.0.0.1/lobby
    offline_after_s: 3600
    zones:
      - {{id: waiting, name: Waiting area, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1]]}}
      - {{id: queue, name: Counter queue, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1]]}}
  - id: door
    name: Door
    source: rtsp://127.0.0.1/door
    zones:
      - {{id: entrance, name: Entrance, role: entrance, polygon: [[0, 0], [1, 0], [1, 1]]}}
storage: {{path: "{db}", interval_s: 60}}
mqtt: {{enabled: false}}
alerts: {{language: en}}
api:
  keys: [{{id: supervisor, role: viewer, sha256: {sha}}}]
"""


def lobby(minute_of_day: float, scale: float = 1.0) -> float:
    """A branch's day: shut before 08:00 and after 18:00, a peak late morning and mid
    afternoon (people, mean of a minute)."""
    hour = minute_of_day / 60
    if not 8 <= hour < 18:
        return 0.0
    return scale * (2 + 7 * math.exp(-((hour - 11) ** 2) / 2) + 5 * math.exp(-((hour - 15) ** 2)))


def seed(store: Store, now: datetime) -> None:
    """Every day of the last two weeks and the 8 same weekdays before today (weekends
    quieter), and today up to now, as the pipeline writes them: one interval a minute."""
    today = now.astimezone(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    past = sorted({*range(1, 15), *(7 * w for w in range(1, 9))})
    for days_before in past:
        day = (today.replace(tzinfo=None) - timedelta(days=days_before)).replace(tzinfo=TZ)
        scale = (0.8 + 0.03 * days_before % 0.4) * (0.3 if day.weekday() >= 5 else 1.0)
        for zone, share in (("waiting", 1.0), ("queue", 0.5)):
            means = [round(lobby(m, scale) * share, 1) for m in range(1440)]
            write_history(store, zone, day, means, interval_s=60)
    minutes_so_far = int((now - today).total_seconds() // 60)
    for zone, share in (("waiting", 1.0), ("queue", 0.5)):
        means = [round(lobby(m, 1.3) * share, 1) for m in range(minutes_so_far)]
        write_history(store, zone, today, means, interval_s=60)
    write_live(store, now, {"waiting": 6.0, "queue": 3.4})  # the door camera never reported
    insert_alert(store, "a1", now - timedelta(hours=3))
    store.apply_ack("a1", "mgr-1", "accepted", now - timedelta(hours=3) + timedelta(seconds=95))
    store.apply_ack("a1", "mgr-1", "pass_done", now - timedelta(hours=3, minutes=-4), wait_s=600)
    store.record_effect("a1", 4.0, now - timedelta(hours=2, minutes=46), wait_s=300)
    insert_alert(store, "a2", now - timedelta(minutes=50))
    store.apply_ack("a2", "王经理", "accepted", now - timedelta(minutes=50) + timedelta(seconds=40))


@contextmanager
def serve(app: FastAPI, config: LobbyConfig) -> Iterator[str]:
    """The app under uvicorn with `lobbywatch api`'s options on a free loopback port, in a
    thread (tests/test_api_support.served, with the app made here: its clock is the test's)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(config, "127.0.0.1", port)))
    app.state.stopping = lambda: server.should_exit
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 10, "uvicorn started")
        assert thread.is_alive(), "uvicorn stopped at start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def site(tmp_path):
    """The site served at 14:30 in Berlin today, its store written as of then (the device's
    clock, which the page reads the site's today from, not the browser's)."""
    require_chromium()
    text = CONFIG.format(db=tmp_path / "lw.db", sha=hash_key(KEY))
    config = parse_config(text, base_dir=tmp_path, environ={})
    now = datetime.now(TZ).replace(hour=14, minute=30, second=0, microsecond=0)
    now = now.astimezone(timezone.utc)
    app = create_app(config, clock=lambda: now, monotonic=Monotonic(), rollup_every_s=None)
    seed(app.state.lobbywatch.store.store(), now)
    with serve(app, config) as base:
        yield base


@pytest.fixture
def supervisor(site):
    browser = Phone(site, Tls(Path(), Path(), Path(), ""), name="supervisor")
    # A supervisor's desktop browser, not the phone the handheld fixture emulates.
    browser.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
    yield browser
    browser.quit()


def api(base: str, path: str) -> httpx.Response:
    response = httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    response.raise_for_status()
    return response


def fetch_in_page(browser: Phone, href: str) -> dict[str, object]:
    """GET `href` from the page, as its download link does, with the page's cookie."""
    return dict(
        browser.driver.execute_async_script(
            "const done = arguments[1];"
            "fetch(arguments[0]).then(async r => done({status: r.status,"
            " type: r.headers.get('content-type'),"
            " bom: new Uint8Array(await r.clone().arrayBuffer()).slice(0, 3).join(','),"
            " text: await r.text()}));",
            href,
        )
    )


def full_page_shot(browser: Phone, path: Path) -> None:
    height = browser.js("return document.documentElement.scrollHeight")
    browser.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
    )
    browser.screenshot(path)


def test_a_supervisor_logs_in_sees_the_apis_counts_downloads_a_csv_and_logs_out(
    site, supervisor, tmp_path
):
    shots = screenshot_dir(tmp_path / "shots")
    supervisor.open("/dashboard")
    supervisor.wait(
        lambda: supervisor.js("return location.pathname + location.search")
        == "/login?next=/dashboard",
        10, "sent to log in",
    )  # fmt: skip
    supervisor.wait(lambda: supervisor.text("#login-form label"), 10, "the login page")
    supervisor.driver.find_element("css selector", "#key").send_keys(KEY)
    supervisor.tap("#submit")
    supervisor.wait(
        lambda: supervisor.js("return location.pathname === '/dashboard' && "
                              "document.documentElement.dataset.ready === '1'"),
        20, "the dashboard loaded",
    )  # fmt: skip

    # The lobby now: the DOM says what GET /v1/occupancy says, unknown as unknown.
    occupancy = api(site, "/v1/occupancy").json()
    shown = supervisor.js(
        "return Object.fromEntries([...document.querySelectorAll('.zone')].map("
        "e => [e.dataset.zoneId, [e.dataset.count, e.querySelector('.count').textContent]]))"
    )
    api_counts = {z["zone_id"]: z["count"] for z in occupancy["zones"]}
    assert api_counts == {"waiting": 6.0, "queue": 3.4, "entrance": None}
    assert {
        zone: (None if data == "unknown" else float(data), text)
        for zone, (data, text) in shown.items()
    } == {
        zone: (count, "unknown" if count is None else f"{count:g}")
        for zone, count in api_counts.items()
    }
    cameras = supervisor.js(
        "return Object.fromEntries([...document.querySelectorAll('#cameras li')].map("
        "e => [e.dataset.cameraId, e.dataset.status]))"
    )
    health = {c["camera_id"]: c["status"] for c in httpx.get(f"{site}/v1/health").json()["cameras"]}
    assert cameras == health == {"lobby": "online", "door": "unknown"}

    # Alerts with the time to accept and the pass's measured effect.
    assert supervisor.text('[data-alert-id="a1"] [data-role="to-ack"]') == "1:35"
    assert supervisor.text('[data-alert-id="a1"] [data-role="effect"]') == "2 fewer"
    assert supervisor.text('[data-alert-id="a2"] [data-role="effect"]') == "\u2013"  # none measured
    # Today's line and the usual day's are drawn.
    for series in ("today", "usual"):
        d = supervisor.js(
            f"return document.querySelector('#today-chart path[data-series={series}]')"
            "?.getAttribute('d') || ''"
        )
        assert d.startswith("M") and d.count("L") > 4, series
    assert supervisor.js("return document.querySelectorAll('#heatmap rect').length") == 7 * 24

    # A CSV link answers CSV that Excel opens as UTF-8, with the page's session.
    href = supervisor.js("return document.getElementById('history-csv').getAttribute('href')")
    csv = fetch_in_page(supervisor, href)
    assert csv["status"] == 200 and str(csv["type"]).startswith("text/csv")
    assert csv["bom"] == "239,187,191"
    assert str(csv["text"]).lstrip("\ufeff").startswith("zone_id,start,end,mean")

    full_page_shot(supervisor, shots / "dashboard-en.png")
    supervisor.tap("#lang")
    supervisor.wait(lambda: supervisor.text("#logout") == "退出", 10, "the page in Chinese")
    supervisor.wait(
        lambda: supervisor.text('[data-zone-id="entrance"] .count') == "未知", 10, "未知 shown"
    )
    supervisor.wait(
        lambda: supervisor.text('[data-alert-id="a1"] [data-role="effect"]') == "少 2 人",
        10, "the alerts in Chinese",
    )  # fmt: skip
    full_page_shot(supervisor, shots / "dashboard-zh.png")

    supervisor.tap("#logout")
    supervisor.wait(lambda: supervisor.js("return location.pathname") == "/login", 10, "logged out")
    assert fetch_in_page(supervisor, "/v1/session")["status"] == 401
    supervisor.open("/dashboard")
    supervisor.wait(
        lambda: supervisor.js("return location.pathname") == "/login", 10, "sent to log in again"
    )
    errors = [m for m in supervisor.console() if "SEVERE" in m and " 401" not in m]
    assert not errors, errors
