"""Deliveries to the bank's channels, with a fake clock and a scripted receiver: planned once
from the alert's record, retried until the receiver takes them, held to the rate limit, given
up when no longer useful, and the same after a restart."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from edge.alerts.delivery import DeliveryWorker, deliveries_of, events_of
from edge.config import ChannelConfig
from edge.store import Store, StoreWriteError
from tests.alerts.support import (
    FakeClock,
    ScriptedSender,
    make_config,
    raise_alert,
    worker,
)
from tests.waiting import wait_for

ENV = {"LW_NTFY": "ntfy://ntfy.bank.example/lobby", "LW_BOSS": "ntfy://ntfy.bank.example/boss"}
MANAGER = "    - {id: lobby-ntfy, kind: ntfy, url_env: LW_NTFY, max_per_minute: 6}"
SUPERVISOR = "    - {id: boss, kind: ntfy, url_env: LW_BOSS, audience: supervisor}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "lw.db", site_id="branch-7") as s:
        yield s


def run(w: DeliveryWorker, clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    """Cycle the worker as its thread would, for `seconds` of fake time."""
    end = clock.mono + seconds
    while clock.mono < end:
        while w.cycle():
            pass
        clock.advance(step)


def states(store: Store, alert_id: str) -> list[tuple[str, str, str, int]]:
    views = deliveries_of(store.query, [alert_id]).get(alert_id, [])
    return [(v.channel, v.event, v.state, v.attempts) for v in views]


def test_a_raised_alert_is_sent_once_however_often_it_is_planned(tmp_path, store, clock):
    config = make_config(tmp_path, MANAGER)
    sender = ScriptedSender()
    w = worker(config, store, ENV, sender, clock)
    raise_alert(store, "a1", clock.wall)
    run(w, clock, 5)
    assert w.plan() == 0
    assert [j.title for j in sender.taken] == ["[Branch 7] Waiting area busy"]
    assert "12 people in 等候区, Queue since 09:59" in sender.taken[0].body
    assert states(store, "a1") == [("lobby-ntfy", "raised", "sent", 1)]


def test_a_channel_down_for_an_hour_delivers_once_when_it_is_back(tmp_path, store, clock):
    config = make_config(tmp_path, MANAGER)
    sender = ScriptedSender(up=False)
    w = worker(config, store, ENV, sender, clock)
    raise_alert(store, "a1", clock.wall)
    run(w, clock, 3600, step=5)
    tries = sender.tried
    assert 5 <= tries <= 20, "backed off, not hammering a receiver that is down"
    (view,) = deliveries_of(store.query, ["a1"])["a1"]
    assert (view.state, view.attempts) == ("waiting", tries)
    assert view.last_error == "ConnectionError: Connection refused"
    assert w.status()["lobby-ntfy"]["state"] == "failing"
    sender.up = True
    run(w, clock, 400, step=5)
    assert len(sender.taken) == 1
    assert states(store, "a1") == [("lobby-ntfy", "raised", "sent", tries + 1)]
    assert w.status()["lobby-ntfy"]["state"] == "ok"


def test_an_alert_storm_stays_within_the_rate_limit_and_loses_nothing(tmp_path, store, clock):
    config = make_config(tmp_path, MANAGER)
    sender = ScriptedSender()
    w = worker(config, store, ENV, sender, clock)
    sent_at: list[float] = []
    original = sender.send

    def timed(job):
        sent_at.append(clock.mono)
        return original(job)

    sender.send = timed  # type: ignore[method-assign]
    for i in range(40):
        raise_alert(store, f"a{i:02d}", clock.wall)
        run(w, clock, 0.25, step=0.25)
    run(w, clock, 600, step=0.5)
    for t in sent_at:
        assert sum(1 for u in sent_at if t <= u < t + 60) <= 6
    views = [v for vs in deliveries_of(store.query, [f"a{i:02d}" for i in range(40)]).values()
             for v in vs]  # fmt: skip
    assert len(views) == 40 and {v.state for v in views} == {"sent"}
    assert len(sender.taken) < 40, "what the limit held back went out merged"
    merged = [j for j in sender.taken if "alert updates" in j.title]
    assert merged and all("Waiting area busy:" in j.body for j in merged)


def test_a_raised_that_cleared_before_it_could_be_sent_is_given_up_with_its_clear(
    tmp_path, store, clock
):
    config = make_config(tmp_path, MANAGER)
    sender = ScriptedSender(up=False)
    w = worker(config, store, ENV, sender, clock)
    raise_alert(store, "a1", clock.wall)
    run(w, clock, 30)
    store.clear_alert("a1", clock.wall, 3.0, [])
    sender.up = True
    run(w, clock, 400)
    assert sender.taken == []
    assert states(store, "a1") == [
        ("lobby-ntfy", "raised", "failed", sender.tried),
        ("lobby-ntfy", "cleared", "expired", 0),
    ]
    (raised, cleared) = deliveries_of(store.query, ["a1"])["a1"]
    assert raised.last_error is not None and "cleared at 10:00" in raised.last_error
    assert cleared.last_error == "nothing of this alert reached this channel"


def test_an_escalation_accepted_before_it_went_out_is_dropped_and_the_acceptance_sent(
    tmp_path, store, clock
):
    config = make_config(tmp_path, f"{MANAGER}\n{SUPERVISOR}")
    sender = ScriptedSender()
    w = worker(config, store, ENV, sender, clock)
    raise_alert(store, "a1", clock.wall)
    run(w, clock, 2)
    sender.up = False
    store.escalate_alert("a1", clock.wall, [])
    run(w, clock, 2)
    store.record_ack("a1", "mgr-1", "accepted", clock.wall)
    sender.up = True
    run(w, clock, 400)
    assert states(store, "a1") == [
        ("lobby-ntfy", "raised", "sent", 1),
        ("lobby-ntfy", "escalated", "failed", 1),
        ("boss", "escalated", "failed", 1),
        ("lobby-ntfy", "accepted", "sent", 1),
        ("boss", "accepted", "expired", 0),
    ]
    accepted = [j for j in sender.taken if "accepted" in j.title]
    assert len(accepted) == 1 and "Accepted by mgr-1 at 10:00" in accepted[0].body


def test_the_supervisor_hears_of_an_alert_from_its_escalation_on(tmp_path, store, clock):
    config = make_config(tmp_path, SUPERVISOR)
    sender = ScriptedSender()
    w = worker(config, store, ENV, sender, clock)
    raise_alert(store, "quiet", clock.wall)
    raise_alert(store, "loud", clock.wall)
    run(w, clock, 2)
    store.record_ack("quiet", "mgr-1", "accepted", clock.wall)
    store.escalate_alert("loud", clock.wall, [])
    run(w, clock, 2)
    store.record_ack("loud", "mgr-2", "accepted", clock.wall)
    store.clear_alert("loud", clock.wall, 2.0, [])
    store.clear_alert("quiet", clock.wall, 2.0, [])
    run(w, clock, 5)
    assert states(store, "quiet") == []
    assert states(store, "loud") == [
        ("boss", "escalated", "sent", 1),
        ("boss", "accepted", "sent", 1),
        ("boss", "cleared", "sent", 1),
    ]


def test_a_restart_in_the_middle_of_retries_delivers_once(tmp_path, clock):
    config = make_config(tmp_path, MANAGER)
    path = tmp_path / "lw.db"
    down = ScriptedSender(up=False)
    with Store(path, site_id="branch-7") as first:
        w = worker(config, first, ENV, down, clock)
        raise_alert(first, "a1", clock.wall)
        run(w, clock, 60)
    assert down.tried >= 3 and down.taken == []
    clock.advance(120)  # the device was off for two minutes
    up = ScriptedSender()
    with Store(path, site_id="branch-7") as second:
        w = worker(config, second, ENV, up, clock)
        run(w, clock, 30)
        assert w.plan() == 0
        assert len(up.taken) == 1
        assert states(second, "a1") == [("lobby-ntfy", "raised", "sent", down.tried + 1)]


def test_what_could_not_be_delivered_in_expire_after_s_is_given_up_as_failed(
    tmp_path, store, clock
):
    channel = "    - {id: lobby-ntfy, kind: ntfy, url_env: LW_NTFY, expire_after_s: 600}"
    config = make_config(tmp_path, channel)
    sender = ScriptedSender(up=False)
    w = worker(config, store, ENV, sender, clock)
    raise_alert(store, "a1", clock.wall)
    run(w, clock, 700, step=5)
    (view,) = deliveries_of(store.query, ["a1"])["a1"]
    assert view.state == "failed"
    assert view.last_error is not None and view.last_error.startswith(
        "gave up (older than expire_after_s (600 s)): ConnectionError"
    )
    sender.up = True
    run(w, clock, 60)
    assert sender.taken == []


def test_an_old_alert_found_after_a_long_stop_is_not_announced(tmp_path, store, clock):
    config = make_config(tmp_path, MANAGER)
    raise_alert(store, "old", clock.wall - timedelta(hours=3))
    sender = ScriptedSender()
    run(worker(config, store, ENV, sender, clock), clock, 5)
    assert sender.taken == [] and states(store, "old") == []


def test_each_channel_speaks_its_own_language(tmp_path, store, clock):
    channels = f"{MANAGER}\n    - {{id: zh, kind: ntfy, url_env: LW_BOSS, language: zh-CN}}"
    config = make_config(tmp_path, channels)
    sender = ScriptedSender()
    run(worker(config, store, ENV, sender, clock), clock, 0.5)
    raise_alert(store, "a1", clock.wall)
    run(worker(config, store, ENV, sender, clock), clock, 5)
    by_url = {j.url: j for j in sender.taken}
    assert by_url[ENV["LW_NTFY"]].title == "[Branch 7] Waiting area busy"
    assert by_url[ENV["LW_BOSS"]].title == "[Branch 7] 等候区客流较多"
    assert "等候区、Queue自09:59起有12人等候" in by_url[ENV["LW_BOSS"]].body


def _channel(**values):
    return ChannelConfig.model_validate({"id": "c", "kind": "ntfy", "url_env": "X", **values})


@pytest.mark.parametrize(
    ("audience", "events", "expected"),
    [
        ("manager", None, ["raised", "escalated:1", "accepted", "cleared"]),
        ("manager", ["raised", "pass_done"], ["raised", "pass_done"]),
        ("supervisor", None, ["escalated:1", "accepted", "cleared"]),
        ("both", None, ["raised", "escalated:1", "accepted", "cleared"]),
        ("it", None, []),
    ],
)
def test_which_events_a_channel_is_sent(tmp_path, store, clock, audience, events, expected):
    record = raise_alert(store, "a1", clock.wall)
    store.escalate_alert("a1", clock.wall, [])
    store.record_ack("a1", "mgr-1", "pass_done", clock.wall)
    store.clear_alert("a1", clock.wall, 1.0, [])
    record = store.alert("a1")
    assert record is not None
    got = events_of(record, _channel(audience=audience, events=events))
    assert [e if not n else f"{e}:{n}" for e, n, _ in got] == expected


def test_a_sent_delivery_the_store_cannot_record_is_not_sent_again(
    tmp_path, store, clock, monkeypatch
):
    config = make_config(tmp_path, MANAGER)
    sender = ScriptedSender()
    w = worker(config, store, ENV, sender, clock)
    raise_alert(store, "a1", clock.wall)
    assert w.plan() == 1
    update = w.log.update
    full = True

    def refusing(ids, **values):
        if full:
            raise StoreWriteError("store lw.db: database or disk is full")
        update(ids, **values)

    monkeypatch.setattr(w.log, "update", refusing)
    run(w, clock, 120)
    assert len(sender.taken) == 1, "sent once while the store refused to record it"
    assert states(store, "a1") == [("lobby-ntfy", "raised", "waiting", 0)]
    assert w.status()["lobby-ntfy"]["unrecorded"] == 1
    full = False
    run(w, clock, 5)
    assert len(sender.taken) == 1
    assert states(store, "a1") == [("lobby-ntfy", "raised", "sent", 1)]
    assert w.status()["lobby-ntfy"]["unrecorded"] == 0


class FlakySender(ScriptedSender):
    """Cannot start its process at first (no file descriptor left), then works; a send can be
    held in flight until `release` is set."""

    def __init__(self, warm_failures: int = 0, hold: bool = False) -> None:
        super().__init__()
        self.warm_failures = warm_failures
        self.in_flight = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def warm(self) -> None:
        if self.warm_failures:
            self.warm_failures -= 1
            raise OSError(24, "Too many open files")

    def send(self, job):
        self.in_flight.set()
        self.release.wait(10)
        return super().send(job)


def test_a_sender_process_that_cannot_start_is_tried_again_not_the_end_of_deliveries(
    tmp_path, store, clock
):
    config = make_config(tmp_path, MANAGER)
    sender = FlakySender(warm_failures=1)
    w = worker(config, store, ENV, sender, clock)
    raise_alert(store, "a1", clock.wall)
    w.start()
    try:
        wait_for(lambda: sender.taken, timeout=10, what="the delivery after a failed start")
        assert w.status()["lobby-ntfy"]["state"] == "ok"
    finally:
        w.stop()
    assert states(store, "a1") == [("lobby-ntfy", "raised", "sent", 1)]


def test_a_worker_whose_thread_ended_is_reported_stalled(tmp_path, store, clock, monkeypatch):
    config = make_config(tmp_path, MANAGER)
    w = worker(config, store, ENV, ScriptedSender(), clock)

    def broken() -> bool:
        raise SystemExit("a bug that ends the thread")

    monkeypatch.setattr(w, "cycle", broken)
    assert w.status()["lobby-ntfy"]["state"] == "ok", "not started yet: nothing wrong"
    w.start()
    wait_for(lambda: not w._thread.is_alive(), timeout=5, what="the thread's end")
    channel = w.status()["lobby-ntfy"]
    assert channel["state"] == "failing" and channel["worker"] == "stalled"
    assert "ended" in channel["last_error"] and "SystemExit" in channel["last_error"]
    w.stop()
    assert w.status()["lobby-ntfy"]["state"] == "ok", "stopped on purpose"


def test_a_worker_without_a_heartbeat_for_longer_than_an_attempt_is_reported_stalled(
    tmp_path, store, clock
):
    config = make_config(tmp_path, MANAGER)
    sender = FlakySender(hold=True)
    w = worker(config, store, ENV, sender, clock)
    raise_alert(store, "a1", clock.wall)
    w.start()
    try:
        assert sender.in_flight.wait(10)
        clock.advance(w.stall_s - 1)
        assert w.status()["lobby-ntfy"]["state"] == "ok", "an attempt may take this long"
        clock.advance(2)
        channel = w.status()["lobby-ntfy"]
        assert channel["state"] == "failing" and channel["worker"] == "stalled"
        assert "has not turned" in channel["last_error"]
        sender.release.set()
        wait_for(lambda: w.status()["lobby-ntfy"]["state"] == "ok", timeout=5, what="ok again")
    finally:
        sender.release.set()
        w.stop()
