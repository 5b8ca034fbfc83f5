"""The queue monitor on scripted board updates (a fake clock, a real store): departures make a
wait, a camera down makes it unknown (never 0), kiosks and counters, tickets and the forecast
read from the store, the published JSON, and a full disk that breaks nothing."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edge.board import BoardUpdate, OccupancyBoard
from edge.capture import Camera, CaptureSettings
from edge.config import LobbyConfig, MqttConfig, parse_config
from edge.mqtt import MqttLink
from edge.pipeline import CameraPipeline
from edge.queueing.tickets import MAX_EVENTS, TicketEvent
from edge.queueing.wait import ahead
from edge.runtime.queue_monitor import (
    PUBLISH_EVERY_S,
    TICKET_BURST,
    TICKET_RATE_PER_S,
    QueueMonitor,
)
from edge.service import CameraWorker
from edge.store import HistoryRow, Store
from edge.tracking.dwell import DwellBook, DwellSettings, Visit, ZoneDwell
from edge.types import CameraStatus, Detections, ZoneReading
from tests.test_service import StallingSource
from tests.waiting import wait_for

T0 = datetime(2026, 12, 1, 2, 0, 0, tzinfo=timezone.utc)  # a Tuesday, 10:00 in Shanghai

ZONES = """\
      - {id: door, name: Door, role: entrance, polygon: [[0, 0], [0.2, 0], [0.2, 0.2], [0, 0.2]]}
      - {id: waiting, name: Waiting area, role: waiting,
          polygon: [[0.2, 0], [0.6, 0], [0.6, 0.5], [0.2, 0.5]]}
      - {id: queue, name: Queue, role: queue, polygon: [[0.6, 0], [1, 0], [1, 0.5], [0.6, 0.5]]}
      - {id: kiosks, name: Kiosks, role: self_service, capacity: 4,
          polygon: [[0, 0.5], [0.3, 0.5], [0.3, 1], [0, 1]]}
      - {id: desk-3, name: Counter 3, role: service, counter: "3",
          polygon: [[0.3, 0.5], [0.6, 0.5], [0.6, 1], [0.3, 1]]}
      - {id: teller-3, name: Teller 3, role: staff, counter: "3",
          polygon: [[0.6, 0.5], [1, 0.5], [1, 1], [0.6, 1]]}
