"""History buckets and the busiest-hours report over a real SQLite store, with and without the
rollup cache; bad input answered with a clear 422; CSV export."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.schemas import BusiestHoursOut, HistoryOut
from tests.test_api_support import T0, UTC, Clock, auth, client_for, site_config, write_history

MINUTE = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # six 10-second intervals


def history(client, **params):
    response = client.get("/v1/occupancy/history", params=params, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return HistoryOut.model_validate(response.json())


@pytest.fixture
def client(tmp_path):
    client = client_for(site_config(tmp_path), Clock(T0 + timedelta(days=30)))
    store = client.app.state.lobbywatch.store.store()
    start = T0 + timedelta(hours=10)
    # 10:00 six known intervals, 10:01 camera offline, 10:02 nothing recorded, 10:03 known
    write_history(store, "waiting", start, [*MINUTE, *[None] * 6])
    write_history(store, "waiting", start + timedelta(minutes=3), [10.0] * 6)
    return client


def test_minute_buckets_hold_mean_max_p90_coverage_and_frames(client):
    got = history(
        client, zone="waiting", bucket="1m", start="2024-05-06T10:00:00Z", end="2024-05-06T10:04Z"
    )
    points = got.zones[0].points
    assert [p.start.strftime("%H:%M") for p in points] == ["10:00", "10:01", "10:02", "10:03"]
    first = points[0]
    assert first.mean == pytest.approx(3.5)
    assert first.max == 7.0  # the writer stores max = mean + 1
    assert first.p90 == 6.0  # nearest rank: the 6th of 6
    assert (first.coverage, first.samples) == (1.0, 120)
    assert points[3].mean == 10.0


def test_unknown_is_never_zero_offline_and_unrecorded_buckets_are_null(client):
    got = history(
        client, zone="waiting", bucket="1m", start="2024-05-06T10:01:00Z", end="2024-05-06T10:03Z"
    )
    offline, nothing = got.zones[0].points
    for point in (offline, nothing):
        assert point.mean is None and point.max is None and point.p90 is None
        assert point.coverage == 0.0 and point.samples == 0


def test_every_zone_is_listed_when_none_is_asked_for(client):
    got = history(client, bucket="1h", start="2024-05-06T10:00:00Z", end="2024-05-06T11:00Z")
    assert [z.zone_id for z in got.zones] == ["waiting", "queue", "entrance"]
    assert got.zones[1].points[0].mean is None  # queue: nothing recorded, not 0
    assert got.zones[0].points[0].coverage == pytest.approx(120 / 3600)


def test_day_buckets_follow_the_sites_midnights(client):
    got = history(client, bucket="1d", start="2024-05-06T00:00:00+02:00", end="2024-05-08T00:00Z")
    assert got.timezone == "Europe/Berlin"
    assert [p.start for p in got.zones[0].points] == [
        datetime(2024, 5, 5, 22, tzinfo=UTC),
        datetime(2024, 5, 6, 22, tzinfo=UTC),
        datetime(2024, 5, 7, 22, tzinfo=UTC),
    ]
    assert got.zones[0].points[0].samples == 240


@pytest.fixture
def long_history(tmp_path):
    """Three days of 10 s intervals in two zones with an outage and a quiet night; the clock
    stands in the middle of the third day so that the rollup covers only part of the range."""
    config = site_config(tmp_path)
    clock = Clock(T0 + timedelta(days=2, hours=13, minutes=7))
    client = client_for(config, clock)
    store = client.app.state.lobbywatch.store.store()
    for zone, scale in (("waiting", 1.0), ("queue", 0.5)):
        values: list[float | None] = []
        for i in range(3 * 8640):
            hour = (i * 10 // 3600) % 24
            outage = 2000 <= i < 2600
            values.append(None if outage else scale * ((i * 7) % 13) * (hour >= 7))
        write_history(store, zone, T0, values[: int((clock.now - T0).total_seconds() // 10)])
    return client, clock


@pytest.mark.parametrize("bucket", ["15m", "1h", "1d"])
def test_the_rollup_answers_exactly_as_the_stored_intervals_do(tmp_path, long_history, bucket):
    client, clock = long_history
    params = {
        "bucket": bucket,
        "start": T0.isoformat(),
        "end": (T0 + timedelta(days=3)).isoformat(),
    }
    from_raw = client_for(site_config(tmp_path), clock, use_rollup=False)
    expected = history(from_raw, **params)
    rollup = client.app.state.lobbywatch.rollup
    assert rollup.refresh(clock.now)  # caught up, up to FINAL_AFTER_S before now
    with rollup.read() as db:  # part of the range from the rollup, the rest from the store
        assert T0.timestamp() < rollup.done_until(db, bucket) < clock.now.timestamp()
    assert history(client, **params) == expected


def test_a_stale_rollup_row_is_never_served_for_an_open_bucket(long_history):
    client, clock = long_history
    client.app.state.lobbywatch.rollup.refresh(clock.now)
    store = client.app.state.lobbywatch.store.store()
    # the pipeline writes the current hour on; the open hour must show it at once
    write_history(store, "waiting", clock.now.replace(second=0), [40.0])
    got = history(
        client, zone="waiting", bucket="1h", start=T0.isoformat(), end=clock.now.isoformat()
    )
    assert got.zones[0].points[-1].max == 41.0


BAD = [
    ({"start": "2024-05-06T10:00:00"}, "timezone"),  # naive: an offset is required
    ({"start": "2024-05-06T10:00:00Z", "end": "2024-05-06T09:00:00Z"}, "before end"),
    ({"bucket": "1m", "start": "2024-05-01T00:00:00Z", "end": "2024-05-09T00:00:00Z"}, "7 days"),
    ({"bucket": "15m", "start": "2024-01-01T00:00:00Z", "end": "2024-05-01T00:00:00Z"}, "90 days"),
    ({"bucket": "2h"}, "bucket"),
    ({"zone": "vault"}, "unknown zone 'vault'"),
    ({"start": "1900-01-01T00:00:00Z"}, "longer than"),  # read as 2000: more than 400 days
    ({"start": "yesterday"}, "datetime"),
    ({"end": "1715000000"}, "RFC 3339"),  # pydantic alone would read unix seconds
    ({"end": "2024-05-06"}, "RFC 3339"),
    ({"zone": ""}, "unknown zone ''"),
]


@pytest.mark.parametrize(("params", "message"), BAD)
def test_bad_history_requests_get_a_422_that_says_what_is_wrong(client, params, message):
    response = client.get("/v1/occupancy/history", params=params, headers=auth("viewer"))
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"format": "csv"}, {}), ({}, {"Accept": "text/csv"}), ({}, {"Accept": "text/csv, */*"})],
)
def test_history_exports_as_csv_with_empty_cells_for_unknown(client, params, headers):
    response = client.get(
        "/v1/occupancy/history",
        params={"zone": "waiting", "bucket": "1m", "start": "2024-05-06T10:00:00Z",
                "end": "2024-05-06T10:02:00Z", **params},
        headers={**auth("viewer"), **headers},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    # 10:00Z in the site's time, as Excel reads a date and time
    assert rows[0]["start"] == "2024-05-06 12:00:00" and float(rows[0]["mean"]) == 3.5
    assert rows[1]["mean"] == "" and rows[1]["coverage"] == "0.0"


def test_json_is_the_default_even_when_the_client_accepts_anything(client):
    response = client.get(
        "/v1/occupancy/history", headers={**auth("viewer"), "Accept": "application/json, text/csv"}
    )
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(("tz", "hour"), [("Europe/Berlin", 9), ("Asia/Kolkata", 9)])
def test_busiest_hours_are_by_local_weekday_and_hour(tmp_path, tz, hour):
    zone = ZoneInfo(tz)
    client = client_for(site_config(tmp_path, tz=tz), Clock(T0 + timedelta(days=20)))
    store = client.app.state.lobbywatch.store.store()
    for week in range(2):
        monday = datetime(2024, 5, 6, hour, tzinfo=zone) + timedelta(weeks=week)
        write_history(store, "waiting", monday, [8.0] * 360)  # Monday 09:00-10:00 local
        write_history(store, "waiting", monday + timedelta(days=1), [2.0] * 180)  # half an hour
    response = client.get(
        "/v1/reports/busiest-hours",
        params={"zone": "waiting", "start": "2024-05-06T00:00:00Z", "end": "2024-05-20T00:00Z"},
        headers=auth("viewer"),
    )
    assert response.status_code == 200, response.text
    report = BusiestHoursOut.model_validate(response.json())
    slots = {(s.weekday, s.hour): s for s in report.zones[0].slots}
    assert len(slots) == 7 * 24
    monday = slots[("mon", hour)]
    assert (monday.mean, monday.peak, monday.coverage, monday.hours) == (8.0, 9.0, 1.0, 2)
    tuesday = slots[("tue", hour)]
    assert (tuesday.mean, tuesday.coverage) == (2.0, 0.5)
    quiet = slots[("wed", 3)]
    assert quiet.mean is None and quiet.peak is None and quiet.coverage == 0.0


def test_the_background_worker_keeps_the_rollup_current(tmp_path, long_history):
    _, clock = long_history
    app = create_app(site_config(tmp_path), clock=clock, rollup_every_s=0.05)
    rollup = app.state.lobbywatch.rollup
    with TestClient(app):  # runs the lifespan: the worker starts, and stops at the end
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with rollup.read() as db:
                if all(rollup.done_until(db, level) for level in ("15m", "1h", "1d")):
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("rollup not built in the background")


def test_a_changed_time_zone_empties_the_rollup_so_days_are_rebuilt(tmp_path, long_history):
    client, clock = long_history
    client.app.state.lobbywatch.rollup.refresh(clock.now)
    moved = client_for(site_config(tmp_path, tz="Asia/Tokyo"), clock)
    rollup = moved.app.state.lobbywatch.rollup
    with rollup.read() as db:
        assert rollup.done_until(db, "1d") is None
        assert db.execute("SELECT COUNT(*) FROM rollup").fetchone()[0] == 0


def test_a_broken_rollup_file_only_makes_answers_slower_not_wrong(tmp_path, long_history):
    client, clock = long_history
    params = {"bucket": "1h", "start": T0.isoformat(), "end": clock.now.isoformat()}
    expected = history(client, **params)
    rollup = client.app.state.lobbywatch.rollup
    rollup.close()
    rollup.path.write_bytes(b"this is not a database" * 100)
    assert history(client, **params) == expected
