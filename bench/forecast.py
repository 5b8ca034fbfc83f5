"""The count forecast (edge/queueing/forecast.py) against seasonal naive and persistence.

    .venv/bin/python -m bench.forecast [--weeks 16] [--test-weeks 4] [--seeds 5]
    .venv/bin/python -m bench.forecast --source sim [--weeks 12] [--test-weeks 4] [--seeds 3]
    .venv/bin/python -m bench.forecast --api [--zones 2]   # GET /v1/forecast's latency

`--source sim` judges it on the lobby simulator instead (issue 13): see `sim_main` below.

Synthetic, not a lobby: a known weekday x quarter-hour profile (open 9-17, Saturday 9-13, two
peaks), each day scaled by a lognormal factor (sigma 0.25: busy and quiet days, the "trend" the
forecast should read from the morning), a slow within-day drift, Poisson counts, two holidays and
a few camera gaps. The lobby simulator of issue 13 will give the real judgement. Reported over
the last `test-weeks` weeks, forecasts made on each quarter hour while open, at +15 and +30
minutes: MAE of the forecast, of seasonal naive (same quarter hour last week) and of persistence
(the last complete quarter hour before the origin) on the slots where the first two are known,
and the share of outcomes inside the 80 % interval. The product's forecast is anchored on the
last complete quarter hour with a share fitted per site; the row "unanchored" is the same model
with anchor_decay=0 (profile x trend alone, the product before), for comparison.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from bench.lobbysim.lobby import ZONES
from bench.lobbysim.weeks import TZ as SIM_TZ
from bench.lobbysim.weeks import SimDay, WeeksParams, simulate
from edge.queueing.forecast import (
    SLOT_S,
    CountForecast,
    CountModel,
    ForecastParams,
    SlotHistory,
)
from edge.queueing.wait import WaitEstimate, WaitEstimator, forecast_wait

TZ = ZoneInfo("Europe/Berlin")
START = datetime(2024, 1, 1, tzinfo=TZ)  # a Monday, local midnight
WEEKDAY_SCALE = (1.2, 0.9, 1.0, 0.9, 1.3, 0.6, 0.0)  # Mon..Sun; Sunday closed
HORIZONS_S = (900, 1800)


def usual_level(weekday: int, minute: float) -> float:
    """People expected in the waiting + queue zones at a local weekday and minute of the day."""
    close = 13 * 60 if weekday == 5 else 17 * 60
    if not 9 * 60 <= minute < close:
        return 0.0
    hour = minute / 60
    shape = (
        3.0
        + 9.0 * math.exp(-(((hour - 11.0) / 1.0) ** 2))
        + 7.0 * math.exp(-(((hour - 15.0) / 1.2) ** 2))
    )
    return WEEKDAY_SCALE[weekday] * shape


@dataclass(frozen=True)
class Synthetic:
    history: SlotHistory
    holidays: list[date]
    truth: np.ndarray  # the usual level of each slot (no day factor, no noise)
    day_factor: dict[date, float]


def synthetic_history(
    weeks: int = 16,
    seed: int = 0,
    *,
    day_sigma: float = 0.25,
    holidays: tuple[date, ...] = (date(2024, 1, 29), date(2024, 3, 8)),
    gaps: int = 6,
    factors: dict[date, float] | None = None,
) -> Synthetic:
    """`weeks` of 15-minute slots from START; `factors` fixes chosen days' scale (a trend day)."""
    rng = np.random.default_rng(seed)
    start = int(START.astimezone(timezone.utc).timestamp())
    n = weeks * 7 * 86400 // SLOT_S
    counts = np.zeros(n)
    truth = np.zeros(n)
    day_factor: dict[date, float] = {}
    drift = 0.0
    for i in range(n):
        # local time of the slot: after the clocks change the lobby still opens at 9 local
        local = datetime.fromtimestamp(start + i * SLOT_S, TZ)
        day = local.date()
        if day not in day_factor:
            factor = float(np.exp(rng.normal(0.0, day_sigma)))
            day_factor[day] = factors[day] if factors and day in factors else factor
        level = usual_level(day.weekday(), local.hour * 60 + local.minute + 7.5)
        drift = 0.9 * drift + rng.normal(0.0, 0.05)
        truth[i] = level
        if day in holidays or not level:
            continue  # closed: the camera sees nobody
        counts[i] = rng.poisson(level * day_factor[day] * math.exp(drift))
    for i in rng.choice(len(counts), size=gaps, replace=False):
        counts[i : i + 4] = np.nan
    return Synthetic(SlotHistory(start, counts), list(holidays), truth, day_factor)


