"""Reconnect backoff and the watchdog verdict: pure logic, tested with a fake clock and rng."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from edge.types import CameraStatus


class Backoff:
    """Bounded exponential backoff with "equal jitter", in seconds.

    The n-th delay after a success is drawn from [max(min_s, c/2), c] with
    c = min(max_s, min_s * factor**n): it grows so a dead camera is not hammered, is capped so a
    recovered camera is found again within max_s, and is jittered so that cameras behind one
    switch that reboots do not all reconnect in the same instant.
    """

    def __init__(
        self,
        min_s: float,
        max_s: float,
        *,
        factor: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {min_s}, {max_s}")
        if factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {factor}")
        self._min = min_s
        self._max = max_s
        self._factor = factor
        self._rng = rng
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Failures since the last success."""
        return self._attempt

    def ceiling(self) -> float:
        """Upper bound of the next delay, seconds."""
        try:
            ceiling = self._min * self._factor**self._attempt
        except OverflowError:  # a camera that has been down for days
            return self._max
        return min(ceiling, self._max)

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; counts one more failure."""
        ceiling = self.ceiling()
        floor = max(self._min, ceiling / 2.0)
        self._attempt += 1
        return min(ceiling, floor + (ceiling - floor) * self._rng())  # no rounding past the cap

    def reset(self) -> None:
        """Call after a success: the next failure waits min_s again."""
        self._attempt = 0


@dataclass(frozen=True)
class Verdict:
    """What the watchdog concludes at one instant: the status, and whether to abandon the reader."""

    status: CameraStatus
    abandon: bool


def assess(
    now: float,
    *,
    status: CameraStatus,
    last_progress: float,
    busy_since: float | None,
    stale_after_s: float,
    offline_after_s: float,
) -> Verdict:
    """Judge a camera from monotonic times (seconds).

    last_progress: the latest frame, or when the current reader generation started if none came.
    busy_since: when the reader entered the OpenCV call it is still inside (None if it is not):
    only a reader stuck in a call for longer than offline_after_s is abandoned, a reader that is
    merely waiting out its backoff is left alone. A camera is never promoted here; only a new
    frame makes it ONLINE.
    """
    age = now - last_progress
    if age > offline_after_s:
        new_status = CameraStatus.OFFLINE
    elif age > stale_after_s and status is CameraStatus.ONLINE:
        new_status = CameraStatus.STALE
    else:
        new_status = status
    hung = busy_since is not None and now - busy_since > offline_after_s
    return Verdict(new_status, hung)
