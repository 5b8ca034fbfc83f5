"""The wait estimate end to end on a short simulated day: true presence through tracking faults
into the real DwellBook, its visits and the smoothed noisy counts into the real WaitEstimator,
the ticket machine's events into a real TicketBook (bench/wait_estimate.py)."""

from __future__ import annotations

import numpy as np

from bench.lobbysim.run import run_day
from bench.lobbysim.tracks import TrackNoise, fake_tracks
from bench.wait_estimate import Scores, replay, virtual_waits
from edge.queueing.wait import WaitSettings
from tests.lobbysim.support import SHORT


def test_a_short_day_is_estimated_within_minutes_and_better_than_the_last_called_wait():
    day = run_day(0, SHORT, record_tracks=True)
    scores = Scores()
    replay(day, SHORT, scores, noise=TrackNoise(), settings=WaitSettings(), seed=0)
    tracks, tickets = scores.table("tracks"), scores.table("tickets")
    naive = scores.table("naive last")
    assert tracks["points"] > 100 and day.waits().mean() > 120  # a queue built up
    assert tracks["unknown"] < 0.05 and tickets["unknown"] < 0.05
    assert tracks["mae"] < 5.0 and tracks["mae"] < naive["mae"]
    assert tickets["mae"] < 5.0 and tickets["mae"] < naive["mae"]
    assert 0.5 < tracks["coverage"] < 0.98
    assert scores.methods["tickets"].get("tickets", 0) > 100


def test_the_virtual_wait_is_each_real_customers_wait_at_their_ticket():
    day = run_day(1, SHORT)
    counter = [c for c in day.customers if c.route == "counter" and c.wait is not None]
    at = np.array([c.ticket_at for c in counter]) - 1e-6
    assert np.allclose(virtual_waits(day, SHORT, at), [c.wait for c in counter])


def test_tracking_faults_split_and_hide_people_as_set():
    day = run_day(2, SHORT, record_tracks=True)
    assert day.tracks is not None
    frames = list(zip(day.t, day.tracks, strict=True))
    clean = fake_tracks(frames, TrackNoise(switch_per_min=0.0, ghost_per_frame=0.0), seed=2)
    noisy = fake_tracks(frames, TrackNoise(switch_per_min=2.2, ghost_per_frame=0.05), seed=2)
    ids = [len({i for f in tracks for i in f}) for tracks in (clean, noisy)]
    people = len({cid for present in day.tracks for cid, _ in present})
    assert ids[0] >= people  # lost for over 10 s: a new id
    assert ids[1] > 3 * ids[0]  # switches and ghosts add ids
    seen = sum(len(f) for f in clean) / sum(len(p) for p in day.tracks)
    assert 0.8 < seen < 0.99  # misses and the first frame of each id
