"""How many people a zone group (waiting + queue) will hold 15 and 30 minutes from now.

From the site's own history, on a grid of 15-minute slots (the API's 15m buckets, which are also
local quarter hours in every real time zone):

- a profile per local weekday and quarter hour: the median of that quarter hour over the last
  `weeks` same weekdays, holidays left out (a closed day is not a quiet Monday). The median, not
  the mean, because one surge or one camera fault in one week should not move next week's profile;
- today's trend: the ratio of today's recent counts to the profile, weighted towards the last hour
  and shrunk towards 1 by a prior of `trend_prior` people-slots, so a day that began busy reads as
  busy and the first quarter hours after opening (little data) change little;
- the anchor: today's last complete quarter hour. A line that just built up (a surge, a counter
  closed for lunch) is mostly still there a quarter hour later, and a whole-day ratio dilutes
  it: on the lobby simulator the trended profile alone lost to "the last quarter hour again"
  (persistence). So the point is the trended profile of the target plus a share of the last
  slot's departure from its own trended profile; at share 1, the last slot's count plus the
  profile's usual change from it to the target. The share, per lead, is the site's own: the
  least-squares one on the past calibration days' forecasts, in [0, 1]. Where departures last
  (a line held up) it comes out near 1; where they are count noise (Poisson counts around the
  day's level, bench/forecast.py's synthetic lobby) near 0, and anchoring would only copy the
  noise. A fixed share per quarter hour (`anchor_decay`) is there to compare with. Without
  that slot (the first quarter hour of the day, a camera gap, a target tomorrow) the point is
  the trended profile alone, and the basis says so;
- an interval from the residuals of the same forecast, anchor and all, made on the past
  `calibration_days` (each day forecast from the weeks before it and its own slots before the
  origin only), per lead, scaled by sqrt(point + 1): count noise grows with the count, so one set
  of quantiles serves the quiet morning and the busy noon.

numpy only, no pandas or statsmodels: the model is a median, a weighted ratio, one fitted share
and two quantiles, and statsmodels' seasonal models (ETS, SARIMA) fit one long series with a
single season, not the week of quarter hours with holidays cut out, at about 40 MB more on the
edge box.

Times are UTC seconds; local days and quarter hours come from the site's IANA time zone. The
wait forecast (issue 13, item 2) builds on `CountModel.forecast`: point, interval and basis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SLOT_S = 900
DAY_S = 86400
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class SlotHistory:
    """A zone group's mean people per slot on a regular UTC grid; NaN where unknown (camera
    offline, nothing recorded): unknown is never read as 0."""

    start: int  # UTC seconds of the first slot, a multiple of slot_s
    counts: FloatArray  # mean people in each slot
    slot_s: int = SLOT_S

    def __post_init__(self) -> None:
        if self.slot_s <= 0 or DAY_S % self.slot_s or self.slot_s % 60:
            raise ValueError(f"slot_s must be whole minutes dividing a day, not {self.slot_s}")
        if self.start % self.slot_s:
            raise ValueError(f"start {self.start} is not on a {self.slot_s} s boundary")
        if np.ndim(self.counts) != 1:
            raise ValueError("counts must be one-dimensional")

    @property
    def end(self) -> int:
        return self.start + len(self.counts) * self.slot_s


@dataclass(frozen=True)
class ForecastParams:
    weeks: int = 8  # past same weekdays the profile is the median of
    min_weeks: int = 3  # known same weekdays a quarter hour needs, else "unknown"
    trend_half_life_slots: float = 4.0  # today's slots count half after this many (1 hour)
    trend_prior: float = 6.0  # people-slots of profile pulling today's ratio towards 1
    trend_bounds: tuple[float, float] = (0.33, 3.0)
    calibration_days: int = 28  # past days whose forecasts size the interval
    min_residuals: int = 50  # past forecasts at a lead the interval needs, else "unknown"
    coverage: float = 0.8  # nominal share of outcomes inside [low, high]
    busy_at: float = 0.5  # people: slots quieter than this (closed) do not size the interval
    # share of the last complete slot's departure from its trended profile kept per quarter hour
    # ahead (1: carried whole, 0: profile x trend alone); None: the share at each lead is fitted
    # on the calibration days' forecasts (the product's choice: a site's own persistence)
    anchor_decay: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_weeks <= self.weeks:
            raise ValueError("need 1 <= min_weeks <= weeks")
        if not 0 < self.coverage < 1:
            raise ValueError("coverage must be in (0, 1)")
        if not 0 < self.trend_bounds[0] <= 1 <= self.trend_bounds[1]:
            raise ValueError("trend_bounds must contain 1")
        if self.anchor_decay is not None and not 0 <= self.anchor_decay <= 1:
            raise ValueError("anchor_decay must be in [0, 1]")


@dataclass(frozen=True)
class Basis:
    """What a forecast rests on, for the API and for a wait forecast built on it."""

    profile: float  # people: the median of that quarter hour over past same weekdays
    weeks: int  # how many same weekdays the profile had
    trend: float  # today's ratio to the profile (1: as usual), applied to the profile
    today_slots: int  # today's observed slots behind the trend
    residuals: int  # past forecasts at this lead behind the interval
    seasonal_naive: float | None  # the same quarter hour a week before (the baseline)
    # The anchor: people in today's last complete quarter hour (None: no such slot known, the
    # point is profile x trend alone), that slot's profile x trend, and the share of the
    # difference carried to the target: point = profile x trend + weight x (last - usual).
    last_slot: float | None = None
    last_slot_usual: float | None = None
    anchor_weight: float = 0.0


@dataclass(frozen=True)
class CountForecast:
    """Mean people in the slot [target_start, target_end) that holds now + horizon_s."""

    horizon_s: int
    target_start: int  # UTC seconds
    target_end: int
    coverage: float  # nominal share of outcomes inside [low, high]
    point: float | None = None
    low: float | None = None
    high: float | None = None
    basis: Basis | None = None
    reason: str | None = None  # why unknown; None when known

    @property
    def known(self) -> bool:
        return self.point is not None


class CountModel:
    """The forecast over one history: built once, asked per (now, horizon).

    Only what lies before a question's slot is used to answer it: the profile from the weeks
    before the target's local day, the trend and the anchor from today's complete slots before
    now (never the slot holding now: in a long history it holds what came after now, and the
    API and the queue monitor read the history up to the last complete slot anyway), the
    interval from the days before. So one model over a long history can be asked about any past
    moment (the bench and the tests do), and the live answer is the same computation.
    """

    def __init__(
        self,
        history: SlotHistory,
        tz: ZoneInfo,
        holidays: Iterable[date] = (),
        params: ForecastParams | None = None,
    ) -> None:
        self.history = history
        self.tz = tz
        self.params = params or ForecastParams()
        self.holidays = frozenset((d - _EPOCH).days for d in holidays)  # local day numbers
        self._spd = DAY_S // history.slot_s
        self._first_day, self._matrix = _by_local_day(history, tz)
        self._profiles: dict[tuple[int, int], tuple[FloatArray, IntArray]] = {}
        self._quantiles: dict[tuple[int, int], tuple[float, float, int, float]] = {}

    # --- questions ----------------------------------------------------------------------

    def forecast(self, now: int, horizon_s: int) -> CountForecast:
        """The count in the slot holding now + horizon_s, from what was known at now."""
        if horizon_s < 0 or horizon_s > DAY_S:
            raise ValueError("horizon_s must be within [0, 86400]")
        slot = self.history.slot_s
        origin = now // slot * slot  # slots before this one are complete
        target = (now + horizon_s) // slot * slot
        lead = (target - origin) // slot + 1
        p = self.params
        unknown = CountForecast(horizon_s, target, target + slot, p.coverage)
        day, col = self._local(target)
        if day in self.holidays:
            when = _EPOCH + timedelta(days=day)
            return _unknown(unknown, f"{when} is a holiday in the schedule: no profile for it")
        profile, weeks = self._profile(day, p.min_weeks)
        if not math.isfinite(profile[col]):
            return _unknown(
                unknown,
                f"history too short: {weeks[col]} of {p.min_weeks} past same weekdays known"
                " for this quarter hour",
            )
        origin_day, origin_col = self._local(origin)
        last = usual = None
        if origin_day == day:
            row = self._row(day)
            ratio, today = _trend(row, profile, p, upto=origin_col)
            if origin_col >= 1:  # the last complete slot, if it is today's
                seen, expected = row[origin_col - 1], profile[origin_col - 1] * ratio
                if math.isfinite(seen) and math.isfinite(expected):
                    last, usual = float(seen), float(expected)
        else:  # the target is tomorrow already: nothing of its day is seen yet
            ratio, today = 1.0, 0
        lo, hi, n, carried = self._interval(day, lead)
        if n < p.min_residuals:
            return _unknown(
                unknown,
                f"too few past forecasts to size the interval: {n} of {p.min_residuals}",
            )
        point = float(profile[col] * ratio)
        weight = 0.0
        if last is not None and usual is not None:
            weight = carried  # the share replayed forecasts at this lead carried best
            point = max(0.0, point + weight * (last - usual))
        scale = math.sqrt(point + 1.0)
        basis = Basis(
            profile=float(profile[col]),
            weeks=int(weeks[col]),
            trend=ratio,
            today_slots=today,
            residuals=n,
            seasonal_naive=self.seasonal_naive(target),
            last_slot=last,
            last_slot_usual=usual,
            anchor_weight=weight,
        )
        return CountForecast(
            horizon_s,
            target,
            target + slot,
            p.coverage,
            point=point,
            low=max(0.0, point + lo * scale),
            high=max(0.0, point + hi * scale),
            basis=basis,
        )

    def seasonal_naive(self, target: int) -> float | None:
        """The baseline: the same local quarter hour a week before `target` (None if unknown or
        a holiday)."""
        day, col = self._local(target)
        if day - 7 in self.holidays:
            return None
        value = self._row(day - 7)[col]
        return float(value) if math.isfinite(value) else None

    # --- pieces -------------------------------------------------------------------------

    def _local(self, ts: int) -> tuple[int, int]:
        local = ts + _offset(ts, self.tz)
        return local // DAY_S, local % DAY_S // self.history.slot_s

    def _row(self, day: int) -> FloatArray:
        i = day - self._first_day
        if 0 <= i < len(self._matrix):
            row: FloatArray = self._matrix[i]
            return row
        return np.full(self._spd, np.nan)

    def usual_day(self, day: int) -> tuple[FloatArray, IntArray]:
        """The usual day `day` (a local day number) would be, per quarter hour: the median over
        the last same weekdays, as the forecast's profile has it (NaN where too few are known),
        and how many of them were known (the dashboard's "usual day")."""
        return self._profile(day, self.params.min_weeks)

    def _profile(self, day: int, need: int) -> tuple[FloatArray, IntArray]:
        """Median per quarter hour over the last `weeks` non-holiday same weekdays before `day`,
        NaN where fewer than `need` are known; and how many were known."""
        key = (day, need)
        if key not in self._profiles:
            past = [
                self._row(day - 7 * k)
                for k in range(1, self.params.weeks + 1)
                if day - 7 * k not in self.holidays
            ]
            stack = np.vstack(past) if past else np.full((1, self._spd), np.nan)
            known = np.sum(np.isfinite(stack), axis=0).astype(np.int64)
            median = np.full(self._spd, np.nan)
            enough = known >= need
            if np.any(enough):
                median[enough] = np.nanmedian(stack[:, enough], axis=0)
            self._profiles[key] = (median, known)
        return self._profiles[key]

    def _interval(self, day: int, lead: int) -> tuple[float, float, int, float]:
        """Quantiles of the scaled residuals (actual - point) / sqrt(point + 1) of forecasts at
        `lead` made on the past calibration days, how many there were, and the anchor weight.

        Those days' profiles need one week less than a live forecast, so that a site with
        `min_weeks` of history has a week of past forecasts to size its interval with. The
        replayed forecasts are anchored as live ones are (on the slot before each origin, with
        the same weight), so the interval is sized on the errors of the point it is put around.
        """
        key = (day, lead)
        if key not in self._quantiles:
            p = self.params
            parts = [
                self._day_replay(past, lead, max(1, p.min_weeks - 1))
                for past in range(day - p.calibration_days, day)
                if past not in self.holidays
            ]
            usual, shift, seen = (
                np.concatenate([part[i] for part in parts]) if parts else np.zeros(0)
                for i in range(3)
            )
            weight = self._weight(usual, shift, seen, lead)
            anchored = np.isfinite(shift)
            point = usual.copy()
            point[anchored] = np.maximum(0.0, usual[anchored] + weight * shift[anchored])
            z = (seen - point) / np.sqrt(point + 1.0)
            tail = (1.0 - p.coverage) / 2
            if len(z):
                lo, hi = (float(q) for q in np.quantile(z, [tail, 1.0 - tail]))
            else:
                lo = hi = math.nan
            self._quantiles[key] = (lo, hi, len(z), weight)
        return self._quantiles[key]

    def _weight(self, usual: FloatArray, shift: FloatArray, seen: FloatArray, lead: int) -> float:
        """The share of the last slot's departure from its profile x trend carried `lead` quarter
        hours ahead: anchor_decay ** lead, or, with anchor_decay None, the least-squares share on
        the replayed forecasts (weighted by 1 / (usual + 1), as the interval scales), in [0, 1].
        How long a departure lasts is the site's own: a line held up by a closed counter stays,
        count noise does not."""
        if self.params.anchor_decay is not None:
            return float(self.params.anchor_decay**lead)
        ok = np.isfinite(shift)
        w = 1.0 / (usual[ok] + 1.0)
        s, e = shift[ok], seen[ok] - usual[ok]
        denominator = float(np.sum(w * s * s))
        if denominator <= 0:
            return 0.0
        return min(1.0, max(0.0, float(np.sum(w * s * e)) / denominator))

    def _day_replay(self, day: int, lead: int, need: int) -> tuple[FloatArray, ...]:
        """The day's forecasts at `lead` from each origin, as made then: the profile x trend of
        the target, the anchor's departure from its own (NaN: no anchor) and what was seen, on
        the busy slots where both are known."""
        actual = self._row(day)
        if not np.any(np.isfinite(actual)):
            return np.zeros(0), np.zeros(0), np.zeros(0)
        profile, _ = self._profile(day, need)
        ratios = _trends(actual, profile, self.params)
        origins = np.arange(0, self._spd - lead + 1)
        targets = origins + lead - 1
        usual = profile[targets] * ratios[origins]
        # the anchor of a forecast made at each origin: the slot before it, that day's only
        before = np.maximum(origins - 1, 0)
        shift = actual[before] - profile[before] * ratios[origins]
        shift[origins == 0] = np.nan
        seen = actual[targets]
        ok = np.isfinite(usual) & np.isfinite(seen)
        ok &= (usual >= self.params.busy_at) | (seen >= self.params.busy_at)
        return usual[ok], shift[ok], seen[ok]


def _unknown(base: CountForecast, reason: str) -> CountForecast:
    return CountForecast(
        base.horizon_s, base.target_start, base.target_end, base.coverage, reason=reason
    )


def _trend(
    row: FloatArray, profile: FloatArray, params: ForecastParams, upto: int
) -> tuple[float, int]:
    """Today's shrunk ratio to the profile from the slots before column `upto`, and how many
    slots it saw."""
    used = np.isfinite(row[:upto]) & np.isfinite(profile[:upto])
    return float(_trends(row[:upto], profile[:upto], params)[upto]), int(np.sum(used))


def _trends(row: FloatArray, profile: FloatArray, params: ForecastParams) -> FloatArray:
    """ratio[i]: the trend known at the start of slot i (from slots < i), for i in 0..len(row).

    Exponentially weighted sums of today's counts and of the profile, both over the slots where
    both are known; (seen + prior) / (usual + prior) shrinks towards 1 when `usual` is small:
    early in the day, or at a quiet hour where a ratio of 3 people to 1 means little.
    """
    decay = 0.5 ** (1.0 / params.trend_half_life_slots)
    seen = usual = 0.0
    out = np.empty(len(row) + 1)
    low, high = params.trend_bounds
    for i in range(len(row) + 1):
        out[i] = min(high, max(low, (seen + params.trend_prior) / (usual + params.trend_prior)))
        if i < len(row):
            seen *= decay
            usual *= decay
            if math.isfinite(row[i]) and math.isfinite(profile[i]):
                seen += row[i]
                usual += profile[i]
    return out


def _by_local_day(history: SlotHistory, tz: ZoneInfo) -> tuple[int, FloatArray]:
    """The counts as a (local day, slot of day) matrix, and the first row's local day number.

    On the night the clocks go back, the repeated local hour keeps its second pass; on the night
    they go forward, the skipped hour stays unknown.
    """
    spd = DAY_S // history.slot_s
    n = len(history.counts)
    ts = history.start + np.arange(n, dtype=np.int64) * history.slot_s
    local = ts + _offsets(ts, tz)
    days = local // DAY_S
    if n == 0:
        return 0, np.full((0, spd), np.nan)
    first = int(days.min())
    matrix = np.full((int(days.max()) - first + 1, spd), np.nan)
    matrix[days - first, local % DAY_S // history.slot_s] = history.counts
    return first, matrix


def _offsets(ts: IntArray, tz: ZoneInfo) -> IntArray:
    """UTC offset in seconds at each time, looked up once per UTC hour of the range: clocks
    change on whole hours, so 12 weeks of quarter hours cost 2 000 look-ups, not 8 000."""
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    hours, inverse = np.unique(ts // 3600, return_inverse=True)
    per_hour = np.array([_offset(int(h) * 3600, tz) for h in hours], dtype=np.int64)
    return per_hour[inverse.reshape(-1)]


def _offset(ts: int, tz: ZoneInfo) -> int:
    delta = datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0
