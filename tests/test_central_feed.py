"""The device's feed to the head office (docs/central.md "Device feed") on a real Mosquitto and a
real store: closed buckets equal to the API's history, cursors kept across a restart and a
broker outage, the queue's first snapshot of each minute, alert state changes, camera status.

The feed's wall clock is a fake (buckets close when the test says); PUBACKs are real, so the
tests tick the feed until the broker's answers have come. The tests up to the receipts section
run with `central.receipts: false` (cursors on the local PUBACK, a centre that sends no
receipts); those after it simulate the centre's receipts (a paho client answering history/) and
give the feed a fake monotonic clock too.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from api.db import StoreAccess
from api.queries import history
from api.routes.history import history_document
from edge.alerts.retained import AlertStatePublisher
from edge.alerts.state import SiteNames
from edge.board import BoardUpdate, OccupancyBoard
from edge.config import LobbyConfig, parse_config
from edge.integrations.central import (
    ALERTS_CURSOR,
    INTERVALS_CURSOR,
    MAX_IN_FLIGHT,
    CentralFeed,
    Outstanding,
    QueueMinutes,
    Receipt,
    Settled,
    _Cursor,
    _Flight,
    first_bucket,
    last_closed_end,
    parse_receipt,
)
from edge.mqtt import MqttLink
from edge.service import Service
from edge.state_publisher import StatePublisher
from edge.store import HistoryRow, Store
from edge.types import CameraStatus, ZoneReading
from tests.alerts.support import LOBBY
from tests.mqtt_broker import Broker
from tests.test_api_support import insert_alert
from tests.waiting import wait_for

SITE = "branch-7"
T0 = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)  # a quarter-hour boundary
T0_S = int(T0.timestamp())
HISTORY = f"lobbywatch/{SITE}/history"


def make_config(
    tmp_path: Path,
    port: int,
    *,
    enabled: bool = True,
    catch_up_days: float = 7,
    receipts: bool = False,
) -> LobbyConfig:
    text = (
        "site: {{id: branch-7, timezone: Asia/Shanghai}}\n"
        + LOBBY
        + "mqtt: {{host: 127.0.0.1, port: {port}, keepalive_s: 5, reconnect_min_s: 1,"
        " reconnect_max_s: 1}}\n"
        "central: {{enabled: {enabled}, catch_up_days: {days}, receipts: {receipts},"
        " resend_after_s: 5}}\n"
    ).format(
        db=tmp_path / "lw.db",
        port=port,
        enabled=str(enabled).lower(),
        days=catch_up_days,
        receipts=str(receipts).lower(),
    )
    return parse_config(text, base_dir=tmp_path, environ={})


class Watcher:
    """The centre's side of the local broker: a persistent session on `<site>/#`, so what the
    device sends while the watcher reconnects after a broker restart still reaches it."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="centre-watcher", protocol=mqtt.MQTTv5
        )
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(f"lobbywatch/{SITE}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, what="watcher subscribed")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        payload: Any = msg.payload.decode()
        if msg.topic.startswith(HISTORY) or msg.topic.endswith("/state"):
            payload = json.loads(payload) if payload else None
        with self.lock:
            self.messages.append((msg.topic, payload))

    def of(self, kind: str) -> list[Any]:
        with self.lock:
            return [p for t, p in self.messages if t == f"{HISTORY}/{kind}"]

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.messages]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Clock:
    """The feed's wall clock, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Mono:
    """The feed's monotonic clock, moved by the test (receipts' arrival and sending times)."""

    def __init__(self, at: float = 1000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


class Device:
    """Store, link and feed as the service wires them (the feed before the link starts, so its
    receipts subscription is made on connect), with a fake wall clock."""

    def __init__(self, config: LobbyConfig, clock: Clock, mono: Mono | None = None) -> None:
        self.config = config
        self.store = Store(config.storage.path, site_id=SITE)
        self.board = OccupancyBoard({"lobby": ["waiting", "queue"]})
        self.link = MqttLink(config.mqtt, SITE, wall_clock=clock)
        self.feed = CentralFeed(
            config, self.store, self.link, self.board.total,
            clock=mono or time.monotonic, wall_clock=clock,
        )  # fmt: skip
        self.link.start()
        wait_for(self.link.connected.is_set, what="device connected")

    def tick_until(self, done: Callable[[], object], what: str) -> None:
        """Tick (sending, and reading PUBACKs) until `done()`; real PUBACKs take milliseconds."""
        wait_for(lambda: (self.feed.tick(), done())[1], what=what)

    def stop(self) -> None:
        self.link.stop()
        self.store.close()


@pytest.fixture
def watcher(broker: Broker):
    started = Watcher(broker.port)
    yield started
    started.close()


def history_rows(store: Store) -> None:
    """Two zones over three quarter hours: the queue's camera offline at first (unknown), the
    third quarter hour with nothing stored at all."""
    rows = [
        HistoryRow("waiting", "lobby", T0_S, 10, 20, 1.0, 2.0, 0.0, 1.0),
        HistoryRow("waiting", "lobby", T0_S + 10, 10, 20, 2.5, 3.0, 2.0, 1.0),
        HistoryRow("waiting", "lobby", T0_S + 20, 10, 10, 4.0, 6.0, 3.0, 0.5),
        HistoryRow("queue", "lobby", T0_S, 10, 0, None, None, None, 0.0),
        HistoryRow("waiting", "lobby", T0_S + 900, 10, 20, 7.0, 8.0, 6.0, 1.0),
        HistoryRow("queue", "lobby", T0_S + 900, 10, 20, 3.0, 3.0, 3.0, 1.0),
        HistoryRow("queue", "lobby", T0_S + 1790, 10, 15, 1.5, 2.0, 1.0, 0.8),
    ]
    store.write_history(rows)


def api_points(config: LobbyConfig, start: int, n: int) -> dict[tuple[str, str], dict[str, Any]]:
    """The device API's 15m points for the same store, by (zone, start)."""
    edges = np.arange(start, start + (n + 1) * 900, 900, dtype=np.int64)
    access = StoreAccess(config.storage.path, SITE)
    per_zone = history(access, None, "15m", ["waiting", "queue"], edges)
    document = history_document("15m", "UTC", edges, per_zone)
    return {(z["zone_id"], p["start"]): p for z in document["zones"] for p in z["points"]}


