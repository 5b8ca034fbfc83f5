"""Change gating: run the detector only when the view changed, or when a refresh is due.

A lobby camera's frames are mostly alike: nobody there after hours, people seated in the
waiting area for minutes. The detector costs the same on each (BENCHMARKS.md, Capacity: a still
lobby cost 80-110% of a busy one), so the gate compares each frame with the one the detector
last ran on and lets the detector run only when some part of the view changed. In between, the
pipeline keeps the last detections: someone sitting still is still there. A refresh every
`refresh_s` re-confirms them, so a person who left without a visible change (a slow fade of
the light, a masked door) is dropped within that bound, and counts never rest on a stale run
for longer.

The comparison is coarse on purpose (Frigate's motion detector does the same: a small grey,
blurred frame, thresholded differences): the frame shrunk to SMALL_WIDTH pixels across and
blurred so that sensor noise and JPEG blocks stay under `pixel_threshold`, then a grid of
cells, each changed when more than `cell_share` of its pixels are. Cells, not the whole frame:
one person walking in at the far end of a wide view changes a few percent of one cell and
almost nothing of the frame. Against the frame of the last run, not the previous frame: a
change too slow to show between two frames adds up until it shows.

Masked pixels (the camera's ignore polygons, and masks for screens or a street door) never
count as change. The frame compared is the one the detector sees, with known text overlays
painted out, so a burnt-in clock is no change once the scene has found it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

Reason = Literal["first", "changed", "refresh", "still"]
Polygon = Sequence[tuple[float, float]]

# Width of the compared frame: a 640x480 camera's person of 15 px across is 4 px here, enough
# to change a cell when they move; at this size the comparison costs well under a millisecond.
SMALL_WIDTH = 160
# Gaussian blur of the small frame (odd, pixels): evens out sensor noise and JPEG block edges.
BLUR = 5


@dataclass(frozen=True)
class GateSettings:
    """refresh_s: the longest the detector rests (seconds of the pipeline's clock).
    pixel_threshold: grey levels (0-255) a blurred pixel must move by to count as changed.
    cell_share: share of a cell's unmasked pixels that must change for the cell to change.
    grid: cells across and down. masks: polygons in frame fractions (0-1) never compared."""

    refresh_s: float = 10.0
    pixel_threshold: int = 18
    cell_share: float = 0.02
    grid: tuple[int, int] = (8, 6)
    masks: tuple[Polygon, ...] = ()

    def __post_init__(self) -> None:
        if self.refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {self.refresh_s}")
        if not 0 < self.pixel_threshold < 255:
            raise ValueError(f"pixel_threshold must be in (0, 255), got {self.pixel_threshold}")
        if not 0 < self.cell_share <= 1:
            raise ValueError(f"cell_share must be in (0, 1], got {self.cell_share}")
        if min(self.grid) < 1:
            raise ValueError(f"grid must be at least 1x1, got {self.grid}")


@dataclass(frozen=True)
class GateDecision:
    """run: whether the detector should run on this frame; changed: the largest share of any
    cell's pixels that changed since the last run (0 when nothing was compared)."""

    run: bool
    reason: Reason
    changed: float = 0.0


class ChangeGate:
    """Per camera. decide() on every frame; when it says run, this frame becomes the reference
    the following ones are compared with."""

    def __init__(self, settings: GateSettings) -> None:
        self.settings = settings
        self._reference: npt.NDArray[np.uint8] | None = None
        self._valid: npt.NDArray[np.float32] | None = None  # 1 where compared, 0 where masked
        self._cell_pixels: npt.NDArray[np.float32] | None = None
        self._ran_at = 0.0

    def reset(self) -> None:
        """Forget the reference: the next frame runs (a camera back online, a failed run)."""
        self._reference = None

    def decide(self, image: npt.NDArray[np.uint8], now: float) -> GateDecision:
        small = self._shrink(image)
        reference = self._reference
        if reference is None or reference.shape != small.shape:
            return self._run(small, now, "first")
        if not 0 <= now - self._ran_at < self.settings.refresh_s:
            return self._run(small, now, "refresh")  # (a clock that went back: run as well)
        changed = self._changed_share(small, reference)
        if changed > self.settings.cell_share:
            return self._run(small, now, "changed", changed)
        return GateDecision(False, "still", changed)

    def _run(
        self, small: npt.NDArray[np.uint8], now: float, reason: Reason, changed: float = 0.0
    ) -> GateDecision:
        self._reference, self._ran_at = small, now
        return GateDecision(True, reason, changed)

    def _shrink(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        height, width = image.shape[:2]
        size = (SMALL_WIDTH, max(1, round(height * SMALL_WIDTH / width)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        blurred = np.asarray(cv2.GaussianBlur(small, (BLUR, BLUR), 0), dtype=np.uint8)
        if self._valid is None or self._valid.shape != blurred.shape:
            self._setup_masks(blurred.shape[1], blurred.shape[0])
        return blurred

    def _setup_masks(self, width: int, height: int) -> None:
        valid = np.ones((height, width), dtype=np.uint8)
        for polygon in self.settings.masks:
            points = np.round(np.asarray(polygon, dtype=np.float64) * (width, height))
            cv2.fillPoly(valid, [points.astype(np.int32)], 0)
        self._valid = valid.astype(np.float32)
        self._cell_pixels = self._per_cell(self._valid)

    def _per_cell(self, values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Mean of `values` over each grid cell (area-weighted where cells split pixels)."""
        cells = cv2.resize(values, self.settings.grid, interpolation=cv2.INTER_AREA)
        return np.asarray(cells, dtype=np.float32)

    def _changed_share(
        self, small: npt.NDArray[np.uint8], reference: npt.NDArray[np.uint8]
    ) -> float:
        assert self._valid is not None and self._cell_pixels is not None
        moved = cv2.absdiff(small, reference) > self.settings.pixel_threshold
        changed = self._per_cell(moved.astype(np.float32) * self._valid)
        share = changed / np.maximum(self._cell_pixels, 1e-6)
        share[self._cell_pixels < 1e-3] = 0.0  # a cell all masked never changes
        return float(share.max())
