"""The count forecast on synthetic history with a known weekday x quarter-hour profile
(bench/forecast.py): profile recovered, trend days read, interval coverage, unknown when history
is short or the day a holiday, holidays kept out of the profile and the baseline."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from bench.forecast import HORIZONS_S, START, TZ, score, synthetic_history, usual_level
from edge.queueing.forecast import SLOT_S, CountModel, ForecastParams, SlotHistory

UTC = ZoneInfo("UTC")


def at(day: date, hour: int, minute: int = 0) -> int:
    """UTC seconds of a local time in the synthetic lobby's time zone."""
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).timestamp())


def test_an_ordinary_day_is_forecast_as_its_weekdays_profile():
    data = synthetic_history(10, seed=3, day_sigma=0.0)
    model = CountModel(data.history, TZ, data.holidays)
    day = START.date() + timedelta(weeks=9, days=1)  # a Tuesday, 9 weeks of history before it
    points, usual = [], []
    for minute in range(9 * 60, 17 * 60, 15):
        f = model.forecast(at(day, 0) + (minute - 15) * 60, 900)
        assert f.known and f.basis is not None, f.reason
        assert 0.8 < f.basis.trend < 1.25  # an ordinary day reads as one
        points.append(f.point)
        usual.append(usual_level(1, minute + 7.5))
    error = np.abs(np.array(points) - np.array(usual))
    assert error.mean() < 0.15 * np.mean(usual)
    assert np.mean(points) == pytest.approx(np.mean(usual), rel=0.06)


def test_a_busy_day_is_read_from_the_morning_and_beats_seasonal_naive():
    busy = START.date() + timedelta(weeks=12, days=2)  # a Wednesday
    data = synthetic_history(13, seed=1, day_sigma=0.1, factors={busy: 1.6})
    first = (busy - START.date()).days
    result = score(data, first, days=[first])
    no_trend = score(data, first, ForecastParams(trend_bounds=(1.0, 1.0)), days=[first])
    for h in HORIZONS_S:
        # Poisson noise alone costs about 0.7 of seasonal naive's error on such a day
        assert result.mae[h] < 0.85 * result.naive_mae[h], (h, result)
        assert result.mae[h] < 0.85 * no_trend.mae[h], (h, result, no_trend)
    model = CountModel(data.history, TZ, data.holidays)
    noon = model.forecast(at(busy, 12), 900)
    assert noon.basis is not None and noon.basis.trend > 1.3


def test_over_four_weeks_it_beats_seasonal_naive_and_the_interval_covers_its_share():
    data = synthetic_history(12, seed=0)
    result = score(data, 8 * 7)
    assert result.n > 500
    for h in HORIZONS_S:
        assert result.mae[h] < 0.85 * result.naive_mae[h]
        assert 0.72 <= result.coverage[h] <= 0.88, result.coverage


@pytest.mark.parametrize(
    ("weeks", "params", "reason"),
    [
        (2, ForecastParams(), "history too short: 2 of 3 past same weekdays"),
        (3, ForecastParams(), None),  # the minimum: 3 same weekdays, a week of past forecasts
        (3, ForecastParams(min_residuals=10_000), "too few past forecasts"),
        (6, ForecastParams(weeks=4, min_weeks=4), None),
    ],
)
def test_too_short_a_history_is_unknown_with_a_reason(weeks, params, reason):
    data = synthetic_history(weeks, seed=2, holidays=())
    model = CountModel(data.history, TZ, (), params)
    day = START.date() + timedelta(weeks=weeks)  # the Monday after the history
    f = model.forecast(at(day, 10), 1800)
    if reason is None:
        assert f.known and f.low is not None and f.high is not None
        assert f.low <= f.high
    else:
        assert not f.known and f.point is None and f.reason is not None
        assert reason in f.reason


def flat_mondays(values: list[float]) -> SlotHistory:
    """Weeks in UTC where every Monday 10:00-12:00 holds `values[week]` people, other open
    hours (Monday to Saturday 09-17) 5."""
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)  # a Monday
    counts = np.zeros(len(values) * 7 * 96 + 96)
    for i in range(len(counts)):
        t = start + timedelta(seconds=i * SLOT_S)
        if t.weekday() < 6 and 9 <= t.hour < 17:
            week = i // (7 * 96)
            monday_late = t.weekday() == 0 and 10 <= t.hour < 12 and week < len(values)
            counts[i] = values[week] if monday_late else 5.0
    return SlotHistory(int(start.timestamp()), counts)


