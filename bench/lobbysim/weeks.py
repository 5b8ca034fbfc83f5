"""Weeks of one simulated branch: the history a forecast learns from and is judged on.

A bank branch is not the same lobby every day: Mondays and Fridays are busier, Friday has an
after-work rise before closing, each weekday has its own staff rota (lunch breaks shifted, an
extra counter on the busy days), and the whole day runs above or below usual by a daily factor
(lognormal: pay day, rain, a local event), which is what the forecast's "today's trend" is for.
Surges come as the simulator draws them. Holidays are closed: the camera runs and sees an empty
lobby, the day the product's holiday list is there to skip.

Pure simulation, like the rest of the package: dates and UTC opening times for the product's
history are made here, the product itself is fed elsewhere (bench/forecast.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from bench.lobbysim.lobby import ZONES, LobbyParams
from bench.lobbysim.observe import Detector, NoiseParams
from bench.lobbysim.run import DayResult, run_day

TZ = ZoneInfo("Asia/Shanghai")
FIRST_MONDAY = date(2026, 9, 7)
OPENS_AT = time(9, 0)  # local; open_s of the day's LobbyParams later it closes (17:00 by default)


@dataclass(frozen=True)
class Weekday:
    """How one weekday differs from the branch's base day.

    scale: arrivals as a multiple of the base profile. late_rise: the last hour's arrivals as a
    further multiple (the Friday after-work peak). extra_counters: counters added to every staff
    step. break_shift_s: the staff steps after the first moved by this much (lunch breaks later
    or earlier), kept inside the day and in order.
    """

    scale: float = 1.0
    late_rise: float = 1.0
    extra_counters: int = 0
    break_shift_s: float = 0.0


#: Monday to Friday. Monday and Friday busier and staffed with one more counter; Friday's last
#: hour half as busy again (after work); Wednesday's breaks half an hour later, Thursday's earlier.
WEEK: tuple[Weekday, ...] = (
    Weekday(scale=1.2, extra_counters=1),
    Weekday(scale=0.95),
    Weekday(scale=1.0, break_shift_s=1800.0),
    Weekday(scale=0.9, break_shift_s=-1800.0),
    Weekday(scale=1.15, late_rise=1.5, extra_counters=1),
)


@dataclass(frozen=True)
class WeeksParams:
    """weeks: Mondays to Fridays from FIRST_MONDAY (a shorter `week` closes the later days).
    day_sigma: sd of the log daily factor.
    holidays: day indices (0 = the first Monday, 7 = the next) on which the branch is closed;
    None puts one in the third week (a Wednesday) and one in the second-to-last (a Thursday)."""

    weeks: int = 12
    base: LobbyParams = dataclasses.field(default_factory=LobbyParams)
    week: tuple[Weekday, ...] = WEEK
    day_sigma: float = 0.2
    holidays: tuple[int, ...] | None = None
    noise: NoiseParams = dataclasses.field(default_factory=NoiseParams)
    #: One frame per 4 s: the history is quarter-hour means (225 frames each), and at this rate
    #: the product's 2 s smoothing window holds one frame, so the smoother (80 % of the run's
    #: time at 0.5 fps) costs half as much as at 0.5 fps.
    fps: float = 0.25

    def holiday_days(self) -> tuple[int, ...]:
        if self.holidays is not None:
            return self.holidays
        chosen = [d for d in (2 * 7 + 2, (self.weeks - 2) * 7 + 3) if d < self.weeks * 7]
        return tuple(sorted(set(chosen)))


@dataclass(frozen=True)
class SimDay:
    """One open weekday (or closed holiday) of the branch."""

    day: date  # local date
    opens_utc: int  # UTC seconds of the opening; frame times of `result` count from here
    params: LobbyParams
    factor: float  # the day's level against its weekday's usual
    holiday: bool
    result: DayResult  # a holiday's has no customers, only the detector's false boxes


def day_params(base: LobbyParams, weekday: Weekday, factor: float) -> LobbyParams:
    """The base day changed for one weekday and scaled by the day's factor."""
    open_h = base.open_s / 3600.0
    profile = tuple(
        (h, r * weekday.scale * factor * (weekday.late_rise if h >= open_h - 1.0 else 1.0))
        for h, r in base.profile
    )
    first, *rest = base.staff
    shifted = [(min(max(at + weekday.break_shift_s, 1.0), base.open_s - 1.0), n) for at, n in rest]
    staff = tuple((at, n + weekday.extra_counters) for at, n in [first, *sorted(shifted)])
    return dataclasses.replace(base, profile=profile, staff=staff)


def simulate(seed: int, params: WeeksParams | None = None) -> list[SimDay]:
    """Every Monday to Friday of `params.weeks` weeks, in order; one seed, one branch history."""
    p = params or WeeksParams()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 13]))
    holidays = set(p.holiday_days())
    days = []
    for index in range(p.weeks * 7):
        day = FIRST_MONDAY + timedelta(days=index)
        if day.weekday() >= len(p.week):
            continue  # closed at the weekend: nothing recorded
        factor = float(math.exp(rng.normal(0.0, p.day_sigma)))
        opens = datetime.combine(day, OPENS_AT, TZ)
        lobby = day_params(p.base, p.week[day.weekday()], factor)
        day_seed = seed * 100_000 + index
        if index in holidays:
            result = closed_day(day_seed, lobby.open_s, p.noise, p.fps)
        else:
            result = run_day(day_seed, lobby, p.noise, fps=p.fps)
        days.append(SimDay(day, int(opens.timestamp()), lobby, factor, index in holidays, result))
    return days


def closed_day(seed: int, open_s: float, noise: NoiseParams, fps: float) -> DayResult:
    """The camera watching an empty lobby over the opening hours: false boxes only."""
    detector = Detector(noise, np.random.default_rng(seed))
    empty: dict[str, int] = {z: 0 for z in ZONES}
    t = np.arange(0.0, open_s, 1.0 / fps)
    frames = [detector.observe(empty) for _ in t]
    observed = [[frame[z] for z in ZONES] for frame in frames]
    return DayResult(
        t=t,
        true=np.zeros((len(t), len(ZONES)), dtype=np.int64),
        observed=np.array(observed, dtype=np.int64).reshape(-1, len(ZONES)),
        customers=[],
        passes=[],
    )


def holiday_dates(days: Sequence[SimDay]) -> list[date]:
    return [d.day for d in days if d.holiday]