def test_closed_buckets_are_the_api_history_and_wait_for_their_last_interval(
    tmp_path, broker, watcher
):
    clock = Clock(T0 + timedelta(seconds=1))
    device = Device(make_config(tmp_path, broker.port), clock)
    try:
        device.feed.tick()  # first enable: from the current bucket (T0) on
        assert device.store.get_meta(INTERVALS_CURSOR) == str(T0_S)
        history_rows(device.store)
        # The third bucket ends at T0+45m; its last 10 s interval is in 10 s + 5 s later.
        clock.at = T0 + timedelta(minutes=45, seconds=14)
        device.tick_until(lambda: len(watcher.of("intervals")) == 2, "two buckets")
        device.tick_until(
            lambda: device.store.get_meta(INTERVALS_CURSOR) == str(T0_S + 1800), "cursor on ack"
        )
        clock.at = T0 + timedelta(minutes=45, seconds=15)
        device.tick_until(lambda: len(watcher.of("intervals")) == 3, "third bucket")
        device.tick_until(
            lambda: device.store.get_meta(INTERVALS_CURSOR) == str(T0_S + 2700), "cursor"
        )
        device.feed.tick()
        sent = watcher.of("intervals")
        assert len(sent) == 3  # none twice
        points = api_points(device.config, T0_S, 3)
        for message in sent:
            assert {k: message[k] for k in ("v", "site", "bucket")} == {
                "v": 1, "site": SITE, "bucket": "15m",
            }  # fmt: skip
            assert message["closed_at"].endswith("Z")
            assert [z["zone"] for z in message["zones"]] == ["waiting", "queue"]
            for zone in message["zones"]:
                point = points[(zone["zone"], message["start"])]
                assert point["end"] == message["end"]
                assert {k: zone[k] for k in ("mean", "max", "p90", "coverage", "samples")} == {
                    k: point[k] for k in ("mean", "max", "p90", "coverage", "samples")
                }
                assert (zone["role"], zone["camera"]) == (zone["zone"], "lobby")
        first, second, third = sent
        assert (first["start"], first["end"]) == ("2026-12-01T02:00:00Z", "2026-12-01T02:15:00Z")
        waiting = first["zones"][0]
        assert waiting["mean"] == pytest.approx((20 * 1.0 + 20 * 2.5 + 10 * 4.0) / 50)
        assert (waiting["max"], waiting["p90"], waiting["samples"]) == (6.0, 4.0, 50)
        assert waiting["coverage"] == pytest.approx(25 / 900)
        unknown = {"mean": None, "max": None, "p90": None, "coverage": 0.0, "samples": 0}
        assert {k: first["zones"][1][k] for k in unknown} == unknown  # camera offline
        assert second["zones"][1]["mean"] == pytest.approx((20 * 3.0 + 15 * 1.5) / 35)
        assert [{k: z[k] for k in unknown} for z in third["zones"]] == [unknown, unknown]
    finally:
        device.stop()


def test_a_restart_sends_the_missed_buckets_from_the_cursor_none_twice(tmp_path, broker, watcher):
    config = make_config(tmp_path, broker.port)
    clock = Clock(T0 + timedelta(seconds=1))
    device = Device(config, clock)
    device.feed.tick()
    history_rows(device.store)
    clock.at = T0 + timedelta(minutes=30, seconds=20)
    device.tick_until(
        lambda: device.store.get_meta(INTERVALS_CURSOR) == str(T0_S + 1800), "two acked"
    )
    device.stop()
    # Down for two hours; the history of the time before the stop is still to come.
    later = Store(config.storage.path, site_id=SITE)
    later.write_history([HistoryRow("waiting", "lobby", T0_S + 1800, 10, 5, 9.0, 9.0, 9.0, 1.0)])
    later.close()
    clock.at = T0 + timedelta(hours=2, minutes=1)
    device = Device(config, clock)
    try:
        device.tick_until(
            lambda: device.store.get_meta(INTERVALS_CURSOR) == str(T0_S + 7200), "caught up"
        )
        starts = [m["start"] for m in watcher.of("intervals")]
        expected = [(T0 + timedelta(minutes=15 * i)).isoformat() for i in range(8)]
        assert starts == [s.replace("+00:00", "Z") for s in expected]
        assert watcher.of("intervals")[2]["zones"][0]["mean"] == 9.0
    finally:
        device.stop()


