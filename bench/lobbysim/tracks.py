"""What the tracker would report: the simulator's true presence through tracking faults.

run_day(record_tracks=True) gives, per frame, who is in which zone. A tracker at 1 fps on a
lobby camera hands on something worse, and the wait estimate must live with it:

- misses: a person present is not found in a frame, with the detector's own chance
  (observe.NoiseParams.detect_p: crowding makes misses more likely). A person unseen for more
  than `lost_s` (the tracker's default, 10 s) comes back with a new id, as FootTracker does;
- id switches: a person's id is replaced by a new one at `switch_per_min` per person-minute.
  BENCHMARKS.md ("Tracks and dwell") measures FootTracker on the Mall at 1 Hz at 2.2 (strict
  reference) to 15.0 (plain) switches per person-minute, a dense far crowd that walks; a
  lobby's people sit or stand in line, the case the tracker's tests hold one id through for 20
  minutes at 1 Hz. The default, 0.1, is a twentieth of the Mall's lower bound: a guess for still
  people that bench/wait_estimate.py --switch varies (0 to 2.2);
- confirmation: a new id is reported from its second frame (min_hits 2), so a one-frame false
  box never becomes a track; a false box that recurs in place does, for a frame: `ghost_per_frame`
  per zone (the detector's false boxes are 0.05 a zone a frame; one in ten taken to recur).

Ids are never reused. Its own random stream: the faults never shift the customers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from bench.lobbysim.lobby import ZONES
from bench.lobbysim.observe import NoiseParams


@dataclass(frozen=True)
class TrackNoise:
    switch_per_min: float = 0.1  # new ids per person-minute
    lost_s: float = 10.0  # unseen this long: found again under a new id (TrackerSettings)
    ghost_per_frame: float = 0.005  # confirmed one-frame false tracks, per zone per frame
    detection: NoiseParams = field(default_factory=NoiseParams)  # misses, as the counts


@dataclass
class _Person:
    track_id: int
    seen_at: float
    hits: int = 0


class TrackFaker:
    """Frame by frame: true (customer id, zone) pairs in, {track id: zone} out (confirmed
    tracks found in this frame), as edge.tracking's FootTracker would hand them to DwellBook."""

    def __init__(self, noise: TrackNoise, rng: np.random.Generator, fps: float = 1.0) -> None:
        self.noise = noise
        self.fps = fps
        self._rng = rng
        self._people: dict[int, _Person] = {}
        self._next_id = 1

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def frame(self, t: float, present: Iterable[tuple[int, str]]) -> dict[int, str]:
        n = self.noise
        present = list(present)
        crowd: dict[str, int] = dict.fromkeys(ZONES, 0)
        for _, zone in present:
            crowd[zone] += 1
        draws = self._rng.random((len(present), 2))
        p_switch = n.switch_per_min / 60.0 / self.fps
        seen: dict[int, str] = {}
        for (cid, zone), (u_miss, u_switch) in zip(present, draws, strict=True):
            person = self._people.get(cid)
            if u_miss >= n.detection.detect_p(zone, crowd[zone]):
                continue  # missed this frame
            if person is None or t - person.seen_at > n.lost_s or u_switch < p_switch:
                person = self._people[cid] = _Person(self._new_id(), t)
            person.seen_at = t
            person.hits += 1
            if person.hits >= 2:
                seen[person.track_id] = zone
        ghosts = self._rng.poisson(n.ghost_per_frame, len(ZONES))
        for zone, k in zip(ZONES, ghosts, strict=True):
            for _ in range(int(k)):
                seen[self._new_id()] = zone
        here = {cid for cid, _ in present}
        for cid in [c for c in self._people if c not in here]:
            del self._people[cid]  # gone from the lobby: ids are never reused
        return seen


def fake_tracks(
    frames: Iterable[tuple[float, Iterable[tuple[int, str]]]],
    noise: TrackNoise | None = None,
    seed: int = 0,
    fps: float = 1.0,
) -> list[Mapping[int, str]]:
    """fake_tracks(zip(day.t, day.tracks)): each frame's reported tracks."""
    faker = TrackFaker(noise or TrackNoise(), np.random.default_rng([seed, 7]), fps)
    return [faker.frame(t, present) for t, present in frames]
