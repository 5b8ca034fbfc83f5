"""Store schema 5: diversion passes, ticket events and the queue snapshot (docs/queueing.md).

A real SQLite file throughout; the version-4 store is built with the SQL lobbywatch 0.4 used.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from edge.queueing.tickets import TicketEvent
from edge.store import (
    QUEUE_LIVE_MAX_AGE_S,
    SCHEMA_VERSION,
    CameraLive,
    OutboxMessage,
    PassRecord,
    Store,
    StoreWriteError,
)
from edge.types import CameraStatus, ZoneReading
from tests.alerts.support import T0, raise_alert


def live(store: Store, waiting: float | None, queue: float | None, at: datetime) -> None:
    status = CameraStatus.ONLINE
    store.write_live(
        [
            ZoneReading("waiting", "lobby", waiting, None, at, status),
            ZoneReading("queue", "lobby", queue, None, at, status),
        ],
        CameraLive("lobby", status, 2.0, at),
    )


def queue_payload(minutes: float | None) -> str:
    return json.dumps({"site": "branch-7", "wait": {"minutes": minutes, "confidence": "medium"}})


def only_pass(store: Store, alert_id: str, number: int = 1) -> PassRecord:
    (found,) = [
        p
        for p in store.passes(T0 - timedelta(days=1), T0 + timedelta(days=1))
        if p.alert_id == alert_id and p.number == number
    ]
    return found


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "lw.db", site_id="branch-7") as s:
        yield s


# --- migration ---------------------------------------------------------------------------

# The alerts table and meta row as schema 4 made them (no details, no passes table).
SCHEMA_4 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '4'), ('site_id', 'branch-7');
CREATE TABLE alerts (
    alert_id TEXT PRIMARY KEY, rule TEXT NOT NULL, kind TEXT NOT NULL, zones TEXT NOT NULL,
    threshold REAL, since TEXT NOT NULL, raised_at TEXT NOT NULL, count_at_raise REAL,
    message TEXT NOT NULL, escalations INTEGER NOT NULL DEFAULT 0,
    last_notified_at TEXT NOT NULL, acknowledged_at TEXT, acknowledged_by TEXT,
    count_at_ack REAL, pass_done_at TEXT, pass_done_by TEXT, effect_after_s REAL NOT NULL,
    effect_count REAL, effect_measured_at TEXT, cleared_at TEXT, count_at_clear REAL,
    version INTEGER NOT NULL DEFAULT 0
);
INSERT INTO alerts VALUES
  ('open-1', 'waiting-full', 'diversion', '["waiting"]', 10, '2026-12-01T01:59:00+00:00',
   '2026-12-01T02:00:00+00:00', 12, 'busy', 1, '2026-12-01T02:01:00+00:00',
   NULL, NULL, NULL, NULL, NULL, 600, NULL, NULL, NULL, NULL, 1),
  ('done-1', 'waiting-full', 'diversion', '["waiting"]', 10, '2026-11-30T01:59:00+00:00',
   '2026-11-30T02:00:00+00:00', 14, 'busy', 0, '2026-11-30T02:00:00+00:00',
   '2026-11-30T02:02:00+00:00', 'mgr-1', 15, '2026-11-30T02:05:00+00:00', 'mgr-1', 600,
   8, '2026-11-30T02:15:00+00:00', '2026-11-30T02:20:00+00:00', 4, 2),
  ('cam-1', 'camera:lobby', 'camera', '[]', NULL, '2026-11-30T03:00:00+00:00',
   '2026-11-30T03:00:00+00:00', NULL, 'offline', 0, '2026-11-30T03:00:00+00:00',
   NULL, NULL, NULL, NULL, NULL, 600, NULL, NULL, '2026-11-30T03:10:00+00:00', NULL, 3);
"""