def test_catching_up_goes_back_catch_up_days_at_most(tmp_path, broker, watcher):
    config = make_config(tmp_path, broker.port, catch_up_days=0.125)  # 3 hours: 12 buckets
    earlier = Store(config.storage.path, site_id=SITE)
    earlier.set_meta(INTERVALS_CURSOR, str(T0_S - 30 * 86400))  # away for a month
    earlier.close()
    clock = Clock(T0 + timedelta(days=3, seconds=30))
    device = Device(config, clock)
    try:
        device.tick_until(
            lambda: device.store.get_meta(INTERVALS_CURSOR) == str(T0_S + 3 * 86400), "caught up"
        )
        starts = [m["start"] for m in watcher.of("intervals")]
        assert len(starts) == 12
        assert starts[0] == "2026-12-03T23:00:00Z"
    finally:
        device.stop()


def test_a_broker_outage_loses_no_bucket_queue_minute_or_alert(tmp_path, broker, watcher):
    clock = Clock(T0 + timedelta(seconds=1))
    device = Device(make_config(tmp_path, broker.port), clock)
    try:
        device.feed.tick()
        device.feed.on_camera_status("lobby", CameraStatus.ONLINE)
        history_rows(device.store)
        broker.stop()  # SIGTERM: mosquitto saves the watcher's session
        wait_for(lambda: not device.link.connected.is_set(), what="link down")
        clock.at = T0 + timedelta(minutes=45, seconds=20)
        insert_alert(device.store, "waiting-full:1", T0 + timedelta(minutes=20))
        device.feed.on_queue(json.dumps({"at": "2026-12-01T02:45:20.000Z", "wait": {}}))
        for _ in range(3):
            device.feed.tick()  # nothing can go out; nothing is lost either
        broker.start()
        device.tick_until(lambda: len(watcher.of("intervals")) == 3, "buckets after the outage")
        device.tick_until(lambda: watcher.of("alerts"), "the alert after the outage")
        wait_for(lambda: watcher.of("queue"), what="the queue minute paho kept")
        # Every camera again on the reconnect, with the time its status changed.
        wait_for(lambda: len(watcher.of("cameras")) >= 2, what="cameras again")
        assert {json.dumps(c) for c in watcher.of("cameras")} == {
            json.dumps({"v": 1, "site": SITE, "camera": "lobby", "status": "online",
                        "at": "2026-12-01T02:00:01Z"})
        }  # fmt: skip
        assert [m["start"] for m in watcher.of("intervals")] == [
            "2026-12-01T02:00:00Z", "2026-12-01T02:15:00Z", "2026-12-01T02:30:00Z",
        ]  # fmt: skip
    finally:
        device.stop()


def queue_json(at: str, minutes: float | None) -> str:
    return json.dumps({
        "site": SITE, "at": at, "line_zones": ["waiting", "queue"],
        "wait": {"minutes": minutes, "low_minutes": None if minutes is None else minutes - 2,
                 "high_minutes": None if minutes is None else minutes + 3,
                 "confidence": "unknown" if minutes is None else "medium",
                 "method": "none" if minutes is None else "departures",
                 "line_count": None if minutes is None else 14.0,
                 "throughput_per_min": None, "arrivals_per_min": None,
                 "dwell_p50_minutes": None, "reason": ""},
        "forecast": {},
    })  # fmt: skip


def test_the_queue_goes_once_a_minute_its_first_snapshot_nulls_kept(tmp_path, broker, watcher):
    clock = Clock(T0)
    device = Device(make_config(tmp_path, broker.port), clock)
    publisher = StatePublisher(device.config, device.board, device.link)
    publisher.on_queue = device.feed.on_queue
    try:
        for at, minutes in [
            ("2026-12-01T02:10:05.000Z", 12.5),
            ("2026-12-01T02:10:10.000Z", 13.0),
            ("2026-12-01T02:10:59.999Z", 14.0),
            ("2026-12-01T02:11:00.000Z", None),
            ("2026-12-01T02:11:30.000Z", 3.0),
            ("2026-12-01T02:13:02.000Z", 4.0),
        ]:
            publisher.publish_queue(queue_json(at, minutes))
        wait_for(lambda: len(watcher.of("queue")) == 3, what="three minutes")
        wait_for(lambda: len([t for t in watcher.topics() if t == f"lobbywatch/{SITE}/queue"]) == 6,
                 what="the retained queue, every snapshot")  # fmt: skip
        first, second, third = watcher.of("queue")
        assert first == {
            "v": 1, "site": SITE, "minute": "2026-12-01T02:10:00Z",
            "at": "2026-12-01T02:10:05.000Z", "wait_minutes": 12.5, "low_minutes": 10.5,
            "high_minutes": 15.5, "confidence": "medium", "method": "departures",
            "line_count": 14.0,
        }  # fmt: skip
        assert second["minute"] == "2026-12-01T02:11:00Z"
        assert [second[k] for k in ("wait_minutes", "low_minutes", "line_count")] == [None] * 3
        assert (third["minute"], third["wait_minutes"]) == ("2026-12-01T02:13:00Z", 4.0)
    finally:
        device.stop()


