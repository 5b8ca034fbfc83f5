"""The head-office API's answers on a seeded store (docs/central.md, "Head-office API").
The expected numbers are worked out by hand in tests/central/central_api_support.seed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from central.api.app import StorePool, create_app
from central.api.schemas import (
    AboveThresholdOut,
    AckTimesOut,
    CentralHistoryOut,
    OfflineReportOut,
    PassesReportOut,
    SiteAlertsOut,
    WaitingReportOut,
)
from central.store import CentralStore, open_seconds
from tests.central.central_api_support import (
    H8,
    NOW,
    UTC,
    Clock,
    Monotonic,
    auth,
    central_config,
    client_for,
    interval,
    seeded_dsn,
)
from tests.central.postgres import postgres_dsn, postgres_server
from tests.mqtt_broker import free_port

__all__ = ["postgres_dsn", "postgres_server", "seeded_dsn"]  # fixtures, imported for pytest


@pytest.fixture(scope="module")
def client(seeded_dsn: str) -> TestClient:
    return client_for(seeded_dsn)


def get(client: TestClient, path: str, key: str = "hq", **params: str) -> dict:
    response = client.get(path, params=params, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def sites_of(rows: list[dict]) -> list[str]:
    return [r["site"] for r in rows]


def test_health_needs_no_key_and_names_the_schema(client):
    body = client.get("/v1/health").json()
    assert (body["status"], body["database"], body["schema_version"]) == ("ok", True, 2)


def test_health_is_503_when_the_database_has_no_schema_yet(postgres_dsn):
    response = client_for(postgres_dsn).get("/v1/health")
    assert response.status_code == 503
    assert response.json()["status"] == "fail"


def test_sites_lists_every_branch_with_its_region_and_whether_it_is_online(client):
    rows = {r["site"]: r for r in get(client, "/v1/sites")}
    assert sorted(rows) == ["b-north-1", "b-north-2", "b-north-3", "b-south-1", "b-x"]
    assert rows["b-north-1"] == {
        "site": "b-north-1",
        "region": "north",
        "last_seen_at": "2026-05-20T09:29:00Z",
        "availability": "online",
        "online": True,
    }
    assert not rows["b-north-2"]["online"]  # silent for 2 h > offline_after_s 900
    assert not rows["b-south-1"]["online"]  # heard 30 s ago, but says offline
    assert rows["b-north-3"] == {"site": "b-north-3", "region": "north", "last_seen_at": None,
                                 "availability": None, "online": False}  # fmt: skip
    assert rows["b-x"]["region"] is None and rows["b-x"]["online"]  # availability never said


def test_history_is_the_devices_15m_shape_with_the_site(client):
    body = get(client, "/v1/sites/b-north-1/occupancy/history",
               start="2026-05-20T08:00:00Z", end="2026-05-20T08:30:00Z")  # fmt: skip
    CentralHistoryOut.model_validate(body)
    assert (body["site"], body["bucket"], body["timezone"]) == ("b-north-1", "15m", "UTC")
    assert (body["start"], body["end"]) == ("2026-05-20T08:00:00Z", "2026-05-20T08:30:00Z")
    zones = {z["zone_id"]: z["points"] for z in body["zones"]}
    assert sorted(zones) == ["counter", "floor", "queue"]
    assert zones["queue"] == [
        {"start": "2026-05-20T08:00:00Z", "end": "2026-05-20T08:15:00Z", "mean": 4.0,
         "max": 5.0, "p90": 4.5, "coverage": 1.0, "samples": 450},
        {"start": "2026-05-20T08:15:00Z", "end": "2026-05-20T08:30:00Z", "mean": 2.0,
         "max": 3.0, "p90": 2.5, "coverage": 0.5, "samples": 450},
    ]  # fmt: skip
    unknown = zones["floor"][1]
    assert (unknown["mean"], unknown["coverage"], unknown["samples"]) == (None, 0.0, 0)


def test_history_lists_every_bucket_widened_to_quarter_hours_and_filters_zones(client):
    body = get(client, "/v1/sites/b-north-1/occupancy/history",
               start="2026-05-20T07:50:00Z", end="2026-05-20T08:20:00+00:00", zone="queue")  # fmt: skip
    assert (body["start"], body["end"]) == ("2026-05-20T07:45:00Z", "2026-05-20T08:30:00Z")
    [queue] = body["zones"]
    assert [p["mean"] for p in queue["points"]] == [None, 4.0, 2.0]


def test_history_refuses_a_zone_the_branch_never_sent(client):
    response = client.get("/v1/sites/b-north-1/occupancy/history", params={"zone": "lobby"},
                          headers=auth("hq"))  # fmt: skip
    assert response.status_code == 422
    assert "never sent zone 'lobby'" in response.text


def test_history_folds_one_minute_intervals_into_quarter_hours(postgres_dsn):
    store = CentralStore(postgres_dsn, clock=Clock())
    store.migrate()
    rows = [interval("b-north-1", "queue", "queue", H8 + timedelta(minutes=i), float(i),
                     seen_s=60.0, minutes=1) for i in range(3)]  # fmt: skip
    store.ingest_intervals(rows)
    body = get(client_for(postgres_dsn), "/v1/sites/b-north-1/occupancy/history",
               start="2026-05-20T08:00:00Z", end="2026-05-20T08:15:00Z")  # fmt: skip
    [point] = body["zones"][0]["points"]
    # frames 450 each: mean (0 + 1 + 2) / 3; max and p90 the highest minute's; 180 s of 900
    assert point == {"start": "2026-05-20T08:00:00Z", "end": "2026-05-20T08:15:00Z",
                     "mean": 1.0, "max": 3.0, "p90": 2.5, "coverage": 0.2, "samples": 1350}  # fmt: skip


def test_site_alerts_are_the_latest_states_of_those_raised_in_the_range(client):
    body = get(client, "/v1/sites/b-north-1/alerts")
    SiteAlertsOut.model_validate(body)
    alerts = {a["alert_id"]: a for a in body["alerts"]}
    assert [a["alert_id"] for a in body["alerts"]] == ["A3", "A1", "A2"]  # by raise
    assert (alerts["A1"]["status"], alerts["A1"]["at"]) == ("cleared", "2026-05-20T08:20:00Z")
    assert alerts["A1"]["state"]["effect"]["count_after"] == 3.0
    assert (alerts["A2"]["status"], alerts["A2"]["by"]) == ("accepted", "mgr-1")
    assert alerts["A2"]["raised_at"] == "2026-05-20T08:16:00Z"
    later = get(client, "/v1/sites/b-north-1/alerts", start="2026-05-20T08:05:00Z")
    assert [a["alert_id"] for a in later["alerts"]] == ["A2"]


def test_branches_ranked_by_people_waiting_and_by_wait_minutes(client):
    body = get(client, "/v1/reports/branches/waiting")
    WaitingReportOut.model_validate(body)
    assert (body["start"], body["end"]) == ("2026-05-19T09:30:00Z", "2026-05-20T09:30:00Z")
    assert [(b["site"], b["region"], b["mean_waiting"], b["intervals"]) for b in body["by_waiting"]] == [
        ("b-south-1", "south", 10.0, 1),
        ("b-north-1", "north", 4.0, 2),
        ("b-north-2", "north", 1.0, 1),
    ]  # fmt: skip
    assert [
        (b["site"], b["mean_wait_minutes"], b["max_wait_minutes"], b["minutes"])
        for b in body["by_wait_minutes"]
    ] == [("b-south-1", 12.0, 12.0, 1), ("b-north-1", 6.0, 7.0, 2)]


def test_branches_ranked_by_time_with_a_diversion_alert_open(client):
    body = get(client, "/v1/reports/branches/above-threshold")
    AboveThresholdOut.model_validate(body)
    assert [(b["site"], b["open_s"], b["alerts"]) for b in body["branches"]] == [
        ("b-north-1", 5400.0, 2),
        ("b-south-1", 1800.0, 1),
        ("b-north-2", 1500.0, 1),
    ]
    assert body["branches"][0]["share"] == pytest.approx(5400 / 86400)
    clipped = get(client, "/v1/reports/branches/above-threshold",
                  start="2026-05-20T08:10:00Z", end="2026-05-20T08:20:00Z")  # fmt: skip
    assert [(b["site"], b["open_s"]) for b in clipped["branches"]] == [
        ("b-north-1", 600.0), ("b-north-2", 600.0)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([], 0.0),
        ([(0, 10)], 10.0),
        ([(0, 10), (5, 20)], 20.0),  # overlapping: once
        ([(0, 10), (2, 4)], 10.0),  # inside another
        ([(-5, 5), (95, 200)], 10.0),  # clipped to [0, 100)
        ([(200, 300)], 0.0),
    ],
)
def test_open_seconds_counts_overlaps_once_and_clips_to_the_range(spans, expected):
    def at(s: int):
        return H8 + timedelta(seconds=s)

    got = open_seconds([(at(a), at(b)) for a, b in spans], at(0), at(100))
    assert got == expected


def test_ack_times_per_branch_with_interpolated_percentiles(client):
    body = get(client, "/v1/reports/alerts/ack-times")
    AckTimesOut.model_validate(body)
    assert [
        (b["site"], b["raised"], b["accepted"], b["unaccepted"], b["p50_s"], b["p90_s"])
        for b in body["branches"]
    ] == [
        ("b-north-1", 2, 2, 0, 360.0, pytest.approx(552.0)),
        ("b-north-2", 1, 1, 0, 60.0, 60.0),
        ("b-south-1", 1, 0, 1, None, None),
    ]


def test_passes_and_their_measured_effect(client):
    body = get(client, "/v1/reports/passes")
    PassesReportOut.model_validate(body)
    rows = {b["site"]: b for b in body["branches"]}
    assert rows["b-north-1"] == {"site": "b-north-1", "region": "north", "passes": 1,
                                 "measured": 1, "mean_count_at_pass": 8.0,
                                 "mean_count_after": 3.0, "mean_change": -5.0}  # fmt: skip
    assert (rows["b-north-2"]["passes"], rows["b-north-2"]["measured"]) == (1, 0)
    assert rows["b-north-2"]["mean_change"] is None
    assert "b-south-1" not in rows


def test_devices_offline_silent_unavailable_and_never_heard(client):
    body = get(client, "/v1/reports/devices/offline")
    OfflineReportOut.model_validate(body)
    assert [(b["site"], b["reason"], b["silent_s"]) for b in body["branches"]] == [
        ("b-north-3", "never_heard", None),  # longest silent first: never heard at all
        ("b-north-2", "silent", 7200.0),
        ("b-south-1", "unavailable", 30.0),
    ]


def test_a_branch_goes_offline_once_silent_past_offline_after_s(seeded_dsn):
    clock = Clock(NOW + timedelta(seconds=-60 + 901))  # b-north-1 last heard at 09:29
    body = get(client_for(seeded_dsn, clock=clock), "/v1/reports/devices/offline")
    assert "b-north-1" in sites_of(body["branches"])
    clock.now = NOW + timedelta(seconds=-60 + 899)
    body = get(client_for(seeded_dsn, clock=clock), "/v1/reports/devices/offline")
    assert "b-north-1" not in sites_of(body["branches"])


# --- region scope ---------------------------------------------------------------------------

REPORTS = [
    ("/v1/reports/branches/waiting", "by_waiting"),
    ("/v1/reports/branches/waiting", "by_wait_minutes"),
    ("/v1/reports/branches/above-threshold", "branches"),
    ("/v1/reports/alerts/ack-times", "branches"),
    ("/v1/reports/passes", "branches"),
    ("/v1/reports/devices/offline", "branches"),
]


@pytest.mark.parametrize(("path", "field"), REPORTS)
def test_a_north_key_never_sees_a_south_branch_in_a_report(client, path, field):
    everyone = set(sites_of(get(client, path)[field]))
    north = set(sites_of(get(client, path, key="north")[field]))
    south = set(sites_of(get(client, path, key="south")[field]))
    assert north and north == {s for s in everyone if s.startswith("b-north")}
    assert south <= {"b-south-1"}
    assert set(sites_of(get(client, path, key="both")[field])) == everyone - {"b-x"}


def test_a_north_key_lists_only_north_branches(client):
    assert sites_of(get(client, "/v1/sites", key="north")) == [
        "b-north-1",
        "b-north-2",
        "b-north-3",
    ]
    assert sites_of(get(client, "/v1/sites", key="south")) == ["b-south-1"]


@pytest.mark.parametrize("path", ["/v1/sites/{}/alerts", "/v1/sites/{}/occupancy/history"])
@pytest.mark.parametrize(("key", "site", "status"), [
    ("north", "b-south-1", 404),  # exists, another region: as if it did not
    ("north", "b-x", 404),  # in no region
    ("north", "b-nowhere", 404),
    ("hq", "b-nowhere", 404),
    ("north", "b-north-1", 200),
    ("north", "b-north-3", 200),  # configured, never heard: empty, not missing
    ("hq", "b-x", 200),
])  # fmt: skip
def test_a_branch_outside_the_keys_regions_is_404_like_one_that_does_not_exist(
    client, path, key, site, status
):
    response = client.get(path.format(site), headers=auth(key))
    assert response.status_code == status, response.text
    if status == 404:
        assert response.json() == {"detail": f"no branch {site!r}"}


# --- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/v1/reports/passes", {"start": "2025-04-14T09:29:59Z"}, "longer than the 400 days"),
        ("/v1/reports/alerts/ack-times", {"start": "2026-05-20T10:00:00Z"}, "before end"),
        ("/v1/reports/branches/waiting", {"start": "2026-05-20T08:00:00"}, "timezone"),
        ("/v1/sites/b-north-1/alerts", {"end": "2026-05-20"}, "RFC 3339"),
        ("/v1/sites/b-north-1/occupancy/history", {"start": "2026-02-18T09:29Z"}, "90 days"),
    ],
)
def test_ranges_beyond_the_bounds_and_naive_times_are_refused(client, path, params, message):
    response = client.get(path, params=params, headers=auth("hq"))
    assert response.status_code == 422, response.text
    assert message in response.text


def test_a_range_of_exactly_400_days_is_answered(client):
    start = (NOW - timedelta(days=400)).isoformat()
    assert get(client, "/v1/reports/passes", start=start)["start"] == "2025-04-15T09:30:00Z"


def test_times_with_an_offset_are_read_in_utc(client):
    body = get(client, "/v1/reports/branches/above-threshold",
               start="2026-05-20T16:10:00+08:00", end="2026-05-20T16:20:00+08:00")  # fmt: skip
    assert body["start"] == "2026-05-20T08:10:00Z"
    assert body["branches"][0]["open_s"] == 600.0
    assert NOW.tzinfo is UTC


def test_a_database_that_is_down_is_a_503_not_a_500():
    client = client_for(f"host=127.0.0.1 port={free_port()} user=nobody connect_timeout=2")
    response = client.get("/v1/sites", headers=auth("hq"))
    assert response.status_code == 503
    assert response.json() == {"detail": "the central database is unavailable"}
    health = client.get("/v1/health")
    assert health.status_code == 503
    assert (health.json()["database"], health.json()["schema_version"]) == (False, None)


def backend_pid(store: CentralStore) -> int:
    return store._transaction(lambda conn: conn.info.backend_pid)


@contextmanager
def one_store_held(pool: StorePool) -> Iterator[tuple[Future[int], ThreadPoolExecutor]]:
    """A query holding one of the pool's stores until the block ends (its future, giving that
    store's backend pid), and a thread to run another query in."""
    held, release = threading.Event(), threading.Event()

    def hold(store: CentralStore) -> int:
        held.set()
        release.wait(30)
        return backend_pid(store)

    with ThreadPoolExecutor(2) as threads:
        first = threads.submit(pool.query, hold)
        assert held.wait(10)
        try:
            yield first, threads
        finally:
            release.set()


