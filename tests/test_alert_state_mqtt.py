"""Alert state on a real Mosquitto (docs/handheld.md): a retained state per open alert and the
retained open index, kept equal to the store through acks from MQTT and from the API (a real
uvicorn), clears, a service restart and a broker that lost its retained messages.

The device is the service's own Notifier, store and board in this process; the clock is real.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from api.auth import hash_key
from edge.board import BoardUpdate, OccupancyBoard
from edge.config import parse_config
from edge.handheld import Change, Handheld
from edge.notifier import Notifier
from edge.store import Store
from edge.types import CameraStatus, ZoneReading
from tests.alerts.support import LOBBY
from tests.test_api_support import KEYS, auth, insert_alert, served
from tests.waiting import wait_for

SITE = "branch-7"
CONFIG = (
    """\
site: {{id: branch-7, timezone: Asia/Shanghai}}
"""
    + LOBBY
    + """\
mqtt: {{host: 127.0.0.1, port: {port}, keepalive_s: 5, reconnect_min_s: 1, reconnect_max_s: 1}}
api:
  keys: [{{id: mgr-api, role: manager, sha256: {sha}}}]
alerts:
  camera_offline: {{enabled: false}}
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
      max_escalations: 2
      effect_after_s: 600
    - {{id: queue-full, zones: [queue], raise_at: 10, clear_at: 5, raise_after_s: 0,
        clear_after_s: 0, cooldown_s: 0}}
"""
)


def make_config(tmp_path: Path, port: int, escalate: float = 600):
    text = CONFIG.format(
        db=tmp_path / "lw.db", port=port, escalate=escalate, sha=hash_key(KEYS["manager"])
    )
    return parse_config(text, base_dir=tmp_path, environ={})


def feed(board: OccupancyBoard, waiting: float, queue: float = 0.0) -> None:
    at = datetime.now(timezone.utc)
    readings = tuple(
        ZoneReading(zone, "lobby", count, None, at, CameraStatus.ONLINE)
        for zone, count in (("waiting", waiting), ("queue", queue))
    )
    board.update(BoardUpdate("lobby", CameraStatus.ONLINE, readings, frame=True))


class Device:
    """The service's alert side: store, board and notifier, startable again on the same store."""

    def __init__(self, config) -> None:
        self.config = config
        self.store = Store(config.storage.path, site_id=SITE)
        self.board = OccupancyBoard({"lobby": ["waiting", "queue"]})
        self.notifier: Notifier | None = None

    def start(self) -> Device:
        self.notifier = Notifier(self.config, self.store, self.board)
        self.notifier.start()
        wait_for(lambda: self.notifier.link.connected.is_set(), what="device connected")
        return self

    def stop(self) -> None:
        if self.notifier is not None:
            self.notifier.stop(drain_s=0.5)
            self.notifier = None

    def raise_alert(self, waiting: float = 15, queue: float = 0) -> str:
        before = {a.alert_id for a in self.store.alerts()}
        feed(self.board, waiting, queue)
        (alert_id,) = wait_for(
            lambda: {a.alert_id for a in self.store.alerts()} - before, what="raised"
        )
        return alert_id


