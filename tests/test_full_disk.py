"""A full disk: the store refuses writes, the device keeps counting and alerting and says so.

Real SQLite on a real, small file system (a 16 MiB tmpfs) filled to the last byte, and for the
service a real `lobbywatch run` on real Mall frames with a real Mosquitto.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import MQTTErrorCode

from api.app import create_app
from api.stream import StoreWatch
from edge.alerts.retained import AlertStatePublisher
from edge.alerts.state import SiteNames
from edge.config import load_config
from edge.handheld import Handheld
from edge.mqtt import Topics
from edge.runtime.device_state import read_state, state_path
from edge.store import RECOVERY_S, CameraLive, HistoryRow, Store, StoreWriteError
from edge.types import CameraStatus
from tests.alerts.support import raise_alert
from tests.mqtt_broker import Broker
from tests.processes import HALL_ON_FRAMES, Device, Watcher
from tests.waiting import wait_for

AT = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


def row(bucket: int, mean: float = 3.0) -> HistoryRow:
    return HistoryRow("floor", "hall", bucket, 10, 2, mean, mean, mean, 1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_disk_refuses_writes_keeps_reads_and_is_writable_again_once_freed(small_disk):
    clock = FakeClock()
    store = Store(small_disk.path / "lw.db", site_id="b1", clock=clock)
    store.write_history([row(0)])
    small_disk.fill()

    with pytest.raises(StoreWriteError, match="full"):
        store.write_history([row(10 * i) for i in range(1, 200)])
    condition = store.condition
    assert not condition.writable and "full" in (condition.error or "")
    assert condition.since is not None and condition.failed_writes == 1
    assert [r.bucket_start for r in store.history()] == [0]  # reads go on

    small_disk.free()
    store.write_history([row(10)])
    assert not store.condition.writable  # no flapping: one write that fits is not a recovery
    clock.now += RECOVERY_S
    store.write_live([], CameraLive("hall", CameraStatus.ONLINE, 2.0, AT))
    assert store.condition.writable
    assert [r.bucket_start for r in store.history()] == [0, 10]


def test_an_existing_store_opens_on_a_full_disk(small_disk):
    path = small_disk.path / "lw.db"
    Store(path, site_id="b1").close()
    small_disk.fill()
    store = Store(path, site_id="b1")  # a restart with the disk still full
    assert store.history() == []
    with pytest.raises(StoreWriteError):  # the reserve it opened on fills up in turn
        for batch in range(1000):
            store.write_history([row(10 * (batch * 100 + i)) for i in range(100)])
    assert not store.condition.writable


def test_a_store_that_cannot_be_created_runs_on_memory_and_lands_in_the_file_later(small_disk):
    path = small_disk.path / "lw.db"
    small_disk.fill()
    with pytest.raises(sqlite3.OperationalError):
        Store(path, site_id="b1")  # readers (the API) get the error
    store = Store(path, site_id="b1", memory_fallback=True)
    assert store.condition.memory_only and not store.condition.writable
    store.write_history([row(0), row(10)])
    assert not store.recover()

    small_disk.free()
    assert store.recover()
    store.write_history([row(10, mean=5.0)])  # merged with the row kept in memory
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT bucket_start, samples, mean FROM zone_history").fetchall()
    assert rows == [(0, 2, 3.0), (10, 4, 4.0)]


class FakeLink:
    """What the alert state publisher needs of the MQTT link: every publish taken at once."""

    def __init__(self) -> None:
        self.topics = Topics("lobbywatch", "b1")
        self.connected = threading.Event()
        self.connected.set()
        self.published: list[tuple[str, str, bool]] = []

    def publish(
        self, topic: str, payload: str, *, qos: int = 1, retain: bool = False,
        expiry_s: int | None = None,
    ) -> SimpleNamespace:  # fmt: skip
        self.published.append((topic, payload, retain))
        return SimpleNamespace(rc=MQTTErrorCode.MQTT_ERR_SUCCESS)

    def retained(self) -> dict[str, str]:
        """Per topic, what the broker would hold retained now."""
        held: dict[str, str] = {}
        for topic, payload, retain in self.published:
            if retain and payload:
                held[topic] = payload
            elif retain:
                held.pop(topic, None)
        return held


def test_alerts_raised_on_memory_land_above_the_files_version_and_reach_streams_and_retained(
    small_disk,
):
    path = small_disk.path / "lw.db"
    with Store(path, site_id="b1") as before:  # the file as the outage finds it
        raise_alert(before, "a1", AT)
        raise_alert(before, "a2", AT)
        before.apply_ack("a1", "desk", "accepted", AT)
        n = before.alerts_version()
    assert n == 3
    path.with_name("lw.db.reserve").unlink()  # spent by an earlier open on the full disk
    small_disk.fill()
    store = Store(path, site_id="b1", memory_fallback=True)
    assert store.condition.memory_only
    link = FakeLink()
    publisher = AlertStatePublisher(store, link, SiteNames("Europe/Paris", "en"), lambda z: None)  # type: ignore[arg-type]
    publisher.on_retained("a1")  # the broker's retained states, which memory does not hold
    raise_alert(store, "m1", AT + timedelta(minutes=1))  # versions 1 to 4 on memory
    raise_alert(store, "m2", AT + timedelta(minutes=2))
    store.escalate_alert("m2", AT + timedelta(minutes=3), [])
    store.apply_ack("m1", "desk", "accepted", AT + timedelta(minutes=4))
    publisher.pump()
    outage = [json.loads(payload) for _, payload, _ in link.published if payload]
    assert set(link.retained()) == {
        link.topics.alert_state("m1"), link.topics.alert_state("m2"), link.topics.alerts_open,
    }  # fmt: skip

    small_disk.free()
    with Store(path, site_id="b1") as reader:  # the API's, on the file
        watch = StoreWatch(reader.alerts_version, lambda: [])
        watch.poll_once()
        assert store.recover()
        assert watch.poll_once() and watch.version == 6  # the streams wake
        changed = reader.alerts_changed_since(n)  # what a Last-Event-ID replay sends
    # Above the file's 3 and the memory's 4 (m2 at 3, m1 at 4 there), in the memory's order.
    assert [(a.alert_id, a.version) for a in changed] == [("m2", 5), ("m1", 6)]
    assert max(state["version"] for state in outage) == 4  # what handhelds hold is older
    assert store.alerts_version() == 6
    assert [a.alert_id for a in store.alerts_changed_since(n)] == ["m2", "m1"]

    publisher.pump()  # all again from the file, as after a reconnect
    held = link.retained()
    assert set(held) == {
        *(link.topics.alert_state(a) for a in ("a1", "a2", "m1", "m2")), link.topics.alerts_open
    }  # fmt: skip
    index = json.loads(held[link.topics.alerts_open])
    assert index == {"version": 6, "alerts": ["a1", "a2", "m1", "m2"]}
    assert json.loads(held[link.topics.alert_state("m1")])["version"] == 6
    store.close()


SITE = "branch-7"
CONFIG = (
    """\