def test_the_pool_runs_as_many_queries_at_once_as_it_has_stores(seeded_dsn):
    stores = [CentralStore(seeded_dsn) for _ in range(2)]
    pool = StorePool(stores)
    try:
        with one_store_held(pool) as (first, threads):
            # One store is lent out and held: the other answers, on its own connection.
            other = threads.submit(pool.query, backend_pid).result(10)
            assert not first.done()
        assert first.result(10) != other
    finally:
        for store in stores:
            store.close()


def test_a_pool_of_one_answers_one_query_at_a_time(seeded_dsn):
    store = CentralStore(seeded_dsn)
    pool = StorePool([store])
    try:
        with one_store_held(pool) as (first, threads):
            second = threads.submit(pool.query, backend_pid)
            with pytest.raises(TimeoutError):
                second.result(0.5)  # waits for the one store, still lent out
        assert first.result(10) == second.result(10)
    finally:
        store.close()
    with pytest.raises(ValueError, match="no stores"):
        StorePool([])


def test_the_app_lends_its_stores_to_the_requests_in_turn(seeded_dsn):
    stores = [CentralStore(seeded_dsn, clock=Clock()) for _ in range(2)]
    try:
        client = TestClient(create_app(central_config(), stores, Clock(), monotonic=Monotonic()))
        for _ in range(2):
            assert client.get("/v1/sites", headers=auth("hq")).status_code == 200
        assert all(s._conn is not None for s in stores)  # each served one request
    finally:
        for store in stores:
            store.close()
