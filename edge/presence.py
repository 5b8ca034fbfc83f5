"""Keeps a person counted through a missed detection.

Detectors lose a seated or half-hidden person for a frame now and then; at the 1-2 frames per
second a lobby camera is processed at, one lost frame is a dip a supervisor sees. People are
followed from one processed frame to the next by where their feet are (Hungarian assignment,
scipy), and one not found in a frame still counts, in the zone where last seen, for up to
`hold_s` seconds. Seconds, not frames: a brief occlusion is a matter of time, and frames that
are far apart (a slow camera, a replay of scattered frames) must not carry people over. Feet rather than box overlap: at these frame rates a walking person moves
more than their own width between frames, and overlap-based association loses them (measured:
bench/track_hold_probe.py, BENCHMARKS.md).

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


def _feet(boxes: FloatArray) -> FloatArray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)


class PresenceHold:
    """Per camera. hold_s: how long a lost person still counts, in seconds (0 = off). gate: how
    far the feet may move between processed frames, in the person's box heights. min_hits: in how
    many processed frames someone must have been found before they are held; a box seen once
    (a flickering false detection, or a walker the association lost) is not carried over, so the
    hold does not add people as the detector threshold goes down (BENCHMARKS.md)."""

    def __init__(self, hold_s: float, gate: float, min_hits: int = 1) -> None:
        if hold_s < 0 or gate <= 0 or min_hits < 1:
            raise ValueError(
                f"need hold_s >= 0, gate > 0 and min_hits >= 1, got {hold_s}, {gate}, {min_hits}"
            )
        self.hold_s = hold_s
        self.gate = gate
        self.min_hits = min_hits
        self._people: list[_Person] = []

    def reset(self) -> None:
        self._people = []

    def update(
        self, boxes: FloatArray, zones: Sequence[str | None], now: float
    ) -> list[str | None]:
        """Take the detections of the frame at `now` (seconds); returns the zones of the people
        held though not found in it."""
        if self.hold_s == 0:
            return []
        matched_people: set[int] = set()
        matched_boxes: set[int] = set()
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
                    matched_people.add(i)
                    matched_boxes.add(j)
        kept = [p for p in self._people if now - p.seen_at <= self.hold_s]
        kept += [
            _Person(boxes[j].copy(), zones[j], now, 1)
            for j in range(len(boxes))
            if j not in matched_boxes
        ]
        self._people = kept
        return [p.zone for p in kept if p.seen_at < now and p.hits >= self.min_hits]