site: {{id: {site}, timezone: Europe/Paris}}
detector: {{model: yolox_nano, confidence: 0.2, threads: 1, tiling: {{enabled: false}}, fusion: {{models: []}}}}
"""
    + HALL_ON_FRAMES
    + """\
      - {{id: floor, name: Hall, role: waiting, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}
storage: {{path: "{db}", interval_s: 1}}
logging: {{status_interval_s: 1}}
mqtt: {{host: 127.0.0.1, port: {port}, keepalive_s: 5, reconnect_min_s: 1, reconnect_max_s: 2, occupancy_interval_s: 2}}
api: {{keys: [{{id: it, role: viewer, env: LW_TEST_KEY}}]}}
alerts:
  camera_offline: {{enabled: false}}
  rules:
    - {{id: hall-full, zones: [floor], raise_at: 500, clear_at: 1, raise_after_s: 0, escalate_after_s: null}}
"""
)


def history_buckets(db: Path) -> list[int]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute("SELECT DISTINCT bucket_start FROM zone_history").fetchall()
        except sqlite3.OperationalError:  # not made yet
            return []
    return [r[0] for r in rows]


def api_health(config_path: Path) -> dict:
    with TestClient(create_app(load_config(config_path), use_rollup=False)) as client:
        return client.get("/v1/health").json()


def test_the_service_on_a_full_disk_keeps_counting_and_alerting_and_says_so(
    tmp_path, small_disk, mall_sequence, monkeypatch
):
    monkeypatch.setenv("LW_TEST_KEY", "k" * 32)
    broker = Broker(tmp_path / "broker").start()
    db = small_disk.path / "lw.db"
    config_path = tmp_path / "site.yaml"
    config_path.write_text(CONFIG.format(site=SITE, source=mall_sequence, db=db, port=broker.port))
    config = load_config(config_path)
    watcher = Watcher(broker.port, SITE)
    handheld = Handheld(config.mqtt, SITE, "manager")
    handheld.start()
    # A first run makes the store; a second one starts on the full disk, with a rule that fires.
    first = Device(config_path).start()
    try:
        wait_for(lambda: history_buckets(db), timeout=60, what="history written")
        assert first.signal(signal.SIGTERM) == 0
        small_disk.fill()
        filled_at = int(time.time())

        device = Device(config_path, env={"LOBBYWATCH_ALERTS__RULES__0__RAISE_AT": "5"}).start()
        (alert,) = wait_for(handheld.alerts, timeout=60, what="alert delivered on a full disk")
        assert alert["kind"] == "raised"
        health = wait_for(
            lambda: [h for h in map(json.loads, watcher.all("health")) if h["status"] != "ok"],
            what="retained device health says the store is failing",
        )[-1]
        assert health["store"]["state"] == "failing" and health["store"]["error"]
        wait_for(lambda: "store FAILING" in device.output(), what="status line says so")
        time.sleep(2.0)
        assert device.proc is not None and device.proc.poll() is None  # still up

        state = read_state(state_path(db), datetime.now(timezone.utc))
        assert state is not None and state.current
        assert state.section("store")["unsaved_alert_writes"] >= 1
        assert state.section("store")["unsaved_history_rows"] >= 1
        report = api_health(config_path)
        assert report["store_writable"]["ok"] is False
        assert "full" in report["store_writable"]["detail"]
        assert report["delivery"]["unsaved_alert_writes"] >= 1

        small_disk.free()  # history resumes by itself, the alert lands in the store
        wait_for(
            lambda: any(b >= filled_at for b in history_buckets(db)),
            what="history of the outage written",
        )
        with sqlite3.connect(db) as conn:
            wait_for(
                lambda: conn.execute(
                    "SELECT sent_at FROM outbox WHERE alert_id = ?", (alert["alert_id"],)
                ).fetchone()[0] if conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
                else None,
                what="the alert and its PUBACK in the store",
            )  # fmt: skip
        assert device.signal(signal.SIGTERM) == 0
        assert watcher.last("availability") == b"stopped"
        final = json.loads(watcher.last("zone/floor/occupancy") or b"{}")
        assert final["count"] is None and final["stale"] is True
        assert len(handheld.alerts()) == 1
    finally:
        handheld.stop()
        watcher.stop()
        for proc in (first, device if "device" in locals() else None):
            if proc is not None and proc.proc is not None:
                proc.signal(signal.SIGKILL)
        broker.kill()


def test_an_error_exit_leaves_the_retained_state_unknown_and_offline(tmp_path, broker):
    from edge.service import Service

    config_path = tmp_path / "site.yaml"
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2
    import numpy as np

    for i in range(1, 4):
        cv2.imwrite(str(frames / f"seq_{i:06d}.jpg"), np.zeros((48, 64, 3), np.uint8))
    config_path.write_text(
        CONFIG.format(
            site=SITE, source=frames / "seq_%06d.jpg", db=tmp_path / "lw.db", port=broker.port
        )
    )
    config = load_config(config_path)

    class Broken:
        provider = "cpu"

        def detect(self, _image):
            raise RuntimeError("detector broke")

    watcher = Watcher(broker.port, SITE)
    try:
        service = Service(config, detector_factory=lambda: Broken())  # type: ignore[arg-type, return-value]
        assert service.run() == 1
        wait_for(lambda: watcher.last("availability") == b"offline" or None, what="offline")
        status = wait_for(lambda: watcher.last("camera/hall/status"), what="camera status")
        assert status == b"offline"
    finally:
        watcher.stop()
    started = datetime.now(timezone.utc) - timedelta(minutes=5)
    assert read_state(state_path(config.storage.path), started) is not None
