"""Per-interval occupancy statistics for one camera's zones, ready for the store.

Pure: the caller passes wall time (UTC unix seconds, which buckets are aligned to, so rows from
different cameras and restarts line up) and the seconds the camera was seen since the last call
(measured on the monotonic clock, so a wall-clock step does not invent or erase coverage).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edge.store import HistoryRow


@dataclass
class _ZoneStats:
    samples: int = 0
    total: float = 0.0
    max: float = -math.inf
    min: float = math.inf

    def add(self, value: float) -> None:
        self.samples += 1
        self.total += value
        self.max = max(self.max, value)
        self.min = min(self.min, value)


@dataclass
class _Bucket:
    start: int
    seen_s: float = 0.0
    zones: dict[str, _ZoneStats] = field(default_factory=dict)


class HistoryRecorder:
    """Accumulates smoothed occupancy into fixed intervals of `interval_s` wall-clock seconds."""

    def __init__(self, camera_id: str, zone_ids: Sequence[str], interval_s: int) -> None:
        if interval_s < 1:
            raise ValueError(f"interval_s must be >= 1, got {interval_s}")
        self.camera_id = camera_id
        self.zone_ids = tuple(zone_ids)
        self.interval_s = interval_s
        self._bucket: _Bucket | None = None

    def observe(
        self, wall_ts: float, values: Mapping[str, float | None] | None, seen_s: float
    ) -> list[HistoryRow]:
        """Record one tick; returns the rows of the interval that this tick closed, if any.

        values: the zones' occupancy for a processed frame, or None when no frame was processed
        in this tick. seen_s: seconds of this tick during which the camera was online.
        """
        start = int(wall_ts // self.interval_s) * self.interval_s
        closed: list[HistoryRow] = []
        if self._bucket is not None and self._bucket.start != start:
            closed = self.flush()
        if self._bucket is None:
            self._bucket = _Bucket(start, zones={z: _ZoneStats() for z in self.zone_ids})
        self._bucket.seen_s += max(0.0, seen_s)
        for zone_id, value in (values or {}).items():
            if value is not None:
                self._bucket.zones[zone_id].add(value)
        return closed

    def flush(self) -> list[HistoryRow]:
        """Rows for the open interval (also when cut short by a shutdown); starts afresh."""
        bucket, self._bucket = self._bucket, None
        if bucket is None:
            return []
        seen_fraction = min(1.0, bucket.seen_s / self.interval_s)
        return [
            HistoryRow(
                zone_id=zone_id,
                camera_id=self.camera_id,
                bucket_start=bucket.start,
                interval_s=self.interval_s,
                samples=stats.samples,
                mean=stats.total / stats.samples if stats.samples else None,
                max=stats.max if stats.samples else None,
                min=stats.min if stats.samples else None,
                seen_fraction=seen_fraction,
            )
            for zone_id, stats in bucket.zones.items()
        ]