@dataclass(frozen=True)
class Score:
    n: int
    mae: dict[int, float]
    naive_mae: dict[int, float]
    coverage: dict[int, float]
    last_mae: dict[int, float]  # persistence, where the slot before the origin is known


def score(
    data: Synthetic,
    first_day: int,
    params: ForecastParams | None = None,
    days: list[int] | None = None,
) -> Score:
    """Forecasts from each open quarter hour of the days from `first_day` (or `days`)."""
    model = CountModel(data.history, TZ, data.holidays, params)
    slots_per_day = 86400 // SLOT_S
    n_days = len(data.history.counts) // slots_per_day
    errors: dict[int, list[float]] = {h: [] for h in HORIZONS_S}
    naive: dict[int, list[float]] = {h: [] for h in HORIZONS_S}
    last: dict[int, list[float]] = {h: [] for h in HORIZONS_S}
    inside: dict[int, list[bool]] = {h: [] for h in HORIZONS_S}
    for d in days if days is not None else range(first_day, n_days):
        for s in range(slots_per_day):
            now = data.history.start + (d * slots_per_day + s) * SLOT_S
            for h in HORIZONS_S:
                f = model.forecast(now, h)
                i = (f.target_start - data.history.start) // SLOT_S
                if i >= len(data.truth) or data.truth[i] == 0 or not f.known:
                    continue  # closed then, or beyond the history
                actual = data.history.counts[i]
                baseline = model.seasonal_naive(f.target_start)
                if not math.isfinite(actual) or baseline is None:
                    continue
                assert f.point is not None and f.low is not None and f.high is not None
                errors[h].append(abs(f.point - actual))
                naive[h].append(abs(baseline - actual))
                previous = data.history.counts[(now - data.history.start) // SLOT_S - 1]
                last[h].append(abs(previous - actual))  # NaN where unknown
                inside[h].append(f.low <= actual <= f.high)
    return Score(
        n=len(errors[HORIZONS_S[0]]),
        mae={h: float(np.mean(errors[h])) for h in HORIZONS_S},
        naive_mae={h: float(np.mean(naive[h])) for h in HORIZONS_S},
        coverage={h: float(np.mean(inside[h])) for h in HORIZONS_S},
        last_mae={h: float(np.nanmean(last[h])) for h in HORIZONS_S},
    )


def api_latency(zones: int, days: int = 90, repeats: int = 20) -> None:
    """Milliseconds per GET /v1/forecast over bench/api_history.py's store (1-minute intervals,
    `zones` waiting zones, `days` days), with the rollup cache built and without it."""
    import statistics
    import tempfile
    from pathlib import Path

    from fastapi.testclient import TestClient

    from api.app import create_app
    from bench import api_history

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        api_history.fill(db, zones, days)
        config = api_history.site_config(db, zones)
        now = api_history.START + timedelta(days=days, hours=10, minutes=7)
        cached = create_app(
            config, clock=lambda: now, rollup_path=Path(tmp) / "r.db", rollup_every_s=None
        )
        cached.state.lobbywatch.rollup.refresh(now)
        raw = create_app(config, clock=lambda: now, use_rollup=False)
        headers = {"Authorization": f"Bearer {api_history.KEY}"}
        print(f"GET /v1/forecast, {zones} zones x {days} days of 1-minute intervals")
        for name, app in (("rollup", cached), ("no rollup", raw)):
            client = TestClient(app)
            times = []
            for _ in range(repeats if name == "rollup" else 5):
                began = time.perf_counter()
                response = client.get("/v1/forecast", headers=headers)
                times.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.text
            print(f"{name}: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")


# --- the lobby simulator (issue 13) -----------------------------------------------------------
#
# Weeks of a simulated branch (bench/lobbysim/weeks.py) go through what the device does with a
# frame's counts: an OccupancySmoother per line zone (the occupancy defaults) and a
# HistoryRecorder writing zone_history into a real Store; the history is then read back as
# GET /v1/forecast reads it (api.queries.history, 15m buckets, the line zones summed) into the
# CountModel the product builds. Forecasts are made at each quarter hour while open in the last
# `test-weeks` weeks, at +15 and +30 minutes, and judged on the slot mean the store then holds
# (what the product would have seen), against seasonal naive (the same slot a week before).
# The wait forecast is the product's too: forecast_wait of that count forecast and of the
# WaitEstimator's estimate at the origin, the estimator fed each frame's smoothed line count and
# the departures, arrivals and line visits as edge/tracking would report them (from the
# simulator's visits, so tracking errors are not in it). It is judged on the simulator's truth:
# the wait of the next customer taking a ticket at now + horizon, against the true wait at the
# same time a week before.

LINE = ("waiting", "queue")
KINDS_WHAT_IF = ("count", "wait", "count-", "wait-", "count*", "wait*")
SIM_CAMERA = "lobby"
HISTORY_INTERVAL_S = 60


@dataclass
class Tally:
    """Absolute errors of the model and of seasonal naive where both are known (and of
    persistence there, NaN where it is unknown), interval hits, and how many questions the
    model left unknown."""

    model: list[float]
    naive: list[float]
    last: list[float]
    inside: list[bool]
    asked: int = 0
    unknown: int = 0

    @classmethod
    def empty(cls) -> Tally:
        return cls([], [], [], [])

    def add(
        self,
        actual: float,
        point: float | None,
        low: float | None,
        high: float | None,
        naive: float | None,
        last: float | None = None,
    ) -> None:
        """last: persistence, the value known at the origin (the last quarter hour's count,
        the wait estimate now)."""
        self.asked += 1
        if point is None:
            self.unknown += 1
            return
        if naive is None or not math.isfinite(naive) or not math.isfinite(actual):
            return
        self.model.append(abs(point - actual))
        self.naive.append(abs(naive - actual))
        self.last.append(abs(last - actual) if last is not None else math.nan)
        self.inside.append(low is not None and high is not None and low <= actual <= high)

    def merge(self, other: Tally) -> None:
        self.model += other.model
        self.naive += other.naive
        self.last += other.last
        self.inside += other.inside
        self.asked += other.asked
        self.unknown += other.unknown


@dataclass(frozen=True)
class Recorded:
    """The line's 15m history as the product stores and reads it, and per day the smoothed line
    count of each frame (what the camera worker hands the wait estimator)."""

    history: SlotHistory
    line: dict[date, np.ndarray]


def record_history(days: list[SimDay], path: Path) -> Recorded:
    """Through the product's smoother, HistoryRecorder and Store, read back as the API does."""
    from api.buckets import TimeRange, bucket_edges
    from api.db import StoreAccess
    from api.queries import history
    from edge.config import OccupancyConfig
    from edge.history import HistoryRecorder
    from edge.occupancy import OccupancySmoother
    from edge.store import Store

    occ = OccupancyConfig()
    store = Store(path, site_id="lobbysim")
    columns = [ZONES.index(z) for z in LINE]
    line: dict[date, np.ndarray] = {}
    try:
        for day in days:
            smoothers = {z: OccupancySmoother(occ.window_s, occ.quantile) for z in LINE}
            recorder = HistoryRecorder(SIM_CAMERA, LINE, HISTORY_INTERVAL_S)
            rows = []
            sums = []
            last: float | None = None
            for t, counts in zip(day.result.t, day.result.observed[:, columns], strict=True):
                wall = day.opens_utc + float(t)
                values: dict[str, float | None] = {
                    z: smoothers[z].update(int(c), wall) for z, c in zip(LINE, counts, strict=True)
                }
                rows += recorder.observe(wall, values, 0.0 if last is None else wall - last)
                sums.append(sum(v for v in values.values() if v is not None))
                last = wall
            rows += recorder.flush()
            store.write_history(rows)
            line[day.day] = np.array(sums, dtype=np.float64)
    finally:
        store.close()
    first = datetime.combine(days[0].day, datetime.min.time(), SIM_TZ)
    end = datetime.combine(days[-1].day + timedelta(days=1), datetime.min.time(), SIM_TZ)
    edges = bucket_edges("15m", TimeRange(first, end), SIM_TZ)
    per_zone = history(StoreAccess(path, "lobbysim"), None, "15m", list(LINE), edges)
    counts = np.sum([b.mean for b in per_zone.values()], axis=0)
    return Recorded(SlotHistory(int(edges[0]), counts), line)


def flow_events(day: SimDay, min_service_s: float = 30.0) -> list[tuple[float, str, float]]:
    """The day's (time from opening, kind, dwell s) events as edge/tracking would report them,
    in time order: a departure at the end of each counter visit of at least min_service_s (the
    contract's definition), an arrival at the end of each entrance visit, a line visit at the
    end of each waiting-area visit."""
    kinds = {"counter": "departure", "entrance": "arrival", "waiting": "line_visit"}
    events = []
    for c in day.result.customers:
        for zone, start, end in c.visits:
            if end is None or zone not in kinds:
                continue
            if zone == "counter" and end - start < min_service_s:
                continue
            events.append((end, kinds[zone], end - start))
    return sorted(events)


def wait_estimates(day: SimDay, line: np.ndarray, at: list[float]) -> list[WaitEstimate]:
    """The product's WaitEstimator fed the day frame by frame (the smoothed line count, the
    flow events as they end) and asked at each of `at` (seconds from opening, ascending)."""
    estimator = WaitEstimator()
    events = flow_events(day)
    out = []
    e = f = 0
    frame_s = float(day.result.t[1] - day.result.t[0]) if len(day.result.t) > 1 else 1.0
    for t in at:
        while f < len(day.result.t) and day.result.t[f] <= t:
            while e < len(events) and events[e][0] <= day.result.t[f]:
                when, kind, dwell = events[e]
                clock = day.opens_utc + when
                if kind == "departure":
                    estimator.departure(clock)
                elif kind == "arrival":
                    estimator.arrival(clock)
                else:
                    estimator.line_visit(clock, dwell)
                e += 1
            estimator.observe(
                day.opens_utc + float(day.result.t[f]), float(line[f]), frame_s if f else 0.0
            )
            f += 1
        out.append(estimator.estimate(day.opens_utc + t))
    return out


def anchored(f: CountForecast, now_slot: CountForecast, line_now: float | None) -> CountForecast:
    """A what-if, not the product: the unanchored forecast (anchor_decay=0) moved to start from
    the line count now, i.e. line now + the model's change from the current quarter hour to the
    target one (interval moved with it, not resized). The product anchors on the last complete
    quarter hour instead, the newest count its SlotHistory holds; this shows what a live count
    would add."""
    if not f.known or not now_slot.known or line_now is None:
        return f
    assert f.point is not None and f.low is not None and f.high is not None
    assert now_slot.point is not None
    shift = line_now - now_slot.point
    return replace(
        f,
        point=max(0.0, f.point + shift),
        low=max(0.0, f.low + shift),
        high=max(0.0, f.high + shift),
    )


def score_sim(
    days: list[SimDay],
    recorded: Recorded,
    test_days: int,
    params: ForecastParams | None = None,
    *,
    what_if: bool = False,
) -> dict[str, dict[int, Tally]]:
    """Count and wait tallies of the forecasts from each open quarter hour of the last
    `test_days` calendar days. The wait forecast is the product's: forecast_wait of the count
    forecast and the WaitEstimator's estimate at the origin. what_if adds "count-" and "wait-",
    the same from the unanchored model (`params` with anchor_decay=0: the product before), and
    "count*" and "wait*", that model anchored on the line count now (`anchored`)."""
    history = recorded.history
    holidays = [d.day for d in days if d.holiday]
    model = CountModel(history, SIM_TZ, holidays, params)
    plain = CountModel(
        history, SIM_TZ, holidays, replace(params or ForecastParams(), anchor_decay=0.0)
    )
    by_date = {d.day: d for d in days}
    cutoff = days[-1].day - timedelta(days=test_days - 1)
    kinds = KINDS_WHAT_IF if what_if else ("count", "wait")
    tallies = {kind: {h: Tally.empty() for h in HORIZONS_S} for kind in kinds}
    for day in days:
        if day.day < cutoff or day.holiday:
            continue
        week_before = by_date.get(day.day - timedelta(days=7))
        origins = [float(k * SLOT_S) for k in range(int(day.params.open_s // SLOT_S))]
        estimates = wait_estimates(day, recorded.line[day.day], origins)
        for origin, estimate in zip(origins, estimates, strict=True):
            now = day.opens_utc + int(origin)
            for h in HORIZONS_S:
                f = model.forecast(now, h)
                if f.target_start >= day.opens_utc + day.params.open_s:
                    continue  # closed by then
                variants = [("", f)]
                if what_if:
                    g = plain.forecast(now, h)
                    now_slot = plain.forecast(now, 0)
                    variants.append(("-", g))
                    variants.append(("*", anchored(g, now_slot, estimate.line_count)))
                actual = float(history.counts[(f.target_start - history.start) // SLOT_S])
                previous = float(history.counts[(now - history.start) // SLOT_S - 1])
                at = np.array([origin + h])
                true_wait = float(day.result.wait_if_arriving(at)[0])
                naive = None
                if week_before is not None and not week_before.holiday:
                    naive = float(week_before.result.wait_if_arriving(at)[0]) / 60.0
                for mark, g in variants:
                    tallies["count" + mark][h].add(
                        actual,
                        g.point,
                        g.low,
                        g.high,
                        model.seasonal_naive(g.target_start),
                        previous if math.isfinite(previous) else None,
                    )
                    if not math.isfinite(true_wait):
                        continue  # nobody took a ticket after then
                    w = forecast_wait(g, estimate)
                    tallies["wait" + mark][h].add(
                        true_wait / 60.0,
                        None if w.wait_s is None else w.wait_s / 60.0,
                        None if w.low_s is None else w.low_s / 60.0,
                        None if w.high_s is None else w.high_s / 60.0,
                        naive,
                        None if estimate.wait_s is None else estimate.wait_s / 60.0,
                    )
    return tallies


def sim_main(weeks: int, test_weeks: int, seeds: int, *, what_if: bool = False) -> None:
    import tempfile

    kinds = KINDS_WHAT_IF if what_if else ("count", "wait")
    totals = {kind: {h: Tally.empty() for h in HORIZONS_S} for kind in kinds}
    began = time.perf_counter()
    for seed in range(seeds):
        days = simulate(seed, WeeksParams(weeks=weeks))
        with tempfile.TemporaryDirectory() as tmp:
            recorded = record_history(days, Path(tmp) / "lobbysim.db")
        for kind, per_h in score_sim(days, recorded, test_weeks * 7, what_if=what_if).items():
            for h, tally in per_h.items():
                totals[kind][h].merge(tally)
    print(
        f"lobby simulator: {weeks} weeks Mon-Fri 09:00-17:00 {SIM_TZ.key}, last {test_weeks}"
        f" scored, {seeds} seeds ({time.perf_counter() - began:.0f} s)"
    )
    print("wait: edge.queueing.wait.forecast_wait(count forecast, WaitEstimator now)")
    print(
        "target          horizon  model MAE  naive MAE  ratio  80% coverage  unknown     n"
        "  persistence MAE"
    )
    for kind in kinds:
        unit = "people" if kind.startswith("count") else "min"
        for h in HORIZONS_S:
            t = totals[kind][h]
            mae, base = float(np.mean(t.model)), float(np.mean(t.naive))
            print(
                f"{kind + ' (' + unit + ')':<15} +{h // 60:>2} min  {mae:9.2f}  {base:9.2f}"
                f"  {mae / base:5.2f}  {np.mean(t.inside):12.2f}  {t.unknown / t.asked:7.2f}"
                f"  {len(t.model):4d}  {np.nanmean(t.last):15.2f}"
            )
    print(
        "persistence: the last quarter hour's count, the wait estimate now"
        " (WaitEstimator.estimate), on the same questions"
    )
    if what_if:
        print("-: the model unanchored (anchor_decay=0: profile x trend alone, the product before)")
        print("*: what-if, that model anchored on the line count now (bench.forecast.anchored)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=("synthetic", "sim"), default="synthetic")
    parser.add_argument("--weeks", type=int, help="default 16 (synthetic), 12 (sim)")
    parser.add_argument("--test-weeks", type=int, default=4)
    parser.add_argument("--seeds", type=int, help="default 5 (synthetic), 3 (sim)")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="sim: also the unanchored model, and it anchored on the line count now",
    )
    parser.add_argument("--api", action="store_true", help="time GET /v1/forecast instead")
    parser.add_argument("--zones", type=int, default=2)
    args = parser.parse_args()
    if args.api:
        api_latency(args.zones)
        return
    if args.source == "sim":
        sim_main(args.weeks or 12, args.test_weeks, args.seeds or 3, what_if=args.what_if)
        return
    args.weeks = args.weeks or 16
    args.seeds = args.seeds or 5
    models = {"product": ForecastParams(), "unanchored": ForecastParams(anchor_decay=0.0)}
    rows: dict[str, list[Score]] = {name: [] for name in models}
    for seed in range(args.seeds):
        data = synthetic_history(args.weeks, seed)
        for name, params in models.items():
            rows[name].append(score(data, (args.weeks - args.test_weeks) * 7, params))
    print(
        f"synthetic history: {args.weeks} weeks, last {args.test_weeks} scored, {args.seeds} seeds"
    )
    print(
        "model       horizon  forecast MAE  seasonal-naive MAE  ratio  80% interval coverage"
        "     n  persistence MAE"
    )
    for name, scores in rows.items():
        for h in HORIZONS_S:
            mae = float(np.mean([r.mae[h] for r in scores]))
            base = float(np.mean([r.naive_mae[h] for r in scores]))
            cover = float(np.mean([r.coverage[h] for r in scores]))
            last = float(np.mean([r.last_mae[h] for r in scores]))
            n = sum(r.n for r in scores)
            print(
                f"{name:<10}  +{h // 60:>2} min  {mae:12.2f}  {base:18.2f}  {mae / base:5.2f}"
                f"  {cover:21.2f}  {n:4d}  {last:15.2f}"
            )
    print("unanchored: anchor_decay=0 (profile x trend alone, the product before)")


if __name__ == "__main__":
    main()