"""
NO_SERVICE = """\
      - {id: waiting, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
      - {id: queue, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}
"""
CONFIG = """\
site: {{id: s1, timezone: Asia/Shanghai}}
cameras:
  - id: lobby
    source: rtsp://127.0.0.1:9/none
    gating: {{enabled: false}}  # the stand-in detectors' people are not in the image
    zones:
{zones}storage: {{path: "{db}"}}
mqtt: {{enabled: false}}
queue: {{window_s: 1200, min_departures: 3, min_service_s: 30}}
"""


def make_config(tmp_path: Path, zones: str = ZONES) -> LobbyConfig:
    text = CONFIG.format(zones=zones, db=tmp_path / "lw.db")
    return parse_config(text, base_dir=tmp_path, environ={})


class Clocks:
    """One fake time for both clocks: steady seconds and the UTC wall time they stand for."""

    def __init__(self) -> None:
        self.t = 1000.0

    def mono(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.t - 1000.0)


class Lobby:
    """A config, a board, a real store and the monitor on fake clocks."""

    def __init__(self, tmp_path: Path, zones: str = ZONES, store: Store | None = None) -> None:
        self.config = make_config(tmp_path, zones)
        self.clocks = Clocks()
        self.zone_ids = [z.id for z in self.config.cameras[0].zones]
        self.board = OccupancyBoard({"lobby": self.zone_ids})
        self.store = store or Store(self.config.storage.path, site_id="s1")
        self.monitor = QueueMonitor(
            self.config, self.board, self.store, clock=self.clocks.mono, wall_clock=self.clocks.wall
        )
        self.board.subscribe(self.monitor.on_board_update)
        self.counts: dict[str, float | None] = dict.fromkeys(self.zone_ids, 0.0)

    def frame(
        self,
        visits: Iterable[Visit] = (),
        status: CameraStatus = CameraStatus.ONLINE,
        dwell: Mapping[str, ZoneDwell] | None = None,
        **counts: float | None,
    ) -> None:
        self.counts.update(counts)
        online = status is CameraStatus.ONLINE
        readings = tuple(
            ZoneReading(
                z, "lobby", self.counts[z] if online else None, None, self.clocks.wall(), status
            )
            for z in self.zone_ids
        )
        self.board.update(
            BoardUpdate("lobby", status, readings, online, tuple(visits), dwell or {})
        )

    def run(self, seconds: float, every: dict[float, list[Visit]] | None = None, **counts: float):
        """A frame a second for `seconds`; `every`: visits ending at those offsets."""
        start = self.clocks.t
        for i in range(int(seconds)):
            self.clocks.t = start + i + 1
            self.frame((every or {}).get(float(i + 1), []), **counts)


def service_visit(track: int, at: float, dwell: float = 90.0) -> Visit:
    return Visit(track, "desk-3", at - dwell, at)


def test_departures_from_the_counter_give_the_wait_by_littles_law(tmp_path):
    lobby = Lobby(tmp_path)
    # 10 minutes online, 6 people in the line, a customer served every 100 s.
    visits = {float(s): [service_visit(s, 1000.0 + s)] for s in range(100, 601, 100)}
    lobby.run(600, visits, waiting=4.0, queue=2.0)
    wait = lobby.monitor.snapshot().wait
    assert wait.method == "departures"
    assert wait.line_count == 6.0
    # 6 served in the 10 minutes (the estimator may leave out the first half minute, before
    # the line had stood long enough to call every counter busy).
    rate = wait.throughput_per_min
    assert rate == pytest.approx(0.6, rel=0.1)
    assert wait.wait_s == pytest.approx(ahead(6.0) / rate * 60)
    assert lobby.monitor.metric("wait", 15) == pytest.approx(wait.wait_s / 60)
    assert lobby.monitor.metric("count", 15) == 6.0


def test_a_short_counter_visit_is_a_passer_by_not_a_departure(tmp_path):
    lobby = Lobby(tmp_path)
    visits = {float(s): [service_visit(s, 1000.0 + s, dwell=10.0)] for s in range(100, 601, 100)}
    lobby.run(600, visits, waiting=4.0)
    wait = lobby.monitor.snapshot().wait
    assert wait.throughput_per_min is None
    assert wait.wait_s is None and wait.confidence == "unknown"


def test_a_camera_offline_makes_the_wait_unknown_null_in_json_never_zero(tmp_path):
    lobby = Lobby(tmp_path)
    visits = {float(s): [service_visit(s, 1000.0 + s)] for s in range(100, 601, 100)}
    lobby.run(600, visits, waiting=4.0, queue=2.0)
    assert lobby.monitor.snapshot().wait.wait_s is not None
    lobby.clocks.t += 1
    lobby.frame(status=CameraStatus.OFFLINE)
    snapshot = lobby.monitor.snapshot()
    assert snapshot.wait.wait_s is None and snapshot.wait.confidence == "unknown"
    assert snapshot.wait.reason
    wait = lobby.monitor.to_json(snapshot)["wait"]
    assert wait["minutes"] is None and wait["line_count"] is None
    assert lobby.monitor.metric("wait", 15) is None
    assert lobby.monitor.metric("count", 15) is None


def test_without_a_service_zone_leaving_the_line_is_a_departure_moving_along_it_is_not(tmp_path):
    lobby = Lobby(tmp_path, NO_SERVICE)
    visits = {}
    for k, s in enumerate(range(100, 601, 100)):
        at = 1000.0 + s
        visits[float(s)] = [
            Visit(2 * k, "waiting", at - 300, at, went_to="queue"),  # moved along: no departure
            Visit(2 * k + 1, "queue", at - 200, at, went_to=None),  # left the line
        ]
    lobby.run(600, visits, waiting=3.0, queue=3.0)
    wait = lobby.monitor.snapshot().wait
    assert wait.method == "departures"
    assert wait.throughput_per_min == pytest.approx(0.6, rel=0.1)  # the queue visits only


def test_a_wait_across_the_waiting_area_and_the_queue_is_one_line_visit(tmp_path):
    lobby = Lobby(tmp_path, NO_SERVICE)
    lobby.run(10, {5.0: [Visit(7, "waiting", 100.0, 400.0, went_to="queue")]}, waiting=1.0)
    lobby.run(10, {5.0: [Visit(7, "queue", 390.0, 700.0)]}, waiting=1.0)
    # 600 s from the waiting area to the counter, not two waits of 300 s.
    assert lobby.monitor.snapshot().wait.dwell_p50_s == pytest.approx(600.0)


def test_kiosks_and_counters_their_use_and_how_long_a_counter_has_been_empty(tmp_path):
    lobby = Lobby(tmp_path)
    lobby.run(1, kiosks=1.0, **{"desk-3": 1.0, "teller-3": 1.0})
    lobby.run(130, **{"desk-3": 0.0, "teller-3": 0.0})
    snapshot = lobby.monitor.snapshot()
    (kiosks,) = snapshot.kiosks
    assert (kiosks.zone_id, kiosks.count, kiosks.capacity) == ("kiosks", 1.0, 4)
    desk, teller = snapshot.counters
    assert (desk.zone_id, desk.counter, teller.zone_id, teller.counter) == (
        "desk-3", "3", "teller-3", "3"
    )  # fmt: skip
    assert desk.empty_s == pytest.approx(129.0) and teller.empty_s == pytest.approx(129.0)
    body = lobby.monitor.to_json(snapshot)
    assert body["kiosks"] == [{"zone": "kiosks", "name": "Kiosks", "in_use": 1.0, "capacity": 4}]
    assert body["counters"][0] == {
        "zone": "desk-3", "name": "Counter 3", "counter": "3", "occupied": False,
        "empty_minutes": 2.1,
    }  # fmt: skip

    lobby.run(1, **{"desk-3": 1.0})  # a customer at the counter: no longer empty
    desk, teller = lobby.monitor.snapshot().counters
    assert desk.empty_s == 0.0 and teller.empty_s == pytest.approx(130.0)

    lobby.clocks.t += 1
    lobby.frame(status=CameraStatus.OFFLINE)  # unknown is not empty
    lobby.clocks.t += 1
    lobby.frame(**{"desk-3": 0.0, "teller-3": 0.0})
    snapshot = lobby.monitor.snapshot()
    assert [c.empty_s for c in snapshot.counters] == [0.0, 0.0]
    lobby.clocks.t += 1
    lobby.frame(status=CameraStatus.STALE)
    snapshot = lobby.monitor.snapshot()
    assert snapshot.kiosks[0].count is None
    assert lobby.monitor.to_json(snapshot)["counters"][0]["occupied"] is None
    assert lobby.monitor.to_json(snapshot)["kiosks"][0]["in_use"] is None


def test_the_line_trend_is_the_slope_over_ten_minutes(tmp_path):
    lobby = Lobby(tmp_path)
    for i in range(601):
        lobby.clocks.t = 1000.0 + i
        lobby.frame(waiting=2.0 + i / 100)  # +6 people in 10 minutes
    assert lobby.monitor.snapshot().line_trend_per_10min == pytest.approx(6.0, abs=0.01)


def test_the_line_trend_is_unknown_until_ten_minutes_are_seen(tmp_path):
    lobby = Lobby(tmp_path)
    lobby.run(120, waiting=3.0)
    assert lobby.monitor.snapshot().line_trend_per_10min is None


def test_arrivals_in_five_minutes_and_the_usual_rate_from_the_hour_before(tmp_path):
    lobby = Lobby(tmp_path)
    # An arrival a minute for an hour, then 3 a minute for 5 minutes.
    visits = {float(s): [Visit(s, "door", 990.0 + s, 1000.0 + s)] for s in range(60, 3601, 60)}
    visits |= {float(s): [Visit(s, "door", 990.0 + s, 1000.0 + s)] for s in range(3620, 3901, 20)}
    lobby.run(3901, visits, waiting=1.0)
    snapshot = lobby.monitor.snapshot()
    assert snapshot.arrivals_5min == 15.0
    assert snapshot.arrivals_expected_5min == pytest.approx(5.0, abs=0.1)
    assert lobby.monitor.metric("arrivals", 15) == 15.0


def test_the_usual_arrivals_come_from_the_entrances_profile_over_its_visit_time(tmp_path):
    lobby = Lobby(tmp_path)
    # The door usually holds 0.5 people at 10:00 (0.25 the rest of the day).
    write_history(lobby.store, {"door": 0.25, "waiting": 2.0}, T0 - timedelta(days=42), T0)
    lobby.monitor.tick()
    visits = {float(s): [Visit(s, "door", 990.0 + s, 1000.0 + s)] for s in (20, 40, 60)}
    lobby.run(100, visits, waiting=1.0)
    # Little's law: 0.5 people for 10 s each is 3 a minute, 15 in 5 minutes; the last hour
    # (3 arrivals, most of it unseen) has nothing to do with it.
    assert lobby.monitor.snapshot().arrivals_expected_5min == pytest.approx(15.0)


def test_arrivals_are_unknown_for_five_minutes_after_the_entrance_camera_was_down(tmp_path):
    lobby = Lobby(tmp_path)
    lobby.run(400, waiting=1.0)
    assert lobby.monitor.snapshot().arrivals_5min == 0.0
    lobby.clocks.t += 1
    lobby.frame(status=CameraStatus.OFFLINE)
    lobby.run(200, waiting=1.0)
    assert lobby.monitor.snapshot().arrivals_5min is None
    lobby.run(101, waiting=1.0)
    assert lobby.monitor.snapshot().arrivals_5min == 0.0


def ticket(kind: str, number: str, at: datetime, counter: str | None = None) -> TicketEvent:
    return TicketEvent(kind=kind, ticket=number, at=at, counter=counter)  # type: ignore[arg-type]


def test_tickets_in_the_store_make_the_wait_exact(tmp_path):
    lobby = Lobby(tmp_path)
    lobby.run(600, waiting=4.0)
    now = lobby.clocks.wall()
    events = [ticket("issued", f"A{i:03d}", now - timedelta(minutes=15 - i)) for i in range(8)]
    events += [
        ticket("called", f"A{i:03d}", now - timedelta(minutes=10 - 2 * i), "3") for i in range(4)
    ]
    lobby.store.insert_tickets(events)
    lobby.monitor.tick()
    wait = lobby.monitor.snapshot().wait
    assert (wait.method, wait.confidence) == ("tickets", "exact")
    assert wait.line_count == 4.0  # tickets waiting: 8 issued, 4 called
    assert lobby.monitor.book.waiting() == 4
    # Read once: a second tick adds nothing twice.
    lobby.monitor.tick()
    assert lobby.monitor.book.waiting() == 4


def test_a_bad_ticket_message_is_dropped_and_a_good_one_stored(tmp_path):
    lobby = Lobby(tmp_path)
    assert lobby.monitor.on_ticket_message(b"{not json") == 0
    assert lobby.monitor.on_ticket_message(b'{"kind": "issued"}') == 0
    yesterday = (lobby.clocks.wall() - timedelta(days=1)).isoformat()
    assert lobby.monitor.on_ticket_message(
        json.dumps({"kind": "issued", "ticket": "A1", "at": yesterday}).encode()
    ) == 0  # fmt: skip
    good = json.dumps({"kind": "issued", "ticket": "A2", "at": lobby.clocks.wall().isoformat()})
    assert lobby.monitor.on_ticket_message(good.encode()) == 1
    assert [e.ticket for _, e in lobby.store.tickets_after(0)] == ["A2"]
    assert lobby.monitor.tickets_refused == 3


def test_a_flood_of_ticket_events_is_cut_to_a_rate_so_it_cannot_fill_the_disk(tmp_path, caplog):
    # Whoever can publish on the broker can send events: a machine gone wrong, 10,000 a
    # second. A day's backlog after an outage passes (TICKET_BURST); beyond it events are
    # taken at TICKET_RATE_PER_S, the rest refused, counted and logged rate-limited.
    lobby = Lobby(tmp_path)
    at = lobby.clocks.wall().isoformat()
    batch = [{"kind": "issued", "ticket": f"A{i}", "at": at} for i in range(MAX_EVENTS)]
    message = json.dumps(batch).encode()
    taken = sum(lobby.monitor.on_ticket_message(message) for _ in range(40))  # 20,000 events
    assert taken == TICKET_BURST
    assert lobby.monitor.tickets_refused == 40 - TICKET_BURST // MAX_EVENTS
    assert len(lobby.store.tickets_after(0, limit=100_000)) == TICKET_BURST
    flooded = [r for r in caplog.records if "a second" in r.getMessage()]
    assert len(flooded) == 5  # the log throttle's burst, not one line per refused message
    one = json.dumps({"kind": "issued", "ticket": "B1", "at": at}).encode()
    assert lobby.monitor.on_ticket_message(one) == 0  # the bucket is empty
    lobby.clocks.t += 1.0 / TICKET_RATE_PER_S
    assert lobby.monitor.on_ticket_message(one) == 1


def test_hostile_ticket_payloads_are_refused_and_nothing_raises(tmp_path):
    # the MQTT fuzz corpus and the generated attacks (deep nesting made json.loads raise a
    # RecursionError, which reached the MQTT thread as an unthrottled traceback per message)
    from tests.test_hostile_mqtt import GENERATED, PAYLOADS

    lobby = Lobby(tmp_path)
    payloads = [p.read_bytes() for p in PAYLOADS] + list(GENERATED.values())
    for payload in payloads:
        assert lobby.monitor.on_ticket_message(payload) == 0
    assert lobby.monitor.tickets_refused == len(payloads)
    assert lobby.store.tickets_after(0) == []


def test_a_ticket_handler_that_fails_is_logged_rate_limited(caplog):
    # a bug hit by every message of a flood must not write a traceback per message
    link = MqttLink(MqttConfig(), "s1", on_ticket_events=lambda _payload: 1 / 0)
    message = mqtt.MQTTMessage(topic=link.topics.ticket_events.encode())
    message.payload = b"{}"
    for _ in range(50):
        link._handle_message(None, None, message)  # type: ignore[arg-type]
    failed = [r for r in caplog.records if "ticket events failed" in r.getMessage()]
    assert 1 <= len(failed) <= 5


def write_history(store: Store, zones: dict[str, float], start: datetime, end: datetime) -> None:
    """15-minute rows of the zones: `profile(local hour)` people, every day."""
    rows = []
    at = int(start.timestamp()) // 900 * 900
    while at < end.timestamp():
        hour = (at // 3600 + 8) % 24  # Shanghai
        for zone_id, base in zones.items():
            mean = base * (2.0 if 10 <= hour < 12 else 1.0)
            rows.append(HistoryRow(zone_id, "lobby", at, 900, 90, mean, mean, mean, 1.0))
        at += 900
    store.write_history(rows)


def test_the_forecast_is_built_from_the_stored_history(tmp_path):
    lobby = Lobby(tmp_path)
    write_history(lobby.store, {"waiting": 3.0, "queue": 1.0}, T0 - timedelta(days=42), T0)
    visits = {float(s): [service_visit(s, 1000.0 + s)] for s in range(100, 601, 100)}
    lobby.run(600, visits, waiting=6.0, queue=2.0)
    lobby.monitor.tick()
    snapshot = lobby.monitor.snapshot()
    f15 = snapshot.forecast[15]
    assert f15.reason == "" and f15.count == pytest.approx(8.0)  # 10:10 + 15 min: busy hours
    assert f15.count_low is not None and f15.count_high is not None
    rate = snapshot.wait.throughput_per_min
    assert rate is not None and f15.wait_s == pytest.approx(ahead(8.0) / rate * 60)
    assert lobby.monitor.metric("forecast_count", 30) == pytest.approx(8.0)
    assert lobby.monitor.metric("forecast_wait", 15) == pytest.approx(f15.wait_s / 60)
    body = lobby.monitor.to_json(snapshot)["forecast"]
    assert set(body) == {"15", "30"} and body["15"]["count"] == 8.0


def test_the_forecast_is_unknown_with_a_reason_on_too_little_history(tmp_path):
    lobby = Lobby(tmp_path)
    write_history(lobby.store, {"waiting": 3.0, "queue": 1.0}, T0 - timedelta(days=8), T0)
    lobby.monitor.tick()
    snapshot = lobby.monitor.snapshot()
    for minutes in (15, 30):
        forecast = snapshot.forecast[minutes]
        assert forecast.count is None and forecast.wait_s is None
        assert "history too short" in forecast.reason
    assert lobby.monitor.metric("forecast_wait", 15) is None
    assert lobby.monitor.to_json(snapshot)["forecast"]["15"]["minutes"] is None


def test_the_json_has_the_contract_shape_and_is_written_for_the_api(tmp_path):
    lobby = Lobby(tmp_path)
    dwell = {"waiting": ZoneDwell("waiting", 2, 60.0, 120.0, 5, 300.0, 600.0, 0)}
    lobby.run(5, waiting=2.0)
    lobby.frame(dwell=dwell)
    payload = lobby.monitor.tick()
    assert payload is not None
    body = json.loads(payload)
    assert set(body) == {
        "site", "at", "line_zones", "wait", "forecast", "kiosks", "counters",
        "line_trend_per_10min", "arrivals_5min", "arrivals_expected_5min", "dwell",
    }  # fmt: skip
    assert body["site"] == "s1" and body["at"] == "2026-12-01T02:00:05.000Z"
    assert body["line_zones"] == ["waiting", "queue"]
    assert set(body["wait"]) == {
        "minutes", "low_minutes", "high_minutes", "confidence", "method", "line_count",
        "throughput_per_min", "arrivals_per_min", "dwell_p50_minutes", "reason",
    }  # fmt: skip
    assert set(body["forecast"]["15"]) == {
        "count", "count_low", "count_high", "minutes", "low_minutes", "high_minutes", "reason"
    }  # fmt: skip
    assert body["dwell"]["waiting"] == {
        "present": 2, "present_p50_minutes": 1.0, "present_p90_minutes": 2.0,
        "finished": 5, "finished_p50_minutes": 5.0, "finished_p90_minutes": 10.0,
    }  # fmt: skip
    # Too few departures: unknown, and null, not 0.
    assert body["wait"]["minutes"] is None and body["wait"]["confidence"] == "unknown"
    assert body["line_trend_per_10min"] is None
    stored = lobby.store.queue_live()
    assert stored is not None and json.loads(stored[0]) == body


def test_publication_is_every_five_seconds_and_at_once_when_the_wait_minutes_change(tmp_path):
    lobby = Lobby(tmp_path)
    visits = {float(s): [service_visit(s, 1000.0 + s)] for s in range(100, 601, 100)}
    lobby.run(600, visits, waiting=4.0, queue=2.0)
    assert lobby.monitor.tick() is not None
    lobby.clocks.t += 1
    assert lobby.monitor.tick() is None  # nothing changed, 1 s later
    lobby.run(1, waiting=10.0, queue=2.0)  # a jump in the line: more minutes of wait
    assert lobby.monitor.tick() is not None
    lobby.clocks.t += 1
    assert lobby.monitor.tick() is None
    lobby.clocks.t += PUBLISH_EVERY_S
    assert lobby.monitor.tick() is not None


def test_a_board_update_that_breaks_the_monitor_does_not_reach_the_camera_thread(tmp_path):
    lobby = Lobby(tmp_path)
    broken = Visit(1, "desk-3", None, None)  # type: ignore[arg-type]
    lobby.frame([broken], waiting=1.0)  # no exception
    lobby.run(5, waiting=1.0)
    assert lobby.monitor.snapshot().wait.line_count == 1.0


def test_a_full_disk_keeps_tickets_in_memory_and_writes_them_once_it_is_freed(tmp_path, small_disk):
    store = Store(small_disk.path / "lw.db", site_id="s1")
    lobby = Lobby(tmp_path, store=store)
    lobby.run(600, waiting=4.0)
    small_disk.fill()
    now = lobby.clocks.wall()
    for i in range(6):
        issued = {
            "kind": "issued",
            "ticket": f"A{i}",
            "at": (now - timedelta(minutes=9)).isoformat(),
        }
        assert lobby.monitor.on_ticket_message(json.dumps(issued).encode()) == 1
    for i in range(4):
        at = (now - timedelta(minutes=8 - 2 * i)).isoformat()
        called = {"kind": "called", "ticket": f"A{i}", "at": at, "counter": "3"}
        assert lobby.monitor.on_ticket_message(json.dumps(called).encode()) == 1
    lobby.run(5, waiting=4.0)
    assert lobby.monitor.tick() is not None  # the queue row is refused; nothing raises
    wait = lobby.monitor.snapshot().wait
    assert (wait.method, wait.line_count) == ("tickets", 2.0)  # kept in memory, used at once
    assert store.tickets_after(0) == []

    small_disk.free()
    lobby.clocks.t += 1
    lobby.monitor.tick()
    assert len(store.tickets_after(0)) == 10
    assert lobby.monitor.book.waiting() == 2  # read back from the store: no ticket twice
    assert lobby.monitor.tickets_lost == 0
    assert math.isfinite(lobby.monitor.snapshot().wait.wait_s or math.nan)


def test_the_dwell_book_says_which_visits_ended_and_where_the_person_went():
    book = DwellBook(["waiting", "queue"], settings=DwellSettings(exit_grace_s=5.0))
    steps = [
        (0.0, "waiting"),
        (4.0, "waiting"),
        (8.0, "waiting"),
        (10.0, "waiting"),
        (12.0, "queue"),
    ]
    for now, zone in steps:
        seen: dict[int, str | None] = {1: zone}
        book.update(seen, now)
        assert book.ended == ()
    book.update({1: "queue"}, 16.0)
    (moved,) = book.ended
    assert moved == Visit(1, "waiting", 0.0, 10.0) and moved.went_to == "queue"
    book.update({1: "queue"}, 17.0)
    assert book.ended == ()  # each visit is reported in the update it ends in, once
    book.update({}, 30.0)
    (left,) = book.ended
    assert left == Visit(1, "queue", 12.0, 17.0) and left.went_to is None


class OneVisitor:
    """A detector stand-in: one person in the left half for the first 10 frames, then no one."""

    provider = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> Detections:
        self.calls += 1
        if self.calls > 10:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                              np.zeros(0, np.int32))  # fmt: skip
        h, w = image.shape[:2]
        xyxy = np.array([[0.1 * w, 0.2 * h, 0.2 * w, 0.9 * h]], np.float32)
        return Detections(xyxy, np.full(1, 0.9, np.float32), np.zeros(1, np.int32))


def test_the_camera_worker_puts_the_ended_visits_and_the_dwell_on_the_board(tmp_path):
    text = CONFIG.format(zones=NO_SERVICE, db=tmp_path / "lw.db") + (
        "tracking: {lost_s: 0.3, exit_grace_s: 0.5, min_hits: 1}\n"
        "occupancy: {hold_frames: 0, window_s: 0}\n"
    )
    config = parse_config(text, base_dir=tmp_path, environ={})
    camera_config = config.cameras[0]
    store = Store(config.storage.path, site_id="s1")
    board = OccupancyBoard({"lobby": ["waiting", "queue"]})
    updates: list[BoardUpdate] = []
    board.subscribe(updates.append)
    source = StallingSource(frames=40)
    settings = CaptureSettings(camera_id="lobby", source="rtsp://127.0.0.1/x", target_fps=50.0)
    camera = Camera(settings, opener=lambda _settings: source)
    pipeline = CameraPipeline(
        camera_config, OneVisitor(), config.occupancy, tracking=config.tracking
    )
    worker = CameraWorker(camera_config, camera, pipeline, store, 10, board=board)
    worker.start()
    try:
        wait_for(lambda: any(u.visits for u in updates), what="an ended visit on the board")
    finally:
        worker.stop()
        worker.join(8)
        source.release.set()
    frames = [u for u in updates if u.frame]
    assert frames and all(set(u.dwell) == {"waiting", "queue"} for u in frames)
    visits = [v for u in updates for v in u.visits]
    assert visits and all(v.zone_id == "waiting" and v.went_to is None for v in visits)
    assert max(v.dwell_s for v in visits) > 0
    assert not any(u.visits or u.dwell for u in updates if not u.frame)


def test_a_store_that_cannot_be_read_leaves_the_forecast_unknown_and_nothing_raises(tmp_path):
    lobby = Lobby(tmp_path)
    lobby.run(5, waiting=2.0)
    lobby.store.close()  # every read and write now fails
    payload = lobby.monitor.tick()
    assert payload is not None
    body = json.loads(payload)
    assert body["forecast"]["15"]["count"] is None
    assert "history unreadable" in body["forecast"]["15"]["reason"]
    assert body["wait"]["line_count"] == 2.0  # the live figures go on


def test_a_restart_reads_the_ticket_table_from_todays_first_event(tmp_path):
    lobby = Lobby(tmp_path)
    now = lobby.clocks.wall()
    old = [ticket("issued", f"Z{i}", now - timedelta(days=2, minutes=i)) for i in range(50)]
    lobby.store.insert_tickets(old)
    lobby.store.insert_tickets([ticket("issued", "A1", now - timedelta(minutes=3))])
    asked: list[int] = []
    read = lobby.store.tickets_after

    def tickets_after(row_id: int, limit: int = 1000):
        asked.append(row_id)
        return read(row_id, limit)

    lobby.store.tickets_after = tickets_after  # type: ignore[method-assign]
    lobby.monitor.tick()
    assert asked[0] == 50  # the 50 rows of two days ago are not read again
    assert lobby.monitor.book.waiting() == 1


def test_a_ticket_table_with_nothing_of_today_is_read_from_its_end(tmp_path):
    lobby = Lobby(tmp_path)
    now = lobby.clocks.wall()
    lobby.store.insert_tickets(
        [ticket("issued", f"Z{i}", now - timedelta(days=1)) for i in range(9)]
    )
    lobby.monitor.tick()
    assert lobby.monitor.book.waiting() == 0
    lobby.store.insert_tickets([ticket("issued", "A1", now)])
    lobby.monitor.tick()
    assert lobby.monitor.book.waiting() == 1


def test_the_line_is_the_tracked_people_where_the_tracks_hold_more_than_the_count(tmp_path):
    # A full line: the detector misses people the tracks still hold (occlusion).
    lobby = Lobby(tmp_path)
    held = {
        "waiting": ZoneDwell("waiting", 9, 60.0, 120.0, 0, None, None, 0),
        "queue": ZoneDwell("queue", 2, 10.0, 20.0, 0, None, None, 0),
    }
    lobby.frame(dwell=held, waiting=6.0, queue=2.0)
    assert lobby.monitor.snapshot().wait.line_count == 11.0
    fewer = {z: dataclasses.replace(d, present=1) for z, d in held.items()}
    lobby.clocks.t += 1
    lobby.frame(dwell=fewer, waiting=6.0, queue=2.0)
    assert lobby.monitor.snapshot().wait.line_count == 8.0  # the count, where it sees more
    lobby.clocks.t += 1
    lobby.frame(dwell=fewer, status=CameraStatus.OFFLINE)
    assert lobby.monitor.snapshot().wait.line_count is None


def test_the_model_is_rebuilt_once_a_quarter_hour_has_closed_and_settled(tmp_path):
    # The forecast is anchored on the last whole quarter hour: a model built before it closed
    # would forecast from the profile alone for up to MODEL_EVERY_S.
    lobby = Lobby(tmp_path)
    lobby.clocks.t = 1000.0 + 14 * 60  # 02:14 UTC
    lobby.monitor.tick()
    built = lobby.monitor._model_version
    lobby.clocks.t = 1000.0 + 15 * 60 + 59  # the slot closed 59 s ago: its rows may be late
    lobby.monitor.tick()
    assert lobby.monitor._model_version == built
    lobby.clocks.t += 1
    lobby.monitor.tick()
    assert lobby.monitor._model_version == built + 1
    lobby.clocks.t += 60
    lobby.monitor.tick()
    assert lobby.monitor._model_version == built + 1  # once per slot, then every 5 minutes
