"""The wait for a customer taking a ticket now, from the line's count and its flow (issue 13).

Types first (docs/queueing.md, "edge/queueing/wait.py"); the estimator follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Confidence = Literal["exact", "high", "medium", "low", "unknown"]
Method = Literal["tickets", "departures", "arrivals", "dwell", "none"]


@dataclass(frozen=True)
class WaitSettings:
    """window_s: trailing seconds of departures, arrivals and dwell the rates are taken over.
    min_departures: fewer departures in the window give no throughput-based estimate.
    min_service_s: a shorter service-zone visit is a passer-by, not a departure.
    max_wait_s: estimates are capped here (a line whose throughput is near zero)."""

    window_s: float = 1200.0
    min_departures: int = 3
    min_service_s: float = 30.0
    max_wait_s: float = 3 * 3600.0


@dataclass(frozen=True)
class WaitEstimate:
    """The estimated wait of a customer taking a ticket now, in seconds; None: unknown."""

    wait_s: float | None
    low_s: float | None
    high_s: float | None
    confidence: Confidence
    method: Method
    line_count: float | None  # people in the line now (or tickets waiting)
    throughput_per_min: float | None
    arrivals_per_min: float | None
    dwell_p50_s: float | None  # finished line visits in the window: a lagging cross-check
    reason: str = ""  # why unknown, or what disagrees

    @property
    def known(self) -> bool:
        return self.wait_s is not None


UNKNOWN_WAIT = WaitEstimate(None, None, None, "unknown", "none", None, None, None, None, "no data")


@dataclass(frozen=True)
class WaitForecast:
    """The line count and the wait of a customer arriving horizon_s from now."""

    horizon_s: int
    wait_s: float | None
    low_s: float | None
    high_s: float | None
    count: float | None
    count_low: float | None
    count_high: float | None
    reason: str = ""  # why unknown; "" when known
