"""The phone web app in a real browser against a real device (issue #12's browser test).

`lobbywatch run` counts the Mall frames with the real detector and raises a real alert; the
API serves the app over https as its own process; two phones (two Chromium profiles, two
credentials from `lobbywatch handheld pair`) show it within 2 s of the raise. One accepts, the
other sees who did and its button change; a pass done brings the measured effect; the API is
restarted under the phones, which show that they are not connected, reconnect by themselves and
show the same state; a revoked phone is logged out. Screenshots of both languages are kept
(docs/img/ with LOBBYWATCH_SCREENSHOTS=docs/img).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.handheld_browser import (
    Phone,
    pair_code,
    raised_at,
    require_chromium,
    revoke,
    screenshot_dir,
    start_site,
)
from tests.processes import HALL_ON_FRAMES

pytestmark = pytest.mark.browser

#: Raise-to-visible the issue asks for, per phone (seconds).
VISIBLE_WITHIN_S = 2.0

CONFIG = (
    """\
site: {{id: branch-12, name: Branch 12, timezone: Asia/Shanghai}}
detector:
  model: yolox_nano
  confidence: 0.2
  threads: 1
  tiling: {{enabled: false}}
  fusion: {{models: []}}
"""
    + HALL_ON_FRAMES
    + """\
      - {{id: waiting, name: Waiting area, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
      - {{id: queue, name: Counter queue, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}}
storage: {{path: "{db}", interval_s: 5}}
logging: {{status_interval_s: 5}}
mqtt: {{enabled: false}}
alerts:
  language: en
  camera_offline: {{enabled: false}}
  rules:
    - id: waiting-full
      name: Waiting area full
      zones: [waiting, queue]
      raise_at: 5
      clear_at: 1
      raise_after_s: 0
      escalate_after_s: null
      effect_after_s: 2
api:
  host: 127.0.0.1
  port: {port}
  public_url: https://127.0.0.1:{port}
  tls: {{cert_file: "{cert}", key_file: "{key}"}}
  keys: [{{id: supervisor, role: viewer, sha256: "{sha}"}}]
"""
)


@pytest.fixture
def lobby(tmp_path, mall_sequence):
    """The site's config, its API (started) and its device (not yet started)."""
    require_chromium()
    config, tls, api, device = start_site(CONFIG, tmp_path, mall_sequence, sha="b" * 64)
    yield config, tls, api, device
    if device.proc is not None:
        device.signal(signal.SIGKILL)
    api.stop(signal.SIGKILL)


@pytest.fixture
def phones(lobby):
    _, tls, api, _ = lobby
    made: list[Phone] = []

    def phone(name: str) -> Phone:
        made.append(Phone(api.url, tls, name=name))
        return made[-1]

    yield phone
    for p in made:
        p.quit()


def paired(phone: Phone, config: Path) -> Phone:
    phone.open(f"/app/pair#{pair_code(config, phone.name)}")
    phone.wait(lambda: phone.text("#me"), 20, "paired, its name in the header")
    assert phone.js("return location.pathname + location.hash") == "/app/"  # the code is gone
    phone.tap("#enable")  # sound and vibration need a tap on a phone
    phone.wait(lambda: phone.connection() == "up", 20, "connected")
    return phone


def test_two_phones_share_an_alert_from_the_real_pipeline_through_a_restart(
    lobby, phones, tmp_path
):
    config, _tls, api, device = lobby
    shots = screenshot_dir(tmp_path / "shots")
    a = paired(phones("mgr-1"), config)
    b = paired(phones("mgr-2"), config)
    assert a.text("#me") == "mgr-1 · manager" and a.text("#summary") == "No open alerts"

    # Phone B in Chinese: switched once, remembered across a reload.
    b.tap("#lang")
    b.driver.refresh()
    b.wait(lambda: b.connection() == "up", 20, "reconnected after the reload")
    b.tap("#enable")  # a new page needs its tap again
    assert b.js("return document.documentElement.lang") == "zh-CN"
    assert b.text("#summary") == "没有待处理的提醒"

    device.start()
    (alert_id,) = a.wait(lambda: a.alert_ids(), 120, "the alert on screen")
    b.wait(lambda: alert_id in b.seen(), 10, "the alert on screen")
    raised = raised_at(config.parent / "lw.db")[alert_id]
    latency = {p.name: p.seen()[alert_id] - raised for p in (a, b)}
    assert all(0 <= s <= VISIBLE_WITHIN_S for s in latency.values()), latency

    card = f'[data-alert-id="{alert_id}"]'
    assert a.part(alert_id, "status") == "NEW" and b.part(alert_id, "status") == "新提醒"
    assert a.text(f"{card} .name") == "Waiting area full"
    assert a.part(alert_id, "zones") == "Waiting area + Counter queue"
    assert int(a.text(f"{card} .count").split()[0]) >= 5
    a.wait(lambda: a.js("return document.querySelector('#zones li.alerting') !== null"), 15,
           "the zones in the alert marked")  # fmt: skip
    a.screenshot(shots / "handheld-alert-en.png")

    # A accepts: B sees by whom, and its Accept button changes.
    a.tap(f'{card} [data-role="accept"]')
    b.wait(lambda: "mgr-1" in (b.part(alert_id, "accepted-by") or ""), 5, "accepted by mgr-1")
    assert b.button(alert_id, "accept") == {"text": "已接单 ✓", "disabled": True, "hidden": False}
    assert b.part(alert_id, "status") == "已接单"
    assert a.part(alert_id, "accepted-by").startswith("Accepted by mgr-1 (you) at ")
    b.screenshot(shots / "handheld-accepted-zh.png")

    # B reports the pass done; the device measures its effect 2 s later, on both phones.
    b.tap(f'{card} [data-role="pass-done"]')
    a.wait(lambda: "mgr-2" in (a.part(alert_id, "pass-done-by") or ""), 5, "pass done by mgr-2")
    for p in (a, b):
        p.wait(lambda p=p: "→" in (p.part(alert_id, "effect") or ""), 30, "the measured effect")
    assert a.button(alert_id, "pass-done")["disabled"]
    a.screenshot(shots / "handheld-effect-en.png")
    before = {p.name: _card_state(p, alert_id) for p in (a, b)}

    # The API restarts under the phones: the banner, then the same state by itself.
    api.stop()
    for p in (a, b):
        p.wait(p.banner_shown, 10, "the not-connected banner")
    assert "NOT CONNECTED" in a.text("#banner") and "未连接" in b.text("#banner")
    b.screenshot(shots / "handheld-offline-zh.png")
    time.sleep(2)  # a real outage, some reconnects refused
    api.start()
    for p in (a, b):
        p.wait(lambda p=p: p.connection() == "up" and not p.banner_shown(), 20, "back")
        assert _card_state(p, alert_id) == before[p.name]
    assert a.alert_ids() == [alert_id]

    # B is revoked: it shows it is logged out; A goes on.
    revoke(config, "mgr-2")
    b.wait(lambda: b.text("#logged-out h1"), 25, "logged out")
    assert b.text("#logged-out h1") == "已退出登录" and b.connection() == "logged-out"
    b.screenshot(shots / "handheld-logged-out-zh.png")
    time.sleep(1)
    assert a.connection() == "up" and a.text("#me")

    # The help says plainly what a locked phone gets.
    a.tap("#help-button")
    assert "locked phone" in a.text("#help-text")
    a.screenshot(shots / "handheld-help-en.png")
    severe = [m for p in (a, b) for m in p.console() if "Uncaught" in m]
    assert not severe, severe


def _card_state(phone: Phone, alert_id: str) -> dict[str, object]:
    roles = ("status", "accepted-by", "pass-done-by", "effect", "zones")
    state: dict[str, object] = {r: phone.part(alert_id, r) for r in roles}
    state["accept"] = phone.button(alert_id, "accept")
    state["pass-done"] = phone.button(alert_id, "pass-done")
    return state


def test_a_phone_without_a_credential_is_shown_how_to_pair_and_a_wrong_code_says_why(lobby, phones):
    config, _tls, _api, _device = lobby
    phone = phones("mgr-3")
    phone.open("/app/")
    phone.wait(lambda: phone.text("#logged-out h1") == "Logged out", 20, "logged out")
    phone.tap("#pair-again")
    phone.wait(lambda: phone.text("#pairing h1") == "Pair this phone", 5, "the pairing form")
    phone.driver.find_element("css selector", "#pair-code").send_keys("AAAA-AAAA")
    phone.tap('#pair-form button[type="submit"]')
    phone.wait(lambda: "expired pairing code" in (phone.text("#pair-status") or ""), 10, "why")
    field = phone.driver.find_element("css selector", "#pair-code")
    field.clear()
    field.send_keys(pair_code(config, "mgr-3").lower().replace("-", " "))  # as typed
    phone.tap('#pair-form button[type="submit"]')
    phone.wait(lambda: phone.connection() == "up", 20, "paired and connected")
    assert phone.text("#me") == "mgr-3 · manager"
