"""Alerts end to end in one process: rules -> store -> outbox -> real Mosquitto -> handheld.

The clock is real here (the broker is); rule timings are set to zero or a second so that the
tests stay short. The engine's timing logic is covered with a fake clock in test_alert_engine.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.board import BoardUpdate, OccupancyBoard
from edge.config import parse_config
from edge.handheld import Handheld
from edge.notifier import Notifier
from edge.store import Store
from edge.types import CameraStatus, ZoneReading
from tests.alerts.support import LOBBY
from tests.waiting import wait_for

CONFIG = (
    """\
site: {{id: branch-7, timezone: Asia/Shanghai}}
"""
    + LOBBY
    + """\
mqtt: {{host: 127.0.0.1, port: {port}, keepalive_s: 5, reconnect_min_s: 1, reconnect_max_s: 2}}
alerts:
  language: {language}
  camera_offline: {{after_s: {camera_after}}}
  rules:
    - id: waiting-full
      name: Waiting area full
      zones: [waiting, queue]
      raise_at: 10
      clear_at: 5
      raise_after_s: 0
      clear_after_s: 0
      cooldown_s: 0
      escalate_after_s: {escalate}
      max_escalations: 1
      effect_after_s: 1
      reask_after_s: {reask}
"""
)


def make_config(
    tmp_path: Path,
    port: int,
    language: str = "en",
    escalate: float = 600,
    camera_after: float = 600,
    reask: float = 600,
):
    text = CONFIG.format(
        db=tmp_path / "lw.db",
        port=port,
        language=language,
        escalate=escalate,
        camera_after=camera_after,
        reask=reask,
    )
    return parse_config(text, base_dir=tmp_path, environ={})


def feed(board: OccupancyBoard, waiting: float | None, queue: float | None = 0.0,
         status: CameraStatus = CameraStatus.ONLINE) -> None:  # fmt: skip
    at = datetime.now(timezone.utc)
    readings = tuple(
        ZoneReading(
            zone, "lobby", None if status is not CameraStatus.ONLINE else count, None, at, status
        )
        for zone, count in (("waiting", waiting), ("queue", queue))
    )
    board.update(BoardUpdate("lobby", status, readings, frame=True))


class Rig:
    """Store, board and notifier of one device, plus a handheld, on a real broker."""

    def __init__(self, tmp_path: Path, broker, **config) -> None:
        self.config = make_config(tmp_path, broker.port, **config)
        self.store = Store(self.config.storage.path, site_id="branch-7")
        self.board = OccupancyBoard({"lobby": ["waiting", "queue"]})
        self.notifier = Notifier(self.config, self.store, self.board)
        self.handheld = Handheld(
            self.config.mqtt,
            "branch-7",
            "li.wei",
            topics=("alerts", "supervisor/alerts", "it/alerts"),
        )

    def start(self) -> Rig:
        self.handheld.start()
        wait_for(self.handheld.connected.is_set, what="handheld connected")
        self.notifier.start()
        wait_for(lambda: self.notifier.link.connected.is_set(), what="device connected")
        return self

    def stop(self) -> None:
        self.notifier.stop(drain_s=0.5)
        self.handheld.stop()
        self.store.close()

    def alerts_of(self, kind: str) -> list[dict]:
        return [a for a in self.handheld.alerts() if a["kind"] == kind]


@pytest.fixture
def rig(tmp_path, broker):
    rig = Rig(tmp_path, broker).start()
    yield rig
    rig.stop()


def test_a_full_waiting_area_reaches_the_handheld_with_what_and_since(rig):
    feed(rig.board, 3)
    feed(rig.board, 8, 4)
    (alert,) = wait_for(lambda: rig.alerts_of("raised"), what="raised alert")
    assert alert["count"] == 12 and alert["threshold"] == 10
    assert alert["zones"] == ["waiting", "queue"] and alert["rule"] == "waiting-full"
    assert alert["alert_id"].startswith("waiting-full-") and alert["site"] == "branch-7"
    assert datetime.fromisoformat(alert["since"]) <= datetime.fromisoformat(alert["at"])
    assert "12 people in 等候区, Queue since" in alert["message"]
    record = rig.store.alert(alert["alert_id"])
    assert record is not None and record.status == "open"
    wait_for(lambda: not rig.store.pending_messages(), what="outbox sent")


def test_ack_then_pass_done_is_recorded_and_its_effect_measured(rig):
    feed(rig.board, 15)
    (alert,) = wait_for(lambda: rig.alerts_of("raised"))
    assert rig.handheld.ack(alert["alert_id"], "accepted")
    record = wait_for(lambda: (r := rig.store.alert(alert["alert_id"])) and r.acknowledged_at and r)
    assert record.acknowledged_by == "li.wei" and record.status == "acknowledged"
    assert record.count_at_ack is None  # the live table is the pipeline's; this rig has none
    assert record.seconds_to_ack is not None and record.seconds_to_ack >= 0
    assert rig.handheld.ack(alert["alert_id"], "pass_done")
    wait_for(lambda: rig.store.alert(alert["alert_id"]).pass_done_at, what="pass done")
    feed(rig.board, 4)  # the pass worked: 4 people wait now
    done = wait_for(
        lambda: (r := rig.store.alert(alert["alert_id"])) and r.effect_measured_at and r
    )
    assert done.effect_count == 4.0
    (cleared,) = wait_for(lambda: rig.alerts_of("cleared"))
    assert cleared["alert_id"] == alert["alert_id"] and cleared["count"] == 4


def test_a_done_pass_is_asked_again_on_the_handheld_while_the_lobby_stays_full(tmp_path, broker):
    rig = Rig(tmp_path, broker, reask=1).start()
    try:
        feed(rig.board, 15)
        (alert,) = wait_for(lambda: rig.alerts_of("raised"))
        assert alert["pass"] == 1 and alert["metric"] == "count" and alert["value"] == 15
        assert alert["advice"] == [] and alert["figures"]["wait_minutes"] is None  # no tracking
        assert rig.handheld.ack(alert["alert_id"], "pass_done")
        (again,) = wait_for(lambda: rig.alerts_of("reasked"), what="pass 2 asked")
        assert again["alert_id"] == alert["alert_id"] and again["pass"] == 2
        assert again["message"].startswith("Still busy after the last pass: 15 people in")
        record = wait_for(lambda: (r := rig.store.alert(alert["alert_id"])) and r.passes == 2 and r)
        assert record.pass_done_at is None and record.acknowledged_at is None
    finally:
        rig.stop()


def test_malformed_acks_are_ignored_and_nothing_breaks(rig, broker):
    feed(rig.board, 15)
    (alert,) = wait_for(lambda: rig.alerts_of("raised"))
    topic = rig.notifier.link.topics.ack(alert["alert_id"])
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    for payload in (b"", b"not json", b"[]", b'{"by": "x"}', b'{"by": "", "status": "accepted"}',
                    b'{"by": "x", "status": "maybe"}', b"\xff\xfe"):  # fmt: skip
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.publish(f"{rig.notifier.link.topics.base}/alerts/no-such-alert/ack",
                   b'{"by": "x", "status": "accepted"}', qos=1).wait_for_publish(5)  # fmt: skip
    client.disconnect()
    client.loop_stop()
    time.sleep(0.5)
    assert rig.store.alert(alert["alert_id"]).acknowledged_at is None
    assert rig.handheld.ack(alert["alert_id"], "accepted")  # a good one still works
    wait_for(lambda: rig.store.alert(alert["alert_id"]).acknowledged_at)


def test_an_unanswered_alert_is_escalated_to_the_supervisor_once(tmp_path, broker):
    rig = Rig(tmp_path, broker, escalate=1).start()
    try:
        feed(rig.board, 15)
        wait_for(lambda: rig.alerts_of("raised"))
        escalations = wait_for(
            lambda: len(rig.alerts_of("escalated")) == 2 and rig.alerts_of("escalated")
        )
        assert {a["audience"] for a in escalations} == {"lobby_manager", "supervisor"}
        time.sleep(2.5)
        assert len(rig.alerts_of("escalated")) == 2  # max_escalations: 1
    finally:
        rig.stop()


def test_a_camera_that_stays_down_is_an_it_alert_not_a_diversion(tmp_path, broker):
    rig = Rig(tmp_path, broker, camera_after=1).start()
    try:
        feed(rig.board, 15)
        wait_for(lambda: rig.alerts_of("raised"))
        feed(rig.board, None, None, status=CameraStatus.OFFLINE)
        it = wait_for(lambda: [a for a in rig.alerts_of("raised") if a["audience"] == "it"])
        assert "lobby" in it[0]["message"] and it[0]["rule"] == "camera-lobby"
        time.sleep(1.0)
        # unknown counts neither cleared the diversion alert nor raised another
        assert not rig.alerts_of("cleared")
        assert len([a for a in rig.alerts_of("raised") if a["audience"] == "lobby_manager"]) == 1
        feed(rig.board, 15)
        back = wait_for(lambda: rig.alerts_of("cleared"))
        assert back[0]["alert_id"] == it[0]["alert_id"]
    finally:
        rig.stop()


def test_messages_are_in_the_sites_language(tmp_path, broker):
    rig = Rig(tmp_path, broker, language="zh-CN").start()
    try:
        feed(rig.board, 12)
        (alert,) = wait_for(lambda: rig.alerts_of("raised"))
        assert (
            alert["message"].startswith("等候区客流较多：等候区、Queue自")
            and "有12人等候" in alert["message"]
        )
        assert alert["language"] == "zh-CN"
    finally:
        rig.stop()


def test_broker_killed_while_an_alert_is_due_then_restarted_alert_arrives_once(rig, broker):
    broker.wait_saved(after=time.time())  # the handheld's subscription survives the kill
    broker.kill()
    wait_for(lambda: not rig.notifier.link.connected.is_set(), what="device sees the outage")
    feed(rig.board, 20)
    with sqlite3.connect(rig.config.storage.path) as db:
        (unsent,) = db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()
    assert unsent == 1  # decided and stored while the broker was down
    time.sleep(1.0)
    broker.start()
    (alert,) = wait_for(lambda: rig.alerts_of("raised"), timeout=20, what="alert after restart")
    wait_for(lambda: not rig.store.pending_messages(), what="marked sent")
    time.sleep(1.5)
    assert len(rig.alerts_of("raised")) == 1
    assert [a.alert_id for a in rig.store.alerts()] == [alert["alert_id"]]


def test_alerts_carry_a_message_expiry_so_old_orders_are_dropped(rig, broker):
    expiries: list[int] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, msg: expiries.append(msg.properties.MessageExpiryInterval)
    client.connect("127.0.0.1", broker.port)
    client.subscribe(rig.notifier.link.topics.alerts, qos=1)
    client.loop_start()
    try:
        time.sleep(0.3)
        feed(rig.board, 15)
        (expiry,) = wait_for(lambda: expiries, what="alert with properties")
        assert 0 < expiry <= rig.config.mqtt.alert_expiry_s
    finally:
        client.disconnect()
        client.loop_stop()
