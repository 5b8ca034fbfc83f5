"""Cumulative histograms the service keeps for the API's `/metrics` (Prometheus histograms).

The pipeline and the API are different processes, and the API reads what only the pipeline
knows from the device state file (edge/runtime/device_state.py). So the pipeline counts, since
it started, how many observations fell at or below each bound, with their sum and count, and
writes that into each snapshot; the API turns it into a Prometheus histogram. A restart starts
the counts again from 0, which Prometheus' rate() reads as a counter reset, as it should.

Standard library only: observed in one thread (a camera worker, the notifier), read in another
(the service's main thread, once a second), under a lock.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from dataclasses import dataclass
from typing import Any

#: Seconds the detector spends on a frame: from 5 ms (a small model on a GPU) to 2 s (tiles and
#: fusion on a small CPU). A frame slower than 2 s is counted only in +Inf (and the camera's
#: dropped share says the box is far too slow for it).
DETECTOR_SECONDS_BOUNDS = (
    0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 2.0,
)  # fmt: skip
#: Seconds from an alert's decision (its message made) to the broker's PUBACK: from 1 ms (the
#: broker on the device) to 5 s; beyond that the broker was away, and the outbox backlog and
#: `lobbywatch_broker_connected` say so better than a bucket could.
ALERT_LATENCY_BOUNDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip


@dataclass(frozen=True)
class HistogramCounts:
    """One reading: `buckets[i]` observations at or below `bounds[i]` (cumulative, as
    Prometheus' `le` buckets); `count` is every observation (the +Inf bucket), `sum` their
    total, in the unit observed (seconds here)."""

    bounds: tuple[float, ...]
    buckets: tuple[int, ...]
    count: int
    sum: float

    def __post_init__(self) -> None:
        _check_bounds(self.bounds)
        if len(self.buckets) != len(self.bounds):
            raise ValueError(f"{len(self.buckets)} buckets for {len(self.bounds)} bounds")
        cumulative = (*self.buckets, self.count)
        if any(n < 0 for n in cumulative) or any(a > b for a, b in itertools.pairwise(cumulative)):
            raise ValueError(f"buckets {cumulative} are not cumulative counts")
        if not math.isfinite(self.sum) or self.sum < 0:
            raise ValueError(f"sum {self.sum} is not a finite non-negative number")

    def as_json(self) -> dict[str, Any]:
        """For the device state file: compact (the file has a size limit)."""
        return {
            "le": list(self.bounds),
            "buckets": list(self.buckets),
            "count": self.count,
            "sum": round(self.sum, 6),
        }

    @classmethod
    def from_json(cls, data: object) -> HistogramCounts | None:
        """A reading back from the state file; None for anything malformed (an older or newer
        writer, a hand-edited file): a histogram left out beats one that lies."""
        if not isinstance(data, dict):
            return None
        try:
            bounds = tuple(float(b) for b in data["le"])
            buckets = tuple(_count(n) for n in data["buckets"])
            return cls(bounds, buckets, _count(data["count"]), float(data["sum"]))
        except (KeyError, TypeError, ValueError):
            return None


class Histogram:
    """Counts observations into fixed buckets (bounds in ascending order, the unit observed)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        _check_bounds(bounds)
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose bound is >= it (Prometheus' `le`). A negative
        or non-finite value is a caller's bug, refused rather than poisoning the sum."""
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"cannot observe {value!r}")
        index = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def counts(self) -> HistogramCounts:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative: list[int] = []
        running = 0
        for n in counts:
            running += n
            cumulative.append(running)
        return HistogramCounts(self.bounds, tuple(cumulative[:-1]), cumulative[-1], total)


def _check_bounds(bounds: tuple[float, ...]) -> None:
    if not bounds:
        raise ValueError("a histogram needs at least one bound")
    if any(not math.isfinite(b) or b <= 0 for b in bounds):
        raise ValueError(f"bounds {bounds} must be finite and positive")
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"bounds {bounds} must be strictly ascending")


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"count {value!r} is not an integer")
    return value
