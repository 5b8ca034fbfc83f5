"""The central store against a real PostgreSQL (docs/central.md, "Central store")."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from central.store import (
    AlertEventRow,
    Batch,
    CameraHealthRow,
    CentralStore,
    IntervalRow,
    QueueWaitRow,
    Retention,
    SiteSeen,
)
from tests.central.postgres import Postgres, postgres_dsn, postgres_server

__all__ = ["postgres_dsn", "postgres_server"]  # fixtures, imported for pytest

UTC = timezone.utc
NOW = datetime(2026, 5, 20, 9, 30, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def interval(
    site: str, zone: str, start: datetime, mean: float | None = 2.0, role: str = "waiting"
) -> IntervalRow:
    return IntervalRow(
        site=site,
        camera="cam-1",
        zone=zone,
        role=role,
        start_at=start,
        end_at=start + timedelta(minutes=5),
        mean=mean,
        max=None if mean is None else mean + 1,
        p90=None if mean is None else mean + 0.5,
        frames=0 if mean is None else 150,
        seen_s=300.0,
    )


def event(status: str, at: datetime, alert_id: str = "a-1", by: str | None = None) -> AlertEventRow:
    return AlertEventRow(
        site="b-001",
        alert_id=alert_id,
        kind="crowding",
        rule="lobby-crowded",
        zone_ids=("queue",),
        status=status,  # type: ignore[arg-type]
        at=at,
        by=by,
        details={"count": 9},
    )


@pytest.fixture
def store(postgres_dsn: str) -> CentralStore:
    s = CentralStore(postgres_dsn, clock=clock)
    s.migrate()
    s.ensure_partitions(NOW)
    return s


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_migrate_twice_is_a_no_op(postgres_dsn: str) -> None:
    s = CentralStore(postgres_dsn, clock=clock)
    assert s.schema_version() == 0
    assert s.migrate() == [1, 2]
    tables = count(
        postgres_dsn, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
    )
    assert s.migrate() == []
    assert s.schema_version() == 2
    assert (
        count(
            postgres_dsn,
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
        )
        == tables
    )
    assert count(postgres_dsn, "SELECT count(*) FROM schema_version") == 2


def test_ingest_before_migrate_says_so(postgres_dsn: str) -> None:
    with pytest.raises(RuntimeError, match="migrate"):
        CentralStore(postgres_dsn).ingest_intervals([interval("b-001", "queue", NOW)])


def test_a_batch_ingested_twice_is_stored_once(store: CentralStore, postgres_dsn: str) -> None:
    start = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
    rows = [
        interval(f"b-{i:03d}", z, start + timedelta(minutes=5 * k))
        for i in range(3)
        for z in ("queue", "counter")
        for k in range(4)
    ]
    assert store.ingest_intervals(rows) == 24
    assert store.ingest_intervals(rows) == 0
    # a batch overlapping the last one counts only its new rows
    later = interval("b-000", "queue", start + timedelta(minutes=20))
    assert store.ingest_intervals([rows[0], later]) == 1
    assert count(postgres_dsn, "SELECT count(*) FROM occupancy_intervals") == 25

    health = [
        CameraHealthRow("b-001", "cam-1", "offline", NOW),
        CameraHealthRow("b-001", "cam-1", "online", NOW + timedelta(seconds=30)),
    ]
    assert store.ingest_camera_health(health) == 2
    assert store.ingest_camera_health(health) == 0

    events = [event("raised", NOW), event("accepted", NOW + timedelta(minutes=1), by="mgr-1")]
    assert store.ingest_alert_events(events) == 2
    assert store.ingest_alert_events(events) == 0
    assert count(postgres_dsn, "SELECT count(*) FROM alert_events") == 2


def test_rows_land_in_their_months_partition(store: CentralStore, postgres_dsn: str) -> None:
    assert store.partitions("occupancy_intervals") == [
        "occupancy_intervals_p202605",
        "occupancy_intervals_p202606",
    ]
    end_of_may = datetime(2026, 5, 31, 23, 55, tzinfo=UTC)
    # midnight of 1 June in UTC is still 31 May in Shanghai: the partition follows UTC
    june_first = datetime(2026, 6, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    april = datetime(2026, 4, 30, 12, 0, tzinfo=UTC)  # a branch back from an outage, late
    assert (
        store.ingest_intervals(
            [interval("b-001", "queue", t) for t in (end_of_may, june_first, april)]
        )
        == 3
    )
    with psycopg.connect(postgres_dsn) as conn:
        placed: dict[datetime, str] = dict(
            conn.execute(
                "SELECT start_at AT TIME ZONE 'UTC', tableoid::regclass::text FROM occupancy_intervals"
            ).fetchall()
        )
    assert placed == {
        end_of_may.replace(tzinfo=None): "occupancy_intervals_p202605",
        datetime(2026, 6, 1, 0, 0): "occupancy_intervals_p202606",
        april.replace(tzinfo=None): "occupancy_intervals_p202604",
    }
    assert store.ensure_partitions(NOW) == []
    assert store.ensure_partitions(datetime(2026, 6, 2, tzinfo=UTC)) == [
        "alert_events_p202607",
        "camera_health_p202607",
        "occupancy_intervals_p202607",
        "queue_waits_p202607",
    ]


def test_purge_drops_only_partitions_past_retention(store: CentralStore, postgres_dsn: str) -> None:
    old = datetime(2026, 1, 15, tzinfo=UTC)
    recent = datetime(2026, 3, 15, tzinfo=UTC)
    for t in (old, recent):
        store.ingest_intervals([interval("b-001", "queue", t)])
        store.ingest_camera_health([CameraHealthRow("b-001", "cam-1", "online", t)])
    # health keeps 60 days before 20 May: 21 March; January's and February's months are past it,
    # March's is not (it ends after the cut-off); intervals keep 400 days, so nothing goes
    retention = Retention(intervals_days=400, alert_events_days=730, health_days=60)
    store.ingest_camera_health(
        [CameraHealthRow("b-001", "cam-1", "online", datetime(2026, 2, 10, tzinfo=UTC))]
    )
    assert store.purge(NOW, retention) == ["camera_health_p202601", "camera_health_p202602"]
    assert store.partitions("camera_health") == [
        "camera_health_p202603",
        "camera_health_p202605",
        "camera_health_p202606",
    ]
    assert count(postgres_dsn, "SELECT count(*) FROM camera_health") == 1
    assert count(postgres_dsn, "SELECT count(*) FROM occupancy_intervals") == 2
    assert store.purge(NOW, retention) == []


@pytest.mark.parametrize(
    "order",
    [
        ["raised", "accepted", "cleared"],
        ["cleared", "accepted", "raised"],
        ["accepted", "raised", "escalated", "cleared", "pass_done"],
    ],
)
def test_an_alerts_state_never_goes_backwards(store: CentralStore, order: list[str]) -> None:
    at = {"raised": 0, "escalated": 2, "accepted": 3, "pass_done": 6, "cleared": 9}
    for status in order:  # one event per batch, as they would arrive
        store.ingest_alert_events([event(status, NOW + timedelta(minutes=at[status]))])
    assert store.alert_state("b-001", "a-1") == "cleared"
    assert store.alert_state("b-001", "unknown") is None


def test_escalated_after_accepted_keeps_accepted(store: CentralStore) -> None:
    store.ingest_alert_events([event("accepted", NOW + timedelta(minutes=3), by="mgr-1")])
    store.ingest_alert_events(
        [event("escalated", NOW + timedelta(minutes=1)), event("raised", NOW)]
    )
    assert store.alert_state("b-001", "a-1") == "accepted"


def test_nothing_committed_is_lost_across_a_server_restart(
    store: CentralStore, postgres_server: Postgres, postgres_dsn: str
) -> None:
    start = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
    first = [interval("b-001", "queue", start + timedelta(minutes=5 * k)) for k in range(6)]
    second = [interval("b-001", "queue", start + timedelta(minutes=5 * k)) for k in range(4, 10)]
    assert store.ingest_intervals(first) == 6
    postgres_server.restart()
    # the store's connection died with the server: it reconnects, and the overlap counts once
    assert store.ingest_intervals(second) == 4
    got = store.site_intervals("b-001", start, start + timedelta(hours=1))
    assert [r.start_at for r in got] == [start + timedelta(minutes=5 * k) for k in range(10)]
    assert got[0] == first[0]


def test_branches_ranked_by_mean_waiting(store: CentralStore) -> None:
    start = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
    rows = [
        # b-001: two line zones, 2 + 3 = 5 people waiting in each interval
        *(
            interval("b-001", z, start + timedelta(minutes=5 * k), m)
            for z, m in (("queue", 2.0), ("line2", 3.0))
            for k in range(2)
        ),
        # b-002: 4 then 8; a service zone's crowd is not waiting
        interval("b-002", "queue", start, 4.0),
        interval("b-002", "queue", start + timedelta(minutes=5), 8.0),
        interval("b-002", "desk", start, 20.0, role="service"),
        # b-003: camera down the whole time (no count), and an interval outside the range
        interval("b-003", "queue", start, None),
        interval("b-003", "queue", start - timedelta(hours=1), 50.0),
    ]
    store.ingest_intervals(rows)
    ranked = store.rank_branches_by_waiting(start, start + timedelta(hours=1))
    assert [(b.site, b.mean_waiting, b.intervals) for b in ranked] == [
        ("b-002", 6.0, 2),
        ("b-001", 5.0, 2),
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: interval("b-001", "queue", datetime(2026, 5, 20, 9, 0)), "timezone-aware"),
        (lambda: interval("", "queue", NOW), "site"),
        (lambda: interval("b-001", "queue", NOW, role="lobby"), "role"),
        (lambda: event("done", NOW), "status"),
        (lambda: CameraHealthRow("b-001", "cam-1", "broken", NOW), "status"),  # type: ignore[arg-type]
        (lambda: Retention(health_days=0), "health_days"),
    ],
)
def test_bad_rows_are_refused_with_the_field_named(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def wait(site: str, at: datetime, minutes: float | None) -> QueueWaitRow:
    return QueueWaitRow(site, at, minutes, None, None, "medium", "departures", 4.0)


def test_one_batch_is_one_transaction(store: CentralStore, postgres_dsn: str) -> None:
    """A batch with one bad row stores nothing of it: its messages are not acked and come
    again, so a half-stored batch would never be completed."""
    good = interval("b-001", "queue", NOW)
    bad = interval("b-001", "queue", NOW + timedelta(minutes=5))
    object.__setattr__(bad, "frames", "not a number")
    with pytest.raises(psycopg.Error):
        store.ingest(Batch(intervals=[good, bad], sites=[SiteSeen("b-001", NOW)]))
    assert count(postgres_dsn, "SELECT count(*) FROM occupancy_intervals") == 0
    assert count(postgres_dsn, "SELECT count(*) FROM sites") == 0
    result = store.ingest(Batch(intervals=[good], queue_waits=[wait("b-001", NOW, 7.5)]))
    assert (result.intervals, result.queue_waits) == (1, 1)


def test_queue_waits_keep_the_first_report_of_each_minute(
    store: CentralStore, postgres_dsn: str
) -> None:
    first = wait("b-001", NOW + timedelta(seconds=5), 7.5)
    later = wait("b-001", NOW + timedelta(seconds=35), 9.0)
    unknown = wait("b-001", NOW + timedelta(minutes=1), None)
    assert store.ingest(Batch(queue_waits=[first, later, unknown])).queue_waits == 2
    assert store.ingest(Batch(queue_waits=[first])).queue_waits == 0
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT minute, wait_minutes FROM queue_waits ORDER BY minute"
        ).fetchall()
    assert rows == [(NOW, 7.5), (NOW + timedelta(minutes=1), None)]


def test_sites_keep_the_latest_time_heard_and_availability(
    store: CentralStore, postgres_dsn: str
) -> None:
    t = NOW
    store.ingest(Batch(sites=[SiteSeen("b-001", t, "online"), SiteSeen("b-001", t + timedelta(1))]))
    # Out of order: an older message (a bridge's backlog) moves nothing back.
    store.ingest(Batch(sites=[SiteSeen("b-001", t - timedelta(hours=1), "offline")]))
    store.ingest(Batch(sites=[SiteSeen("b-002", t, "stopped")]))
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT site, last_seen_at, availability, availability_at FROM sites ORDER BY site"
        ).fetchall()
    assert rows == [
        ("b-001", t + timedelta(1), "online", t),
        ("b-002", t, "stopped", t),
    ]


def test_a_later_version_of_the_same_step_updates_the_latest_state(store: CentralStore) -> None:
    """An effect measured after the pass adds no step, only a later version: it must reach
    the alerts table (the passes report reads it there)."""
    done = NOW + timedelta(minutes=9)
    first = replace(event("pass_done", done), details={"version": 3, "effect": None})
    later = replace(event("pass_done", done), details={"version": 4, "effect": {"count_after": 8}})
    store.ingest_alert_events([first])
    store.ingest_alert_events([later])
    store.ingest_alert_events([first])  # a redelivery of the older one changes nothing back
    with psycopg.connect(store.dsn) as conn:
        row = conn.execute("SELECT details FROM alerts").fetchone()
    assert row == ({"version": 4, "effect": {"count_after": 8}},)