def test_a_version_4_store_keeps_its_alerts_and_each_diversion_becomes_its_pass_1(tmp_path):
    path = tmp_path / "v4.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_4)
    with Store(path, site_id="branch-7") as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        alerts = {a.alert_id: a for a in store.alerts()}
        assert sorted(alerts) == ["cam-1", "done-1", "open-1"]
        assert {a: r.passes for a, r in alerts.items()} == {"cam-1": 0, "done-1": 1, "open-1": 1}
        assert alerts["done-1"].details is None and alerts["done-1"].version == 2
        done = only_pass(store, "done-1")
        assert done == PassRecord(
            alert_id="done-1", number=1, asked_at=datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc),
            accepted_at=datetime(2026, 11, 30, 2, 2, tzinfo=timezone.utc), accepted_by="mgr-1",
            done_at=datetime(2026, 11, 30, 2, 5, tzinfo=timezone.utc), done_by="mgr-1",
            count_before=15.0, wait_before_s=None, count_after=8.0, wait_after_s=None,
            kiosks_in_use_after=None, kiosks_capacity=None,
            measured_at=datetime(2026, 11, 30, 2, 15, tzinfo=timezone.utc),
        )  # fmt: skip
        opened = only_pass(store, "open-1")
        assert opened.asked_at == T0 and opened.accepted_at is None
        # the migrated open alert takes its accept on that pass
        store.apply_ack("open-1", "mgr-2", "accepted", T0 + timedelta(minutes=3))
        assert only_pass(store, "open-1").accepted_by == "mgr-2"
    with Store(path, site_id="branch-7") as store:  # opening again changes nothing
        assert len(store.passes(T0 - timedelta(days=2), T0 + timedelta(days=1))) == 2


# --- passes ------------------------------------------------------------------------------


def test_a_diversion_raise_is_pass_1_and_a_camera_alert_has_none(store):
    raise_alert(store, "a1", T0)
    raise_alert(store, "c1", T0, kind="camera", rule="camera:lobby")
    assert store.alert("a1").passes == 1 and store.alert("c1").passes == 0
    first = only_pass(store, "a1")
    assert first.asked_at == T0 and first.accepted_at is None and first.done_at is None


def test_accept_and_pass_done_land_on_the_pass_with_the_figures_before(store):
    raise_alert(store, "a1", T0)
    live(store, 9.0, 5.0, T0)
    store.apply_ack("a1", "mgr-1", "accepted", T0 + timedelta(minutes=2), wait_s=900.0)
    live(store, 4.0, 2.0, T0)  # the count at pass done is not a "before"
    result = store.apply_ack("a1", "mgr-1", "pass_done", T0 + timedelta(minutes=6), wait_s=60.0)
    assert result is not None and result.outcome == "pass_done"
    first = only_pass(store, "a1")
    assert (first.accepted_by, first.count_before, first.wait_before_s) == ("mgr-1", 14.0, 900.0)
    assert first.done_at == T0 + timedelta(minutes=6) and first.done_by == "mgr-1"


def test_a_pass_done_without_accept_is_both_and_takes_the_figures_before_then(store):
    raise_alert(store, "a1", T0)
    live(store, 7.0, 1.0, T0)
    store.apply_ack("a1", "mgr-1", "pass_done", T0 + timedelta(minutes=4), wait_s=300.0)
    first = only_pass(store, "a1")
    assert first.accepted_at == first.done_at == T0 + timedelta(minutes=4)
    assert (first.count_before, first.wait_before_s) == (8.0, 300.0)


def test_the_wait_before_comes_from_a_fresh_queue_snapshot_when_not_given(store):
    raise_alert(store, "a1", T0)
    raise_alert(store, "a2", T0)
    store.write_queue(queue_payload(12.5), T0)
    store.apply_ack("a1", "api-key", "accepted", T0 + timedelta(seconds=QUEUE_LIVE_MAX_AGE_S))
    assert only_pass(store, "a1").wait_before_s == 750.0
    stale = T0 + timedelta(seconds=QUEUE_LIVE_MAX_AGE_S + 1)
    store.apply_ack("a2", "api-key", "accepted", stale)  # a stale snapshot is no figure
    assert only_pass(store, "a2").wait_before_s is None