def test_every_alert_state_change_goes_as_published_on_its_state_topic(tmp_path, broker, watcher):
    clock = Clock(T0)
    device = Device(make_config(tmp_path, broker.port), clock)
    retained = AlertStatePublisher(
        device.store, device.link, SiteNames.of(device.config), device.board.total
    )
    alert_id = "waiting-full:1"
    state_topic = f"lobbywatch/{SITE}/alerts/{alert_id}/state"

    def states() -> list[Any]:
        with watcher.lock:
            return [p for t, p in watcher.messages if t == state_topic and p]

    try:
        insert_alert(device.store, "old:1", T0 - timedelta(hours=1))
        device.feed.tick()  # first enable: alerts from now on, not the old one
        assert device.store.get_meta(ALERTS_CURSOR) == str(device.store.alerts_version())
        steps = [
            lambda: insert_alert(device.store, alert_id, T0),
            lambda: device.store.record_ack(alert_id, "mgr-1", "accepted", T0 + timedelta(minutes=1)),
            lambda: device.store.record_ack(alert_id, "mgr-1", "pass_done", T0 + timedelta(minutes=4)),
            lambda: device.store.clear_alert(alert_id, T0 + timedelta(minutes=9), 3.0, []),
        ]  # fmt: skip
        for n, step in enumerate(steps, start=1):
            step()
            retained.pump()
            device.tick_until(lambda n=n: len(watcher.of("alerts")) == n, f"change {n}")
            wait_for(lambda n=n: len(states()) == n, what=f"state {n}")
        device.tick_until(
            lambda: device.store.get_meta(ALERTS_CURSOR) == str(device.store.alerts_version()),
            "cursor on ack",
        )
        sent = watcher.of("alerts")
        assert [m["state"]["status"] for m in sent] == [
            "raised",
            "accepted",
            "pass_done",
            "cleared",
        ]
        assert all(m["v"] == 1 and m["site"] == SITE for m in sent)
        assert [m["state"] for m in sent] == states()
        assert "old:1" not in {m["state"]["alert_id"] for m in sent}
    finally:
        device.stop()


def board_update(board: OccupancyBoard, status: CameraStatus, at: datetime) -> BoardUpdate:
    readings = tuple(
        ZoneReading(z, "lobby", 1.0 if status is CameraStatus.ONLINE else None, None, at, status)
        for z in ("waiting", "queue")
    )
    return BoardUpdate("lobby", status, readings, frame=status is CameraStatus.ONLINE)


def test_a_camera_status_goes_when_it_changes(tmp_path, broker, watcher):
    clock = Clock(T0)
    device = Device(make_config(tmp_path, broker.port), clock)
    publisher = StatePublisher(device.config, device.board, device.link)
    publisher.on_camera_status = device.feed.on_camera_status
    try:
        for seconds, status in [(0, "online"), (1, "online"), (7, "stale"), (9, "stale"),
                                (30, "offline"), (95, "online")]:  # fmt: skip
            clock.at = T0 + timedelta(seconds=seconds)
            publisher.on_board_update(board_update(device.board, CameraStatus(status), clock.at))
        wait_for(lambda: len(watcher.of("cameras")) == 4, what="four changes")
        assert [(m["status"], m["at"]) for m in watcher.of("cameras")] == [
            ("online", "2026-12-01T02:00:00Z"), ("stale", "2026-12-01T02:00:07Z"),
            ("offline", "2026-12-01T02:00:30Z"), ("online", "2026-12-01T02:01:35Z"),
        ]  # fmt: skip
    finally:
        device.stop()


@pytest.mark.parametrize("enabled", [False, True])
def test_the_service_sends_under_history_only_with_central_enabled(
    tmp_path, broker, watcher, enabled
):
    config = make_config(tmp_path, broker.port, enabled=enabled, receipts=True)
    store = Store(config.storage.path, site_id=SITE)
    service = Service(config)
    service._start_site(config, store, {})
    assert service.board is not None and service.notifier is not None
    try:
        assert (service.feed is not None) is enabled
        assert service.notifier.link is not None
        receipts = f"lobbywatch/{SITE}/central/receipts"
        assert (receipts in [w for w, _ in service.notifier.link._watches]) is enabled
        service.board.update(board_update(service.board, CameraStatus.ONLINE, T0))
        # The retained camera status and queue went out: the feed's would have by then.
        wait_for(lambda: f"lobbywatch/{SITE}/queue" in watcher.topics(), what="queue")
        wait_for(lambda: f"lobbywatch/{SITE}/camera/lobby/status" in watcher.topics(),
                 what="camera")  # fmt: skip
        if enabled:
            wait_for(lambda: watcher.of("queue") and watcher.of("cameras"), what="feed")
        else:
            assert not [t for t in watcher.topics() if t.startswith(HISTORY)]
    finally:
        service._stop_feed()
        service.notifier.stop(drain_s=0.2)
        store.close()


@pytest.mark.parametrize(
    ("cursor", "now", "expected"),
    [
        (None, T0_S + 100, T0_S),  # first enable: the bucket in progress, no old history
        (T0_S - 1800, T0_S + 100, T0_S - 1800),  # from the cursor
        (T0_S - 1800 + 60, T0_S + 100, T0_S - 900),  # a 1m cursor: the next whole 15m bucket
        (T0_S - 30 * 86400, T0_S + 100, T0_S - 7 * 86400),  # catch_up_days back at most
    ],
)
def test_the_first_bucket_to_send(cursor, now, expected):
    assert first_bucket(cursor, now, 900, 7 * 86400) == expected


@pytest.mark.parametrize(
    ("after_end_s", "closed_end"), [(0, T0_S), (14, T0_S), (15, T0_S + 900), (900, T0_S + 900)]
)
def test_a_bucket_closes_once_its_last_interval_is_stored(after_end_s, closed_end):
    """Bucket [T0, T0+15m) with 10 s intervals: closed 10 s + 5 s after its end."""
    assert last_closed_end(T0_S + 900 + after_end_s, 900, 10) == closed_end


