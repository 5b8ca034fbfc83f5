"""Stored history intervals (`zone_history` rows) combined into larger buckets, with numpy.

Pure: rows in, per-bucket statistics out. The same function answers a query from the raw rows and
builds the pre-aggregated rollup, so the two can never disagree.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: The quantile reported as p90, as the integer ratio used for the nearest rank ceil(9 n / 10).
P90_NUM, P90_DEN = 9, 10


@dataclass(frozen=True)
class Intervals:
    """One zone's stored intervals, sorted by start. mean and max are NaN where unknown."""

    start: Int64Array  # UTC seconds
    samples: Int64Array  # frames counted
    mean: FloatArray  # people
    max: FloatArray  # people
    seen_s: FloatArray  # seconds of the interval the camera was online

    @classmethod
    def from_rows(cls, rows: list[tuple[int, int, float | None, float | None, float]]) -> Intervals:
        """From (start, samples, mean, max, seen_s) tuples; None becomes NaN."""
        table = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
        return cls(
            start=table[:, 0].astype(np.int64),
            samples=table[:, 1].astype(np.int64),
            mean=table[:, 2],
            max=table[:, 3],
            seen_s=table[:, 4],
        )


@dataclass(frozen=True)
class Buckets:
    """Statistics of one zone per bucket; arrays of the same length, one entry per bucket.

    intervals: stored intervals that fell in the bucket (0: nothing was recorded at all).
    samples: frames counted. mean: weighted by frames. max: of the interval maxima. p90: nearest
    rank over the interval means. seen_s: seconds the camera was online. NaN = unknown.
    """

    intervals: Int64Array
    samples: Int64Array
    mean: FloatArray
    max: FloatArray
    p90: FloatArray
    seen_s: FloatArray

    @classmethod
    def empty(cls, n: int) -> Buckets:
        nan = np.full(n, np.nan)
        zeros = np.zeros(n, dtype=np.int64)
        return cls(zeros, zeros.copy(), nan, nan.copy(), nan.copy(), np.zeros(n))

    def __len__(self) -> int:
        return len(self.samples)


def aggregate(rows: Intervals, edges: Int64Array) -> Buckets:
    """Combine intervals into the buckets [edges[i], edges[i + 1]); an interval belongs to the
    bucket its start falls in. Intervals outside the edges are ignored."""
    n = len(edges) - 1
    if n <= 0:
        return Buckets.empty(0)
    index = np.searchsorted(edges, rows.start, side="right") - 1
    inside = (index >= 0) & (index < n)
    index = index[inside]
    samples, mean, peak, seen_s = (
        rows.samples[inside],
        rows.mean[inside],
        rows.max[inside],
        rows.seen_s[inside],
    )
    known = ~np.isnan(mean) & (samples > 0)
    weight = np.bincount(index[known], weights=samples[known], minlength=n).astype(np.float64)
    total = np.bincount(index[known], weights=mean[known] * samples[known], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        weighted_mean = np.where(weight > 0, total / weight, np.nan)
    return Buckets(
        intervals=np.bincount(index, minlength=n).astype(np.int64),
        samples=np.bincount(index, weights=samples, minlength=n).astype(np.int64),
        mean=weighted_mean,
        max=_group_max(index, peak, n),
        p90=_group_p90(index[known], mean[known], n),
        seen_s=np.bincount(index, weights=seen_s, minlength=n).astype(np.float64),
    )


def coverage(buckets: Buckets, edges: Int64Array) -> FloatArray:
    """Fraction of each bucket during which the camera was seen online, 0..1."""
    length = np.diff(edges).astype(np.float64)
    return np.clip(buckets.seen_s / length, 0.0, 1.0)


def _group_max(index: Int64Array, values: FloatArray, n: int) -> FloatArray:
    has = ~np.isnan(values)
    out = np.full(n, -np.inf)
    np.maximum.at(out, index[has], values[has])
    out[np.isneginf(out)] = np.nan
    return out


def _group_p90(index: Int64Array, values: FloatArray, n: int) -> FloatArray:
    """Nearest-rank 90th percentile per bucket: the ceil(0.9 k)-th smallest of its k values."""
    out = np.full(n, np.nan)
    if len(values) == 0:
        return out
    order = np.lexsort((values, index))  # by bucket, then by value
    ordered = values[order]
    counts = np.bincount(index, minlength=n)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    rank = (P90_NUM * counts[has] + P90_DEN - 1) // P90_DEN  # 1-based, integer ceil
    out[has] = ordered[first[has] + rank - 1]
    return out


def fetch_intervals(db: sqlite3.Connection, zone_id: str, first: int, last: int) -> Intervals:
    """A zone's stored intervals starting in [first, last), UTC seconds, read from the store.

    Rows come in primary-key order (zone_id, bucket_start), a range scan of the clustered table.
    """
    rows = db.execute(
        "SELECT bucket_start, samples, mean, max, seen_fraction * interval_s FROM zone_history"
        " WHERE zone_id = ? AND bucket_start >= ? AND bucket_start < ? ORDER BY bucket_start",
        (zone_id, first, last),
    ).fetchall()
    return Intervals.from_rows(rows)
