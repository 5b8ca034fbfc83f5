"""Read-side queries over the store (and the rollup cache): history buckets and reports.

Every function reads and returns; none writes. Unknown stays unknown: a bucket in which no frame
was counted has a NaN mean (null in JSON), never 0.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from api.buckets import Bucket, Int64Array, TimeRange, bucket_edges, utc_offsets
from api.db import StoreAccess
from api.rollup import LEVELS, Rollup
from edge.storage.aggregate import Buckets, aggregate, fetch_intervals

log = logging.getLogger("lobbywatch.api")


def history(
    store: StoreAccess,
    rollup: Rollup | None,
    bucket: Bucket,
    zone_ids: list[str],
    edges: Int64Array,
) -> dict[str, Buckets]:
    """Per zone, the statistics of the buckets between `edges` (UTC seconds, n + 1 for n).

    Buckets that are rolled up come from the rollup, the rest from the stored intervals.
    """
    n = len(edges) - 1
    result = {zone_id: Buckets.empty(n) for zone_id in zone_ids}
    rolled = 0  # the first `rolled` buckets come from the rollup
    if rollup is not None and bucket in LEVELS:
        try:
            rolled = _from_rollup(rollup, bucket, edges, result)
        except sqlite3.Error:  # a broken cache only makes the answer slower, never wrong
            log.warning("rollup %s unreadable; answering from the store", rollup.path)
            result = {zone_id: Buckets.empty(n) for zone_id in zone_ids}
            rolled = 0
    if rolled < n:
        tail = edges[rolled:]
        with store.read() as db:
            for zone_id in zone_ids:
                part = aggregate(fetch_intervals(db, zone_id, int(tail[0]), int(tail[-1])), tail)
                _put(result[zone_id], rolled, part)
    return result


def _from_rollup(
    rollup: Rollup, bucket: Bucket, edges: Int64Array, result: dict[str, Buckets]
) -> int:
    """Fill the buckets the rollup holds; returns how many leading buckets it covered."""
    n = len(edges) - 1
    with rollup.read() as db:
        done_until = rollup.done_until(db, bucket)
        if done_until is None:
            return 0
        rolled = int(np.clip(np.searchsorted(edges, done_until, side="right") - 1, 0, n))
        if rolled:
            for zone_id, into in result.items():
                rollup.fill(db, bucket, zone_id, edges[: rolled + 1], into)
    return rolled


def _put(into: Buckets, offset: int, part: Buckets) -> None:
    end = offset + len(part)
    into.intervals[offset:end] = part.intervals
    into.samples[offset:end] = part.samples
    into.mean[offset:end] = part.mean
    into.max[offset:end] = part.max
    into.p90[offset:end] = part.p90
    into.seen_s[offset:end] = part.seen_s


@dataclass(frozen=True)
class HourSlot:
    """Occupancy of one zone in one local (weekday, hour) across the weeks of a range."""

    weekday: int  # 0 = Monday
    hour: int  # local hour, 0..23
    mean: float | None  # people, weighted by frames counted
    peak: float | None  # people, highest interval maximum
    coverage: float  # fraction of those hours the camera was seen
    hours: int  # how many such hours the range holds


def busiest_hours(
    store: StoreAccess,
    rollup: Rollup | None,
    zone_ids: list[str],
    time_range: TimeRange,
    tz: ZoneInfo,
) -> dict[str, list[HourSlot]]:
    """Per zone, mean and peak occupancy by local weekday and hour.

    From 1h buckets where the site's offset from UTC is a whole number of hours over the range,
    else from 15m buckets (India, Nepal, parts of Australia), so each piece lies in one local
    hour. On a day the clocks change, each piece goes to the local hour it starts in.
    """
    level: Bucket = "1h"
    edges = bucket_edges(level, time_range, tz)
    offsets = utc_offsets(edges[:-1], tz)
    if np.any(offsets % 3600):
        level = "15m"
        edges = bucket_edges(level, time_range, tz)
        offsets = utc_offsets(edges[:-1], tz)
    per_zone = history(store, rollup, level, zone_ids, edges)
    local = edges[:-1] + offsets
    weekday = ((local // 86400 + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
    hour = (local % 86400 // 3600).astype(np.int64)
    slot = weekday * 24 + hour
    piece_s = np.diff(edges).astype(np.float64)
    result: dict[str, list[HourSlot]] = {}
    for zone_id, buckets in per_zone.items():
        known = ~np.isnan(buckets.mean) & (buckets.samples > 0)
        weight = np.bincount(slot[known], weights=buckets.samples[known], minlength=168)
        total = np.bincount(
            slot[known], weights=buckets.mean[known] * buckets.samples[known], minlength=168
        )
        peak = np.full(168, -np.inf)
        has_max = ~np.isnan(buckets.max)
        np.maximum.at(peak, slot[has_max], buckets.max[has_max])
        seen = np.bincount(slot, weights=buckets.seen_s, minlength=168)
        length = np.bincount(slot, weights=piece_s, minlength=168)
        result[zone_id] = [
            HourSlot(
                weekday=i // 24,
                hour=i % 24,
                mean=float(total[i] / weight[i]) if weight[i] > 0 else None,
                peak=float(peak[i]) if np.isfinite(peak[i]) else None,
                coverage=float(min(1.0, seen[i] / length[i])) if length[i] > 0 else 0.0,
                hours=round(length[i] / 3600),
            )
            for i in range(168)
            if length[i] > 0
        ]
    return result
