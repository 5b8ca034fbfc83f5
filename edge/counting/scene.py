"""One camera's learned scene: which boxes can be people (perspective), which lie on burnt-in
text (overlays) and which are things that never move (clutter). Each frame is judged with what
was learned before it, then learned from (clutter also looks at the frame's own pixels first,
so a person in front of a dropped mannequin is counted at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.counting.clutter import ClutterModel, ClutterSettings
from edge.counting.overlays import OverlayDetector, OverlaySettings
from edge.counting.perspective import PerspectiveModel, Plausibility
from edge.types import Detections

BoolArray = npt.NDArray[np.bool_]
STATE_VERSION = 1


def _ruled_out(keep: BoolArray, passed: BoolArray, why: list[str], reason: str) -> BoolArray:
    """keep & passed, with `reason` written for the boxes this rule was the first to drop."""
    for i in np.flatnonzero(keep & ~passed):
        why[i] = reason
    return keep & passed


class Scene:
    """perspective / overlays / clutter: None switches that part off."""

    def __init__(
        self,
        perspective: Plausibility | None = None,
        overlays: OverlaySettings | None = None,
        clutter: ClutterSettings | None = None,
    ) -> None:
        self.perspective = PerspectiveModel(perspective) if perspective else None
        self.overlays = OverlayDetector(overlays) if overlays else None
        self.clutter = ClutterModel(clutter) if clutter else None
        self.frame_height: int | None = None
        # Why update() ruled out each box of its last frame: "" kept, "text" on a burnt-in
        # overlay, "size" no person's size or shape there, "static" a thing that never moves.
        self.last_reasons: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return any(part is not None for part in (self.perspective, self.overlays, self.clutter))

    def for_detector(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The frame the detector should see: with the known text overlays painted out."""
        return self.overlays.paint(image) if self.overlays is not None else image

    def update(self, image: npt.NDArray[np.uint8], detections: Detections, now: float) -> BoolArray:
        """Which detections of this frame can be people; then learn from the frame. now: the
        frame's time in seconds on a steady clock (clutter counts hours of observation)."""
        height, width = image.shape[:2]
        self.frame_height = height
        xyxy = detections.xyxy
        keep = np.ones(len(detections), dtype=bool)
        why = [""] * len(detections)
        off_text = keep
        if self.overlays is not None:
            off_text = self.overlays.keep(xyxy, width, height)
            keep = _ruled_out(keep, off_text, why, "text")
            self.overlays.observe(image)
        if self.perspective is not None:
            keep = _ruled_out(keep, self.perspective.keep(xyxy, width, height), why, "size")
            self.perspective.observe(xyxy, detections.confidence, width, height, off_text)
        if self.clutter is not None:
            keep = _ruled_out(keep, self.clutter.update(image, xyxy, keep, now), why, "static")
        self.last_reasons = tuple(why)
        return keep

    def describe(self) -> str:
        """e.g. 'perspective: learned from 412 boxes, person 38-120 px high; overlays: 2 regions
        masked'."""
        parts = []
        if self.perspective is not None:
            parts.append(self.perspective.describe(self.frame_height))
        if self.overlays is not None:
            parts.append(self.overlays.describe())
        if self.clutter is not None:
            parts.append(self.clutter.describe())
        return "; ".join(parts) if parts else "scene learning off"

    def suggestions(self) -> list[str]:
        """What IT may act on, one line each (doctor): the static places found, with an
        ignore mask for the config."""
        return self.clutter.suggestions() if self.clutter is not None else []

    def reset(self) -> None:
        if self.perspective is not None:
            self.perspective.reset()
        if self.overlays is not None:
            self.overlays.reset()
        if self.clutter is not None:
            self.clutter.reset()

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"version": STATE_VERSION, "frame_height": self.frame_height}
        if self.perspective is not None:
            state["perspective"] = self.perspective.to_dict()
        if self.overlays is not None:
            state["overlays"] = self.overlays.to_dict()
        if self.clutter is not None:
            state["clutter"] = self.clutter.to_dict()
        return state

    def load(self, state: Mapping[str, Any]) -> list[str]:
        """Take up a saved state; returns the parts taken up (a part that does not fit, from
        another version or a changed stream size, is learned afresh; a file saved before a part
        existed loads the others)."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            return []
        taken = []
        part = state.get("perspective")
        if self.perspective and isinstance(part, Mapping) and self.perspective.load(part):
            taken.append("perspective")
        part = state.get("overlays")
        if self.overlays and isinstance(part, Mapping) and self.overlays.load(part):
            taken.append("overlays")
        part = state.get("clutter")
        if self.clutter and isinstance(part, Mapping) and self.clutter.load(part):
            taken.append("clutter")
        height = state.get("frame_height")
        if taken and isinstance(height, int) and not isinstance(height, bool) and height > 0:
            self.frame_height = height
        return taken
