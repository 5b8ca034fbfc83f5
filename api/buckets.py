"""Bucket sizes, their boundaries and the bounds on a requested time range.

Times inside are UTC unix seconds (int), like `zone_history.bucket_start`. 1m, 15m and 1h buckets
are aligned to UTC (every real time zone's offset is a multiple of 15 minutes, so 15m and 1m
buckets are also local quarter hours and minutes). 1d buckets run from local midnight to local
midnight in the site's time zone, because "how busy were we on Monday" means the branch's Monday:
such a day lasts 23 or 25 hours when the clocks change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal, get_args
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

Bucket = Literal["1m", "15m", "1h", "1d"]
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)

Int64Array = npt.NDArray[np.int64]

#: Fixed bucket lengths in seconds; 1d is a local calendar day (see the module docstring).
BUCKET_SECONDS: dict[Bucket, int] = {"1m": 60, "15m": 900, "1h": 3600, "1d": 86400}

#: Longest range one request may cover, per bucket size, so that one answer stays about 10 000
#: points per zone and one query's work stays bounded.
MAX_SPAN: dict[Bucket, timedelta] = {
    "1m": timedelta(days=7),
    "15m": timedelta(days=90),
    "1h": timedelta(days=400),
    "1d": timedelta(days=5 * 366),
}

#: Range asked for when a request gives no start: what a dashboard usually shows.
DEFAULT_SPAN: dict[Bucket, timedelta] = {
    "1m": timedelta(hours=1),
    "15m": timedelta(days=1),
    "1h": timedelta(days=7),
    "1d": timedelta(days=30),
}

#: Nothing was recorded before EARLIEST or after LATEST: a requested time outside is read as the
#: nearer of the two, so any time the schema allows (years 1 to 9999) has an answer, and no
#: arithmetic on it can overflow.
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)


class RangeError(ValueError):
    """A requested time range the API refuses; the message says why and what is allowed."""


@dataclass(frozen=True)
class TimeRange:
    """A validated [start, end) range, both UTC-aware, start <= end (equal: nothing in it)."""

    start: datetime
    end: datetime


def resolve_range(
    start: datetime | None,
    end: datetime | None,
    *,
    now: datetime,
    max_span: timedelta,
    default_span: timedelta,
) -> TimeRange:
    """Fill defaults (end = now, start = end - default_span) and check the range.

    Both times must be timezone-aware (the HTTP layer refuses naive ones). Refused: a start
    not before the end asked for (or now, when no end is given), and a range longer than
    max_span. Times before 2000 or after 2100 are moved to those bounds first, so a range that
    lies wholly outside them is empty. The checks compare datetimes and never add to them
    before clamping: year 1 minus a day would overflow.
    """
    if start is not None and start >= (end if end is not None else now):
        raise RangeError("start must be before end")
    end = _clamp(end if end is not None else now)
    start = _clamp(start) if start is not None else max(end - default_span, EARLIEST)
    if end - start > max_span:
        raise RangeError(
            f"range of {_days(end - start)} is longer than the {_days(max_span)} allowed here;"
            " ask for a larger bucket or a shorter range"
        )
    return TimeRange(start, end)


def _clamp(value: datetime) -> datetime:
    """`value` in UTC, moved into [EARLIEST, LATEST] (compared before converting: converting
    0001-01-01T00:00+01:00 to UTC overflows)."""
    if value <= EARLIEST:
        return EARLIEST
    if value >= LATEST:
        return LATEST
    return value.astimezone(timezone.utc)


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 1 else f"{span.total_seconds() / 3600:.1f} hours"


def bucket_edges(bucket: Bucket, time_range: TimeRange, tz: ZoneInfo) -> Int64Array:
    """Boundaries (UTC seconds) of the buckets covering the range: start is rounded down and end
    up to bucket boundaries, so the first and last buckets are whole. n buckets, n + 1 edges."""
    if bucket == "1d":
        return local_midnights(time_range.start, time_range.end, tz)
    size = BUCKET_SECONDS[bucket]
    first = math.floor(time_range.start.timestamp() / size) * size
    last = math.ceil(time_range.end.timestamp() / size) * size
    return np.arange(first, last + size, size, dtype=np.int64)


def local_midnights(start: datetime, end: datetime, tz: ZoneInfo) -> Int64Array:
    """Local midnights from the one at or before `start` to the one at or after `end`.

    Where a midnight does not exist (clocks jump at 00:00), the day starts at the first local
    time that does: zoneinfo maps the missing time with the offset before the jump.
    """
    day = start.astimezone(tz).date()
    stop = end.astimezone(tz)
    last_day = stop.date() if stop.timetz() == time(0, tzinfo=stop.tzinfo) else _next(stop.date())
    edges = []
    while day <= last_day:
        edges.append(_midnight(day, tz))
        day = _next(day)
    return np.asarray(edges, dtype=np.int64)


def _next(day: date) -> date:
    return day + timedelta(days=1)


def _midnight(day: date, tz: ZoneInfo) -> int:
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp())


def floor_edge(bucket: Bucket, ts: int, tz: ZoneInfo) -> int:
    """The bucket boundary at or before `ts` (UTC seconds)."""
    if bucket == "1d":
        # A missing midnight maps to the jump itself, which no time of that local date precedes.
        return _midnight(datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).date(), tz)
    size = BUCKET_SECONDS[bucket]
    return ts // size * size


def edges_between(bucket: Bucket, first: int, last: int, tz: ZoneInfo) -> Int64Array:
    """Boundaries from `first` (itself a boundary) up to the last one at or before `last`."""
    if bucket == "1d":
        days = local_midnights(
            datetime.fromtimestamp(first, timezone.utc),
            datetime.fromtimestamp(last, timezone.utc),
            tz,
        )
        return days[days <= last]
    size = BUCKET_SECONDS[bucket]
    return np.arange(first, last + 1, size, dtype=np.int64)


def utc_offsets(ts: Int64Array, tz: ZoneInfo) -> Int64Array:
    """UTC offset in seconds of the site's time zone at each time `ts` (sorted UTC seconds).

    Offsets change at most once a day, so each UTC day is looked up at its two ends and only a
    day whose ends differ (a clock change) is looked up time by time: a year of quarter hours
    costs about 800 look-ups instead of 35 000.
    """
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    days, inverse = np.unique(ts // 86400, return_inverse=True)
    first = np.array([_offset(int(d) * 86400, tz) for d in days], dtype=np.int64)
    last = np.array([_offset(int(d) * 86400 + 86399, tz) for d in days], dtype=np.int64)
    offsets = first[inverse]
    for i in np.flatnonzero(first != last):
        where = np.flatnonzero(inverse == i)
        offsets[where] = [_offset(int(t), tz) for t in ts[where]]
    return offsets


def _offset(ts: int, tz: ZoneInfo) -> int:
    delta = datetime.fromtimestamp(ts, timezone.utc).astimezone(tz).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def iso(ts: int) -> str:
    """UTC seconds as ISO 8601 with a Z suffix, the form every time in the API takes."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
