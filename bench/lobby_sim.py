#!/usr/bin/env python3
"""Simulated bank days under three alert policies: true waits, longest queue, passes per day.

Each day (one seed) is run three times with the same customers (bench/lobbysim):
  none       no alerts: the lobby runs on its own;
  threshold  a fixed count threshold: an alert whenever a frame's raw waiting + queue count
             reaches --raise-at (no smoothing, no hysteresis, no sustain, no cooldown);
  lobbywatch the current rules in configs/mall.yaml's shape: 2 s median smoothing, raise at
             --raise-at held 30 s, clear at --clear-at held 60 s, 300 s cooldown, escalation
             after 180 s (at most 2), a done pass asked again after --reask-after s while the
             count holds; the manager only walks the rows;
  advice     the same rule, with tracks through the product's DwellBook and QueueMonitor
             (bench/lobbysim/tracks.py faults), kiosk capacity and a staff desk per counter: each
             ask carries advice, and the manager follows it (kiosks full or a counter unstaffed:
             call a colleague to open a counter; kiosks full: no pass, nobody can be moved).
All alert policies run through the product's own board, AlertService and Store, and the same
manager (reacts after a lognormal delay, median 90 s; a 120 s pass; passes at least 5 min apart).

    python bench/lobby_sim.py [--days 10] [--first-seed 0] [--raise-at 12] [--clear-at 8]
                              [--reask-after 600] [--policies none,threshold,lobbywatch,advice]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.lobbysim.engine import (  # noqa: E402
    EngineController,
    EngineRig,
    Manager,
    quiet_logs,
    site_config,
)
from bench.lobbysim.lobby import LobbyParams  # noqa: E402
from bench.lobbysim.run import DayResult, run_day  # noqa: E402
from bench.lobbysim.tracks import TrackNoise  # noqa: E402

ZONES = "[waiting, queue]"


def rules(policy: str, raise_at: int, clear_at: int, reask_after: float = 600) -> tuple[str, str]:
    """(rules yaml, occupancy yaml) of a policy."""
    if policy == "threshold":
        return (
            f"    - {{id: threshold, zones: {ZONES}, raise_at: {raise_at},"
            f" clear_at: {raise_at - 1}, raise_after_s: 0, clear_after_s: 0, cooldown_s: 0,"
            " escalate_after_s: null}\n",
            "occupancy: {window_s: 0}",
        )
    return (
        f"    - {{id: waiting-full, zones: {ZONES}, raise_at: {raise_at}, clear_at: {clear_at},"
        " raise_after_s: 30, clear_after_s: 60, cooldown_s: 300, escalate_after_s: 180,"
        f" max_escalations: 2, effect_after_s: 300, reask_after_s: {reask_after}}}\n",
        "occupancy: {window_s: 2, quantile: 0.5}",  # as configs/mall.yaml
    )


@dataclass
class Outcome:
    day: DayResult
    raised: int = 0  # alerts raised
    calls: int = 0  # colleagues the manager called
    #: The queue monitor's wait estimate every minute while open: (estimate, truth) minutes,
    #: estimate None when unknown; truth: DayResult.wait_if_arriving (NaN after the last ticket).
    waits: list[tuple[float | None, float]] = field(default_factory=list)


def run(policy: str, seed: int, args: argparse.Namespace, work: Path) -> Outcome:
    params = LobbyParams()
    if policy == "none":
        return Outcome(run_day(seed, params, fps=args.fps))
    rules_yaml, occupancy = rules(policy, args.raise_at, args.clear_at, args.reask_after)
    db = work / f"{policy}-{seed}.db"
    advice = policy == "advice"
    counters = max(n for _, n in params.staff)
    config = site_config(
        rules_yaml, db, occupancy, kiosks=params.kiosks if advice else None,
        counters=counters if advice else 0,
    )  # fmt: skip
    rig = EngineRig(config, tracks=TrackNoise() if advice else None, seed=seed, fps=args.fps)
    manager = Manager(np.random.default_rng([seed, 1]), follow_advice=advice)
    controller = EngineController(rig, manager)
    try:
        day = run_day(seed, params, fps=args.fps, controllers=[controller], record_tracks=advice)
    finally:
        rig.close()
    times = np.array([t for t, _ in controller.waits])
    truth = day.wait_if_arriving(times) / 60.0 if len(times) else np.array([])
    waits = [
        (None if est is None else est / 60.0, float(true))
        for (_, est), true in zip(controller.waits, truth, strict=True)
    ]
    return Outcome(day, len(controller.raised), len(manager.calls), waits)


def wait_line(policy: str, waits: list[tuple[float | None, float]]) -> str:
    scored = [(e, t) for e, t in waits if not np.isnan(t)]
    known = np.array([(e, t) for e, t in scored if e is not None])
    unknown = 1 - len(known) / len(scored) if scored else float("nan")
    if not len(known):
        return f"{policy:<11} no estimate"
    err = known[:, 0] - known[:, 1]
    return (
        f"{policy:<11} MAE {np.abs(err).mean():.2f} min, bias {err.mean():+.2f} min,"
        f" unknown {unknown:.1%}, {len(known)} minutes scored"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--raise-at", type=int, default=12)
    parser.add_argument("--clear-at", type=int, default=8)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--reask-after", type=float, default=600.0)
    parser.add_argument("--policies", default="none,threshold,lobbywatch,advice")
    args = parser.parse_args()
    quiet_logs()
    work = Path(tempfile.mkdtemp(prefix="lobbysim-"))
    started = time.perf_counter()
    print(f"{args.days} days, seeds {args.first_seed}..{args.first_seed + args.days - 1},"
          f" raise at {args.raise_at}, clear at {args.clear_at}, {args.fps:g} fps")  # fmt: skip
    print(f"{'policy':<11} {'mean wait':>9} {'p90 wait':>9} {'longest q':>9} {'max q':>6}"
          f" {'alerts/d':>8} {'passes/d':>8} {'moved/d':>8} {'calls/d':>7}")  # fmt: skip
    estimates: dict[str, list[tuple[float | None, float]]] = {}
    for policy in args.policies.split(","):
        waits: list[np.ndarray] = []
        longest, passes, moved, alerts, calls = [], [], [], [], []
        for seed in range(args.first_seed, args.first_seed + args.days):
            outcome = run(policy, seed, args, work)
            day, raised, called = outcome.day, outcome.raised, outcome.calls
            estimates[policy] = estimates.get(policy, []) + outcome.waits
            s = day.summary()
            waits.append(day.waits() / 60.0)
            longest.append(s["longest_queue"])
            passes.append(s["passes"])
            moved.append(s["moved"])
            alerts.append(raised)
            calls.append(called)
        w = np.concatenate(waits)
        print(
            f"{policy:<11} {w.mean():>7.1f} m {np.quantile(w, 0.9):>7.1f} m"
            f" {np.mean(longest):>9.1f} {max(longest):>6.0f} {np.mean(alerts):>8.1f}"
            f" {np.mean(passes):>8.1f} {np.mean(moved):>8.1f} {np.mean(calls):>7.1f}",
            flush=True,
        )
    for policy, pairs in estimates.items():
        if pairs:
            print("wait estimate, the product's queue monitor vs the true wait of the next ticket:")
            print(wait_line(policy, pairs))
    print(f"({time.perf_counter() - started:.0f} s; longest q: the day's peak of true waiting +"
          " queue, averaged over days; max q: the worst day's)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
