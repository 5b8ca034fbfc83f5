"""The lobby simulator's truth: reproducible, consistent with Little's law, and moved by a pass."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.lobbysim.lobby import ZONES, Lobby, draw_customers
from bench.lobbysim.observe import Detector, NoiseParams
from bench.lobbysim.run import run_day
from tests.lobbysim.support import SHORT


def test_one_seed_gives_the_same_day_twice_and_another_seed_another_day():
    a, b, c = run_day(3, SHORT), run_day(3, SHORT), run_day(4, SHORT)
    assert np.array_equal(a.true, b.true) and np.array_equal(a.observed, b.observed)
    assert [x.wait for x in a.customers] == [x.wait for x in b.customers]
    assert not np.array_equal(a.true[: len(c.true)], c.true[: len(a.true)])


def test_the_customers_do_not_depend_on_fps_or_noise():
    slow = run_day(5, SHORT, fps=1.0)
    fast = run_day(5, SHORT, NoiseParams(p0=0.5, false_per_frame=1.0), fps=2.0)
    assert [c.wait for c in slow.customers] == [c.wait for c in fast.customers]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_littles_law_holds_on_the_truth_of_the_waiting_area(seed):
    day = run_day(seed, SHORT, fps=2.0)
    span = day.t[-1] + 0.5  # frames every 0.5 s from 0: each stands for half a second
    dwell = [
        (end if end is not None else span) - start
        for c in day.customers
        for zone, start, end in c.visits
        if zone == "waiting"
    ]
    rate = len(dwell) / span  # people per second into the waiting area
    mean_count = day.zone("waiting").mean()
    assert mean_count > 1.0  # a queue built up: the check is not 0 == 0
    assert mean_count == pytest.approx(rate * np.mean(dwell), rel=0.02)
    # No pass ran: the waiting area holds exactly the ticket holders not yet called, so the
    # same law holds with the true waits of the counter customers.
    waits = [c.wait for c in day.customers if c.route == "counter" and c.wait is not None]
    assert mean_count == pytest.approx(len(waits) / span * np.mean(waits), rel=0.02)


def test_the_whole_day_is_served_and_every_wait_is_sane():
    day = run_day(7, SHORT)
    assert all(c.end is not None for c in day.customers)
    waits = day.waits()
    assert len(waits) == len(day.customers) and (waits >= 0).all()
    last = max(c.end for c in day.customers if c.end is not None)
    assert day.t[-1] < last <= day.t[-1] + 1.0  # the run ends as the lobby empties


def test_a_pass_moves_kiosk_able_waiting_customers_to_the_kiosks():
    params = dataclasses.replace(SHORT, self_serve_share=0.0, accept_share=1.0, kiosk_share=0.5)
    lobby = Lobby(params, draw_customers(params, np.random.default_rng(11)))
    lobby.advance_to(3000.0)
    waiting = [lobby.customers[i] for i in lobby.waiting]
    able = [c for c in waiting if c.kiosk_able]
    assert len(able) >= 2 and len(waiting) > len(able)
    end = lobby.start_pass(3000.0)
    lobby.advance_to(end)
    moved = [c for c in lobby.customers if c.diverted]
    room = params.kiosks + params.kiosk_queue_max  # the kiosks were idle: no one self-serves
    assert [c.id for c in moved] == [c.id for c in able][:room]  # in ticket order, up to room
    assert all(c.id not in lobby.waiting and c.route == "kiosk" for c in moved)
    assert lobby.passes == [(3000.0, end, len(moved))]
    lobby.advance_to(1e9)
    assert all(c.wait is not None and c.called_at is not None for c in moved)


def test_the_detector_undercounts_a_crowd_more_than_a_few():
    detector = Detector(NoiseParams(false_per_frame=0.0), np.random.default_rng(0))
    few = np.mean([detector.observe(dict.fromkeys(ZONES, 3))["counter"] for _ in range(2000)])
    many = np.mean([detector.observe(dict.fromkeys(ZONES, 30))["counter"] for _ in range(2000)])
    assert few / 3 > many / 30 + 0.1


class _SeenWaiting:
    """The smallest estimator: the waiting area's noisy count, to check the plumbing."""

    def on_frame(self, t, observed):
        return float(observed["waiting"])


def test_an_estimator_is_recorded_per_frame_beside_the_true_wait_it_is_judged_by():
    day = run_day(2, SHORT, estimators={"seen": _SeenWaiting()})
    assert np.array_equal(day.estimates["seen"], day.zone("waiting", observed=True))
    truth = day.wait_if_arriving(day.t)
    first = min((c for c in day.customers if c.ticket_at is not None), key=lambda c: c.ticket_at)
    assert truth[0] == first.wait  # the first ticket after opening
    assert np.isnan(truth[-1])  # nobody takes a ticket after closing


def test_tracks_name_everyone_present_in_every_frame():
    day = run_day(2, SHORT, record_tracks=True)
    assert day.tracks is not None and len(day.tracks) == len(day.t)
    per_frame = [sorted(z for _, z in frame) for frame in day.tracks[::97]]
    counts = day.true[::97]
    for zones, row in zip(per_frame, counts, strict=True):
        assert len(zones) == row.sum()
        assert all(zones.count(z) == row[ZONES.index(z)] for z in ZONES)


def test_a_closing_counter_finishes_its_customer_and_calls_no_one_new():
    params = dataclasses.replace(SHORT, staff=((0.0, 3), (1800.0, 1)))
    lobby = Lobby(params, draw_customers(params, np.random.default_rng(3)))
    lobby.advance_to(1800.0)
    closing = [c.busy for c in lobby.counters if c.closing]
    assert closing and sum(c.open and not c.closing for c in lobby.counters) == 1
    lobby.advance_to(1e9)
    assert all(lobby.customers[cid].end is not None for cid in closing if cid is not None)
    later = {c.counter for c in lobby.customers if c.counter is not None and c.called_at > 1800}
    assert len(later) == 1  # one counter calls everyone after the change


def test_a_called_colleague_opens_one_more_counter_for_a_while_and_shortens_the_waits():
    params = dataclasses.replace(SHORT, staff=((0.0, 1),))
    customers = draw_customers(params, np.random.default_rng(5))
    alone = Lobby(params, customers)
    alone.advance_to(params.open_s + 4 * 3600)
    helped = Lobby(params, draw_customers(params, np.random.default_rng(5)))
    helped.advance_to(600.0)
    assert [staffed for staffed, _ in helped.counter_states()] == [True]
    helped.call_colleague(900.0, 2700.0)
    helped.advance_to(1000.0)
    assert [staffed for staffed, _ in helped.counter_states()] == [True, True]
    helped.advance_to(params.open_s + 4 * 3600)
    assert helped.done and helped.colleagues == [(900.0, 2700.0)]
    assert [staffed for staffed, _ in helped.counter_states()] == [True, False]
    # The same customers; the one who served in between took some of them.
    assert {c.counter for c in helped.customers if c.route == "counter"} == {0, 1}
    waits = [c.wait for c in alone.customers if c.wait is not None]
    helped_waits = [c.wait for c in helped.customers if c.wait is not None]
    assert np.mean(helped_waits) < np.mean(waits)