def test_a_reask_resets_the_alerts_acks_and_adds_a_pass_that_takes_the_next_acks(store):
    raise_alert(store, "a1", T0)
    live(store, 10.0, 4.0, T0)
    store.apply_ack("a1", "mgr-1", "accepted", T0 + timedelta(minutes=1))
    store.apply_ack("a1", "mgr-1", "pass_done", T0 + timedelta(minutes=3))
    store.record_effect("a1", 12.0, T0 + timedelta(minutes=13))
    version = store.alerts_version()
    message = OutboxMessage("a1:reasked:2", "lw/branch-7/alerts", "{}", 1, T0)
    details = json.dumps({"metric": "count", "value": 13})
    reasked_at = T0 + timedelta(minutes=14)

    assert store.reask_alert("a1", 2, reasked_at, details, [message])
    alert = store.alert("a1")
    assert alert is not None and alert.status == "open" and alert.passes == 2
    assert (alert.acknowledged_at, alert.pass_done_at, alert.count_at_ack) == (None, None, None)
    assert (alert.effect_count, alert.effect_measured_at, alert.escalations) == (None, None, 0)
    assert alert.last_notified_at == reasked_at and alert.details == details
    assert alert.version > version
    assert [m.message_id for m in store.pending_messages()] == ["a1:reasked:2"]
    # a replay of the same re-ask changes nothing
    assert store.reask_alert("a1", 2, reasked_at + timedelta(seconds=5), None, [])
    assert store.alert("a1").details == details and store.alert("a1").passes == 2

    live(store, 11.0, 4.0, T0)
    store.apply_ack("a1", "mgr-2", "accepted", T0 + timedelta(minutes=15))
    first, second = only_pass(store, "a1", 1), only_pass(store, "a1", 2)
    assert (first.accepted_by, first.count_before, first.count_after) == ("mgr-1", 14.0, 12.0)
    assert second.asked_at == reasked_at
    assert (second.accepted_by, second.count_before, second.done_at) == ("mgr-2", 15.0, None)


def test_a_reask_before_the_effect_was_measured_measures_the_pass_done_from_the_live_tables(
    store,
):
    raise_alert(store, "a1", T0)
    store.apply_ack("a1", "mgr-1", "pass_done", T0 + timedelta(minutes=2))
    reasked_at = T0 + timedelta(minutes=12)
    live(store, 9.0, 3.0, reasked_at)
    store.write_queue(queue_payload(8.0), reasked_at)
    assert store.reask_alert("a1", 2, reasked_at, None, [])
    first = only_pass(store, "a1")
    assert (first.count_after, first.wait_after_s, first.measured_at) == (12.0, 480.0, reasked_at)
    assert only_pass(store, "a1", 2).measured_at is None
    assert store.effects_due(reasked_at + timedelta(hours=1)) == []  # pass 2 is not done


def test_a_cleared_alert_is_not_reasked(store):
    raise_alert(store, "a1", T0)
    store.clear_alert("a1", T0 + timedelta(minutes=5), 3.0, [])
    message = OutboxMessage("a1:reasked:2", "lw/branch-7/alerts", "{}", 1, T0)
    assert not store.reask_alert("a1", 2, T0 + timedelta(minutes=6), None, [message])
    assert store.alert("a1").passes == 1 and store.pending_messages() == []


