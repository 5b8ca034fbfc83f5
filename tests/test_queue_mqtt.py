"""The queue on a real Mosquitto (docs/mqtt.md, docs/queueing.md): ticket machine events
published on <prefix>/<site>/tickets/events land in the store and make the wait exact; the
queue state is retained on <prefix>/<site>/queue with the contract's JSON, for a client that
connects later too; a bad message is dropped and the link goes on.

The device is the service's own Notifier (with its queue monitor), store and board in this
process; the clock is real.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.board import BoardUpdate, OccupancyBoard
from edge.config import parse_config
from edge.notifier import Notifier
from edge.store import Store
from edge.types import CameraStatus, ZoneReading
from tests.alerts.support import LOBBY
from tests.waiting import wait_for

SITE = "branch-7"
CONFIG = (
    """\
site: {{id: branch-7, timezone: Asia/Shanghai}}
"""
    + LOBBY
    + """\
mqtt: {{host: 127.0.0.1, port: {port}, keepalive_s: 5, reconnect_min_s: 1, reconnect_max_s: 1}}
alerts: {{camera_offline: {{enabled: false}}}}
"""
)
TICKETS = f"lobbywatch/{SITE}/tickets/events"
QUEUE = f"lobbywatch/{SITE}/queue"


class Client:
    """A plain MQTT client: the ticket machine publishing, or a bank's client reading the
    queue state."""

    def __init__(self, port: int, subscribe: str | None = None) -> None:
        self.messages: list[tuple[bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.ready = threading.Event()
        if subscribe is None:
            self.client.on_connect = lambda *_: self.ready.set()
        else:
            self.client.on_subscribe = lambda *_: self.ready.set()
            self.client.on_connect = lambda c, *_: c.subscribe(subscribe, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((bytes(msg.payload), bool(msg.retain)))

    def latest(self, retained: bool | None = None) -> dict | None:
        with self.lock:
            found = [p for p, r in self.messages if retained is None or r is retained]
        return json.loads(found[-1]) if found else None

    def publish(self, topic: str, payload: object) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.client.publish(topic, text, qos=1).wait_for_publish(5)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device(tmp_path: Path, broker):
    text = CONFIG.format(db=tmp_path / "lw.db", port=broker.port)
    config = parse_config(text, base_dir=tmp_path, environ={})
    store = Store(config.storage.path, site_id=SITE)
    board = OccupancyBoard({"lobby": ["waiting", "queue"]})
    notifier = Notifier(config, store, board)
    notifier.start()
    assert notifier.link is not None
    wait_for(notifier.link.connected.is_set, what="device connected")
    at = datetime.now(timezone.utc)
    readings = tuple(
        ZoneReading(z, "lobby", 3.0, None, at, CameraStatus.ONLINE) for z in ("waiting", "queue")
    )
    board.update(BoardUpdate("lobby", CameraStatus.ONLINE, readings, frame=True))
    yield notifier, store
    notifier.stop(drain_s=0.5)
    store.close()


def events(now: datetime) -> list[dict[str, str]]:
    """Six tickets issued in the last ten minutes, four of them called since."""
    issued = [
        {
            "kind": "issued",
            "ticket": f"A{i:03d}",
            "at": (now - timedelta(minutes=10 - i)).isoformat(),
        }
        for i in range(6)
    ]
    called = [
        {"kind": "called", "ticket": f"A{i:03d}", "counter": "2",
         "at": (now - timedelta(minutes=6 - i)).isoformat()}
        for i in range(4)
    ]  # fmt: skip
    return issued + called


def test_ticket_events_published_are_stored_and_make_the_retained_wait_exact(device, broker):
    notifier, store = device
    machine = Client(broker.port)
    machine.publish(TICKETS, events(datetime.now(timezone.utc)))
    stored = wait_for(lambda: store.tickets_after(0), what="tickets stored")
    assert len(stored) == 10
    wait_for(lambda: notifier.queue.snapshot().wait.method == "tickets", what="ticket wait")
    wait = notifier.queue.snapshot().wait
    assert wait.confidence == "exact" and wait.line_count == 2.0

    late = Client(broker.port, subscribe=QUEUE)  # connects after: the retained state
    body = wait_for(
        lambda: (b := late.latest()) and b["wait"]["method"] == "tickets" and b,
        what="retained queue state with the ticket wait",
    )
    assert body["site"] == SITE and body["line_zones"] == ["waiting", "queue"]
    assert body["wait"]["confidence"] == "exact" and body["wait"]["minutes"] > 0
    assert set(body["forecast"]) == {"15", "30"}
    assert body["forecast"]["15"]["count"] is None  # no history: unknown, with a reason
    assert body["forecast"]["15"]["reason"]
    assert body["arrivals_5min"] is None  # no entrance zone: unknown, not 0
    with late.lock:
        assert late.messages[0][1] is True  # the first came retained
    stored_row = store.queue_live()
    assert stored_row is not None and json.loads(stored_row[0])["site"] == SITE
    machine.stop()
    late.stop()


def test_a_bad_ticket_message_is_dropped_and_the_next_good_one_taken(device, broker):
    notifier, store = device
    machine = Client(broker.port)
    machine.publish(TICKETS, "{not json")
    machine.publish(TICKETS, {"kind": "issued", "ticket": "A1"})  # no time
    good = {"kind": "issued", "ticket": "B7", "at": datetime.now(timezone.utc).isoformat()}
    machine.publish(TICKETS, good)
    stored = wait_for(lambda: store.tickets_after(0), what="the good event stored")
    assert [e.ticket for _, e in stored] == ["B7"]
    assert notifier.queue.tickets_refused == 2
    assert notifier.link is not None and notifier.link.connected.is_set()
    machine.stop()


def test_a_broker_that_lost_its_retained_messages_gets_the_queue_state_again(device, broker):
    notifier, _ = device
    first = Client(broker.port, subscribe=QUEUE)
    wait_for(first.latest, what="queue state")
    first.stop()
    assert notifier.link is not None
    broker.kill()
    broker.proc = None
    wait_for(lambda: not notifier.link.connected.is_set(), what="device saw the broker go")
    # A broker back without its retained messages (the persistence file removed).
    (broker.workdir / "mosquitto.db").unlink(missing_ok=True)
    broker.start()
    wait_for(notifier.link.connected.is_set, timeout=20, what="device reconnected")
    # Connected is said just before the republish: once a state came through, it is retained.
    live = Client(broker.port, subscribe=QUEUE)
    wait_for(live.latest, what="queue state after the restart")
    live.stop()
    late = Client(broker.port, subscribe=QUEUE)
    body = wait_for(lambda: late.latest(retained=True), what="retained queue state again")
    assert body["site"] == SITE
    late.stop()
