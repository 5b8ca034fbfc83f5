#!/usr/bin/env python3
"""How far the wait estimate is from the true wait, on simulated bank days (issue 13, item 2).

Each day (one seed, no alerts, so no diversion) is run once with its true presence recorded,
then replayed frame by frame through what the product would do:

- tracks: the presence through tracking faults (bench/lobbysim/tracks.py: misses, id switches,
  lost ids, ghosts) into the real edge.tracking.dwell.DwellBook over the simulator's five zones;
  its finished visits feed a real WaitEstimator: departures are "counter" visits of at least
  min_service_s, arrivals "entrance" visits, line visits "waiting" visits;
- the line count: the noisy waiting and queue counts, each through an OccupancySmoother (2 s,
  median: the lobbywatch policy of bench/lobby_sim.py), summed;
- tickets: issued / called / served events built from each customer's ticket_at, called_at
  and end, given to a TicketBook as their time comes.

Estimators, each judged every 60 s while the branch is open against DayResult.wait_if_arriving
(the wait of the next counter customer to take a ticket):

  tracks       the full estimator without tickets (departures, falling back to arrivals)
  tracks+held  the same, the line count taken as the larger of the smoothed count and the
               tracked people present in the line zones (DwellBook: held through misses)
  arrivals     Little's law on entrance arrivals only (no departures fed). Arrivals need tracks:
               a count per frame does not say how many people came in, only how many are there
  tickets      the full estimator with the ticket feed
  naive count  line count x mean service time / open counters (the true staffing: generous)
  naive last   the wait of the last customer called (needs the ticket feed)

    python bench/wait_estimate.py [--days 10] [--first-seed 100] [--switch 0.1] [--window 1200]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.lobbysim.lobby import ZONES, Customer, LobbyParams  # noqa: E402
from bench.lobbysim.run import DayResult, run_day  # noqa: E402
from bench.lobbysim.tracks import TrackFaker, TrackNoise  # noqa: E402
from edge.occupancy import OccupancySmoother  # noqa: E402
from edge.queueing.tickets import TicketBook, TicketEvent  # noqa: E402
from edge.queueing.wait import WaitEstimate, WaitEstimator, WaitSettings  # noqa: E402
from edge.tracking.dwell import DwellBook  # noqa: E402

#: The simulated day's 09:00, in UTC (the ticket feed's clock).
OPENS = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
NAMES = ("tracks", "tracks+held", "arrivals", "tickets", "naive count", "naive last")


@dataclass
class Scores:
    """Per estimator, at each evaluated time: (next ticket's wait, virtual wait, estimate, low,
    high), seconds, NaN where unknown."""

    rows: dict[str, list[tuple[float, ...]]] = field(
        default_factory=lambda: {name: [] for name in NAMES}
    )
    methods: dict[str, dict[str, int]] = field(default_factory=lambda: {name: {} for name in NAMES})

    def add(self, name: str, truth: tuple[float, float], est: WaitEstimate | float | None) -> None:
        if isinstance(est, WaitEstimate):
            methods = self.methods[name]
            methods[est.method] = methods.get(est.method, 0) + 1
            row = (est.wait_s, est.low_s, est.high_s)
        else:
            row = (est, None, None)
        self.rows[name].append((*truth, *(np.nan if x is None else x for x in row)))

    def table(self, name: str, virtual: bool = False) -> dict[str, float]:
        """MAE and bias (minutes), coverage of [low, high], share unknown, against the next
        ticket's wait or (virtual) the wait of a ticket taken at that moment."""
        a = np.array(self.rows[name], dtype=np.float64).reshape(-1, 5)
        truth = a[:, 1] if virtual else a[:, 0]
        value, low, high = a[:, 2], a[:, 3], a[:, 4]
        judged = np.isfinite(truth)
        known = judged & np.isfinite(value)
        err = (value[known] - truth[known]) / 60.0
        ranged = known & np.isfinite(low)
        inside = (low[ranged] <= truth[ranged]) & (truth[ranged] <= high[ranged])
        nan = float("nan")
        return {
            "points": float(judged.sum()),
            "unknown": float(1.0 - known.sum() / judged.sum()) if judged.any() else nan,
            "mae": float(np.abs(err).mean()) if len(err) else nan,
            "bias": float(err.mean()) if len(err) else nan,
            "coverage": float(inside.mean()) if len(inside) else nan,
        }


