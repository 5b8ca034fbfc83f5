"""Identities at 1-2 frames per second: through missed frames, a seated person's minutes of
jitter, and two walkers crossing."""

from __future__ import annotations

import numpy as np
import pytest

from edge.tracking.tracks import FootTracker, TrackerSettings

H = 150.0  # box height in pixels


def box(x: float, foot: float, h: float = H) -> list[float]:
    """A person of height h whose feet are at (x, foot)."""
    return [x - 0.2 * h, foot - h, x + 0.2 * h, foot]


def boxes(*people: list[float]) -> np.ndarray:
    return np.array(people, dtype=np.float32).reshape(-1, 4)


def test_a_walker_keeps_their_id_through_a_missed_frame():
    tracker = FootTracker()
    ids = []
    for i in range(10):
        now = i * 0.5  # 2 Hz, walking 0.5 box heights per frame
        found = boxes() if i == 4 else boxes(box(100 + 75 * i, 400))
        ids += [x for x in tracker.update(found, now).ids if x is not None]
    assert len(set(ids)) == 1
    assert len(ids) == 8  # found in 9 frames, confirmed from the second


def test_a_seated_person_who_jitters_keeps_one_id_for_twenty_minutes():
    rng = np.random.default_rng(13)
    tracker = FootTracker()
    ids: set[int | None] = set()
    for i in range(1200):  # 1 Hz
        if i % 7 == 3 or 500 <= i < 504:
            found = boxes()  # the detector misses them now and then, once four frames running
        else:
            dx, dy, dh = rng.uniform(-4, 4, 3)
            found = boxes(box(300 + dx, 420 + dy, H + dh))
        ids.update(tracker.update(found, float(i)).ids)
    assert ids - {None} == {1}


def test_a_seated_person_keeps_their_id_while_someone_walks_past_in_front():
    tracker = FootTracker()
    seated = None
    for i in range(30):  # 1 Hz; the walker passes in front at frames 10-14, hiding them
        walker = box(150 + 40 * i, 450, 170)
        people = [walker] if 10 <= i < 15 else [box(700, 430), walker]
        ids = tracker.update(boxes(*people), float(i)).ids
        if i >= 1 and not 10 <= i < 15:
            seated = seated or ids[0]
            assert ids[0] == seated


@pytest.mark.parametrize(
    ("hz", "step"),
    [(2.0, 0.5), (1.0, 0.8)],  # 0.8 box heights a second: a brisk walk (1.4 m/s)
)
def test_two_people_crossing_keep_their_ids(hz, step):
    tracker = FootTracker()
    first = None
    frames = int(1100 / (step * H)) + 1
    for i in range(frames):  # each walking towards the other, feet 10 px apart in depth
        left, right = box(100 + step * H * i, 400), box(1200 - step * H * i, 410)
        ids = tracker.update(boxes(left, right), i / hz).ids
        if i == 1:
            first = ids
        if i >= 1:
            assert ids == first
    assert first is not None and first[0] != first[1]


def test_a_box_seen_once_gets_no_id():
    tracker = FootTracker()
    assert tracker.update(boxes(box(300, 400)), 0.0).ids == (None,)
    assert tracker.update(boxes(box(900, 400)), 1.0).ids == (None,)


def test_a_person_lost_for_longer_than_lost_s_comes_back_with_a_new_id():
    tracker = FootTracker(TrackerSettings(lost_s=5.0))
    for i in range(3):
        before = tracker.update(boxes(box(300, 400)), float(i)).ids
    for i in range(10, 12):
        after = tracker.update(boxes(box(300, 400)), float(i)).ids
    assert before[0] is not None and after[0] is not None and after[0] != before[0]


def test_a_lost_person_is_reported_as_lost_until_lost_s():
    tracker = FootTracker(TrackerSettings(lost_s=3.0))
    tracker.update(boxes(box(300, 400)), 0.0)
    tracker.update(boxes(box(300, 400)), 1.0)
    assert tracker.update(boxes(), 3.0).lost == (1,)
    assert tracker.update(boxes(), 5.0).lost == ()


def test_a_box_of_another_size_does_not_take_an_id():
    tracker = FootTracker()
    tracker.update(boxes(box(300, 400)), 0.0)
    first = tracker.update(boxes(box(300, 400)), 1.0).ids
    then = tracker.update(boxes(box(300, 400, H / 3)), 2.0).ids
    assert first[0] is not None and then[0] != first[0]


@pytest.mark.parametrize(
    "settings",
    [
        {"gate": 0},
        {"lost_s": -1},
        {"min_hits": 0},
        {"max_height_ratio": 0.5},
        {"predict_s": -1},
    ],
)
def test_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValueError):
        TrackerSettings(**settings)