def test_a_holiday_is_not_taken_for_a_quiet_day():
    history = flat_mondays([10.0, 0.0, 12.0])
    holiday = date(2024, 1, 8)  # the second Monday: closed, the camera saw nobody
    params = ForecastParams(weeks=3, min_weeks=2, min_residuals=1)
    target = int(datetime(2024, 1, 22, 10, 30, tzinfo=timezone.utc).timestamp())
    listed = CountModel(history, UTC, [holiday], params).forecast(target - 900, 900)
    unlisted = CountModel(history, UTC, [], params).forecast(target - 900, 900)
    assert listed.basis is not None and unlisted.basis is not None
    assert (listed.basis.profile, listed.basis.weeks) == (11.0, 2)  # median of 10 and 12
    assert (unlisted.basis.profile, unlisted.basis.weeks) == (10.0, 3)  # the 0 pulls it down


def test_a_holiday_itself_is_unknown_and_no_baseline_for_the_week_after():
    history = flat_mondays([10.0, 11.0, 12.0])
    params = ForecastParams(weeks=3, min_weeks=2, min_residuals=1)
    model = CountModel(history, UTC, [date(2024, 1, 15)], params)
    on_holiday = model.forecast(int(datetime(2024, 1, 15, 10, tzinfo=UTC).timestamp()), 900)
    assert not on_holiday.known and "holiday" in (on_holiday.reason or "")
    week_after = int(datetime(2024, 1, 22, 10, 30, tzinfo=UTC).timestamp())
    assert model.seasonal_naive(week_after) is None
    assert model.seasonal_naive(week_after - 7 * 86400) == 11.0


def test_the_forecast_slot_is_the_quarter_hour_holding_now_plus_the_horizon():
    data = synthetic_history(4, seed=0, holidays=())
    model = CountModel(data.history, TZ, ())
    now = at(START.date() + timedelta(weeks=4), 10, 7)
    f15, f30 = (model.forecast(now, h) for h in HORIZONS_S)
    assert (f15.target_start, f15.target_end) == (
        at(START.date() + timedelta(weeks=4), 10, 15),
        f15.target_start + 900,
    )
    assert f30.target_start == f15.target_start + 900


@pytest.mark.parametrize(
    ("start", "counts", "slot_s", "message"),
    [
        (100, np.zeros(4), 900, "boundary"),
        (0, np.zeros((2, 2)), 900, "one-dimensional"),
        (0, np.zeros(4), 700, "whole minutes"),
    ],
)
def test_a_malformed_history_is_refused(start, counts, slot_s, message):
    with pytest.raises(ValueError, match=message):
        SlotHistory(start, counts, slot_s)


def test_unknown_slots_stay_unknown_and_do_not_read_as_a_quiet_lobby():
    history = flat_mondays([10.0, 10.0, 10.0])
    counts = history.counts.copy()
    counts[3 * 7 * 96 + 40 : 3 * 7 * 96 + 44] = np.nan  # this Monday 10:00-11:00: camera off
    model = CountModel(SlotHistory(history.start, counts), UTC, [], ForecastParams(min_residuals=1))
    f = model.forecast(int(datetime(2024, 1, 22, 11, tzinfo=UTC).timestamp()), 900)
    assert f.basis is not None and f.basis.today_slots == 40  # 0:00-10:00; 10-11 unknown
    assert math.isclose(f.basis.trend, 1.0, abs_tol=0.01)


def test_after_the_clocks_change_a_quarter_hour_is_matched_by_local_time():
    data = synthetic_history(15, seed=5)  # Europe/Berlin; clocks go forward on 2024-03-31
    model = CountModel(data.history, TZ, data.holidays)
    day = date(2024, 4, 8)  # a Monday; 7 of its 8 past Mondays were in winter time
    last_open = model.forecast(at(day, 16, 30), 900)  # 16:45-17:00 local
    closed = model.forecast(at(day, 16, 45), 900)  # 17:00-17:15 local: closed, as every week
    assert last_open.basis is not None and closed.basis is not None
    assert last_open.basis.profile > 2 and closed.basis.profile == 0.0
    assert closed.basis.weeks == 8
