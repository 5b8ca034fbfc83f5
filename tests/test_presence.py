"""People stay counted through a missed detection, and only for as long as configured."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.presence import PresenceHold


def boxes(*feet: tuple[float, float], height: float = 100.0) -> np.ndarray:
    """Person boxes 40 px wide and `height` tall, standing at the given feet points."""
    return np.array([[x - 20, y - height, x + 20, y] for x, y in feet], dtype=np.float32).reshape(
        -1, 4
    )


def test_a_person_missed_for_a_frame_is_still_counted_where_last_seen():
    hold = PresenceHold(frames=1, max_s=3.0, gate=0.6)
    assert hold.update(boxes((100, 300), (400, 300)), ["waiting", "queue"], now=0.0) == []
    assert hold.update(boxes((100, 300)), ["waiting"], now=0.5) == ["queue"]  # missed once
    assert hold.update(boxes((100, 300)), ["waiting"], now=1.0) == []  # missed twice: gone


@pytest.mark.parametrize("period_s", [0.25, 1.0, 2.0])
def test_the_hold_is_one_frame_whatever_the_frame_rate(period_s):
    hold = PresenceHold(frames=1, max_s=3.0, gate=0.6)
    hold.update(boxes((100, 300), (400, 300)), ["waiting", "queue"], now=0.0)
    assert hold.update(boxes((100, 300)), ["waiting"], now=period_s) == ["queue"]
    assert hold.update(boxes((100, 300)), ["waiting"], now=2 * period_s) == []


def test_two_frames_hold_through_two_misses():
    hold = PresenceHold(frames=2, max_s=3.0, gate=0.6)
    hold.update(boxes((100, 300)), ["waiting"], now=0.0)
    assert hold.update(boxes(), [], now=0.5) == ["waiting"]
    assert hold.update(boxes(), [], now=1.0) == ["waiting"]
    assert hold.update(boxes(), [], now=1.5) == []


def test_frames_far_apart_carry_nobody_over():
    hold = PresenceHold(frames=1, max_s=3.0, gate=0.6)
    hold.update(boxes((100, 300), (400, 300)), ["waiting", "queue"], now=0.0)
    assert hold.update(boxes((100, 300)), ["waiting"], now=70.0) == []


def test_a_walking_person_is_one_person_not_two():
    hold = PresenceHold(frames=1, max_s=3.0, gate=0.6)
    hold.update(boxes((100, 300)), ["waiting"], now=0.0)
    assert hold.update(boxes((150, 310)), ["waiting"], now=0.5) == []  # moved half a body height
    assert hold.update(boxes((200, 320)), ["waiting"], now=1.0) == []


def test_someone_too_far_away_is_a_new_person_and_the_old_one_is_held_briefly():
    hold = PresenceHold(frames=1, max_s=3.0, gate=0.6)
    hold.update(boxes((100, 300)), ["waiting"], now=0.0)
    assert hold.update(boxes((400, 300)), ["queue"], now=0.5) == ["waiting"]
    assert hold.update(boxes((400, 300)), ["queue"], now=1.0) == []


@pytest.mark.parametrize(("frames", "max_s"), [(0, 3.0), (1, 0.0)])
def test_off_holds_nothing(frames, max_s):
    off = PresenceHold(frames=frames, max_s=max_s, gate=0.6)
    off.update(boxes((100, 300)), ["waiting"], now=0.0)
    assert off.update(boxes(), [], now=0.5) == []


def test_reset_forgets_everyone():
    on = PresenceHold(frames=5, max_s=5.0, gate=0.6)
    on.update(boxes((100, 300)), ["waiting"], now=0.0)
    on.reset()  # the camera went offline: what it saw before says nothing now
    assert on.update(boxes(), [], now=0.5) == []


def test_with_min_hits_a_box_seen_once_is_not_held_but_a_confirmed_person_is():
    hold = PresenceHold(frames=1, max_s=3.0, gate=0.6, min_hits=2)
    hold.update(boxes((100, 300)), ["waiting"], now=0.0)
    assert hold.update(boxes(), [], now=0.5) == []  # seen in one frame only: maybe a false box
    hold = PresenceHold(frames=1, max_s=3.0, gate=0.6, min_hits=2)
    hold.update(boxes((100, 300)), ["waiting"], now=0.0)
    hold.update(boxes((110, 305)), ["waiting"], now=0.5)  # found again: a person
    assert hold.update(boxes(), [], now=1.0) == ["waiting"]


@pytest.mark.parametrize(
    ("frames", "max_s", "gate", "min_hits"),
    [(-1, 3.0, 0.5, 1), (1, -1.0, 0.5, 1), (1, 3.0, 0.0, 1), (1, 3.0, 0.5, 0)],
)
def test_bad_settings_are_refused(frames, max_s, gate, min_hits):
    with pytest.raises(ValueError):
        PresenceHold(frames, max_s, gate, min_hits)


people = st.lists(st.tuples(st.floats(0, 640), st.floats(100, 480)), max_size=12)


@settings(max_examples=100, deadline=None)
@given(st.lists(people, min_size=1, max_size=8), st.integers(0, 3))
def test_held_people_never_outnumber_those_seen_in_the_last_frames(frames, hold_frames):
    hold = PresenceHold(frames=hold_frames, max_s=10.0, gate=0.6)
    seen: list[int] = []
    for i, feet in enumerate(frames):
        held = hold.update(boxes(*feet), ["zone"] * len(feet), now=i * 0.5)
        assert len(held) <= sum(seen[-hold_frames:]) if hold_frames else not held
        seen.append(len(feet))
