"""Channels inside the device: an alert the rules raise reaches the webhook through the
notifier, its deliveries show in GET /v1/alerts, a failing channel shows in health and
metrics, and `lobbywatch run` refuses a channel whose URL is not set."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from edge.board import BoardUpdate, OccupancyBoard
from edge.notifier import Notifier
from edge.runtime.device_state import StateFile, state_path
from edge.store import CameraLive, Store
from edge.tools.preflight import check_runnable
from edge.types import CameraStatus, ZoneReading
from tests.alerts import receivers as rx
from tests.alerts.support import make_config
from tests.test_alert_state_api import alert_record
from tests.test_api_support import KEYS, Clock, auth, client_for, hash_key
from tests.waiting import wait_for

WEBHOOK = "    - {id: hq-hook, kind: webhook, url_env: LW_HOOK, secret_env: LW_HOOK_SECRET}"
API = f"api: {{keys: [{{id: viewer-1, role: viewer, sha256: {hash_key(KEYS['viewer'])}}}]}}\n"


def feed(board: OccupancyBoard, waiting: float) -> None:
    at = datetime.now(timezone.utc)
    readings = tuple(
        ZoneReading(zone, "lobby", count, None, at, CameraStatus.ONLINE)
        for zone, count in (("waiting", waiting), ("queue", 0.0))
    )
    board.update(BoardUpdate("lobby", CameraStatus.ONLINE, readings, frame=True))


def test_an_alert_the_rules_raise_reaches_the_webhook_and_its_delivery_shows_in_the_api(
    tmp_path, monkeypatch
):
    robots = rx.Robots().start()
    monkeypatch.setenv("LW_HOOK", f"{robots.base}/hooks/lobbywatch")
    monkeypatch.setenv("LW_HOOK_SECRET", rx.WEBHOOK_SECRET)
    config = make_config(tmp_path, WEBHOOK, extra=API)
    board = OccupancyBoard({"lobby": ["waiting", "queue"]})
    store = Store(config.storage.path, site_id="branch-7")
    notifier = Notifier(config, store, board)
    notifier.start()
    try:
        feed(board, 15)
        wait_for(lambda: robots.received, what="the webhook")
        status = wait_for(lambda: (s := notifier.status().channels) and s["hq-hook"]["sent"] and s)
        assert status["hq-hook"]["state"] == "ok"
    finally:
        notifier.stop()
        robots.stop()
        store.close()
    got = robots.received[0]  # an escalation may follow: its rule escalates after 1 s
    assert got.title == "[Branch 7] Waiting area busy"
    client = client_for(config, Clock(datetime.now(timezone.utc)))
    (alert,) = client.get("/v1/alerts", headers=auth("viewer")).json()["alerts"]
    delivery = alert["deliveries"][0]
    assert delivery["channel"] == "hq-hook" and delivery["kind"] == "webhook"
    assert (delivery["event"], delivery["state"], delivery["attempts"]) == ("raised", "sent", 1)
    # The open alert's state, which every handheld reads, lists the same delivery.
    (state,) = client.get("/v1/alerts/open", headers=auth("viewer")).json()["alerts"]
    first = state["deliveries"][0]
    assert (first["channel"], first["event"], first["state"]) == ("hq-hook", "raised", "sent")
    assert "last_error" not in first  # IT's error texts stay in /v1/alerts and health


def test_a_delivery_change_gives_its_alert_a_new_version(tmp_path):
    config = make_config(tmp_path, WEBHOOK)
    store = Store(config.storage.path, site_id="branch-7")
    try:
        store.insert_alert(alert_record("a-1", "raised"), [])
        store.insert_alert(alert_record("a-2", "raised"), [])
        before = {a.alert_id: a.version for a in store.open_alerts()}
        store.touch_alerts(["a-1"])
        after = {a.alert_id: a.version for a in store.open_alerts()}
        assert after["a-1"] > max(before.values()) and after["a-2"] == before["a-2"]
        assert [a.alert_id for a in store.alerts_changed_since(max(before.values()))] == ["a-1"]
        store.clear_alert("a-2", datetime.now(timezone.utc), None, [])
        cleared = store.alerts_version()
        store.touch_alerts(["a-2"])  # a cleared alert is not sent to the handhelds again
        assert store.alerts_version() == cleared
    finally:
        store.close()


def test_a_failing_channel_shows_in_health_and_metrics(tmp_path):
    config = make_config(tmp_path, WEBHOOK, extra=API)
    now = datetime.now(timezone.utc)
    client = client_for(config, Clock(now))
    store = client.app.state.lobbywatch.store.store()
    store.write_live([], CameraLive("lobby", CameraStatus.ONLINE, 5.0, now))
    state = StateFile(state_path(config.storage.path))
    state.write({
        "pid": os.getpid(), "at": now.isoformat(), "running": True,
        "store": {"writable": True, "since": None, "error": None, "failed_writes": 0,
                  "memory_only": False, "unsaved_history_rows": 0, "dropped_history_rows": 0,
                  "unsaved_alert_writes": 0},
        "broker": None, "outbox": {"backlog": 0, "expired": 0}, "api": None, "cameras": {},
        "channels": {"hq-hook": {"kind": "webhook", "audience": "manager", "state": "failing",
                                 "since": (now - timedelta(minutes=5)).isoformat(),
                                 "last_error": "HTTP 503", "failures": 4, "waiting": 2,
                                 "rate_limited": 0, "sent": 7, "failed": 0, "expired": 1,
                                 "last_sent_at": None}},
    })  # fmt: skip
    try:
        body = client.get("/v1/health").json()
        metrics = client.get("/metrics", headers=auth("viewer")).text
    finally:
        state.close()
    (channel,) = body["channels"]
    assert channel["channel"] == "hq-hook" and channel["state"] == "failing"
    assert channel["last_error"] == "HTTP 503" and channel["waiting"] == 2
    assert body["status"] == "degraded"
    assert 'lobbywatch_channel_up{channel="hq-hook",kind="webhook"} 0.0' in metrics
    assert 'lobbywatch_channel_deliveries{channel="hq-hook",state="sent"} 0.0' in metrics


def test_run_is_refused_while_a_channels_url_or_secret_is_not_there(tmp_path):
    config = make_config(tmp_path, WEBHOOK)
    issues = check_runnable(config, environ={"LW_HOOK": "https://hooks.bank.example/x"})
    (issue,) = [i for i in issues if i.path.startswith("alerts.channels")]
    assert issue.path == "alerts.channels.0.secret_env"
    assert issue.message == "channel 'hq-hook': environment variable LW_HOOK_SECRET is not set"
    issues = check_runnable(
        config, environ={"LW_HOOK": "wecombot://6f2bd8a6-key", "LW_HOOK_SECRET": "x" * 32}
    )
    (issue,) = [i for i in issues if i.path.startswith("alerts.channels")]
    assert issue.path == "alerts.channels.0.url_env"
    assert "not an http(s) URL with a host" in issue.message and "6f2bd8a6" not in issue.message