class Pending:
    """A message paho holds with no PUBACK yet (or one it did not take at all)."""

    def __init__(self, error: bool = False) -> None:
        self.error = error

    def is_published(self) -> bool:
        if self.error:
            raise RuntimeError("Message publish failed: The client is not currently connected.")
        return False


def test_a_cursor_sends_again_after_a_lost_puback_or_a_message_paho_did_not_take(tmp_path):
    store = Store(tmp_path / "lw.db", site_id=SITE)
    try:
        cursor = _Cursor(store, INTERVALS_CURSOR)
        cursor.set(T0_S)
        cursor.flights.extend(_Flight(T0_S + 900 * i, Pending(), 100.0) for i in (1, 2))
        cursor.settle(150.0, connected_since=90.0)
        assert cursor.next == T0_S + 1800  # waiting for the PUBACK
        cursor.settle(130.0, connected_since=None)  # away: paho resends on reconnect
        cursor.settle(170.0, connected_since=150.0)
        assert cursor.next == T0_S + 1800  # sent long ago, but reconnected lately: time left
        cursor.settle(211.0, connected_since=150.0)
        assert (cursor.next, store.get_meta(INTERVALS_CURSOR)) == (T0_S, str(T0_S))
        cursor.flights.append(_Flight(T0_S + 900, Pending(error=True), 220.0))
        cursor.settle(221.0, connected_since=150.0)
        assert cursor.next == T0_S
    finally:
        store.close()


# --- receipts (central.receipts: true) -----------------------------------------------------


class Centre:
    """The centre as the device sees it: reads history/ (through the local broker here, not a
    bridge) and answers each interval, alert state and queue minute with a receipt, as
    central/ingest.py does after its commit. `drop` holds keys whose receipt is lost once;
    `answering` off is a centre (or bridge) that is away."""

    def __init__(self, port: int, *, drop: set[int] | None = None, answering: bool = True) -> None:
        self.drop = set(drop or ())
        self.answering = answering
        self.received: list[int] = []  # interval and alert keys
        self.minutes: list[int] = []  # queue minutes
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="centre-ingest", protocol=mqtt.MQTTv5
        )
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(f"{HISTORY}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_for(subscribed.is_set, what="centre subscribed")

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        message = json.loads(msg.payload)
        receipt: dict[str, Any] = {"v": 1, "site": SITE, "intervals": [], "alerts": [],
                                   "queue": [], "cameras": []}  # fmt: skip
        if msg.topic == f"{HISTORY}/intervals":
            key = int(datetime.fromisoformat(message["end"].replace("Z", "+00:00")).timestamp())
            receipt["intervals"].append(key)
        elif msg.topic == f"{HISTORY}/alerts":
            key = message["state"]["version"]
            receipt["alerts"].append(key)
        elif msg.topic == f"{HISTORY}/queue":
            key = int(datetime.fromisoformat(message["minute"].replace("Z", "+00:00")).timestamp())
            receipt["queue"].append(key)
            self.minutes.append(key)
        else:
            return
        if msg.topic != f"{HISTORY}/queue":
            self.received.append(key)
        if not self.answering or key in self.drop:
            self.drop.discard(key)
            return
        client.publish(f"lobbywatch/{SITE}/central/receipts", json.dumps(receipt), qos=0)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def starts_of(watcher: Watcher) -> list[int]:
    return [
        int(datetime.fromisoformat(m["start"].replace("Z", "+00:00")).timestamp()) - T0_S
        for m in watcher.of("intervals")
    ]


def test_a_bucket_without_receipt_is_sent_again_once_later_receipts_show_the_path_works(
    tmp_path, broker, watcher
):
    centre = Centre(broker.port, drop={T0_S + 900})
    clock, mono = Clock(T0 + timedelta(seconds=1)), Mono()
    device = Device(make_config(tmp_path, broker.port, receipts=True), clock, mono)
    waiting = device.feed.intervals.outstanding
    assert waiting is not None
    try:
        device.feed.tick()
        history_rows(device.store)
        clock.at = T0 + timedelta(minutes=45, seconds=15)  # three buckets closed
        device.tick_until(lambda: waiting.waiting == [T0_S + 900], "receipts of 2 and 3")
        device.tick_until(lambda: not device.feed.intervals.flights, "every PUBACK")
        # PUBACKed and two later ones receipted: the cursor stays before the first bucket.
        assert device.store.get_meta(INTERVALS_CURSOR) == str(T0_S)
        assert starts_of(watcher) == [0, 900, 1800]
        # The centre answers on for resend_after_s (5 s) after its first receipt since the
        # first bucket went: that one is lost; everything from the cursor goes again.
        mono.at += 4
        clock.at += timedelta(minutes=15)
        device.tick_until(lambda: waiting.waiting == [T0_S + 900], "receipt of 4")
        assert starts_of(watcher) == [0, 900, 1800, 2700]  # not yet: 4 s of receipts
        mono.at += 1
        clock.at += timedelta(minutes=15)
        device.tick_until(
            lambda: device.store.get_meta(INTERVALS_CURSOR) == str(T0_S + 5 * 900), "resent"
        )
        assert starts_of(watcher) == [0, 900, 1800, 2700, 3600, 0, 900, 1800, 2700, 3600]
        assert waiting.waiting == []
    finally:
        device.stop()
        centre.close()


def test_a_restart_resumes_at_the_last_receipted_bucket_not_the_last_pubacked(
    tmp_path, broker, watcher
):
    config = make_config(tmp_path, broker.port, receipts=True)
    centre = Centre(broker.port, drop={T0_S + 1800})
    clock = Clock(T0 + timedelta(seconds=1))
    device = Device(config, clock, Mono())
    device.feed.tick()
    history_rows(device.store)
    clock.at = T0 + timedelta(minutes=45, seconds=15)
    outstanding = device.feed.intervals.outstanding
    assert outstanding is not None
    device.tick_until(lambda: outstanding.waiting == [T0_S + 1800], "receipts of 1 and 3")
    device.tick_until(lambda: not device.feed.intervals.flights, "every PUBACK")
    assert device.store.get_meta(INTERVALS_CURSOR) == str(T0_S + 900)
    device.stop()
    device = Device(config, clock, Mono())
    try:
        device.tick_until(
            lambda: device.store.get_meta(INTERVALS_CURSOR) == str(T0_S + 2700), "caught up"
        )
        assert starts_of(watcher) == [0, 900, 1800, 900, 1800]
        assert centre.received == [T0_S + 900, T0_S + 1800, T0_S + 2700, T0_S + 1800,
                                   T0_S + 2700]  # fmt: skip
    finally:
        device.stop()
        centre.close()


def test_without_any_receipt_nothing_is_resent_and_sending_stops_at_the_window(
    tmp_path, broker, watcher
):
    config = make_config(tmp_path, broker.port, receipts=True)
    earlier = Store(config.storage.path, site_id=SITE)
    earlier.set_meta(INTERVALS_CURSOR, str(T0_S))
    earlier.close()
    centre = Centre(broker.port, answering=False)  # the bridge or the centre is away
    clock, mono = Clock(T0 + timedelta(days=3, seconds=30)), Mono()  # 288 buckets closed
    device = Device(config, clock, mono)
    try:
        device.tick_until(lambda: len(centre.received) == MAX_IN_FLIGHT, "the window sent")
        device.tick_until(lambda: not device.feed.intervals.flights, "every PUBACK")
        mono.at += 86400.0  # a day without receipts: nothing is judged lost
        for _ in range(5):
            device.feed.tick()
        # A marker after the ticks: once the centre has it, everything sent before it is in.
        device.link.publish(f"{HISTORY}/alerts", json.dumps({"state": {"version": -1}}))
        wait_for(lambda: centre.received[-1:] == [-1], what="the marker")
        assert centre.received[:-1] == [T0_S + 900 * (i + 1) for i in range(MAX_IN_FLIGHT)]
        assert device.store.get_meta(INTERVALS_CURSOR) == str(T0_S)
    finally:
        device.stop()
        centre.close()


def test_an_alert_state_lost_on_the_way_is_sent_again_and_its_cursor_moves_on_the_receipt(
    tmp_path, broker, watcher
):
    clock, mono = Clock(T0), Mono()
    device = Device(make_config(tmp_path, broker.port, receipts=True), clock, mono)
    centre = Centre(broker.port)
    try:
        device.feed.tick()
        before = device.store.get_meta(ALERTS_CURSOR)
        insert_alert(device.store, "waiting-full:1", T0)
        first = device.store.alerts_version()
        centre.drop = {first}
        device.tick_until(lambda: centre.received == [first], "the alert")
        device.tick_until(lambda: not device.feed.alerts.flights, "its PUBACK")
        assert device.store.get_meta(ALERTS_CURSOR) == before  # PUBACKed, not receipted
        # Later receipts (a bucket's, the path works) for resend_after_s: the state goes again.
        device.store.record_ack("waiting-full:1", "mgr-1", "accepted", T0 + timedelta(minutes=1))
        second = device.store.alerts_version()
        device.tick_until(lambda: centre.received == [first, second], "the accept")
        mono.at += 5
        clock.at = T0 + timedelta(minutes=15, seconds=15)  # a bucket closes: its receipt
        device.tick_until(
            lambda: device.store.get_meta(ALERTS_CURSOR) == str(second), "alerts receipted"
        )
        assert centre.received[:3] == [first, second, T0_S + 900]
        assert [m["state"]["version"] for m in watcher.of("alerts")] == [first, second, second]
    finally:
        device.stop()
        centre.close()


def minute_s(at: str) -> int:
    return int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())