def test_pass_done_after_the_clear_is_taken_if_accepted_before_and_its_effect_measured(store):
    raise_alert(store, "accepted", T0)
    raise_alert(store, "ignored", T0)
    store.apply_ack("accepted", "mgr-1", "accepted", T0 + timedelta(minutes=1))
    for alert_id in ("accepted", "ignored"):
        store.clear_alert(alert_id, T0 + timedelta(minutes=4), 6.0, [])

    done = store.apply_ack("accepted", "mgr-1", "pass_done", T0 + timedelta(minutes=5))
    assert done is not None and done.outcome == "pass_done"
    assert done.record.status == "cleared" and done.record.pass_done_by == "mgr-1"
    refused = store.apply_ack("ignored", "mgr-1", "pass_done", T0 + timedelta(minutes=5))
    assert refused is not None and refused.outcome == "cleared"
    assert refused.record.pass_done_at is None and only_pass(store, "ignored").done_at is None
    late_accept = store.apply_ack("ignored", "mgr-1", "accepted", T0 + timedelta(minutes=5))
    assert late_accept is not None and late_accept.outcome == "cleared"

    due_at = T0 + timedelta(minutes=15)
    assert store.effects_due(due_at - timedelta(seconds=1)) == []
    assert [a.alert_id for a in store.effects_due(due_at)] == ["accepted"]


def test_the_effect_lands_on_the_latest_pass_done_with_wait_and_kiosks(store):
    raise_alert(store, "a1", T0)
    store.apply_ack("a1", "mgr-1", "pass_done", T0 + timedelta(minutes=2))
    at = T0 + timedelta(minutes=12)
    store.record_effect("a1", 6.0, at, wait_s=240.0, kiosks_in_use=3.0, kiosks_capacity=4)
    store.record_effect("a1", 99.0, at + timedelta(minutes=1), wait_s=1.0)  # once only
    first = only_pass(store, "a1")
    assert (first.count_after, first.wait_after_s) == (6.0, 240.0)
    assert (first.kiosks_in_use_after, first.kiosks_capacity, first.measured_at) == (3.0, 4, at)
    assert store.alert("a1").effect_count == 6.0


def test_an_alert_raised_without_passes_by_an_older_lobbywatch_gets_its_pass_1_on_ack(store):
    raise_alert(store, "a1", T0)
    with store.transaction() as db:  # what a rolled-back 0.4 writes: no passes row
        db.execute("DELETE FROM passes")
    store.apply_ack("a1", "mgr-1", "accepted", T0 + timedelta(minutes=1))
    assert only_pass(store, "a1").accepted_by == "mgr-1" and store.alert("a1").passes == 1


def test_passes_are_those_asked_in_the_range_oldest_first(store):
    for n, alert_id in enumerate(("b", "a", "c")):
        raise_alert(store, alert_id, T0 + timedelta(hours=n))
    store.reask_alert("b", 2, T0 + timedelta(hours=1, minutes=30), None, [])
    found = store.passes(T0 + timedelta(minutes=1), T0 + timedelta(hours=2))
    assert [(p.alert_id, p.number) for p in found] == [("a", 1), ("b", 2)]


def test_set_alert_details_is_shown_as_a_new_version(store):
    raise_alert(store, "a1", T0)
    version = store.alerts_version()
    store.set_alert_details("a1", '{"advice": []}')
    alert = store.alert("a1")
    assert alert.details == '{"advice": []}' and alert.version == version + 1


# --- tickets and the queue snapshot --------------------------------------------------------


def ticket(kind: str, number: str, minutes: float, counter: str | None = None) -> TicketEvent:
    return TicketEvent.model_validate(
        {"kind": kind, "ticket": number, "at": T0 + timedelta(minutes=minutes), "counter": counter}
    )


def test_tickets_are_read_back_in_the_order_stored_from_a_row_id(store):
    events = [ticket("issued", "A001", 0), ticket("issued", "A002", 1)]
    events.append(ticket("called", "A001", 0.5, counter="3"))  # stored after, though earlier
    assert store.insert_tickets(events) == 3 and store.insert_tickets([]) == 0
    read = store.tickets_after(0)
    assert [event for _, event in read] == events
    ids = [row_id for row_id, _ in read]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [e.ticket for _, e in store.tickets_after(ids[0])] == ["A002", "A001"]
    assert [e.ticket for _, e in store.tickets_after(0, limit=1)] == ["A001"]
    assert store.tickets_after(ids[-1]) == []
    assert read[2][1].counter == "3" and read[2][1].at.tzinfo is not None


