"""Person identities from one processed frame to the next, at 1-2 frames per second.

A lobby camera is processed at 1-2 Hz. A walker moves more than their own width between two
such frames, so trackers that associate by box overlap (IoU: SORT, ByteTrack, motpy) lose them
and hand out a new id each frame. A seated customer is the opposite case: still for many
minutes, boxes jittering a few pixels, now and then missed for a frame or hidden behind
someone walking past. Association here is by the feet (bottom centre of the box), the point
that places a person in a zone, predicted with a damped velocity and compared in units of the
person's box height, so one gate serves people near the camera and far from it (the same
measure as edge/presence.py, which keeps the count through a missed frame; this keeps ids).
Hungarian assignment (scipy). An unmatched track keeps its id for `lost_s` seconds, so a person
hidden for a few frames comes back as themselves; a box must be found in `min_hits` frames
before its id is reported, so a one-frame false box never becomes a visit.

Kept tracker libraries were looked at first (PyPI, December 2026), against the edge runtime's
rules (no torch, numpy 2 with OpenCV 5 headless, small dependencies) and the frame rate:

- norfair 2.3: distance functions are pluggable (foot distance would fit), but it pins
  numpy < 2, which OpenCV 5 does not run on; it also pulls filterpy, rich and matplotlib.
- supervision ByteTrack (0.26; gone from 0.31, moved to `trackers`): IoU association only;
  pulls av, matplotlib, pillow, requests. Measured on the same Mall boxes (BENCHMARKS.md,
  "Tracks and dwell"): at 2 Hz it gives an id to half as many heads, its tracks last 2 s at
  the median (these, 40 s), and a head track keeps one id for 0.35 of its frames (these, 0.62).
- trackers 2.6 (Roboflow): needs the GUI build of opencv-python beside the headless one, and
  supervision.
- motpy 0.0.10 (last release 2021): IoU gated (min_iou), filterpy and matplotlib.

None fits; what counting needs is about a hundred lines over scipy, which the runtime already
has for edge/presence.py. About 1 ms a frame for 30 people (Mall, 2 Hz). The velocity changes
little on the Mall (mostly slow walkers) and is what keeps two people crossing apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from edge.types import FloatArray

# Cost that no match may have: assignment runs on a dense matrix, so pairs outside the gate get
# a large finite cost and are dropped after the assignment.
_FORBIDDEN = 1e6


@dataclass(frozen=True)
class TrackerSettings:
    """gate: how far the feet may be from where the track predicted them, in box heights (the
    mean of the track's and the detection's), per processed frame. lost_s: seconds an unseen
    track keeps its id, to be found again. min_hits: processed frames a track must be found in
    before its id is reported. max_height_ratio: the most a person's box height may change
    between the frames it is matched in (a standing person's box is not a seated child's).
    predict_s: the longest a track's velocity is carried forward; past it, a lost person is
    looked for where last seen (a seated person does not keep walking)."""

    gate: float = 1.0
    lost_s: float = 10.0
    min_hits: int = 2
    max_height_ratio: float = 2.0
    predict_s: float = 1.0

    def __post_init__(self) -> None:
        if self.gate <= 0 or self.lost_s < 0 or self.min_hits < 1:
            raise ValueError(
                f"need gate > 0, lost_s >= 0 and min_hits >= 1, got {self.gate}, "
                f"{self.lost_s}, {self.min_hits}"
            )
        if self.max_height_ratio < 1 or self.predict_s < 0:
            raise ValueError(
                f"need max_height_ratio >= 1 and predict_s >= 0, got {self.max_height_ratio}, "
                f"{self.predict_s}"
            )


@dataclass
class _Track:
    id: int
    box: FloatArray  # x1, y1, x2, y2 in pixels, where last found
    velocity: npt.NDArray[np.float64]  # feet, pixels per second, smoothed
    first_seen: float  # seconds on the caller's steady clock
    seen_at: float
    hits: int


@dataclass(frozen=True)
class TrackedFrame:
    """ids: the track id of each detection of the frame, in order; None while its track is
    still unconfirmed (found in fewer than min_hits frames). lost: ids of confirmed tracks not
    found in this frame and still kept."""

    ids: tuple[int | None, ...]
    lost: tuple[int, ...]


def feet(boxes: FloatArray) -> FloatArray:
    """Bottom centre of each (x1, y1, x2, y2) box, in the boxes' pixels, shape (N, 2)."""
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1).astype(np.float32)