def queue_minutes_of(watcher: Watcher) -> list[str]:
    return [m["minute"][11:16] for m in watcher.of("queue")]


def test_a_queue_minute_lost_on_the_way_is_sent_again_once_receipts_show_the_path_works(
    tmp_path, broker, watcher
):
    lost = minute_s("2026-12-01T02:10:00Z")
    centre = Centre(broker.port, drop={lost})
    clock, mono = Clock(T0), Mono()
    device = Device(make_config(tmp_path, broker.port, receipts=True), clock, mono)
    publisher = StatePublisher(device.config, device.board, device.link)
    publisher.on_queue = device.feed.on_queue
    kept = device.feed.queue_minutes
    assert kept is not None
    try:
        publisher.publish_queue(queue_json("2026-12-01T02:10:05.000Z", 12.5))
        publisher.publish_queue(queue_json("2026-12-01T02:11:05.000Z", 13.0))
        device.tick_until(lambda: kept.outstanding.waiting == [lost], "the 02:11 receipt")
        # The centre answers (02:11, then 02:12) for resend_after_s (5 s): 02:10 goes again,
        # with its own numbers; the receipted minutes do not.
        mono.at += 5
        publisher.publish_queue(queue_json("2026-12-01T02:12:05.000Z", 14.0))
        device.tick_until(lambda: len(centre.minutes) == 4 and len(kept) == 0, "02:10 again")
        assert queue_minutes_of(watcher) == ["02:10", "02:11", "02:12", "02:10"]
        assert watcher.of("queue")[3]["wait_minutes"] == 12.5
        assert kept.outstanding.waiting == []
    finally:
        device.stop()
        centre.close()


