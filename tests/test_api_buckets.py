"""Bucket boundaries, range bounds and the aggregation of stored intervals (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.buckets import (
    MAX_SPAN,
    RangeError,
    TimeRange,
    bucket_edges,
    floor_edge,
    resolve_range,
    utc_offsets,
)
from edge.storage.aggregate import Intervals, aggregate

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("bucket", "start", "end", "first", "last", "n"),
    [
        ("1m", "2024-05-06T10:00:30+00:00", "2024-05-06T10:05:00+00:00", "10:00", "10:05", 5),
        ("15m", "2024-05-06T10:07:00+00:00", "2024-05-06T11:01:00+00:00", "10:00", "11:15", 5),
        ("1h", "2024-05-06T10:00:00+00:00", "2024-05-06T12:00:00+00:00", "10:00", "12:00", 2),
        # India is 5:30 ahead: 15m and 1m buckets are still whole local quarter hours
        ("15m", "2024-05-06T10:00:00+05:30", "2024-05-06T10:30:00+05:30", "04:30", "05:00", 2),
    ],
)
def test_utc_buckets_are_widened_to_whole_buckets(bucket, start, end, first, last, n):
    edges = bucket_edges(bucket, TimeRange(at(start), at(end)), BERLIN)
    stamps = [datetime.fromtimestamp(int(e), UTC).strftime("%H:%M") for e in edges]
    assert (stamps[0], stamps[-1], len(edges) - 1) == (first, last, n)


@pytest.mark.parametrize(
    ("day", "hours"),
    [("2024-03-31", 23), ("2024-10-27", 25), ("2024-05-06", 24)],
)
def test_a_day_bucket_runs_from_local_midnight_to_local_midnight(day, hours):
    start = datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=BERLIN)
    edges = bucket_edges("1d", TimeRange(start, start + timedelta(hours=1)), BERLIN)
    assert len(edges) == 2
    assert datetime.fromtimestamp(int(edges[0]), BERLIN).strftime("%H:%M") == "00:00"
    assert (edges[1] - edges[0]) / 3600 == hours


def test_day_buckets_round_an_end_at_midnight_exactly():
    start = datetime(2024, 5, 6, tzinfo=BERLIN)
    edges = bucket_edges("1d", TimeRange(start, start + timedelta(days=3)), BERLIN)
    assert len(edges) == 4


def test_floor_edge_of_a_day_is_the_local_midnight_before():
    ts = int(datetime(2024, 5, 6, 1, 30, tzinfo=BERLIN).timestamp())
    assert floor_edge("1d", ts, BERLIN) == int(datetime(2024, 5, 6, tzinfo=BERLIN).timestamp())


@pytest.mark.parametrize(
    ("start", "end", "span", "message"),
    [
        (NOW, NOW - timedelta(hours=1), timedelta(days=1), "start must be before end"),
        (NOW, NOW, timedelta(days=1), "start must be before end"),
        (NOW - timedelta(days=8), NOW, MAX_SPAN["1m"], "longer than the 7 days allowed"),
        (datetime(2200, 1, 1, tzinfo=UTC), None, timedelta(days=99999), "before end"),
        (datetime(1, 1, 1, tzinfo=UTC), NOW, MAX_SPAN["1d"], "longer than"),  # from 2000
    ],
)
def test_bad_ranges_are_refused_with_a_clear_reason(start, end, span, message):
    with pytest.raises(RangeError, match=message):
        resolve_range(start, end, now=NOW, max_span=span, default_span=timedelta(hours=1))


FAR_EAST = timezone(timedelta(hours=23, minutes=59))
FAR_WEST = timezone(-timedelta(hours=23, minutes=59))
Y2000 = datetime(2000, 1, 1, tzinfo=UTC)
Y2100 = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # Any time the schema allows has an answer: outside 2000..2100 it is read as the bound
        # (nothing was recorded there), never added to or converted first (year 1 overflows).
        (None, datetime(1, 1, 1, tzinfo=UTC), (Y2000, Y2000)),
        (None, datetime(1, 1, 1, tzinfo=FAR_EAST), (Y2000, Y2000)),
        (None, Y2000, (Y2000, Y2000)),
        (None, Y2000 + timedelta(days=1), (Y2000, Y2000 + timedelta(days=1))),
        (datetime(1, 1, 1, tzinfo=FAR_EAST), datetime(1, 1, 2, tzinfo=UTC), (Y2000, Y2000)),
        (datetime(1999, 12, 31, tzinfo=UTC), NOW, (Y2000, NOW)),
        (NOW, datetime(9999, 12, 31, 23, 59, 59, tzinfo=FAR_WEST), (NOW, Y2100)),
        (datetime(9999, 1, 1, tzinfo=UTC), datetime(9999, 2, 1, tzinfo=FAR_WEST), (Y2100, Y2100)),
    ],
)
def test_times_outside_2000_to_2100_are_read_as_the_bound(start, end, expected):
    got = resolve_range(
        start, end, now=NOW, max_span=timedelta(days=99999), default_span=timedelta(days=30)
    )
    assert (got.start, got.end) == expected


def test_a_missing_range_is_the_default_span_up_to_now():
    got = resolve_range(None, None, now=NOW, max_span=timedelta(days=7), default_span=timedelta(1))
    assert (got.start, got.end) == (NOW - timedelta(days=1), NOW)


def test_times_in_other_offsets_are_read_as_the_instant_they_name():
    local = datetime(2024, 6, 1, 14, 0, tzinfo=BERLIN)  # 12:00 UTC
    got = resolve_range(
        local - timedelta(hours=1), local, now=NOW, max_span=timedelta(1), default_span=timedelta(1)
    )
    assert got.end == NOW and got.end.tzinfo == UTC


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 5 * 365 * 86400), min_size=1, max_size=40),
    st.sampled_from(["Europe/Berlin", "America/Santiago", "Asia/Kolkata", "Australia/Lord_Howe"]),
)
def test_utc_offsets_agree_with_zoneinfo_at_every_instant(offsets_s, zone):
    tz = ZoneInfo(zone)
    ts = np.sort(np.asarray(offsets_s, dtype=np.int64) + 1_577_836_800)  # from 2020
    expected = [
        int(datetime.fromtimestamp(int(t), UTC).astimezone(tz).utcoffset().total_seconds())
        for t in ts
    ]
    assert utc_offsets(ts, tz).tolist() == expected


# --- aggregation -------------------------------------------------------------------------


def intervals(rows):
    return Intervals.from_rows(rows)


def test_mean_is_weighted_by_frames_and_max_is_the_highest_interval_max():
    rows = [(0, 10, 2.0, 3.0, 10.0), (10, 30, 6.0, 7.0, 10.0), (60, 5, 1.0, 1.0, 10.0)]
    got = aggregate(intervals(rows), np.array([0, 60, 120], dtype=np.int64))
    assert got.mean[0] == pytest.approx((10 * 2 + 30 * 6) / 40)
    assert got.max.tolist() == [7.0, 1.0]
    assert got.samples.tolist() == [40, 5]
    assert got.seen_s.tolist() == [20.0, 10.0]


def test_a_bucket_with_no_frames_is_unknown_not_zero():
    rows = [(0, 0, None, None, 0.0), (10, 0, None, None, 0.0)]
    got = aggregate(intervals(rows), np.array([0, 60, 120], dtype=np.int64))
    assert np.isnan(got.mean).all() and np.isnan(got.max).all() and np.isnan(got.p90).all()
    assert got.intervals.tolist() == [2, 0]
    assert got.samples.tolist() == [0, 0]


def test_rows_outside_the_edges_are_ignored():
    rows = [(-10, 5, 9.0, 9.0, 10.0), (0, 5, 1.0, 1.0, 10.0), (60, 5, 9.0, 9.0, 10.0)]
    got = aggregate(intervals(rows), np.array([0, 60], dtype=np.int64))
    assert got.mean.tolist() == [1.0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 59), st.one_of(st.none(), st.floats(0, 60, allow_nan=False))),
        min_size=1,
        max_size=80,
        unique_by=lambda r: r[0],
    )
)
def test_p90_is_the_nearest_rank_of_the_interval_means(rows):
    rows = sorted(rows)
    stored = [
        (slot * 10, 0 if m is None else 4, m, None if m is None else m, 10.0) for slot, m in rows
    ]
    edges = np.array([0, 300, 600], dtype=np.int64)
    got = aggregate(intervals(stored), edges)
    for b in range(2):
        means = sorted(m for slot, m in rows if m is not None and b * 30 <= slot < (b + 1) * 30)
        if not means:
            assert np.isnan(got.p90[b]) and np.isnan(got.mean[b])
            continue
        rank = -(-9 * len(means) // 10)  # ceil(0.9 n), 1-based
        assert got.p90[b] == means[rank - 1]
        assert min(means) - 1e-9 <= got.mean[b] <= max(means) + 1e-9
        assert got.max[b] == max(means)
