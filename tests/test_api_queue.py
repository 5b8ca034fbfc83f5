"""GET /v1/queue: the edge's queue snapshot from the store's queue_live row, with its age; a
snapshot older than a minute, a damaged one, or none at all is "unknown", never figures."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.test_api_support import Clock, auth, client_for, site_config

NOW = datetime(2024, 5, 6, 8, 0, tzinfo=timezone.utc)

SNAPSHOT = {
    "site": "branch-1",
    "at": "2024-05-06T07:59:55Z",
    "line_zones": ["waiting", "queue"],
    "wait": {"minutes": 12.5, "low_minutes": 9.0, "high_minutes": 16.0, "confidence": "medium",
             "method": "departures", "line_count": 14, "throughput_per_min": 1.1,
             "arrivals_per_min": 1.3, "dwell_p50_minutes": None, "reason": ""},
    "forecast": {"15": {"count": 18, "count_low": 14, "count_high": 22, "minutes": 16.4,
                        "low_minutes": 12.7, "high_minutes": 20.0, "reason": ""}},
    "kiosks": [{"zone": "kiosks", "name": "Kiosks", "in_use": None, "capacity": 4}],
    "counters": [],
    "arrivals_5min": 9,
    "arrivals_expected_5min": None,
    "dwell": {},
}  # fmt: skip


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def client(tmp_path, clock):
    return client_for(site_config(tmp_path), clock)


def write(client, payload: str, at: datetime) -> None:
    client.app.state.lobbywatch.store.store().write_queue(payload, at)


def queue(client) -> dict:
    response = client.get("/v1/queue", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return response.json()


def test_a_fresh_snapshot_is_answered_live_with_its_age_and_nulls_kept(client):
    write(client, json.dumps(SNAPSHOT), NOW - timedelta(seconds=5))
    got = queue(client)
    assert got["status"] == "live" and got["age_s"] == 5.0
    assert got["at"] == "2024-05-06T07:59:55Z"
    assert got["wait"] == SNAPSHOT["wait"] and got["forecast"] == SNAPSHOT["forecast"]
    assert got["kiosks"][0]["in_use"] is None and got["arrivals_expected_5min"] is None
    assert got["line_zones"] == ["waiting", "queue"] and got["arrivals_5min"] == 9


def test_a_snapshot_older_than_a_minute_is_unknown_without_figures(client, clock):
    write(client, json.dumps(SNAPSHOT), NOW)
    clock.now = NOW + timedelta(seconds=60)
    assert queue(client)["status"] == "live"
    clock.now = NOW + timedelta(seconds=61)
    got = queue(client)
    assert got["status"] == "unknown" and got["age_s"] == 61.0
    assert "61 s old" in got["reason"]
    assert not {"wait", "forecast", "kiosks", "counters", "line_zones"} & set(got)


@pytest.mark.parametrize("payload", ["not json", "[1, 2]", '{"wait": 5}'])
def test_a_damaged_snapshot_is_unknown(client, payload):
    write(client, payload, NOW)
    got = queue(client)
    assert got["status"] == "unknown" and "damaged" in got["reason"] and "wait" not in got


def test_no_snapshot_yet_is_unknown(client):
    got = queue(client)
    assert got == {"status": "unknown", "reason": "no queue snapshot yet: is the edge running?"}


def test_the_queue_needs_a_key(client):
    assert client.get("/v1/queue").status_code == 401