def test_without_receipts_queue_minutes_are_not_kept(tmp_path, broker, watcher):
    device = Device(make_config(tmp_path, broker.port), Clock(T0), Mono())
    publisher = StatePublisher(device.config, device.board, device.link)
    publisher.on_queue = device.feed.on_queue
    try:
        assert device.feed.queue_minutes is None
        publisher.publish_queue(queue_json("2026-12-01T02:10:05.000Z", 12.5))
        wait_for(lambda: queue_minutes_of(watcher) == ["02:10"], what="the minute")
        device.feed.tick()
    finally:
        device.stop()


def test_queue_minutes_resend_only_those_without_receipt_oldest_first():
    kept = QueueMinutes(resend_after_s=5)
    for key in (60, 120, 180):
        assert kept.sent(key, {"minute": key}, at=0)
    kept.receipted([120], at=1)  # the first receipt since all three went
    assert kept.settle() == []
    kept.receipted([240], at=6)  # another's receipt, 5 s on: 60 and 180 are lost
    assert kept.settle() == [(60, {"minute": 60}), (180, {"minute": 180})]
    assert len(kept) == 0 and kept.outstanding.waiting == []
    assert kept.sent(60, {"minute": 60}, at=6)  # sent again by the feed, rising anew
    kept.receipted([60], at=7)
    assert kept.settle() == [] and len(kept) == 0


def test_queue_minutes_receipted_in_order_are_forgotten_and_keys_must_rise():
    kept = QueueMinutes(resend_after_s=5)
    assert kept.sent(60, {}, at=0) and kept.sent(120, {}, at=0)
    assert not kept.sent(120, {}, at=0) and not kept.sent(30, {}, at=0)  # clock stepped back
    kept.receipted([60, 120], at=1)
    assert kept.settle() == [] and len(kept) == 0


def test_queue_minutes_keep_a_bounded_number_the_oldest_forgotten_and_counted():
    kept = QueueMinutes(resend_after_s=5, kept=3)
    for key in range(1, 6):
        kept.sent(60 * key, {}, at=0)
    assert sorted(kept.payloads) == [180, 240, 300] and kept.outstanding.waiting == [180, 240, 300]
    assert kept.forgotten == 2


@pytest.mark.parametrize("receipts", [False, True])
def test_cursors_move_on_the_puback_without_receipts_and_only_on_receipts_with_them(
    tmp_path, broker, watcher, receipts
):
    """A centre that sends no receipts (receipts: false) is the old behaviour: PUBACK moves the
    cursors, and nothing subscribes to the receipts topic."""
    centre = Centre(broker.port, answering=False)
    clock = Clock(T0 + timedelta(seconds=1))
    device = Device(make_config(tmp_path, broker.port, receipts=receipts), clock, Mono())
    try:
        device.feed.tick()
        before = device.store.alerts_version()
        history_rows(device.store)
        insert_alert(device.store, "waiting-full:1", T0 + timedelta(minutes=20))
        clock.at = T0 + timedelta(minutes=45, seconds=15)
        device.tick_until(lambda: len(centre.received) == 4, "three buckets and an alert")
        device.tick_until(lambda: not device.feed.intervals.flights, "every PUBACK")
        device.tick_until(lambda: not device.feed.alerts.flights, "the alert's PUBACK")
        device.feed.tick()
        expected = (T0_S, before) if receipts else (T0_S + 2700, device.store.alerts_version())
        assert (
            int(device.store.get_meta(INTERVALS_CURSOR) or 0),
            int(device.store.get_meta(ALERTS_CURSOR) or 0),
        ) == expected
        assert (device.feed.intervals.outstanding is None) is not receipts
        assert [w for w, _ in device.link._watches] == (
            [f"lobbywatch/{SITE}/central/receipts"] if receipts else []
        )
    finally:
        device.stop()
        centre.close()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{", "not JSON"),
        (b"\xff", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"v": 2, "site": "branch-7"}', "version 2"),
        (b'{"v": 1, "site": "branch-8", "intervals": [1]}', "site 'branch-8'"),
        (b'{"v": 1, "site": "branch-7", "intervals": ["1"]}', "intervals is not"),
        (b'{"v": 1, "site": "branch-7", "alerts": [true]}', "alerts is not"),
        (b'{"v": 1, "site": "branch-7", "alerts": 3}', "alerts is not"),
        (b'{"v": 1, "site": "branch-7", "intervals": [1.5]}', "intervals is not"),
        (json.dumps({"v": 1, "site": SITE, "intervals": list(range(20000))}).encode(), "bytes"),
    ],
)
def test_a_receipt_that_is_not_the_centres_is_refused(payload, reason):
    with pytest.raises(ValueError, match=reason):
        parse_receipt(payload, SITE)


def test_a_receipt_gives_its_interval_alert_and_queue_keys():
    payload = {"v": 1, "site": SITE, "intervals": [T0_S, T0_S + 900], "alerts": [7],
               "queue": [T0_S + 600], "cameras": [["lobby", "x"]]}  # fmt: skip
    assert parse_receipt(json.dumps(payload).encode(), SITE) == Receipt(
        (T0_S, T0_S + 900), (7,), (T0_S + 600,)
    )
    assert parse_receipt(b'{"v": 1, "site": "branch-7"}', SITE) == Receipt((), (), ())