def test_the_queue_snapshot_is_one_row_replaced(store):
    assert store.queue_live() is None
    store.write_queue(queue_payload(3.0), T0)
    store.write_queue(queue_payload(None), T0 + timedelta(seconds=5))
    assert store.queue_live() == (queue_payload(None), T0 + timedelta(seconds=5))


# --- a full disk and the memory stand-in ---------------------------------------------------


def test_schema_5_writes_on_a_full_disk_raise_store_write_error(small_disk):
    store = Store(small_disk.path / "lw.db", site_id="branch-7")
    raise_alert(store, "a1", T0)
    small_disk.fill()
    many = [ticket("issued", f"A{i:03d}", i / 100) for i in range(500)]
    with pytest.raises(StoreWriteError):
        for _ in range(200):  # a few may still fit on a page the store had
            store.insert_tickets(many)
    big = json.dumps({"wait": {"minutes": 1.0}, "pad": "x" * 200_000})
    with pytest.raises(StoreWriteError):
        store.write_queue(big, T0)
    long_details = json.dumps({"advice": ["x" * 200_000]})
    with pytest.raises(StoreWriteError):
        store.reask_alert("a1", 2, T0 + timedelta(minutes=5), long_details, [])
    assert store.alert("a1").passes == 1  # nothing of the re-ask landed
    assert not store.condition.writable
    small_disk.free()
    store.close()


def test_passes_tickets_and_the_snapshot_kept_on_memory_land_in_the_file(tmp_path):
    blocked = tmp_path / "data"
    blocked.write_text("")  # a file where the store's folder belongs: the store cannot open
    store = Store(blocked / "lw.db", site_id="branch-7", memory_fallback=True)
    assert store.condition.memory_only
    raise_alert(store, "m1", T0)
    store.reask_alert("m1", 2, T0 + timedelta(minutes=20), '{"value": 12}', [])
    store.insert_tickets([ticket("issued", "B001", 1)])
    store.write_queue(queue_payload(4.0), T0)
    blocked.unlink()
    with Store(blocked / "lw.db", site_id="branch-7") as file:
        file.insert_tickets([ticket("issued", "A001", 0)])

    assert store.recover()
    assert store.alert("m1").passes == 2 and store.alert("m1").details == '{"value": 12}'
    assert [e.ticket for _, e in store.tickets_after(0)] == ["A001", "B001"]
    assert store.queue_live() == (queue_payload(4.0), T0)
    store.close()


def test_purging_removes_ticket_events_older_than_the_cutoff_and_keeps_the_reading_order(store):
    store.insert_tickets([ticket("issued", "A001", -60 * 24 * 40), ticket("issued", "A002", 0)])
    store.insert_tickets([ticket("called", "A002", 1, counter="3")])
    before = store.tickets_after(0)
    assert store.purge_before(T0 - timedelta(days=30)) == 1
    assert store.tickets_after(0) == before[1:]  # the same rows, the same row ids
    assert store.purge_before(T0 - timedelta(days=30)) == 0


def test_a_pass_done_reported_longer_than_effect_after_s_after_the_clear_is_refused(store):
    raise_alert(store, "a1", T0)  # effect_after_s 600
    store.apply_ack("a1", "mgr-1", "accepted", T0 + timedelta(minutes=1))
    cleared_at = T0 + timedelta(minutes=4)
    store.clear_alert("a1", cleared_at, 6.0, [])
    late = store.apply_ack("a1", "mgr-1", "pass_done", cleared_at + timedelta(seconds=601))
    assert late is not None and late.outcome == "cleared" and late.record.pass_done_at is None
    assert only_pass(store, "a1").done_at is None
    assert store.effects_due(cleared_at + timedelta(days=1)) == []  # nothing to measure
    in_time = store.apply_ack("a1", "mgr-1", "pass_done", cleared_at + timedelta(seconds=600))
    assert in_time is not None and in_time.outcome == "pass_done"


