"""The count forecast (edge/queueing/forecast.py) against seasonal naive on synthetic history.

    .venv/bin/python -m bench.forecast [--weeks 16] [--test-weeks 4] [--seeds 5]
    .venv/bin/python -m bench.forecast --api [--zones 2]   # GET /v1/forecast's latency

Synthetic, not a lobby: a known weekday x quarter-hour profile (open 9-17, Saturday 9-13, two
peaks), each day scaled by a lognormal factor (sigma 0.25: busy and quiet days, the "trend" the
forecast should read from the morning), a slow within-day drift, Poisson counts, two holidays and
a few camera gaps. The lobby simulator of issue 13 will give the real judgement. Reported over
the last `test-weeks` weeks, forecasts made on each quarter hour while open, at +15 and +30
minutes: MAE of the forecast and of seasonal naive (same quarter hour last week) on the slots
where both are known, and the share of outcomes inside the 80 % interval.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np

from edge.queueing.forecast import SLOT_S, CountModel, ForecastParams, SlotHistory

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
                inside[h].append(f.low <= actual <= f.high)
    return Score(
        n=len(errors[HORIZONS_S[0]]),
        mae={h: float(np.mean(errors[h])) for h in HORIZONS_S},
        naive_mae={h: float(np.mean(naive[h])) for h in HORIZONS_S},
        coverage={h: float(np.mean(inside[h])) for h in HORIZONS_S},
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=16)
    parser.add_argument("--test-weeks", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--api", action="store_true", help="time GET /v1/forecast instead")
    parser.add_argument("--zones", type=int, default=2)
    args = parser.parse_args()
    if args.api:
        api_latency(args.zones)
        return
    rows = []
    for seed in range(args.seeds):
        data = synthetic_history(args.weeks, seed)
        rows.append(score(data, (args.weeks - args.test_weeks) * 7))
    print(
        f"synthetic history: {args.weeks} weeks, last {args.test_weeks} scored, {args.seeds} seeds"
    )
    print("horizon  forecast MAE  seasonal-naive MAE  ratio  80% interval coverage  n")
    for h in HORIZONS_S:
        mae = float(np.mean([r.mae[h] for r in rows]))
        base = float(np.mean([r.naive_mae[h] for r in rows]))
        cover = float(np.mean([r.coverage[h] for r in rows]))
        n = sum(r.n for r in rows)
        print(
            f"+{h // 60:>2} min  {mae:12.2f}  {base:18.2f}  {mae / base:5.2f}  {cover:21.2f}  {n}"
        )


if __name__ == "__main__":
    main()
