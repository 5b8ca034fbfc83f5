"""Visits and dwell on scripted tracks: exits after the grace, coming back, staff left out."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.tracking.dwell import DwellBook, DwellSettings, ZoneDwell

Script = dict[int, dict[int, str | None]]  # second -> {track id: zone it is found in}


def book(grace: float = 15.0, window: float = 1800.0) -> DwellBook:
    settings = DwellSettings(exit_grace_s=grace, window_s=window)
    return DwellBook(["waiting", "queue"], ["staff"], settings)


def seen(track: int, zone: str | None, seconds: range) -> Script:
    return {t: {track: zone} for t in seconds}


def merge(*scripts: Script) -> Script:
    out: Script = {}
    for script in scripts:
        for t, people in script.items():
            out.setdefault(t, {}).update(people)
    return out


def run(b: DwellBook, script: Script, until: int, start: int = 0) -> list[dict[str, ZoneDwell]]:
    """One update per second from `start` to `until` - 1."""
    return [b.update(script.get(t, {}), float(t)) for t in range(start, until)]


def test_a_person_seen_for_a_minute_is_one_visit_of_sixty_seconds_ending_after_the_grace():
    b = book(grace=15)
    figures = run(b, seen(1, "waiting", range(61)), 100)
    assert figures[60]["waiting"].present == 1
    assert figures[60]["waiting"].present_p50_s == 60.0
    # Last seen at 60 s: present through the grace, gone at 76 s.
    assert figures[75]["waiting"].present == 1 and figures[75]["waiting"].exits == 0
    assert figures[76]["waiting"].present == 0 and figures[76]["waiting"].exits == 1
    assert figures[99]["waiting"].finished == 1
    assert figures[99]["waiting"].finished_p50_s == 60.0  # the grace adds nothing


@pytest.mark.parametrize(
    ("away_s", "visits"),
    [
        (5, [39.0]),  # missed or hidden for 5 s: one visit, first to last sighting
        (15, [49.0]),  # unseen for exactly the grace: still one
        (16, [20.0, 14.0]),  # longer: left and came back, two visits
        (60, [20.0, 14.0]),
    ],
)
def test_leaving_and_coming_back_is_two_visits_only_after_the_grace(away_s, visits):
    b = book(grace=15)
    back = 20 + away_s
    script = merge(seen(7, "waiting", range(21)), seen(7, "waiting", range(back, back + 15)))
    run(b, script, back + 100)
    assert [v.dwell_s for v in b.finished("waiting")] == visits


def test_present_quantiles_are_over_the_people_in_the_zone_now():
    b = book()
    script = merge(*(seen(k, "queue", range(10 * k, 101)) for k in range(10)))
    queue = run(b, script, 101)[100]["queue"]
    # In the queue for 100, 90, ..., 10 s.
    assert queue.present == 10
    assert queue.present_p50_s == pytest.approx(55.0)
    assert queue.present_p90_s == pytest.approx(91.0)
    assert queue.finished == 0 and queue.finished_p50_s is None


def test_a_person_is_present_only_in_the_zone_they_were_last_found_in():
    b = book(grace=15)
    # Queues for 30 s, then steps over into the waiting area and stays there.
    figures = run(b, merge(seen(3, "queue", range(30)), seen(3, "waiting", range(30, 90))), 90)
    assert (figures[35]["queue"].present, figures[35]["waiting"].present) == (0, 1)
    assert [v.dwell_s for v in b.finished("queue")] == [29.0]


def test_a_person_on_a_zone_edge_is_one_visit_in_each_zone():
    b = book(grace=15)
    script = {t: {5: "queue" if t % 2 else "waiting"} for t in range(60)}
    figures = run(b, script, 100)
    assert figures[58]["waiting"].present + figures[58]["queue"].present == 1
    assert len(b.finished("waiting")) == len(b.finished("queue")) == 1


def test_a_colleague_from_the_staff_zone_is_not_timed_in_the_waiting_area():
    b = book()
    figures = run(b, merge(seen(9, "staff", range(5)), seen(9, "waiting", range(5, 120))), 200)
    assert all(f["waiting"].present == 0 for f in figures)
    assert b.finished("waiting") == ()


def test_a_customer_whose_feet_touch_the_staff_zone_once_is_still_timed():
    b = book()
    script = merge(seen(4, "waiting", range(60)), seen(4, "staff", range(20, 22)))
    run(b, script, 100)
    assert [v.dwell_s for v in b.finished("waiting")] == [59.0]


def test_a_colleague_already_timed_loses_their_visit_once_they_go_behind_the_counter():
    b = book()
    run(b, merge(seen(2, "waiting", range(30)), seen(2, "staff", range(30, 40))), 100)
    assert b.finished("waiting") == ()


def test_finished_visits_leave_the_figures_after_the_window():
    b = book(grace=5, window=100)
    figures = run(b, seen(1, "waiting", range(10)), 200)
    assert figures[50]["waiting"].finished == 1
    assert figures[199]["waiting"].finished == 0


def test_people_in_untimed_zones_are_not_timed():
    b = book()
    figures = run(b, seen(1, "entrance", range(50)), 50)
    assert set(figures[49]) == {"waiting", "queue"}
    assert figures[49]["waiting"].present == figures[49]["queue"].present == 0


def test_a_reset_drops_open_visits_and_keeps_finished_ones():
    b = book(grace=5)
    run(b, merge(seen(1, "waiting", range(10)), seen(2, "waiting", range(30, 40))), 40)
    b.reset()
    figures = run(b, {}, 100, start=40)
    assert figures[-1]["waiting"].finished == 1


def test_a_zone_cannot_be_both_timed_and_staff():
    with pytest.raises(ValueError, match="both timed and staff"):
        DwellBook(["waiting"], ["waiting"])


@pytest.mark.parametrize(
    "settings",
    [{"exit_grace_s": -1}, {"window_s": 0}, {"staff_frames": 0}, {"max_visits": 0}],
)
def test_dwell_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValueError):
        DwellSettings(**settings)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.integers(1, 4), st.sampled_from(["waiting", "queue", "staff", None])),
        max_size=80,
    )
)
def test_visits_of_a_person_to_a_zone_never_overlap_and_are_never_present_in_two_zones(frames):
    b = book(grace=3)
    for t, people in enumerate(frames):
        figures = b.update(people, float(t))
        # Four people: if one could be present in two zones at once, this could reach eight.
        assert sum(f.present for f in figures.values()) <= 4
    b.update({}, len(frames) + 100.0)
    for zone in ("waiting", "queue"):
        by_track: dict[int, list[tuple[float, float]]] = {}
        for v in b.finished(zone):
            assert v.dwell_s >= 0
            by_track.setdefault(v.track_id, []).append((v.entered_at, v.left_at))
        for spans in by_track.values():
            spans.sort()
            # A new visit starts more than the grace after the last one ended.
            assert all(b2[0] - a2[1] > 3 for a2, b2 in pairwise(spans))