def _heights(boxes: FloatArray) -> FloatArray:
    heights: FloatArray = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    return heights


class FootTracker:
    """Per camera. Ids are positive, increasing and never reused while the tracker lives."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._tracks: list[_Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget everyone (the camera went offline): ids are not carried across a gap."""
        self._tracks = []

    def update(self, boxes: FloatArray, now: float) -> TrackedFrame:
        """Take the person boxes (N, 4 pixels) of the frame at `now` (seconds)."""
        s = self.settings
        self._tracks = [t for t in self._tracks if now - t.seen_at <= s.lost_s]
        track_of = self._assign(boxes, now)
        ids: list[int | None] = []
        found: set[int] = set()
        for j in range(len(boxes)):
            i = track_of.get(j)
            if i is None:
                track = _Track(self._next_id, boxes[j].copy(), np.zeros(2), now, now, 1)
                self._next_id += 1
                self._tracks.append(track)
            else:
                track = self._tracks[i]
                self._follow(track, boxes[j], now)
            found.add(track.id)
            ids.append(track.id if track.hits >= s.min_hits else None)
        lost = tuple(t.id for t in self._tracks if t.id not in found and t.hits >= s.min_hits)
        return TrackedFrame(tuple(ids), lost)

    def _assign(self, boxes: FloatArray, now: float) -> dict[int, int]:
        """Detection index -> track index, for the pairs inside the gate."""
        if not self._tracks or not len(boxes):
            return {}
        s = self.settings
        previous = np.stack([t.box for t in self._tracks])
        ahead = np.array([min(now - t.seen_at, s.predict_s) for t in self._tracks])[:, None]
        last = feet(previous)
        predicted = last + np.stack([t.velocity for t in self._tracks]) * ahead
        h_track, h_found = _heights(previous)[:, None], _heights(boxes)[None]
        scale = (h_track + h_found) / 2
        found = feet(boxes)[None]
        # Where the velocity says, or where last seen, whichever is nearer: a box whose bottom
        # jumps (legs hidden behind a chair or a neighbour) gives a standing person a velocity
        # they do not have, and on the Mall the prediction alone swapped more ids than it kept.
        cost = (
            np.minimum(
                np.linalg.norm(predicted[:, None] - found, axis=2),
                np.linalg.norm(last[:, None] - found, axis=2),
            )
            / scale
        )
        ratio = np.maximum(h_track, h_found) / np.minimum(h_track, h_found)
        # A confirmed track is preferred to a newer one at the same distance: a flickering
        # false box next to a seated person must not take their id.
        young = np.array([t.hits < s.min_hits for t in self._tracks])[:, None]
        cost = cost + 0.05 * young
        allowed = (cost <= s.gate) & (ratio <= s.max_height_ratio)
        rows, cols = linear_sum_assignment(np.where(allowed, cost, _FORBIDDEN))
        return {int(j): int(i) for i, j in zip(rows, cols, strict=True) if allowed[i, j]}

    def _follow(self, track: _Track, box: FloatArray, now: float) -> None:
        dt = now - track.seen_at
        if dt > 0:
            step = (feet(box[None])[0] - feet(track.box[None])[0]) / dt
            # Halfway between the old velocity and the last step: box jitter of a seated person
            # does not become a drift, and a walker's prediction follows within two frames.
            track.velocity = 0.5 * track.velocity + 0.5 * step
        track.box = box.copy()
        track.seen_at = now
        track.hits += 1


def tracked_ids(frame: TrackedFrame, zones: Sequence[str | None]) -> dict[int, str | None]:
    """The confirmed ids found in a frame, with the zone each one stands in."""
    return {i: z for i, z in zip(frame.ids, zones, strict=True) if i is not None}
