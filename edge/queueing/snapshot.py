"""What the queue looks like now: the wait, its forecast, kiosks and counters (docs/queueing.md).

Made by the queue monitor (edge/runtime/queue_monitor.py), read by alert rules and advice
(edge/alerts/advice.py), published on MQTT and served by the API.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from edge.queueing.wait import UNKNOWN_WAIT, WaitEstimate, WaitForecast
from edge.tracking.dwell import ZoneDwell


def minutes(seconds: float | None) -> float | None:
    """Seconds as minutes to a tenth, as the snapshot's figures show them (published JSON,
    an alert's figures); None for unknown or not finite, never 0 or NaN."""
    return None if seconds is None or not math.isfinite(seconds) else round(seconds / 60.0, 1)


@dataclass(frozen=True)
class ZoneUse:
    """A self-service or counter zone, for advice."""

    zone_id: str
    name: str
    count: float | None  # smoothed people there now; None: unknown
    capacity: int | None = None  # kiosks in a self-service zone (ZoneConfig.capacity)
    counter: str | None = None  # the counter's number or name (ZoneConfig.counter)
    empty_s: float = 0.0  # seconds it has been empty (0 when occupied or unknown)


@dataclass(frozen=True)
class QueueSnapshot:
    at: datetime  # UTC
    line_zones: tuple[str, ...]
    wait: WaitEstimate = UNKNOWN_WAIT
    forecast: Mapping[int, WaitForecast] = field(default_factory=dict)  # minutes ahead: 15, 30
    kiosks: tuple[ZoneUse, ...] = ()  # self_service zones
    counters: tuple[ZoneUse, ...] = ()  # service zones (and staff zones with a counter)
    line_trend_per_10min: float | None = None  # change of the line count over 10 minutes
    arrivals_5min: float | None = None  # entrance arrivals in the last 5 minutes
    arrivals_expected_5min: float | None = None  # the profile's for this time of day
    dwell: Mapping[str, ZoneDwell] = field(default_factory=dict)
