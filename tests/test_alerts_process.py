"""The real service process with a real broker: crashes, last will, retained state.

`lobbywatch run` runs as a subprocess on six real Mall frames (25-35 people) with the real
detector, so these are the situations an installed device meets, not simulations of them.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from edge.config import load_config
from edge.handheld import Handheld
from tests.mqtt_broker import Broker
from tests.processes import HALL_ON_FRAMES, Device, Watcher
from tests.waiting import wait_for

SITE = "branch-9"
CONFIG = (
    """\
site: {{id: {site}, timezone: Europe/Paris}}
detector: {{model: yolox_nano, confidence: 0.2, threads: 1, tiling: {{enabled: false}}}}
"""
    + HALL_ON_FRAMES
    + """\
      - {{id: floor, name: Hall, role: waiting, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}
storage: {{path: "{db}", interval_s: 5}}
logging: {{status_interval_s: 1}}
mqtt: {{host: 127.0.0.1, port: {port}, keepalive_s: 5, reconnect_min_s: 1, reconnect_max_s: 2, occupancy_interval_s: 2}}
alerts:
  camera_offline: {{enabled: false}}
  rules:
    - {{id: hall-full, zones: [floor], raise_at: 5, clear_at: 1, raise_after_s: 0, escalate_after_s: null}}
"""
)


@pytest.fixture
def setup(tmp_path, mall_sequence):
    broker = Broker(tmp_path / "broker")
    config_path = tmp_path / "site.yaml"
    config_path.write_text(
        CONFIG.format(site=SITE, source=mall_sequence, db=tmp_path / "lw.db", port=broker.port)
    )
    device = Device(config_path)
    yield broker, device, load_config(config_path)
    if device.proc is not None:
        device.signal(signal.SIGKILL)
    if broker.proc is not None:
        broker.kill()


def outbox(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT alert_id, sent_at FROM outbox").fetchall()
        except sqlite3.OperationalError:
            return []


def test_killed_after_writing_the_outbox_the_alert_arrives_once_after_restart(setup):
    broker, device, config = setup
    device.start()  # the broker is down: the alert can only be stored
    rows = wait_for(lambda: outbox(config.storage.path), what="alert in the outbox")
    device.signal(signal.SIGKILL)
    ((alert_id, sent_at),) = outbox(config.storage.path)
    assert sent_at is None

    broker.start()
    handheld = Handheld(config.mqtt, SITE, "manager")
    handheld.start()
    wait_for(handheld.connected.is_set, what="handheld connected")
    device.start()
    try:
        (alert,) = wait_for(lambda: handheld.alerts(), what="alert delivered after restart")
        assert alert["alert_id"] == alert_id and alert["kind"] == "raised"
        wait_for(lambda: all(sent for _, sent in outbox(config.storage.path)), what="marked sent")
        time.sleep(2.0)
        assert len(handheld.alerts()) == 1
        assert [row[0] for row in outbox(config.storage.path)] == [alert_id]  # no second raise
    finally:
        handheld.stop()
    assert device.signal(signal.SIGTERM) == 0
    assert rows


def test_last_will_retained_state_and_clean_stop(setup):
    broker, device, _config = setup
    broker.start()
    device.start()
    early = Watcher(broker.port, SITE)
    wait_for(lambda: early.last("zone/floor/occupancy"), what="occupancy published")
    time.sleep(1.0)

    late = Watcher(broker.port, SITE)  # connects after everything was published: sees retained state
    try:
        occupancy = json.loads(wait_for(lambda: late.last("zone/floor/occupancy")))
        assert occupancy["zone"] == "floor" and occupancy["camera"] == "hall"
        assert occupancy["count"] >= 5 and occupancy["stale"] is False
        assert occupancy["at"].endswith("Z")
        assert wait_for(lambda: late.last("availability")) == b"online"
        assert wait_for(lambda: late.last("camera/hall/status")) == b"online"
        assert all(retain for t, _, retain in late.messages[:3])

        device.signal(signal.SIGKILL)
        assert wait_for(lambda: early.last("availability") == b"offline" or None, what="last will")

        device.start()
        wait_for(lambda: early.last("availability") == b"online" or None, what="back online")
        assert device.signal(signal.SIGTERM) == 0
        assert wait_for(lambda: early.last("availability") == b"stopped" or None, what="stopped")
        final = json.loads(early.last("zone/floor/occupancy"))
        assert final["count"] is None and final["stale"] is True  # unknown, never 0
    finally:
        early.stop()
        late.stop()


def test_a_killed_and_restarted_service_keeps_the_retained_alert_state_consistent(setup):
    """The real service on real frames: its alert's retained state is there for a client that
    connects late, an accept made while the service was down (the API writes the store) is
    published after the restart, and the open index agrees."""
    from datetime import datetime, timezone

    from edge.store import Store

    broker, device, config = setup
    broker.start()
    device.start()
    early = Watcher(broker.port, SITE)
    try:
        (alert_id,) = wait_for(
            lambda: json.loads(early.last("alerts/open") or b"{}").get("alerts"),
            timeout=60, what="an open alert in the index",
        )  # fmt: skip
        raised = json.loads(early.last(f"alerts/{alert_id}/state"))
        assert raised["status"] == "raised" and raised["raised_at"].endswith("+01:00")  # Paris
        device.signal(signal.SIGKILL)
        with Store(config.storage.path, site_id=SITE) as store:
            store.apply_ack(alert_id, "mgr-api", "accepted", datetime.now(timezone.utc))
        device.start()
        late = Watcher(broker.port, SITE)
        try:
            state = wait_for(
                lambda: (s := late.last(f"alerts/{alert_id}/state"))
                and json.loads(s)["status"] == "accepted" and json.loads(s),
                timeout=60, what="the accept republished after the restart",
            )  # fmt: skip
            assert state["accepted_by"] == "mgr-api" and state["version"] > raised["version"]
            assert json.loads(late.last("alerts/open"))["alerts"] == [alert_id]
        finally:
            late.stop()
    finally:
        early.stop()
    assert device.signal(signal.SIGTERM) == 0
