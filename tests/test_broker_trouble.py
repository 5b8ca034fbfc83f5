"""Broker trouble is never silent, and a delivered alert is delivered once.

The real `lobbywatch run` on real Mall frames; a real Mosquitto where one is needed, a closed
port where the broker is missing.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from edge.config import load_config
from edge.handheld import Handheld
from edge.runtime.device_state import read_state, state_path
from tests.mqtt_broker import Broker, free_port
from tests.processes import Device
from tests.test_full_disk import CONFIG, SITE
from tests.waiting import wait_for

KEY = "k" * 32


def write_config(tmp_path: Path, source: str, port: int) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(CONFIG.format(site=SITE, source=source, db=tmp_path / "lw.db", port=port))
    return path


def test_no_broker_shows_within_10_s_in_the_log_status_line_health_and_metrics(
    tmp_path, mall_sequence, monkeypatch
):
    monkeypatch.setenv("LW_TEST_KEY", KEY)
    port = free_port()  # nothing listens there
    config_path = write_config(tmp_path, mall_sequence, port)
    device = Device(config_path, env={"LOBBYWATCH_ALERTS__RULES__0__RAISE_AT": "5"}).start()
    try:
        started = time.monotonic()
        wait_for(
            lambda: f"cannot reach the broker at mqtt://127.0.0.1:{port}: connection refused"
            in device.output(),
            timeout=10,
            what="the reason in the log",
        )
        line = wait_for(
            lambda: re.search(r"device: .*broker DISCONNECTED since \S+ \(connection refused\)"
                              r".*outbox (\d+) waiting", device.output()),
            timeout=10 - (time.monotonic() - started) + 2,  # the status line comes each second
            what="the status line",
        )  # fmt: skip
        assert line is not None
        wait_for(lambda: int(re.findall(r"outbox (\d+) waiting", device.output())[-1]) >= 1,
                 what="the alert in the backlog")  # fmt: skip

        db = load_config(config_path).storage.path
        state = read_state(state_path(db), datetime.now(timezone.utc))
        assert state is not None and state.current
        assert state.section("broker")["state"] == "disconnected"
        with TestClient(create_app(load_config(config_path), use_rollup=False)) as client:
            health = client.get("/v1/health").json()
            assert health["broker"]["state"] == "disconnected"
            assert health["broker"]["reason"] == "connection refused"
            assert health["broker"]["attempts"] >= 1
            assert health["delivery"]["backlog"] >= 1
            assert health["status"] == "degraded"
            metrics = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        assert "lobbywatch_broker_connected 0.0" in metrics
        assert re.search(r"^lobbywatch_outbox_backlog [1-9]", metrics, re.M)
        assert "lobbywatch_pipeline_running 1.0" in metrics
        # Repeated failures are not a flood: the reason once, then at most once a minute.
        assert device.output().count("cannot reach the broker") == 1
    finally:
        assert device.signal(signal.SIGTERM) == 0


def sent_at(db: Path, alert_id: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT sent_at FROM outbox WHERE alert_id = ? AND message_id LIKE '%:raised'",
            (alert_id,),
        ).fetchone()
    return None if row is None else row[0]


@pytest.mark.parametrize("attempt", range(3))
def test_killed_right_after_delivery_the_alert_is_not_delivered_again(
    attempt, tmp_path, mall_sequence, monkeypatch
):
    monkeypatch.setenv("LW_TEST_KEY", KEY)
    broker = Broker(tmp_path / "broker").start()
    config_path = write_config(tmp_path, mall_sequence, broker.port)
    config = load_config(config_path)
    handheld = Handheld(config.mqtt, SITE, "manager")
    handheld.start()
    env = {"LOBBYWATCH_ALERTS__RULES__0__RAISE_AT": "5"}
    device = Device(config_path, env=env).start()
    try:
        wait_for(handheld.connected.is_set, what="handheld connected")
        (alert,) = wait_for(handheld.alerts, timeout=60, what="alert delivered")
        time.sleep(0.2)  # the PUBACK left the broker with the delivery: recorded by now
        device.signal(signal.SIGKILL)
        assert sent_at(config.storage.path, alert["alert_id"]) is not None

        device = Device(config_path, env=env).start()
        # Both runs write one log: the second "connected" line is the restarted device's.
        wait_for(lambda: device.output().count("connected to the broker at") >= 2,
                 timeout=30, what="restarted device connected")  # fmt: skip
        wait_for(lambda: device.output().count("detector on") >= 2, what="restarted device ready")
        time.sleep(2.0)
        assert handheld.deliveries == 1
        assert device.signal(signal.SIGTERM) == 0
    finally:
        handheld.stop()
        if device.proc is not None:
            device.signal(signal.SIGKILL)
        broker.kill()
