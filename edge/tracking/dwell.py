"""Time in zone: each person's visit to a waiting or queue zone, open and finished.

A visit opens when a confirmed track (tracks.py) is first found in a tracked zone and ends when
the person has not been found there for `exit_grace_s` seconds; its dwell runs from the first
to the last time they were found there, so the grace never adds to a dwell. The grace is what
keeps a person missed for a few frames, hidden behind a passer-by or stepping over a zone's edge
and back from being counted as leaving and coming again: it should be at least the tracker's
lost_s, the time a hidden person keeps their id (TrackingConfig checks this).

Staff are left out two ways: only zones of the tracked roles (waiting and queue by default)
have visits, and a track found in a staff zone for `staff_frames` frames is staff from then on,
its open visits dropped, so a colleague who walks from behind the counter into the waiting area
does not become a customer with a long wait.

A person is present in one zone at a time, the one they were last found in: on an edge between
two zones, both visits stay open through the grace, but only the latest counts as present.

Figures are in seconds. Dwell of present people is a lower bound of their visit; finished
visits are kept for `window_s` seconds after they end (at most `max_visits` of them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class DwellSettings:
    """exit_grace_s: seconds a person may go unseen in a zone before their visit ends.
    window_s: seconds finished visits are kept for the figures. staff_frames: frames in a staff
    zone that make a track staff. max_visits: most finished visits kept per zone."""

    exit_grace_s: float = 15.0
    window_s: float = 1800.0
    staff_frames: int = 3
    max_visits: int = 5000

    def __post_init__(self) -> None:
        if self.exit_grace_s < 0 or self.window_s <= 0:
            raise ValueError(
                f"need exit_grace_s >= 0 and window_s > 0, got {self.exit_grace_s}, {self.window_s}"
            )
        if self.staff_frames < 1 or self.max_visits < 1:
            raise ValueError(
                f"need staff_frames >= 1 and max_visits >= 1, got {self.staff_frames}, "
                f"{self.max_visits}"
            )


@dataclass(frozen=True)
class Visit:
    """One finished visit: who (track id), where, from when to when (seconds, steady clock).

    went_to: a timed zone the person had an open visit in when this one ended (they moved on,
    e.g. from the waiting area to the queue); None when they were in no other timed zone. The
    queue monitor tells a customer leaving the line from one moving along it by it. Not part
    of a visit's identity (left out of ==).
    """

    track_id: int
    zone_id: str
    entered_at: float
    left_at: float
    went_to: str | None = field(default=None, compare=False)

    @property
    def dwell_s(self) -> float:
        return self.left_at - self.entered_at


@dataclass(frozen=True)
class ZoneDwell:
    """One zone's dwell figures at one moment, in seconds; a quantile is None with no visits.

    present: people in the zone now (those in their exit grace included). finished: visits
    that ended in the last window_s seconds; exits: those of them that ended in this update.
    """

    zone_id: str
    present: int
    present_p50_s: float | None
    present_p90_s: float | None
    finished: int
    finished_p50_s: float | None
    finished_p90_s: float | None
    exits: int


@dataclass
class _Open:
    entered_at: float
    seen_at: float


def _quantiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    p50, p90 = np.percentile(np.asarray(values, dtype=np.float64), [50, 90])
    return float(p50), float(p90)


class DwellBook:
    """Per camera. zones: the zone ids whose visits are timed (waiting, queue); staff_zones:
    where a person is staff."""

    def __init__(
        self,
        zones: Iterable[str],
        staff_zones: Iterable[str] = (),
        settings: DwellSettings | None = None,
    ) -> None:
        self.settings = settings or DwellSettings()
        self.zones = tuple(zones)
        self.staff_zones = frozenset(staff_zones)
        if self.staff_zones & set(self.zones):
            raise ValueError(
                f"zones both timed and staff: {sorted(self.staff_zones & set(self.zones))}"
            )
        self._open: dict[tuple[int, str], _Open] = {}
        self._latest: dict[int, str | None] = {}  # track id -> zone last found in
        self._staff_frames: dict[int, int] = {}
        self._staff_seen: dict[int, float] = {}  # staff id -> last seen, to forget them
        self._finished: dict[str, deque[Visit]] = {z: deque() for z in self.zones}
        #: The visits that ended in the latest update, in the order they ended (for the queue
        #: monitor: departures, arrivals and line dwell come from them).
        self.ended: tuple[Visit, ...] = ()

    def reset(self) -> None:
        """The camera went offline: open visits are dropped (when they ended is unknown);
        finished ones are kept."""
        self._open.clear()
        self._latest.clear()
        self._staff_frames.clear()
        self._staff_seen.clear()
        self.ended = ()

    def update(self, seen: Mapping[int, str | None], now: float) -> dict[str, ZoneDwell]:
        """Take the confirmed track ids found at `now` (seconds) with their zones."""
        s = self.settings
        timed = set(self.zones)
        # Visits past their grace end first: a person found again after it starts a new one.
        exits = dict.fromkeys(self.zones, 0)
        ended: list[tuple[int, str, _Open]] = []
        for key, visit in list(self._open.items()):
            if now - visit.seen_at > s.exit_grace_s:
                track_id, left = key
                del self._open[key]
                ended.append((track_id, left, visit))
                exits[left] += 1
        visits = []
        for track_id, left, visit in ended:
            done = Visit(track_id, left, visit.entered_at, visit.seen_at, self._onward(track_id))
            self._finished[left].append(done)
            visits.append(done)
        self.ended = tuple(visits)
        for track_id, zone in seen.items():
            if zone in self.staff_zones:
                self._staff_frames[track_id] = self._staff_frames.get(track_id, 0) + 1
            if self._staff_frames.get(track_id, 0) >= s.staff_frames:
                self._staff_seen[track_id] = now
                self._drop(track_id)
                continue
            self._latest[track_id] = zone
            if zone in timed:
                visit = self._open.setdefault((track_id, zone), _Open(now, now))
                visit.seen_at = now
        self._forget(now)
        return {z: self._figures(z, exits[z]) for z in self.zones}

    def finished(self, zone_id: str) -> tuple[Visit, ...]:
        """The visits to a zone that ended in the window, oldest first."""
        return tuple(self._finished[zone_id])

    def _onward(self, track_id: int) -> str | None:
        """The zone a person whose visit just ended is in now: the one they were last found
        in if a visit there is open, else any open one of theirs (None: in no timed zone)."""
        latest = self._latest.get(track_id)
        if latest is not None and (track_id, latest) in self._open:
            return latest
        return next((z for t, z in self._open if t == track_id), None)

    def _drop(self, track_id: int) -> None:
        for key in [k for k in self._open if k[0] == track_id]:
            del self._open[key]
        self._latest.pop(track_id, None)

    def _forget(self, now: float) -> None:
        s = self.settings
        for visits in self._finished.values():
            while visits and (now - visits[0].left_at > s.window_s or len(visits) > s.max_visits):
                visits.popleft()
        open_ids = {k[0] for k in self._open}
        for track_id in [t for t in self._latest if t not in open_ids]:
            del self._latest[track_id]
        # Ids are never reused, so a staff id unseen for a window is gone for good.
        for track_id in [t for t, at in self._staff_seen.items() if now - at > s.window_s]:
            del self._staff_seen[track_id]
            self._staff_frames.pop(track_id, None)
        if len(self._staff_frames) > 4 * s.max_visits:
            # Tracks seen once or twice in a staff zone and never again: keep the map bounded.
            for track_id in [t for t in self._staff_frames if t not in self._staff_seen]:
                del self._staff_frames[track_id]

    def _figures(self, zone: str, exits: int) -> ZoneDwell:
        present = [
            v.seen_at - v.entered_at
            for (track_id, z), v in self._open.items()
            if z == zone and self._latest.get(track_id) == zone
        ]
        done = [v.dwell_s for v in self._finished[zone]]
        p50, p90 = _quantiles(present)
        f50, f90 = _quantiles(done)
        return ZoneDwell(zone, len(present), p50, p90, len(done), f50, f90, exits)
