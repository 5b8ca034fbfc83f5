"""The count forecast on simulated weeks of a branch, through the product's own history path."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from bench.forecast import HORIZONS_S, Recorded, record_history, score_sim
from bench.lobbysim.lobby import LobbyParams
from bench.lobbysim.weeks import TZ as WEEKS_TZ
from bench.lobbysim.weeks import SimDay, Weekday, WeeksParams, day_params, simulate
from edge.queueing.forecast import SLOT_S, CountModel, ForecastParams

#: Three-hour days with a late-morning peak, Monday (busy, one counter more) to Wednesday, four
#: weeks; the Wednesday of the last week is a holiday. Small enough for CI, long enough for a
#: 3-week profile.
SHORT_DAY = LobbyParams(
    open_s=3 * 3600.0,
    profile=((0.0, 0.2), (1.0, 1.0), (2.0, 1.0), (3.0, 0.2)),
    staff=((0.0, 2), (3600.0, 3)),
)
WEEKS = WeeksParams(
    weeks=4,
    base=SHORT_DAY,
    week=(Weekday(scale=1.3, extra_counters=1), Weekday(scale=0.7), Weekday()),
    holidays=(3 * 7 + 2,),
)
#: The interval needs past forecasts; short days give fewer than the product's 50.
PARAMS = ForecastParams(min_residuals=20)


@pytest.fixture(scope="module")
def branch(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[SimDay], Recorded]:
    days = simulate(0, WEEKS)
    return days, record_history(days, tmp_path_factory.mktemp("sim") / "lobbysim.db")


def test_the_forecast_beats_seasonal_naive_and_a_constant_on_the_count_15_minutes_ahead(branch):
    days, recorded = branch
    count = score_sim(days, recorded, test_days=7, params=PARAMS)["count"][900]
    assert len(count.model) >= 15  # two open test days of 11 quarter hours with a target
    assert count.unknown == 0
    # Seed 0: 0.34 of naive's MAE. One short test week is a small sample: over seeds 0-5 the
    # ratio is 0.17-0.49, and 0.93 and 1.0 on two seeds whose test week resembles the week
    # before. So a loose bound, which a forecast returning the naive value (1.0) fails...
    assert np.mean(count.model) < 0.9 * np.mean(count.naive)
    # ...and one a constant at the lobby's usual level passes (0.74), so that too is ruled out.
    train = recorded.history.counts[: 21 * 86400 // SLOT_S]
    level = float(np.nanmean(train[train > 0.5]))
    errors = _constant_errors(days, recorded, level)
    assert np.mean(count.model) < 0.6 * np.mean(errors)


def _constant_errors(days: list[SimDay], recorded: Recorded, level: float) -> list[float]:
    """|level - actual| on the slots the forecast is scored on (open test-week slots after the
    first quarter hour)."""
    history = recorded.history
    errors = []
    for day in days[-3:]:
        if day.holiday:
            continue
        first = (day.opens_utc - history.start) // SLOT_S
        for i in range(first + 1, first + int(SHORT_DAY.open_s // SLOT_S)):
            errors.append(abs(level - float(history.counts[i])))
    return errors


def test_anchoring_on_the_last_quarter_hour_beats_the_profile_and_trend_alone(branch):
    """The simulated line carries over from one quarter hour to the next (a surge, a counter
    closed), so the fitted share of the last slot's departure is large and pays."""
    days, recorded = branch
    tallies = score_sim(days, recorded, test_days=7, params=PARAMS, what_if=True)
    anchored, plain = tallies["count"][900], tallies["count-"][900]
    assert len(anchored.model) == len(plain.model) >= 15
    # Seed 0: 2.87 against 5.62 people; over seeds 0-3 the ratio is 0.51-0.93 at +15 minutes.
    assert np.mean(anchored.model) < 0.75 * np.mean(plain.model)
    model = CountModel(recorded.history, WEEKS_TZ, [d.day for d in days if d.holiday], PARAMS)
    last = days[-2]  # the Tuesday of the last week
    f = model.forecast(last.opens_utc + 3600, 900)
    assert f.basis is not None and f.basis.last_slot is not None
    assert f.basis.anchor_weight > 0.5


def test_the_wait_is_forecast_from_the_count_and_judged_on_the_true_waits(branch):
    days, recorded = branch
    wait = score_sim(days, recorded, test_days=7, params=PARAMS)["wait"]
    for h in HORIZONS_S:
        assert wait[h].model, h
        assert wait[h].unknown < wait[h].asked / 2  # unknown only until 3 have been served
        assert all(math.isfinite(e) for e in wait[h].model + wait[h].naive)


def test_a_holiday_is_recorded_as_an_empty_lobby_and_not_forecast(branch):
    days, recorded = branch
    history = recorded.history
    (holiday,) = [d for d in days if d.holiday]
    first = (holiday.opens_utc - history.start) // SLOT_S
    slots = history.counts[first : first + int(SHORT_DAY.open_s // SLOT_S)]
    assert np.all(np.isfinite(slots)) and np.all(slots < 0.5)  # seen, and empty
    model = CountModel(history, WEEKS_TZ, [holiday.day], PARAMS)
    f = model.forecast(holiday.opens_utc + 3600, 900)
    assert not f.known and f.reason is not None and "holiday" in f.reason
    after = model.seasonal_naive(holiday.opens_utc + int(timedelta(days=7).total_seconds()))
    assert after is None  # a week after the holiday has no baseline


@pytest.mark.parametrize(
    ("weekday", "rate_at_last_hour", "staff"),
    [
        (Weekday(), 0.2, ((0.0, 2), (3600.0, 3))),
        (Weekday(scale=2.0), 0.4, ((0.0, 2), (3600.0, 3))),
        (Weekday(late_rise=1.5, extra_counters=1), 0.3, ((0.0, 3), (3600.0, 4))),
        (Weekday(break_shift_s=-7200.0), 0.2, ((0.0, 2), (1.0, 3))),  # kept inside the day
        (Weekday(break_shift_s=9000.0), 0.2, ((0.0, 2), (SHORT_DAY.open_s - 1.0, 3))),
    ],
)
def test_a_weekday_changes_the_base_day(weekday, rate_at_last_hour, staff):
    params = day_params(SHORT_DAY, weekday, factor=1.0)
    assert params.profile[-1] == (3.0, pytest.approx(rate_at_last_hour))
    assert params.profile[0][1] == pytest.approx(0.2 * weekday.scale)
    assert params.staff == staff


def test_a_day_factor_scales_the_whole_day():
    busy = day_params(SHORT_DAY, Weekday(), factor=1.5)
    assert [r for _, r in busy.profile] == pytest.approx([1.5 * r for _, r in SHORT_DAY.profile])


def test_the_weeks_are_weekdays_in_the_site_time_zone_opening_at_nine(branch):
    days, _ = branch
    assert [d.day.weekday() for d in days] == [0, 1, 2] * 4
    for d in days:
        assert d.opens_utc % 86400 == 3600  # 09:00 in Shanghai (UTC+8) is 01:00 UTC
    assert len({round(d.factor, 6) for d in days}) == len(days)
