"""Smoothed occupancy rides over flicker and never turns unknown into a number."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.occupancy import OccupancySmoother


def feed(
    smoother: OccupancySmoother, counts: list[int | None], dt: float = 0.5
) -> list[float | None]:
    return [smoother.update(c, i * dt) for i, c in enumerate(counts)]


def test_a_missed_detection_does_not_drop_the_count():
    # Five seated people; the detector misses one or two of them now and then.
    out = feed(OccupancySmoother(window_s=4.0, quantile=0.75), [5, 5, 4, 5, 3, 5, 5, 4, 5])
    assert out[3:] == [5.0] * 6


def test_a_one_frame_false_positive_does_not_raise_the_count():
    out = feed(OccupancySmoother(window_s=4.0, quantile=0.75), [5, 5, 5, 5, 9, 5, 5, 5])
    assert max(out) == 5.0


def test_a_real_change_shows_within_the_window():
    out = feed(OccupancySmoother(window_s=2.0, quantile=0.75), [5] * 6 + [12] * 6, dt=0.5)
    assert out[5] == 5.0
    assert out[-1] == 12.0


def test_unknown_empties_the_window_and_reports_unknown():
    smoother = OccupancySmoother(window_s=10.0, quantile=0.75)
    assert smoother.update(20, 0.0) == 20.0
    assert smoother.update(None, 1.0) is None
    assert smoother.value is None
    assert smoother.update(3, 2.0) == 3.0  # the 20 from before the outage is gone


def test_time_going_backwards_starts_afresh():
    smoother = OccupancySmoother(window_s=10.0, quantile=1.0)
    smoother.update(30, 100.0)
    assert smoother.update(2, 1.0) == 2.0


@given(st.lists(st.integers(0, 60), min_size=1, max_size=50), st.floats(0, 1))
def test_occupancy_is_always_a_count_some_frame_in_the_window_saw(counts, q):
    smoother = OccupancySmoother(window_s=3.0, quantile=q)
    for i, c in enumerate(counts):
        value = smoother.update(c, float(i))
        window = counts[max(0, i - 3) : i + 1]
        assert value in window


@pytest.mark.parametrize(("window_s", "quantile"), [(-1.0, 0.5), (1.0, 1.5), (1.0, -0.1)])
def test_bad_settings_are_rejected(window_s, quantile):
    with pytest.raises(ValueError):
        OccupancySmoother(window_s, quantile)