def ticket_events(day: DayResult) -> list[TicketEvent]:
    """What the branch's ticket machine would have sent, in time order."""
    events = []
    for c in day.customers:
        if c.ticket_at is None:
            continue  # a self-server takes no ticket
        name = f"A{c.id:03}"
        events.append(TicketEvent(kind="issued", ticket=name, at=OPENS + _s(c.ticket_at)))
        if c.diverted:
            waiting = [end for zone, _, end in c.visits if zone == "waiting" and end is not None]
            if waiting:
                events.append(TicketEvent(kind="cancelled", ticket=name, at=OPENS + _s(waiting[0])))
            continue
        counter = None if c.counter is None else str(c.counter + 1)
        if c.called_at is not None:
            at = OPENS + _s(c.called_at)
            events.append(TicketEvent(kind="called", ticket=name, at=at, counter=counter))
        if c.end is not None:
            at = OPENS + _s(c.end)
            events.append(TicketEvent(kind="served", ticket=name, at=at, counter=counter))
    return sorted(events, key=lambda e: e.at)


def _s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def virtual_waits(day: DayResult, params: LobbyParams, times: np.ndarray) -> np.ndarray:
    """The wait of a customer who would take a ticket at each time (s): what the estimate says
    it is. wait_if_arriving judges it against the next real ticket, taken a gap g later by
    someone with the same people ahead, who is called at the same moment: max(0, V - g), a
    yardstick low by about the gap between tickets (1-2 minutes here).

    From the day's truth: the W people waiting at t are called at the first W moments a counter
    frees after t (each such moment is a call while anyone waits); the customer at t at the
    next one. A counter frees when a service ends or it opens, or is free at t. (A counter
    closing frees nothing: an end after which people waited but the counter called no one.)"""
    counter = [c for c in day.customers if c.route == "counter"]
    waits = [(c.ticket_at, c.called_at) for c in counter if c.ticket_at is not None]
    spans = [(a, b) for a, b in waits if b is not None]  # (ticket, call)
    served = [(c.called_at, c.end) for c in counter if c.called_at is not None]  # (call, end)
    calls = {(c.counter, c.called_at) for c in counter}

    def closes(c: Customer) -> bool:  # the counter called no one though people waited
        assert c.end is not None
        waited = any(a <= c.end < b for a, b in spans)
        return waited and (c.counter, c.end) not in calls

    ends = np.sort([c.end for c in counter if c.end is not None and not closes(c)])
    opens = []
    for (_, before), (at, after) in zip(params.staff, params.staff[1:], strict=False):
        opens += [at] * max(0, after - before)
    out = np.full(len(times), np.nan)
    for i, t in enumerate(times):
        waiting = sum(1 for a, b in spans if a <= t < b)
        busy = sum(1 for a, e in served if a <= t and (e is None or e > t))
        idle = max(0, open_counters(params, t) - busy)
        free = sorted([t] * idle + [e for e in ends[np.searchsorted(ends, t, "right") :]]
                      + [o for o in opens if o > t])  # fmt: skip
        if waiting < len(free):
            out[i] = free[waiting] - t
    return out


def open_counters(params: LobbyParams, t: float) -> int:
    steps = [n for at, n in params.staff if at <= t]
    return steps[-1] if steps else 0