class Watcher:
    """A plain MQTT client on the site's alert state topics: what a bank's own client sees."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(f"lobbywatch/{SITE}/alerts/+/state", 1), (f"lobbywatch/{SITE}/alerts/open", 1)]
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(5)

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append(
                (msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
            )

    def states(self, alert_id: str) -> list[dict | None]:
        topic = f"lobbywatch/{SITE}/alerts/{alert_id}/state"
        with self.lock:
            return [json.loads(p) if p else None for t, p, _, _ in self.messages if t == topic]

    def retained(self) -> dict[str, dict]:
        """Alert id -> the state the broker retains: what came on subscribing, as updated since
        (a live message says what the broker now keeps; an empty one that it keeps nothing)."""
        found: dict[str, dict] = {}
        with self.lock:
            for topic, payload, _, _ in self.messages:
                if not topic.endswith("/state"):
                    continue
                alert_id = topic.split("/")[3]
                if not payload:
                    found.pop(alert_id, None)
                else:
                    found[alert_id] = json.loads(payload)
        return found

    def index(self) -> dict | None:
        with self.lock:
            found = [p for t, p, *_ in self.messages if t.endswith("/alerts/open")]
        return json.loads(found[-1]) if found else None

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device(tmp_path, broker):
    started = Device(make_config(tmp_path, broker.port)).start()
    yield started
    started.stop()
    started.store.close()


def late_watcher(port: int, settle: float = 0.5) -> Watcher:
    watcher = Watcher(port)
    time.sleep(settle)  # the retained messages come right after the subscription
    return watcher


def test_a_client_that_connects_after_the_raise_sees_the_alert_and_the_open_index(device, broker):
    alert_id = device.raise_alert()
    time.sleep(0.5)
    late = late_watcher(broker.port)
    try:
        state = wait_for(lambda: late.retained().get(alert_id), what="retained state")
        assert state["status"] == "raised" and state["rule_name"] == "Waiting area full"
        assert [z["name"] for z in state["zones"]] == ["等候区", "Queue"]
        assert state["raised_at"].endswith("+08:00")  # site time, not UTC
        assert state["count_now"] == 15.0 and state["deliveries"] == []
        assert late.index() == {"version": state["version"], "alerts": [alert_id]}
    finally:
        late.stop()


def test_a_handheld_started_after_the_raise_shows_it_as_alert_1(device, broker):
    alert_id = device.raise_alert()
    changes: list[Change] = []
    handheld = Handheld(
        device.config.mqtt, SITE, "li.wei", timezone="Asia/Shanghai", on_change=changes.append
    )
    handheld.start()
    try:
        (raised,) = wait_for(lambda: changes, what="the handheld shows the alert")
        assert raised.kind == "raised" and raised.entry.number == 1
        assert raised.entry.alert_id == alert_id and raised.entry.status == "raised"
    finally:
        handheld.stop()


def test_the_raise_reaches_the_retained_state_within_a_second(device, broker):
    watcher = Watcher(broker.port)
    try:
        latencies = []
        for _ in range(8):
            raised = time.monotonic()
            alert_id = device.raise_alert()
            wait_for(lambda a=alert_id: watcher.states(a), what="state")
            (arrived,) = [m[3] for m in watcher.messages if alert_id in m[0]][:1]
            latencies.append(arrived - raised)
            feed(device.board, 2)  # clear it (clear_after_s 0), ready for the next one
            wait_for(lambda a=alert_id: None in watcher.states(a), what="removed")
        latencies.sort()
        print(f"raise -> retained state: median {latencies[4] * 1000:.0f} ms, "
              f"max {latencies[-1] * 1000:.0f} ms")  # fmt: skip
        assert latencies[-1] < 1.0
    finally:
        watcher.stop()


def test_a_cleared_alert_is_seen_cleared_then_leaves_the_retained_set(device, broker):
    watcher = Watcher(broker.port)
    try:
        alert_id = device.raise_alert()
        wait_for(lambda: watcher.states(alert_id), what="raised state")
        feed(device.board, 2)
        wait_for(lambda: None in watcher.states(alert_id), what="retained state removed")
        states = watcher.states(alert_id)
        assert [s and s["status"] for s in states] == ["raised", "cleared", None]
        assert (
            wait_for(lambda: (i := watcher.index()) and not i["alerts"] and i)["version"]
            == (states[1]["version"])
        )
    finally:
        watcher.stop()
    late = late_watcher(broker.port)
    try:
        assert late.retained() == {} and late.index()["alerts"] == []
    finally:
        late.stop()


def test_two_handhelds_racing_to_accept_get_one_winner_and_one_already(device, broker):
    alert_id = device.raise_alert()
    handhelds = [
        Handheld(device.config.mqtt, SITE, name, timezone="Asia/Shanghai")
        for name in ("li.wei", "wang.fang")
    ]
    for handheld in handhelds:
        handheld.start()
    try:
        for handheld in handhelds:
            wait_for(lambda h=handheld: h.book.get(alert_id), what="state at the handheld")
        answers: dict[str, str] = {}
        go = threading.Barrier(2)

        def tap(handheld: Handheld) -> None:
            go.wait()
            answers[handheld.name] = handheld.request(alert_id, "accepted").message

        threads = [threading.Thread(target=tap, args=(h,)) for h in handhelds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        record = device.store.alert(alert_id)
        assert record is not None and record.acknowledged_by in answers
        winner = record.acknowledged_by
        loser = next(name for name in answers if name != winner)
        assert answers[winner].startswith("#1 accepted by you at ")
        assert answers[loser].startswith(f"#1 already accepted by {winner} at ")
        # the answer's time is the site's (UTC+8), like the alert's own text
        local = record.acknowledged_at.astimezone(handhelds[0].tz).strftime("%H:%M")
        assert answers[loser].endswith(local)
        # pass done: the first counts, a second `d` is "already", not recorded again
        first, second = handhelds
        assert first.request(alert_id, "pass_done").result == "pass_done"
        again = second.request(alert_id, "pass_done")
        assert again.result == "already" and "already marked pass done by li.wei" in again.message
        assert device.store.alert(alert_id).pass_done_by == "li.wei"
    finally:
        for handheld in handhelds:
            handheld.stop()


def test_a_cleared_alert_cannot_be_accepted_by_its_number(device, broker):
    handheld = Handheld(device.config.mqtt, SITE, "li.wei", timezone="Asia/Shanghai")
    handheld.start()
    try:
        wait_for(handheld.connected.is_set)
        first = device.raise_alert()
        wait_for(lambda: handheld.entry(1))
        feed(device.board, 2)
        wait_for(lambda: not handheld.entry(1).open, what="cleared at the handheld")
        second = device.raise_alert()
        wait_for(lambda: handheld.entry(2))
        answer = handheld.request(handheld.entry(1).alert_id, "accepted")
        assert answer.result == "cleared" and answer.message.startswith("#1 cleared at ")
        assert [e.alert_id for e in handheld.entries(only_open=True)] == [second]
        time.sleep(0.5)
        assert device.store.alert(first).acknowledged_at is None
    finally:
        handheld.stop()


def test_a_pass_accepted_before_the_alert_cleared_can_still_be_reported_done(device, broker):
    # The pass may be what cleared the alert: its done is taken, for the effect (issue 13).
    handheld = Handheld(device.config.mqtt, SITE, "li.wei", timezone="Asia/Shanghai")
    handheld.start()
    try:
        wait_for(handheld.connected.is_set)
        alert_id = device.raise_alert()
        wait_for(lambda: handheld.entry(1))
        assert handheld.request(alert_id, "accepted").result == "accepted"
        feed(device.board, 2)
        wait_for(lambda: not handheld.entry(1).open, what="cleared at the handheld")
        handheld.request(alert_id, "pass_done")
        wait_for(lambda: device.store.alert(alert_id).pass_done_by == "li.wei", what="pass done")
    finally:
        handheld.stop()


def test_an_ack_through_the_api_stops_the_escalation_and_reaches_the_handhelds(tmp_path, broker):
    config = make_config(tmp_path, broker.port, escalate=2)
    device = Device(config).start()
    changes: list[Change] = []
    handheld = Handheld(config.mqtt, SITE, "li.wei", timezone="Asia/Shanghai",
                        on_change=changes.append)  # fmt: skip
    handheld.start()
    try:
        with served(config) as base, httpx.Client(base_url=base) as api:
            alert_id = device.raise_alert()
            wait_for(lambda: handheld.book.get(alert_id), what="raised at the handheld")
            asked = time.monotonic()
            answer = api.post(f"/v1/alerts/{alert_id}/accept", headers=auth("manager")).json()
            assert answer["result"] == "accepted"
            wait_for(lambda: [c for c in changes if c.kind == "accepted"], timeout=2)
            took = time.monotonic() - asked
            print(f"API accept -> handheld state: {took * 1000:.0f} ms")
            assert took < 1.5
            assert handheld.book.get(alert_id).state["accepted_by"] == "mgr-api"
            time.sleep(3.0)  # past escalate_after_s
            assert device.store.alert(alert_id).escalations == 0
            assert not [c for c in changes if c.kind == "escalated"]
            assert not [a for a in handheld.alerts() if a["kind"] == "escalated"]
    finally:
        handheld.stop()
        device.stop()
        device.store.close()


def test_the_supervisor_view_shows_each_escalation_once(tmp_path, broker):
    config = make_config(tmp_path, broker.port, escalate=1)
    device = Device(config).start()
    changes: list[Change] = []
    handheld = Handheld(config.mqtt, SITE, "boss", topics=("alerts", "supervisor/alerts"),
                        timezone="Asia/Shanghai", on_change=changes.append)  # fmt: skip
    handheld.start()
    try:
        wait_for(handheld.connected.is_set)
        device.raise_alert()
        wait_for(lambda: len([a for a in handheld.alerts() if a["kind"] == "escalated"]) == 4,
                 what="two escalations, to the manager and to the supervisor")  # fmt: skip
        time.sleep(0.5)
        assert [c.state["escalations"] for c in changes if c.kind == "escalated"] == [1, 2]
    finally:
        handheld.stop()
        device.stop()
        device.store.close()


def test_a_restarted_service_republishes_the_state_and_removes_what_cleared_meanwhile(
    tmp_path, broker
):
    config = make_config(tmp_path, broker.port)
    device = Device(config).start()
    watcher = Watcher(broker.port)
    try:
        waiting = device.raise_alert(waiting=15)
        queue = device.raise_alert(waiting=15, queue=12)  # queue-full: a second open alert
        wait_for(lambda: watcher.states(waiting) and watcher.states(queue), what="both states")
        device.stop()
        # While the service is down: an accept through the API (only the store knows of it),
        # and a clear that was stored but whose retained state's removal a crash lost.
        now = datetime.now(timezone.utc)
        device.store.apply_ack(waiting, "mgr-api", "accepted", now)
        device.store.clear_alert(queue, now, 1.0, [])
        device.board = OccupancyBoard({"lobby": ["waiting", "queue"]})
        feed(device.board, 15)  # still busy in the waiting area, the queue is short again
        device.start()
        late = late_watcher(broker.port)
        try:
            wait_for(lambda: set(late.retained()) == {waiting}, what="only the open alert")
            state = wait_for(lambda: late.retained()[waiting]["status"] == "accepted"
                             and late.retained()[waiting], what="the accept republished")  # fmt: skip
            assert state["accepted_by"] == "mgr-api"
            version = device.store.alerts_version()
            wait_for(lambda: late.index() == {"version": version, "alerts": [waiting]},
                     what="the open index")  # fmt: skip
        finally:
            late.stop()
        assert [s and s["status"] for s in watcher.states(queue)][-1:] == [None]  # removed
    finally:
        watcher.stop()
        device.stop()
        device.store.close()


def test_a_broker_that_lost_its_retained_messages_gets_them_again(tmp_path, broker, device):
    alert_id = device.raise_alert()
    time.sleep(0.5)
    broker.kill()
    for leftover in Path(broker.workdir).glob("mosquitto.db*"):
        leftover.unlink()  # restarted with nothing retained
    broker.start()
    wait_for(lambda: device.notifier.link.connected.is_set(), timeout=20, what="reconnected")
    late = late_watcher(broker.port, settle=1.0)
    try:
        assert wait_for(lambda: late.retained().get(alert_id))["status"] == "raised"
        assert late.index()["alerts"] == [alert_id]
    finally:
        late.stop()


def test_a_retained_state_the_store_does_not_hold_open_is_removed(device, broker):
    stray = f"lobbywatch/{SITE}/alerts/waiting-full-20240101T000000Z-abcdef/state"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.publish(
        stray, json.dumps({"status": "raised", "version": 3}), qos=1, retain=True
    ).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    device.notifier.link.client.reconnect()  # as after any outage: the sweep runs on connect
    wait_for(lambda: device.notifier.link.connected.is_set())
    time.sleep(1.5)
    late = late_watcher(broker.port)
    try:
        assert late.retained() == {}
    finally:
        late.stop()


def test_an_escalation_the_store_finds_accepted_is_not_sent(tmp_path):
    store = Store(tmp_path / "lw.db", site_id=SITE)
    now = datetime.now(timezone.utc)
    insert_alert(store, "a1", now)
    store.apply_ack("a1", "mgr-1", "accepted", now)
    version = store.alerts_version()
    assert store.escalate_alert("a1", now, []) is False
    assert store.alert("a1").escalations == 0 and store.alerts_version() == version
