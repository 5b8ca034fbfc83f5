"""Smoothed zone occupancy from per-frame raw counts.

Detectors flicker: a seated person is found in one frame and missed in the next, a passer-by
occludes two people for a second. A supervisor wants the number of people in the zone, not the
number the detector happened to see in the last frame. We keep the raw counts of the last
`window_s` seconds and report an upper quantile of them: misses (which dominate detector error)
pull the count down for a frame or two and the quantile rides over them, while a real change
shows after about half a window. Pure and clock-injected: callers pass monotonic seconds.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class OccupancySmoother:
    """Sliding-window quantile of raw counts for one zone.

    window_s: seconds of history (monotonic). quantile: 0.5 is the median; higher values lean
    towards the frames where the detector saw more people. An unknown sample (camera not online)
    empties the window: counts from before an outage say nothing about the room after it.
    """

    def __init__(self, window_s: float, quantile: float) -> None:
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {quantile}")
        self._window_s = window_s
        self._quantile = quantile
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, raw: int | None, now: float) -> float | None:
        """Add one frame's raw count taken at monotonic time `now`; returns the occupancy."""
        if raw is None:
            self._samples.clear()
            return None
        if self._samples and now < self._samples[-1][0]:
            # Time never runs backwards on a monotonic clock; a replay that restarts does.
            self._samples.clear()
        self._samples.append((now, raw))
        while self._samples[0][0] < now - self._window_s:
            self._samples.popleft()
        return self.value

    @property
    def value(self) -> float | None:
        if not self._samples:
            return None
        counts = np.fromiter((c for _, c in self._samples), dtype=np.float64)
        # "nearest" reports a count some frame actually saw, never a fraction of a person.
        return float(np.quantile(counts, self._quantile, method="nearest"))