def replay(
    day: DayResult,
    params: LobbyParams,
    scores: Scores,
    *,
    noise: TrackNoise,
    settings: WaitSettings,
    seed: int,
    fps: float = 1.0,
    every_s: float = 60.0,
) -> None:
    """Feed one recorded day through tracks, DwellBook, smoothers, tickets and estimators."""
    assert day.tracks is not None
    clock = [OPENS]
    wall = lambda: clock[0]  # noqa: E731
    tracks_est = WaitEstimator(settings, wall_clock=wall)
    held_est = WaitEstimator(settings, wall_clock=wall)
    arrivals_est = WaitEstimator(settings, wall_clock=wall)
    tickets_est = WaitEstimator(settings, wall_clock=wall)
    book = TicketBook()
    tickets_est.tickets(book)
    events = ticket_events(day)
    next_event = 0
    dwell = DwellBook(("entrance", "waiting", "queue", "counter"))  # the zones used
    faker = TrackFaker(noise, np.random.default_rng([seed, 7]), fps)
    smoothers = {z: OccupancySmoother(2.0, 0.5) for z in ("waiting", "queue", "counter")}
    w, q, k = (ZONES.index(z) for z in ("waiting", "queue", "counter"))
    judged = (day.t < params.open_s) & (day.t % every_s == 0)
    truth = np.full(len(day.t), np.nan)
    truth[judged] = day.wait_if_arriving(day.t[judged])
    virtual = np.full(len(day.t), np.nan)
    virtual[judged] = virtual_waits(day, params, day.t[judged])
    for i, t in enumerate(day.t):
        clock[0] = OPENS + _s(float(t))
        while next_event < len(events) and events[next_event].at <= clock[0]:
            book.apply(events[next_event])
            next_event += 1
        figures = dwell.update(faker.frame(float(t), day.tracks[i]), float(t))
        for zone, fig in figures.items():
            if not fig.exits:
                continue
            for visit in dwell.finished(zone)[-fig.exits :]:
                if zone == "counter":  # the estimator judges min_service_s and id switches
                    for est in (tracks_est, held_est, tickets_est):
                        est.departure(visit.left_at, service_s=visit.dwell_s)
                elif zone == "entrance":
                    for est in (tracks_est, held_est, arrivals_est, tickets_est):
                        est.arrival(visit.left_at)
                elif zone == "waiting":
                    for est in (tracks_est, held_est, arrivals_est, tickets_est):
                        est.line_visit(visit.left_at, visit.dwell_s)
        waiting = smoothers["waiting"].update(int(day.observed[i, w]), float(t))
        queue = smoothers["queue"].update(int(day.observed[i, q]), float(t))
        serving = smoothers["counter"].update(int(day.observed[i, k]), float(t))
        line = None if waiting is None or queue is None else waiting + queue
        for est in (tracks_est, arrivals_est, tickets_est):
            est.observe(float(t), line, 1.0 / fps, serving)
        held = figures["waiting"].present + figures["queue"].present
        held_est.observe(float(t), None if line is None else max(line, held), 1.0 / fps, serving)
        if not judged[i] or not np.isfinite(truth[i]):
            continue
        true_wait = (float(truth[i]), float(virtual[i]))
        scores.add("tracks", true_wait, tracks_est.estimate(float(t)))
        scores.add("tracks+held", true_wait, held_est.estimate(float(t)))
        scores.add("arrivals", true_wait, arrivals_est.estimate(float(t)))
        scores.add("tickets", true_wait, tickets_est.estimate(float(t)))
        counters = open_counters(params, float(t))
        naive = None if line is None or not counters else line * params.service_mean_s / counters
        scores.add("naive count", true_wait, naive)
        called = book.recent_waits_s(OPENS)
        scores.add("naive last", true_wait, called[-1] if called else None)


def run(
    days: int,
    first_seed: int,
    *,
    params: LobbyParams | None = None,
    noise: TrackNoise | None = None,
    settings: WaitSettings | None = None,
) -> Scores:
    params = params or LobbyParams()
    scores = Scores()
    for seed in range(first_seed, first_seed + days):
        day = run_day(seed, params, record_tracks=True)
        replay(
            day,
            params,
            scores,
            noise=noise or TrackNoise(),
            settings=settings or WaitSettings(),
            seed=seed,
        )
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--switch", type=float, default=TrackNoise.switch_per_min)
    parser.add_argument("--ghosts", type=float, default=TrackNoise.ghost_per_frame)
    parser.add_argument("--window", type=float, default=WaitSettings.window_s)
    args = parser.parse_args()
    noise = TrackNoise(switch_per_min=args.switch, ghost_per_frame=args.ghosts)
    settings = replace(WaitSettings(), window_s=args.window)
    started = time.perf_counter()
    scores = run(args.days, args.first_seed, noise=noise, settings=settings)
    print(
        f"{args.days} days, seeds {args.first_seed}..{args.first_seed + args.days - 1},"
        f" switches {args.switch:g}/person-min, ghosts {args.ghosts:g}/zone-frame,"
        f" window {args.window:g} s"
    )
    print(f"{'':<12} {'against the next ticket':^35} | {'against a ticket taken then':^35}")
    head = f"{'MAE min':>8} {'bias min':>9} {'80% cover':>9} {'unknown':>7}"
    print(f"{'estimator':<12} {head} | {head}  methods")
    for name in NAMES:
        cells = []
        for virtual in (False, True):
            s = scores.table(name, virtual)
            cells.append(
                f"{s['mae']:>8.2f} {s['bias']:>+9.2f} {s['coverage']:>9.2f} {s['unknown']:>7.1%}"
            )
        methods = ", ".join(f"{m} {n}" for m, n in sorted(scores.methods[name].items()))
        print(f"{name:<12} {cells[0]} | {cells[1]}  {methods}")
    points = scores.table("tracks")["points"]
    print(f"({points:.0f} points, every 60 s while open; {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
