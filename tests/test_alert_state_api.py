"""The handhelds' side of the API (docs/handheld.md): the open alerts with their state, accept and
pass done with a readable answer, and the live stream, on a real store and, for the stream and
the races, a real uvicorn on loopback.

The store is written through a second `edge.store.Store` on the same file, as the device service
does from its own process.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from fastapi import FastAPI

import api.stream
from api.auth import hash_key
from api.schemas import AckAnswerOut, OpenAlertsOut
from edge.config import LobbyConfig
from edge.storage.handhelds import HandheldRegistry
from edge.store import AlertRecord, Store
from edge.types import CameraStatus
from tests.mqtt_broker import free_port
from tests.test_api_cli import SITE
from tests.test_api_support import (
    KEYS,
    T0,
    Clock,
    api_process,
    auth,
    client_for,
    insert_alert,
    served,
    site_config,
    write_live,
)
from tests.waiting import wait_for

NOW = T0 + timedelta(hours=10)  # 12:00 in Berlin (CEST)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def client(tmp_path, clock):
    return client_for(site_config(tmp_path), clock)


def store_of(client) -> Store:
    return client.app.state.lobbywatch.store.store()


def open_set(client) -> OpenAlertsOut:
    response = client.get("/v1/alerts/open", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return OpenAlertsOut.model_validate(response.json())


def test_the_open_set_has_each_alert_in_site_time_with_zone_names_and_a_version(client, clock):
    store = store_of(client)
    write_live(store, clock.now, {"waiting": 14.0, "queue": 3.0})
    insert_alert(store, "a1", NOW - timedelta(minutes=2), zones=("waiting", "queue"))
    insert_alert(store, "a2", NOW - timedelta(minutes=1))
    store.clear_alert("a2", NOW, 2.0, [])
    got = open_set(client)
    assert got.timezone == "Europe/Berlin" and got.version == 3  # two raises and a clear
    (alert,) = got.alerts
    assert alert.alert_id == "a1" and alert.status == "raised" and alert.version == 1
    assert alert.raised_at == "2024-05-06T11:58:00+02:00"  # site time, with its offset
    assert [(z.id, z.name) for z in alert.zones] == [
        ("waiting", "Waiting area"),
        ("queue", "Queue"),
    ]
    assert (alert.count_at_raise, alert.count_now, alert.threshold) == (12.0, 17.0, 10.0)
    assert alert.deliveries == [] and alert.effect is None and alert.accepted_by is None


def test_count_now_is_unknown_when_a_camera_is_down_never_zero(client, clock):
    store = store_of(client)
    write_live(store, clock.now, {"waiting": None, "queue": None}, status=CameraStatus.OFFLINE)
    insert_alert(store, "a1", NOW)
    assert open_set(client).alerts[0].count_now is None


def ack(client, alert_id: str, what: str, role: str = "manager", body: dict | None = None):
    return client.post(f"/v1/alerts/{alert_id}/{what}", headers=auth(role), json=body)


def test_accept_then_pass_done_answer_who_and_when_and_repeats_say_already(client, clock):
    store = store_of(client)
    insert_alert(store, "a1", NOW - timedelta(minutes=5))
    first = AckAnswerOut.model_validate(ack(client, "a1", "accept").json())
    assert (first.result, first.message) == ("accepted", "accepted by manager-1 at 12:00")
    assert first.alert.status == "accepted" and first.alert.accepted_by == "manager-1"
    assert first.alert.accepted_at == "2024-05-06T12:00:00+02:00"
    clock.now += timedelta(minutes=2)
    again = AckAnswerOut.model_validate(ack(client, "a1", "accept", role="admin").json())
    assert (again.result, again.message) == ("already", "already accepted by manager-1 at 12:00")
    assert again.alert.version == first.alert.version  # nothing changed
    done = AckAnswerOut.model_validate(ack(client, "a1", "pass-done", role="admin").json())
    assert (done.result, done.alert.status, done.alert.pass_done_by) == (
        "pass_done", "pass_done", "admin-1",
    )  # fmt: skip
    twice = AckAnswerOut.model_validate(ack(client, "a1", "pass-done").json())
    assert (twice.result, twice.message) == (
        "already",
        "already marked pass done by admin-1 at 12:02",
    )
    record = store.alert("a1")
    assert record is not None and record.pass_done_by == "admin-1"  # not recorded again


def test_a_pass_done_without_accept_counts_as_both(client):
    insert_alert(store_of(client), "a1", NOW)
    done = AckAnswerOut.model_validate(ack(client, "a1", "pass-done").json())
    assert done.result == "pass_done"
    assert (done.alert.accepted_by, done.alert.pass_done_by) == ("manager-1", "manager-1")
    assert AckAnswerOut.model_validate(ack(client, "a1", "accept").json()).result == "already"


@pytest.mark.parametrize(
    ("alert_id", "what", "role", "status"),
    [
        ("gone", "accept", "manager", 409),
        ("gone", "pass-done", "manager", 409),
        ("nope", "accept", "manager", 404),
        ("nope", "pass-done", "admin", 404),
        ("a1", "accept", "viewer", 403),
        ("a1", "pass-done", "viewer", 403),
    ],
)
def test_acks_refuse_cleared_unknown_and_viewers(client, alert_id, what, role, status):
    store = store_of(client)
    insert_alert(store, "a1", NOW)
    insert_alert(store, "gone", NOW - timedelta(minutes=10))
    store.clear_alert("gone", NOW - timedelta(minutes=3), 1.0, [])
    response = ack(client, alert_id, what, role)
    assert response.status_code == status, response.text
    if status == 409:
        assert response.json()["detail"].startswith("cleared at 11:57")
    record = store.alert("gone")
    assert record is not None and record.acknowledged_at is None


def test_the_old_ack_route_still_works_and_its_accept_is_seen_by_the_new_ones(client):
    insert_alert(store_of(client), "a1", NOW)
    old = client.post("/v1/alerts/a1/ack", json={"status": "accepted"}, headers=auth("admin"))
    assert old.status_code == 200 and old.json()["acknowledged_by"] == "admin-1"
    answer = AckAnswerOut.model_validate(ack(client, "a1", "accept").json())
    assert answer.message == "already accepted by admin-1 at 12:00"


def reasked(store: Store, alert_id: str) -> None:
    """Pass 1 of `alert_id` done and pass 2 asked, as the device does."""
    store.apply_ack(alert_id, "manager-1", "pass_done", NOW - timedelta(minutes=12))
    assert store.reask_alert(alert_id, 2, NOW - timedelta(minutes=1), None, [])


@pytest.mark.parametrize("what", ["accept", "pass-done"])
def test_an_ack_for_an_earlier_pass_says_which_is_asked_and_changes_nothing(client, what):
    store = store_of(client)
    insert_alert(store, "a1", NOW - timedelta(minutes=20))
    reasked(store, "a1")
    version = store.alerts_version()
    stale = ack(client, "a1", what, body={"pass": 1})
    assert stale.status_code == 200, stale.text
    answer = AckAnswerOut.model_validate(stale.json())
    assert (answer.result, answer.message) == ("already", "that was pass 1: pass 2 is asked now")
    assert (answer.alert.status, answer.alert.passes, answer.alert.accepted_by) == (
        "raised",
        2,
        None,
    )
    assert store.alerts_version() == version
    # 2.0 is the integer 2 in JSON (a client that writes every number as a float)
    taken = AckAnswerOut.model_validate(ack(client, "a1", what, body={"pass": 2.0}).json())
    assert taken.result == ("accepted" if what == "accept" else "pass_done")
    assert taken.alert.passes == 2 and taken.alert.accepted_by == "manager-1"


def test_the_old_ack_route_takes_the_pass_too(client):
    store = store_of(client)
    insert_alert(store, "a1", NOW - timedelta(minutes=20))
    reasked(store, "a1")
    body = {"status": "pass_done", "pass": 1}
    stale = client.post("/v1/alerts/a1/ack", json=body, headers=auth("manager"))
    assert stale.status_code == 200 and stale.json()["pass_done_at"] is None
    body["pass"] = 2
    taken = client.post("/v1/alerts/a1/ack", json=body, headers=auth("manager"))
    assert taken.status_code == 200 and taken.json()["pass_done_by"] == "manager-1"


@pytest.mark.parametrize("body", [{"pass": 0}, {"pass": "2"}, {"pass": True}, {"pass": 1.5}])
@pytest.mark.parametrize("what", ["accept", "pass-done"])
def test_an_ack_body_with_no_pass_number_is_refused(client, what, body):
    insert_alert(store_of(client), "a1", NOW)
    assert ack(client, "a1", what, body=body).status_code == 422
    record = store_of(client).alert("a1")
    assert record is not None and record.acknowledged_at is None


def test_answers_are_in_the_sites_language(tmp_path, clock):
    config = site_config(tmp_path)
    config = config.model_copy(
        update={"alerts": config.alerts.model_copy(update={"language": "zh-CN"})}
    )
    client = client_for(config, clock)
    insert_alert(store_of(client), "a1", NOW)
    ack(client, "a1", "accept")
    assert (
        ack(client, "a1", "accept", "admin").json()["message"]
        == "已由manager-1于12:00确认，无需重复"
    )
    insert_alert(store_of(client), "a2", NOW - timedelta(minutes=20))
    reasked(store_of(client), "a2")
    stale = ack(client, "a2", "pass-done", body={"pass": 1}).json()
    assert stale["message"] == "这是第1次疏导的操作：现在请求的是第2次疏导"


# --- on a real server ------------------------------------------------------------------------


@dataclass
class Event:
    name: str
    id: int | None
    data: dict
    at: float  # time.monotonic() when it arrived


@dataclass
class Listener:
    """An SSE client in a thread: every event, as EventSource would parse it."""

    base: str
    last_event_id: int | None = None
    headers: dict[str, str] = field(default_factory=lambda: auth("viewer"))
    events: list[Event] = field(default_factory=list)
    comments: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)  # the server ended it

    def start(self) -> Listener:
        threading.Thread(target=self._listen, daemon=True).start()
        return self

    def _listen(self) -> None:
        self._run()
        if not self.stop.is_set():
            self.ended.set()

    def _run(self) -> None:
        headers = dict(self.headers)
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        with (
            httpx.Client(base_url=self.base, timeout=30) as client,
            client.stream("GET", "/v1/alerts/stream", headers=headers) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith(":"):
                    with self.lock:
                        self.comments += 1
                elif line == "":
                    if "event" in fields:
                        with self.lock:
                            self.events.append(
                                Event(fields["event"], int(fields["id"]) if "id" in fields else None,
                                      json.loads(fields["data"]), time.monotonic())
                            )  # fmt: skip
                    fields = {}
                else:
                    key, _, value = line.partition(": ")
                    fields[key] = value

    def named(self, name: str) -> list[Event]:
        with self.lock:
            return [e for e in self.events if e.name == name]

    def wait(self, name: str, test=lambda _e: True, timeout: float = 5.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.named(name) if test(e)]
            if found:
                return found[0]
            time.sleep(0.01)
        raise AssertionError(f"no {name} event within {timeout} s: {self.events}")


def device_store(config: LobbyConfig) -> Store:
    """The store as the device service holds it: its own connection to the file."""
    return Store(config.storage.path, site_id=config.site.id)


def now() -> datetime:
    return datetime.now(timezone.utc)


def test_the_stream_sends_a_snapshot_then_a_raise_within_a_second_and_the_zones(tmp_path):
    config = site_config(tmp_path)
    device = device_store(config)
    write_live(device, now(), {"waiting": 11.0, "queue": None}, status=CameraStatus.ONLINE)
    insert_alert(device, "before", now())
    with served(config) as base:
        listener = Listener(base).start()
        snapshot = listener.wait("snapshot")
        assert [a["alert_id"] for a in snapshot.data["alerts"]] == ["before"]
        assert snapshot.id == snapshot.data["version"] == 1
        zones = {z["id"]: z for z in listener.wait("zones").data["zones"]}
        assert zones["waiting"]["count"] == 11.0
        assert zones["queue"]["count"] is None  # unknown, not 0
        assert zones["entrance"]["count"] is None and zones["entrance"]["stale"]
        latencies = []
        for i in range(10):
            raised = time.monotonic()
            insert_alert(device, f"new-{i}", now())
            got = listener.wait("alert", lambda e, i=i: e.data["alert_id"] == f"new-{i}")
            latencies.append(got.at - raised)
            assert got.id == got.data["version"] == i + 2 and got.data["status"] == "raised"
        print(f"raise -> stream: max {max(latencies) * 1000:.0f} ms, "
              f"median {sorted(latencies)[5] * 1000:.0f} ms")  # fmt: skip
        assert max(latencies) < 1.0
        listener.stop.set()


def test_acks_through_the_api_reach_the_stream_and_clears_leave_the_open_set(tmp_path):
    config = site_config(tmp_path)
    device = device_store(config)
    insert_alert(device, "a1", now())
    with served(config) as base, httpx.Client(base_url=base) as client:
        listener = Listener(base).start()
        listener.wait("snapshot")
        assert client.post("/v1/alerts/a1/accept", headers=auth("manager")).status_code == 200
        accepted = listener.wait("alert", lambda e: e.data["status"] == "accepted")
        assert accepted.data["accepted_by"] == "manager-1"
        device.clear_alert("a1", now(), 1.0, [])
        cleared = listener.wait("alert", lambda e: e.data["status"] == "cleared")
        assert cleared.id > accepted.id
        assert client.get("/v1/alerts/open", headers=auth("viewer")).json()["alerts"] == []
        listener.stop.set()


def test_a_reconnect_with_last_event_id_gets_only_what_changed_meanwhile(tmp_path):
    config = site_config(tmp_path)
    device = device_store(config)
    insert_alert(device, "a1", now())
    insert_alert(device, "a2", now())
    with served(config) as base:
        first = Listener(base).start()
        seen = first.wait("snapshot").id
        first.stop.set()
        device.apply_ack("a2", "mgr-1", "accepted", now())  # while the client was away
        device.clear_alert("a1", now(), 0.0, [])
        again = Listener(base, last_event_id=seen).start()
        cleared = again.wait("alert", lambda e: e.data["alert_id"] == "a1")
        accepted = again.wait("alert", lambda e: e.data["alert_id"] == "a2")
        assert (accepted.data["status"], cleared.data["status"]) == ("accepted", "cleared")
        again.wait("zones")
        assert not again.named("snapshot") and len(again.named("alert")) == 2
        # An id the device cannot know (another store, or nonsense): a snapshot instead.
        for stale in (999, "x"):
            other = Listener(base, last_event_id=stale).start()  # type: ignore[arg-type]
            assert [a["alert_id"] for a in other.wait("snapshot").data["alerts"]] == ["a2"]
            other.stop.set()
        again.stop.set()


def test_an_idle_stream_sends_heartbeats_and_the_zones_every_few_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(api.stream, "HEARTBEAT_S", 0.5)
    monkeypatch.setattr(api.stream, "ZONES_EVERY_S", 1.0)
    config = site_config(tmp_path)
    with served(config) as base:
        listener = Listener(base).start()
        listener.wait("snapshot")
        time.sleep(2.6)
        assert len(listener.named("zones")) >= 3  # unchanged, and still sent
        assert listener.comments >= 1
        listener.stop.set()


def test_a_revoked_phones_stream_ends_and_its_reconnect_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(api.stream, "RECHECK_S", 0.3)
    config = site_config(tmp_path)
    device_store(config).close()
    with HandheldRegistry(config.storage.path) as registry:
        paired = registry.redeem(registry.pair("mgr-1").code)
    assert paired is not None
    phone = {"Authorization": f"Bearer {paired[1]}"}
    with served(config) as base:
        listener = Listener(base, headers=phone).start()
        listener.wait("snapshot")
        assert not listener.ended.is_set()
        with HandheldRegistry(config.storage.path) as registry:
            assert registry.revoke("mgr-1")
        assert listener.ended.wait(5), "the revoked phone's stream is still open"
        assert httpx.get(f"{base}/v1/alerts/stream", headers=phone).status_code == 401


def test_a_stream_goes_on_when_its_address_goes_over_the_failure_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(api.stream, "RECHECK_S", 0.3)
    config = site_config(tmp_path)
    with served(config) as base:
        listener = Listener(base).start()
        listener.wait("snapshot")
        wrong = {"Authorization": "Bearer " + "x" * 40}
        for _ in range(12):  # someone else on this address guesses keys
            httpx.get(f"{base}/v1/alerts/open", headers=wrong)
        assert httpx.get(f"{base}/v1/alerts/open", headers=auth("viewer")).status_code == 429
        time.sleep(1.0)  # three re-checks
        assert not listener.ended.is_set(), "an admitted stream was cut by others' failures"
        listener.stop.set()


def test_two_handhelds_racing_get_one_winner_and_one_already(tmp_path):
    config = site_config(tmp_path)
    device = device_store(config)
    for i in range(5):
        insert_alert(device, f"a{i}", now())
    with served(config) as base, ThreadPoolExecutor(8) as pool:

        def tap(args: tuple[str, str, str]) -> dict:
            alert_id, what, role = args
            with httpx.Client(base_url=base) as client:
                return client.post(f"/v1/alerts/{alert_id}/{what}", headers=auth(role)).json()

        for i in range(5):
            taps = [(f"a{i}", "accept", role) for role in ("manager", "admin")] * 4
            answers = list(pool.map(tap, taps))
            assert sorted(a["result"] for a in answers) == ["accepted"] + ["already"] * 7
            (winner,) = [a for a in answers if a["result"] == "accepted"]
            by = winner["alert"]["accepted_by"]
            assert all(a["message"].startswith(f"already accepted by {by} at ") for a in answers
                       if a["result"] == "already")  # fmt: skip
        # a handheld on MQTT (the service's path) racing one on the API: the same store decides
        device.apply_ack("a0", "li.wei", "pass_done", now())
        with httpx.Client(base_url=base) as client:
            late = client.post("/v1/alerts/a0/pass-done", headers=auth("manager")).json()
        assert late["result"] == "already" and "li.wei" in late["message"]


def test_a_client_that_stops_reading_is_dropped_not_buffered(tmp_path, monkeypatch):
    monkeypatch.setattr(api.stream, "SEND_TIMEOUT_S", 1.0)
    config = site_config(tmp_path)
    device = device_store(config)
    apps: list[FastAPI] = []
    with served(config, apps) as base:
        port = int(base.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            f"GET /v1/alerts/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{KEYS['viewer']}\r\n\r\n".encode()
        )  # and never reads
        watch = wait_for(lambda: getattr(apps[0].state, "alert_watch", None), what="a stream")
        big = "x" * 60_000
        for i in range(120):  # ~7 MB of events: more than the socket buffers hold
            device.insert_alert(alert_record(f"big-{i}", big), [])
        deadline = time.monotonic() + 15
        while watch._subscribers and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not watch._subscribers, "the stuck client's stream is still there"
        sock.close()


def alert_record(alert_id: str, message: str) -> AlertRecord:
    at = now()
    return AlertRecord(
        alert_id=alert_id, rule="waiting-full", kind="diversion", zones=("waiting",),
        threshold=10.0, since=at, raised_at=at, count_at_raise=12.0, message=message,
        escalations=0, last_notified_at=at, acknowledged_at=None, acknowledged_by=None,
        count_at_ack=None, pass_done_at=None, pass_done_by=None, effect_after_s=60.0,
        effect_count=None, effect_measured_at=None, cleared_at=None, count_at_clear=None,
        status="open",
    )  # fmt: skip


def test_the_api_process_stops_on_sigterm_with_a_stream_open(tmp_path):
    port = free_port()
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(db=tmp_path / "lw.db", port=port, sha=hash_key(KEYS["admin"])))
    base = f"http://127.0.0.1:{port}"
    server = api_process(site, base)
    try:
        headers = {"Authorization": f"Bearer {KEYS['admin']}"}
        with (
            httpx.Client(base_url=base, timeout=10) as client,
            client.stream("GET", "/v1/alerts/stream", headers=headers) as response,
        ):
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: snapshot"
            stopped = time.monotonic()
            server.send_signal(signal.SIGTERM)
            output, _ = server.communicate(timeout=15)
            took = time.monotonic() - stopped
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert took < 5, f"the API took {took:.1f} s to stop with a stream open"
    assert "Application shutdown complete" in output.decode()