def test_bad_receipts_are_ignored_with_a_rate_limited_warning(tmp_path, broker, caplog):
    device = Device(make_config(tmp_path, broker.port, receipts=True), Clock(T0), Mono())
    try:
        for _ in range(20):
            device.feed._on_receipt("t", b"not json", False)
        device.feed._on_receipt("t", b'{"v": 1, "site": "branch-7", "intervals": [1]}', True)
        assert device.feed._receipts.empty()
        warnings = [r for r in caplog.records if "ignoring a receipt" in r.getMessage()]
        assert len(warnings) == 5  # LogThrottle's burst, then one line a minute
    finally:
        device.stop()


# --- Outstanding (pure) --------------------------------------------------------------------


def test_outstanding_cursor_is_the_highest_key_with_every_earlier_one_receipted():
    window = Outstanding(resend_after_s=30)
    for key in (1, 2, 3, 4):
        window.sent(key, at=0.0)
    window.receipted([2, 3, 99], at=1.0)  # 99: a duplicate's, not ours
    assert window.settle().cursor is None
    assert window.waiting == [1, 4]
    window.receipted([1, 1], at=2.0)
    settled = window.settle()
    assert (settled.cursor, settled.resend) == (3, False)
    assert (len(window), window.last, window.waiting) == (1, 4, [4])
    window.receipted([4], at=3.0)
    assert window.settle().cursor == 4
    assert (len(window), window.last) == (0, None)


def test_outstanding_is_never_lost_without_receipts():
    window = Outstanding(resend_after_s=30)
    window.sent(1, at=0.0)
    assert window.settle() == window.settle()
    assert not window.settle().resend and window.waiting == [1]


@pytest.mark.parametrize(
    ("receipts", "lost"),
    [
        ([10.0, 39.9], None),  # answering for 29.9 s since it went: not yet
        ([10.0, 40.0], 1),  # answering for 30 s, none for it: lost
        ([1000.0], None),  # the centre back after a long silence: its backlog first
        ([1000.0, 1029.0], None),
        ([1000.0, 1030.0], 1),
    ],
)
def test_outstanding_judges_the_oldest_lost_after_resend_after_s_of_receipts(receipts, lost):
    window = Outstanding(resend_after_s=30)
    window.sent(1, at=0.0)
    window.sent(2, at=5.0)
    for at in receipts:
        window.receipted([2], at=at)
    settled = window.settle()
    assert settled.lost == lost
    assert window.waiting == ([] if lost else [1])  # lost: cleared, sent again from the cursor


def test_outstanding_counts_only_receipts_after_a_key_was_sent():
    window = Outstanding(resend_after_s=5)
    window.sent(1, at=0.0)
    window.receipted([1], at=1.0)
    window.sent(2, at=2.0)
    window.receipted([], at=6.0)  # the first receipt since 2 went
    window.receipted([], at=10.9)
    assert window.settle() == Settled(cursor=1, lost=None)
    window.receipted([], at=11.0)
    assert window.settle().lost == 2


def test_outstanding_keys_must_rise():
    window = Outstanding(resend_after_s=5)
    window.sent(5, at=0.0)
    with pytest.raises(ValueError, match="keys must rise"):
        window.sent(5, at=1.0)
    window.clear()
    window.sent(5, at=1.0)  # after a clear, sending starts again from the cursor
    assert window.waiting == [5]


class OutstandingMachine(RuleBasedStateMachine):
    """A branch sending through a path that loses, delays and duplicates messages, and a centre
    receipting what it stored: the persisted cursor never passes a key the centre does not
    have, and a key is judged lost only after resend_after_s of receipts since it went."""

    R = 5.0

    def __init__(self) -> None:
        super().__init__()
        self.window = Outstanding(resend_after_s=self.R)
        self.now = 0.0
        self.cursor = 0  # persisted
        self.sent_at: dict[int, float] = {}  # the latest copy's sending time
        self.transit: list[int] = []  # copies on the way to the centre
        self.stored: set[int] = set()
        self.receipts: list[float] = []

    @rule(lose=st.booleans())
    def send(self, lose: bool) -> None:
        if len(self.window) >= 8:
            return
        key = (self.window.last or self.cursor) + 1
        self.window.sent(key, self.now)
        self.sent_at[key] = self.now
        if not lose:
            self.transit.append(key)

    @rule(n=st.integers(0, 4), lose_receipt=st.booleans(), shuffle=st.randoms())
    def centre_commits(self, n: int, lose_receipt: bool, shuffle: Any) -> None:
        batch = self.transit[:n]
        del self.transit[:n]
        shuffle.shuffle(batch)
        self.stored.update(batch)
        if not lose_receipt:
            self.window.receipted(batch, self.now)
            self.receipts.append(self.now)

    @rule(seconds=st.sampled_from([0.0, 0.5, 2.0, 4.9, 5.0, 30.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def settle(self) -> None:
        settled = self.window.settle()
        if settled.cursor is not None:
            assert settled.cursor > self.cursor
            self.cursor = settled.cursor
        if settled.lost is not None:
            went = self.sent_at[settled.lost]
            after = [r for r in self.receipts if r >= went]
            assert after and after[-1] - after[0] >= self.R
            assert len(self.window) == 0

    @invariant()
    def the_cursor_never_passes_what_the_centre_lacks(self) -> None:
        assert all(key in self.stored for key in range(1, self.cursor + 1))


OutstandingMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_outstanding_properties = OutstandingMachine.TestCase