@pytest.mark.parametrize("minutes", [float("nan"), float("inf"), -3.0])
def test_a_snapshot_wait_that_is_no_number_of_minutes_is_no_wait_before(store, minutes):
    raise_alert(store, "a1", T0)
    store.write_queue(json.dumps({"wait": {"minutes": minutes}}), T0)
    store.apply_ack("a1", "api-key", "accepted", T0)
    assert only_pass(store, "a1").wait_before_s is None


def _reasked_after_pass_1(store: Store) -> datetime:
    """An alert a1 whose pass 1 was accepted and done, asked again as pass 2 (open)."""
    raise_alert(store, "a1", T0)
    store.apply_ack("a1", "mgr-1", "accepted", T0 + timedelta(minutes=1), number=1)
    store.apply_ack("a1", "mgr-1", "pass_done", T0 + timedelta(minutes=3), number=1)
    reasked_at = T0 + timedelta(minutes=14)
    assert store.reask_alert("a1", 2, reasked_at, None, [])
    return reasked_at


@pytest.mark.parametrize("status", ["accepted", "pass_done"])
@pytest.mark.parametrize("number", [1, 3])
def test_an_ack_for_a_pass_other_than_the_latest_changes_nothing_and_is_already(
    store, status, number
):
    # pass 1's "done" redelivered (MQTT QoS 1) or tapped twice just after the re-ask, or a
    # pass the device never asked: the re-ask must stand
    reasked_at = _reasked_after_pass_1(store)
    version = store.alerts_version()
    at = reasked_at + timedelta(seconds=2)
    result = store.apply_ack("a1", "mgr-1", status, at, wait_s=60.0, number=number)
    assert result is not None and result.outcome == "already"
    assert result.record.status == "open" and result.record.passes == 2
    assert (result.record.acknowledged_at, result.record.pass_done_at) == (None, None)
    assert store.alerts_version() == version
    second = only_pass(store, "a1", 2)
    assert (second.accepted_at, second.done_at, second.wait_before_s) == (None, None, None)
    assert only_pass(store, "a1", 1).done_at == T0 + timedelta(minutes=3)


def test_an_ack_for_the_latest_pass_or_without_a_pass_number_is_taken(store):
    reasked_at = _reasked_after_pass_1(store)
    accepted = store.apply_ack("a1", "mgr-2", "accepted", reasked_at + timedelta(minutes=1),
                               number=2)  # fmt: skip
    assert accepted is not None and accepted.outcome == "accepted"
    assert only_pass(store, "a1", 2).accepted_by == "mgr-2"
    # an old handheld sends no number: the latest pass, as before
    done = store.apply_ack("a1", "mgr-3", "pass_done", reasked_at + timedelta(minutes=4))
    assert done is not None and done.outcome == "pass_done"
    assert only_pass(store, "a1", 2).done_by == "mgr-3"


def test_a_pass_number_on_an_alert_without_passes_rows_is_its_pass_1(store):
    raise_alert(store, "a1", T0)
    with store.transaction() as db:  # what a rolled-back 0.4 writes: no passes row
        db.execute("DELETE FROM passes")
    stale = store.apply_ack("a1", "mgr-1", "accepted", T0 + timedelta(minutes=1), number=2)
    assert stale is not None and stale.outcome == "already"
    taken = store.apply_ack("a1", "mgr-1", "accepted", T0 + timedelta(minutes=1), number=1)
    assert taken is not None and taken.outcome == "accepted"
    assert only_pass(store, "a1").accepted_by == "mgr-1"
