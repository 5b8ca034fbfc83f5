"""The count forecast's anchor on today's last complete quarter hour: a line that built up and
stays is followed (the trended profile alone is not), the share carried is the site's own (whole
where departures persist, none where they are count noise), only slots before now are read, and
without a last slot the point is the trended profile, saying so."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from bench.forecast import START, TZ, synthetic_history
from edge.queueing.forecast import SLOT_S, CountModel, ForecastParams, SlotHistory

UTC = ZoneInfo("UTC")
FIRST = datetime(2024, 1, 1, tzinfo=timezone.utc)  # a Monday
SPD = 86400 // SLOT_S
OPEN, CLOSE = 9 * 4, 17 * 4  # slots of the day, 09:00-17:00 UTC
OFFSET = 6.0  # people today runs above its profile from 11:30 on
TODAY = 5 * 7  # the Monday after five weeks


def usual(col: int) -> float:
    """The known profile: 4 people at opening rising to 10 at 13:00 and back."""
    if not OPEN <= col < CLOSE:
        return 0.0
    return 4.0 + 6.0 * max(0.0, 1.0 - abs(col - 52) / 16)


def lobby(days: int, seed: int, *, persistent: bool, today_from: int | None) -> SlotHistory:
    """Mondays to Fridays open, each day its profile plus small noise; `persistent`: each past
    day also has a step from a random quarter hour on, of a random size, that lasts until
    closing (a closed counter); else each slot has its own independent departure (count noise).
    Day TODAY runs OFFSET above the profile from column `today_from` on (None: as usual)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros(days * SPD)
    profile = np.array([usual(c) for c in range(SPD)])
    for d in range(days):
        if d % 7 >= 5:
            continue  # the weekend: closed, the camera sees nobody
        row = profile.copy()
        open_ = slice(OPEN, CLOSE)
        if d == TODAY:
            if today_from is not None:
                row[today_from:CLOSE] += OFFSET
        elif persistent:
            row[int(rng.integers(OPEN, CLOSE)) : CLOSE] += rng.normal(0.0, 4.0)
        else:
            row[open_] += rng.normal(0.0, 2.0, CLOSE - OPEN)
        row[open_] += rng.normal(0.0, 0.3, CLOSE - OPEN)
        counts[d * SPD : (d + 1) * SPD] = np.maximum(0.0, row)
    return SlotHistory(int(FIRST.timestamp()), counts)


def at(day: int, col: int) -> int:
    return int(FIRST.timestamp()) + day * 86400 + col * SLOT_S


@pytest.mark.parametrize("horizon_s", [900, 1800])
def test_a_line_that_built_up_is_followed_where_the_trended_profile_alone_dilutes_it(horizon_s):
    history = lobby(TODAY + 1, seed=1, persistent=True, today_from=11 * 4 + 2)
    now = at(TODAY, 12 * 4)  # 12:00, half an hour into the offset
    anchored = CountModel(history, UTC, [], ForecastParams(anchor_decay=None))
    old = CountModel(history, UTC, [], ForecastParams(anchor_decay=0.0))
    f, g = anchored.forecast(now, horizon_s), old.forecast(now, horizon_s)
    assert f.known and g.known and f.point is not None and g.point is not None, f.reason
    col = (f.target_start - at(TODAY, 0)) // SLOT_S
    expected = usual(col) + OFFSET
    assert f.point == pytest.approx(expected, abs=1.0)
    assert expected - g.point > 3.0  # the day's ratio took in only part of the offset
    assert f.low is not None and f.high is not None and f.low <= expected <= f.high
    assert f.basis is not None and g.basis is not None
    assert f.basis.last_slot == pytest.approx(usual(12 * 4 - 1) + OFFSET, abs=1.0)
    assert f.basis.anchor_weight > 0.8 and g.basis.anchor_weight == 0.0
    assert f.basis.last_slot_usual is not None
    assert f.point == pytest.approx(
        f.basis.profile * f.basis.trend
        + f.basis.anchor_weight * (f.basis.last_slot - f.basis.last_slot_usual)
    )


def test_the_share_carried_is_the_sites_own_whole_for_a_lasting_line_none_for_noise():
    lasting = lobby(TODAY + 1, seed=2, persistent=True, today_from=None)
    noisy = lobby(TODAY + 1, seed=2, persistent=False, today_from=None)
    now = at(TODAY, 12 * 4)
    params = ForecastParams(anchor_decay=None)
    kept = CountModel(lasting, UTC, [], params).forecast(now, 900).basis
    dropped = CountModel(noisy, UTC, [], params).forecast(now, 900).basis
    assert kept is not None and dropped is not None
    assert kept.anchor_weight > 0.8
    assert dropped.anchor_weight < 0.2
    # bench.forecast's synthetic lobby: Poisson counts around a daily scale, nothing lasting
    data = synthetic_history(10, seed=0)
    model = CountModel(data.history, TZ, data.holidays, params)
    f = model.forecast(
        int(
            datetime.combine(START.date() + timedelta(weeks=9), datetime.min.time(), TZ).timestamp()
        )
        + 12 * 3600,
        900,
    )
    assert f.basis is not None and f.basis.anchor_weight < 0.3


@pytest.mark.parametrize("decay", [None, 1.0])
def test_only_complete_slots_before_now_are_read(decay):
    """A surge in the slot holding now (or later) changes nothing: in a long history it is the
    future, and the product's histories end at the last complete slot."""
    history = lobby(TODAY + 1, seed=3, persistent=True, today_from=None)
    now = at(TODAY, 12 * 4) + 420  # 12:07
    counts = history.counts.copy()
    i = (at(TODAY, 12 * 4) - history.start) // SLOT_S
    counts[i:] += 20.0
    params = ForecastParams(anchor_decay=decay)
    plain = CountModel(history, UTC, [], params).forecast(now, 900)
    surged = CountModel(SlotHistory(history.start, counts), UTC, [], params).forecast(now, 900)
    assert plain.point == surged.point and plain.low == surged.low and plain.high == surged.high
    assert plain.basis is not None and plain.basis.last_slot == pytest.approx(history.counts[i - 1])


def test_without_a_last_slot_the_point_is_the_trended_profile_and_says_so():
    history = lobby(TODAY + 1, seed=4, persistent=True, today_from=11 * 4)
    counts = history.counts.copy()
    gap = (at(TODAY, 12 * 4 - 1) - history.start) // SLOT_S
    counts[gap] = np.nan  # 11:45-12:00: camera off
    params = ForecastParams(anchor_decay=None)
    model = CountModel(SlotHistory(history.start, counts), UTC, [], params)
    f = model.forecast(at(TODAY, 12 * 4), 900)
    assert f.known and f.basis is not None and f.point is not None
    assert f.basis.last_slot is None and f.basis.last_slot_usual is None
    assert f.basis.anchor_weight == 0.0
    assert f.point == pytest.approx(f.basis.profile * f.basis.trend)
    tomorrow = model.forecast(at(TODAY, CLOSE), 86400 - (CLOSE - OPEN) * SLOT_S)
    assert tomorrow.basis is None or tomorrow.basis.last_slot is None


def test_anchor_decay_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="anchor_decay"):
        ForecastParams(anchor_decay=1.5)
