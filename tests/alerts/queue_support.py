"""A queue source for alert tests: what the queue monitor (edge/runtime/queue_monitor.py)
would answer, scripted. Shared by the alert service tests and the handheld browser test."""

from __future__ import annotations

from edge.config import RuleMetric
from edge.queueing.snapshot import QueueSnapshot, ZoneUse
from edge.queueing.wait import WaitEstimate, WaitForecast
from tests.alerts.support import T0


def busy_snapshot() -> QueueSnapshot:
    """An 18-minute wait rising to 25 in 15 minutes, 1 of 4 kiosks in use, counter 3 empty
    for 5 minutes while the line grows, 9 arrivals in 5 minutes where 4 are usual."""
    wait = WaitEstimate(1080.0, 840.0, 1320.0, "medium", "departures", 14.0, 0.8, 1.2, 900.0)
    forecast = {
        15: WaitForecast(900, 1500.0, 1200.0, 1800.0, 18.0, 15.0, 21.0),
        30: WaitForecast(1800, 1800.0, 1400.0, 2200.0, 21.0, 17.0, 25.0),
    }
    return QueueSnapshot(
        at=T0, line_zones=("waiting", "queue"), wait=wait, forecast=forecast,
        kiosks=(ZoneUse("kiosks", "Kiosks", 1.0, capacity=4),),
        counters=(ZoneUse("counter-3", "Counter 3", 0.0, counter="3", empty_s=300.0),),
        line_trend_per_10min=2.0, arrivals_5min=9.0, arrivals_expected_5min=4.0,
    )  # fmt: skip


class FakeQueue:
    """What the queue monitor answers: a snapshot and each metric's value (None: unknown)."""

    def __init__(self, snapshot: QueueSnapshot, values: dict[str, float | None]) -> None:
        self.snap = snapshot
        self.values = values
        self.asked: list[tuple[str, int]] = []

    def snapshot(self) -> QueueSnapshot:
        return self.snap

    def metric(self, name: RuleMetric, horizon_min: int) -> float | None:
        self.asked.append((name, horizon_min))
        return self.values.get(name)
