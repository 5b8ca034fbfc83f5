"""Keeps a person counted through a missed detection.

Detectors lose a seated or half-hidden person for a frame now and then; at the 1-2 frames per
second a lobby camera is processed at, one lost frame is a dip a supervisor sees. People are
followed from one processed frame to the next by where their feet are (Hungarian assignment,
scipy), and one not found still counts, in the zone where last seen, for up to `frames` processed
frames in a row, and never longer than `max_s` seconds.

Frames, not seconds, set the hold: what it repairs is one lost frame, whatever the camera's
rate. A hold of 0.6 s was one frame at 2 Hz and nothing at 1 Hz; holding several frames adds
people who have left (measured on Mall at 0.5, 1 and 2 Hz: BENCHMARKS.md). The cap in seconds
keeps frames far apart (a stalled camera, a replay of scattered frames) from carrying anyone over.
Feet rather than box overlap: at these frame rates a walking person moves more than their own
width between frames, and overlap-based association loses them (bench/track_hold_probe.py).

We looked for a maintained tracker first: norfair pins numpy < 2 (which breaks OpenCV 5), and
Roboflow's trackers and supervision need the GUI build of OpenCV beside the headless one. This
keeps only what counting needs: no ids leave this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge.types import FloatArray


@dataclass
class _Person:
    box: FloatArray  # x1, y1, x2, y2 in pixels
    zone: str | None
    seen_at: float  # seconds (the pipeline's steady clock) when the detector last found them
    hits: int  # processed frames in which the detector found them
    missed: int = 0  # processed frames in a row since then


def _feet(boxes: FloatArray) -> FloatArray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)


class PresenceHold:
    """Per camera. frames: how many processed frames in a row a person may be missed and still
    count (0 = off); max_s: and for at most this many seconds. gate: how far the feet may move
    between processed frames, in the person's box heights. min_hits: in how many processed
    frames someone must have been found before they are held; a box seen once (a flickering
    false detection, or a walker the association lost) is not carried over, so the hold does
    not add people as the detector threshold goes down (BENCHMARKS.md)."""

    def __init__(self, frames: int, max_s: float, gate: float, min_hits: int = 1) -> None:
        if frames < 0 or max_s < 0 or gate <= 0 or min_hits < 1:
            raise ValueError(
                "need frames >= 0, max_s >= 0, gate > 0 and min_hits >= 1, "
                f"got {frames}, {max_s}, {gate}, {min_hits}"
            )
        self.frames = frames
        self.max_s = max_s
        self.gate = gate
        self.min_hits = min_hits
        self._people: list[_Person] = []

    @property
    def active(self) -> bool:
        return self.frames > 0 and self.max_s > 0

    def reset(self) -> None:
        self._people = []

    def update(
        self, boxes: FloatArray, zones: Sequence[str | None], now: float
    ) -> list[str | None]:
        """Take the detections of the frame at `now` (seconds); returns the zones of the people
        held though not found in it."""
        if not self.active:
            return []
        matched: set[int] = set()
        found: set[int] = set()
        if self._people and len(boxes):
            previous = np.stack([p.box for p in self._people])
            heights = np.maximum(previous[:, 3] - previous[:, 1], 1.0)[:, None]
            distance = (
                np.linalg.norm(_feet(previous)[:, None] - _feet(boxes)[None], axis=2) / heights
            )
            for i, j in zip(*linear_sum_assignment(distance), strict=True):
                if distance[i, j] <= self.gate:
                    hits = self._people[i].hits + 1
                    self._people[i] = _Person(boxes[j].copy(), zones[j], now, hits)
                    matched.add(i)
                    found.add(j)
        for i, person in enumerate(self._people):
            if i not in matched:
                person.missed += 1
        kept = [
            p for p in self._people if p.missed <= self.frames and now - p.seen_at <= self.max_s
        ]
        kept += [
            _Person(boxes[j].copy(), zones[j], now, 1) for j in range(len(boxes)) if j not in found
        ]
        self._people = kept
        return [p.zone for p in kept if p.missed > 0 and p.hits >= self.min_hits]
