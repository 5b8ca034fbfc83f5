"""GET /v1/forecast over a real SQLite store holding synthetic history (bench/forecast.py):
the waiting + queue count 15 and 30 minutes ahead, in site time, unknown with a reason when the
history is short, for viewers only."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from api.schemas import ForecastOut
from bench.forecast import START, TZ, synthetic_history
from tests.test_api_support import Clock, auth, client_for, site_config, write_history


def lobby(tmp_path, weeks: int, now: datetime):
    """The test site (Europe/Berlin, like the synthetic lobby) with `weeks` of 15-minute
    intervals, 60% of the synthetic count in waiting and 40% in queue."""
    client = client_for(site_config(tmp_path), Clock(now))
    store = client.app.state.lobbywatch.store.store()
    counts = synthetic_history(weeks, seed=4, holidays=()).history.counts
    for zone, share in (("waiting", 0.6), ("queue", 0.4)):
        means = [None if math.isnan(c) else c * share for c in counts]
        write_history(store, zone, START, means, interval_s=900)
    return client


def forecast(client, **params):
    response = client.get("/v1/forecast", params=params, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return ForecastOut.model_validate(response.json())


def test_the_waiting_and_queue_count_ahead_with_an_interval_in_site_time(tmp_path):
    now = datetime(2024, 2, 5, 10, 7, tzinfo=TZ)  # a Monday, 5 weeks of history before it
    got = forecast(lobby(tmp_path, 5, now))
    assert got.zones == ["waiting", "queue"] and got.timezone == "Europe/Berlin"
    assert got.at.utcoffset() == timedelta(hours=1)
    assert [h.horizon_min for h in got.horizons] == [15, 30]
    assert [h.start.strftime("%H:%M") for h in got.horizons] == ["10:15", "10:30"]
    for h in got.horizons:
        assert h.status == "ok", h.reason
        assert h.point is not None and h.low is not None and h.high is not None
        assert 0 <= h.low <= h.high and h.point > 3  # mid-morning on a Monday
        assert h.basis is not None and h.basis.weeks == 5 and h.basis.seasonal_naive is not None
        assert h.start.utcoffset() == timedelta(hours=1)


def test_two_weeks_of_history_is_unknown_with_the_minimum(tmp_path):
    now = datetime(2024, 1, 15, 10, 7, tzinfo=TZ)
    got = forecast(lobby(tmp_path, 2, now))
    for h in got.horizons:
        assert h.status == "unknown" and h.point is None and h.basis is None
        assert h.reason is not None and "2 of 3 past same weekdays" in h.reason


def test_named_zones_are_summed_and_an_unknown_zone_is_refused(tmp_path):
    now = datetime(2024, 2, 5, 10, 7, tzinfo=TZ)
    client = lobby(tmp_path, 5, now)
    both, waiting = forecast(client), forecast(client, zone="waiting")
    assert waiting.zones == ["waiting"]
    assert waiting.horizons[0].basis is not None and both.horizons[0].basis is not None
    assert waiting.horizons[0].basis.profile == pytest.approx(0.6 * both.horizons[0].basis.profile)
    response = client.get("/v1/forecast", params={"zone": "lift"}, headers=auth("viewer"))
    assert response.status_code == 422 and "unknown zone 'lift'" in response.text


@pytest.mark.parametrize(("headers", "status"), [({}, 401), (auth("viewer"), 200)])
def test_the_forecast_needs_a_viewer_key(tmp_path, headers, status):
    client = lobby(tmp_path, 1, datetime(2024, 1, 8, 10, tzinfo=TZ))
    assert client.get("/v1/forecast", headers=headers).status_code == status


def test_the_basis_shows_the_anchor_the_point_rests_on(tmp_path):
    now = datetime(2024, 2, 5, 10, 7, tzinfo=TZ)  # the last complete quarter hour: 09:45-10:00
    client = lobby(tmp_path, 6, now)  # the store holds all of today: only 00:00-10:00 is read
    response = client.get("/v1/forecast", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    raw = response.json()["horizons"][0]["basis"]
    old = {"profile", "weeks", "trend", "today_slots", "residuals", "seasonal_naive"}
    assert old | {"last_slot", "last_slot_usual", "anchor_weight"} == set(raw)
    counts = synthetic_history(6, seed=4, holidays=()).history.counts
    slot = int((now.replace(minute=0) - START).total_seconds()) // 900 - 1
    for h in forecast(client).horizons:
        b = h.basis
        assert b is not None and b.last_slot is not None and b.last_slot_usual is not None
        assert b.last_slot == pytest.approx(counts[slot])  # 09:45-10:00, waiting + queue
        assert 0 <= b.anchor_weight <= 1
        expected = b.profile * b.trend + b.anchor_weight * (b.last_slot - b.last_slot_usual)
        assert h.point == pytest.approx(max(0.0, expected))
