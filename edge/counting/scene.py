"""One camera's learned scene: which boxes can be people (perspective) and which lie on burnt-in
text (overlays). Each frame is judged with what was learned before it, then learned from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.counting.overlays import OverlayDetector, OverlaySettings
from edge.counting.perspective import PerspectiveModel, Plausibility
from edge.types import Detections

BoolArray = npt.NDArray[np.bool_]
STATE_VERSION = 1


class Scene:
    """perspective / overlays: None switches that part off."""

    def __init__(
        self, perspective: Plausibility | None = None, overlays: OverlaySettings | None = None
    ) -> None:
        self.perspective = PerspectiveModel(perspective) if perspective else None
        self.overlays = OverlayDetector(overlays) if overlays else None
        self.frame_height: int | None = None

    @property
    def enabled(self) -> bool:
        return self.perspective is not None or self.overlays is not None

    def for_detector(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The frame the detector should see: with the known text overlays painted out."""
        return self.overlays.paint(image) if self.overlays is not None else image

    def update(self, image: npt.NDArray[np.uint8], detections: Detections) -> BoolArray:
        """Which detections of this frame can be people; then learn from the frame."""
        height, width = image.shape[:2]
        self.frame_height = height
        xyxy = detections.xyxy
        keep = np.ones(len(detections), dtype=bool)
        off_text = keep
        if self.overlays is not None:
            off_text = self.overlays.keep(xyxy, width, height)
            keep = keep & off_text
            self.overlays.observe(image)
        if self.perspective is not None:
            keep = keep & self.perspective.keep(xyxy, width, height)
            self.perspective.observe(xyxy, detections.confidence, width, height, off_text)
        return keep

    def describe(self) -> str:
        """e.g. 'perspective: learned from 412 boxes, person 38-120 px high; overlays: 2 regions
        masked'."""
        parts = []
        if self.perspective is not None:
            parts.append(self.perspective.describe(self.frame_height))
        if self.overlays is not None:
            parts.append(self.overlays.describe())
        return "; ".join(parts) if parts else "scene learning off"

    def reset(self) -> None:
        if self.perspective is not None:
            self.perspective.reset()
        if self.overlays is not None:
            self.overlays.reset()

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"version": STATE_VERSION, "frame_height": self.frame_height}
        if self.perspective is not None:
            state["perspective"] = self.perspective.to_dict()
        if self.overlays is not None:
            state["overlays"] = self.overlays.to_dict()
        return state

    def load(self, state: Mapping[str, Any]) -> list[str]:
        """Take up a saved state; returns the parts taken up (a part that does not fit, from
        another version or a changed stream size, is learned afresh)."""
        if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
            return []
        taken = []
        part = state.get("perspective")
        if self.perspective and isinstance(part, Mapping) and self.perspective.load(part):
            taken.append("perspective")
        part = state.get("overlays")
        if self.overlays and isinstance(part, Mapping) and self.overlays.load(part):
            taken.append("overlays")
        height = state.get("frame_height")
        if taken and isinstance(height, int) and not isinstance(height, bool) and height > 0:
            self.frame_height = height
        return taken
