"""Burnt-in text overlays (clock, camera name, logo): found in the camera's own frames.

Nearly every CCTV recorder burns a clock and a camera name into the picture, in white or yellow
with a dark outline, in a band along the top or bottom edge. Detectors take the digits for small
people. What sets such text apart from the scene:

- contrast: a bright stroke with a dark pixel within 2 px (the outline), far sharper than the
  edges a lens and an encoder leave in the scene;
- persistence: the text is there in every frame, never occluded, never lit differently. A clock's
  digits change, but each character cell holds a stroke in nearly every frame, so the test is
  made on cells (about 1% of the frame height), not pixels;
- shape: a line of text is thin and long. Regions taller than max_text_height, shorter than
  2% of the frame, or not at least twice as wide as tall, are not overlays, so a static high-contrast part of the scene (a sign,
  a window frame, a railing post) is never masked wholesale.

Cells seen as text in at least `persistence` of recent frames (an exponential average over
`window_frames`), joined into lines, give the regions, once `min_frames` frames were seen; the
mask is their rectangles. Detections whose box lies
mostly (`cover`) inside it are dropped; a person's box is many times a glyph's height, so a
person standing in front of or beside the text keeps almost all of their box outside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from edge.types import FloatArray

BoolArray = npt.NDArray[np.bool_]
STATE_VERSION = 1


@dataclass(frozen=True)
class OverlaySettings:
    """band: fraction of the frame height searched along the top and the bottom edge (recorders
    put their text in the outer tenth: a clock, or a date line and a time line, of 2-5% each).
    bright: a text stroke's brightest channel (0-255; white and yellow both pass, on any
    exposure a recorder burns them near full scale). contrast: how much darker the outline is,
    within 2 px. persistence: fraction of recent frames a cell must hold text. window_frames:
    length of that average; min_frames: frames before any mask. max_text_height: tallest line of
    text, as a fraction of the frame height (recorder fonts are 2-5%). cover: fraction of a box
    inside the mask that drops it."""

    band: float = 0.1
    bright: int = 180
    contrast: int = 100
    persistence: float = 0.7
    window_frames: int = 200
    min_frames: int = 10
    max_text_height: float = 0.07
    cover: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.band <= 0.5 or not 0 < self.max_text_height <= self.band:
            raise ValueError("need 0 < max_text_height <= band <= 0.5")
        if not 0 < self.bright <= 255 or not 0 < self.contrast <= self.bright:
            raise ValueError("need 0 < contrast <= bright <= 255")
        if not 0 < self.persistence <= 1 or not 0 < self.cover <= 1:
            raise ValueError("need persistence and cover in (0, 1]")
        if self.window_frames < 1 or self.min_frames < 1:
            raise ValueError("need window_frames >= 1 and min_frames >= 1")


@dataclass(frozen=True)
class Region:
    """One found overlay, normalized (x1, y1, x2, y2) in [0, 1]."""

    x1: float
    y1: float
    x2: float
    y2: float


def cell_size(height: int) -> int:
    """Cell side in pixels: about 1% of the frame height, at least 2 px (3 px at 288 rows)."""
    return max(2, round(height / 96))


def _min_filter5(a: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """5x5 minimum, edges replicated: two separable passes of shifted minima (numpy only)."""
    rows, cols = a.shape
    p = np.pad(a, ((2, 2), (0, 0)), mode="edge")
    out = np.minimum(np.minimum(p[:rows], p[1 : rows + 1]), p[2 : rows + 2])
    out = np.minimum(np.minimum(out, p[3 : rows + 3]), p[4 : rows + 4])
    p = np.pad(out, ((0, 0), (2, 2)), mode="edge")
    out = np.minimum(np.minimum(p[:, :cols], p[:, 1 : cols + 1]), p[:, 2 : cols + 2])
    return np.minimum(np.minimum(out, p[:, 3 : cols + 3]), p[:, 4 : cols + 4])


def text_cells(band: npt.NDArray[np.uint8], cell: int, settings: OverlaySettings) -> BoolArray:
    """Cells of one BGR band image holding a bright stroke with a dark outline, (rows, cols)."""
    # Brightest channel; np.maximum on channel views is ~30x faster than max(axis=2).
    value = np.maximum(np.maximum(band[..., 0], band[..., 1]), band[..., 2])
    stroke = (value >= settings.bright) & (
        _min_filter5(value) <= settings.bright - settings.contrast
    )
    rows, cols = band.shape[0] // cell, band.shape[1] // cell
    stroke = stroke[: rows * cell, : cols * cell]
    return np.asarray(stroke.reshape(rows, cell, cols, cell).any(axis=(1, 3)))


class OverlayDetector:
    """Per camera: `observe` each processed frame; `keep` tells which boxes are not text."""

    def __init__(self, settings: OverlaySettings | None = None) -> None:
        self.settings = settings or OverlaySettings()
        self.reset()

    def reset(self) -> None:
        """Forget everything learned (the recorder's overlay layout changed)."""
        self.frames = 0
        self._size: tuple[int, int] | None = None  # (width, height) the cells are for
        self._cell = 0
        self._band_rows = 0  # cell rows per band
        self._score: FloatArray | None = None  # (2, band rows, cols) persistence per cell
        self._mask: BoolArray | None = None  # whole-frame cell grid, True on overlays
        self._integral: npt.NDArray[np.int32] | None = None
        self.regions: tuple[Region, ...] = ()

    def _shape(self, width: int, height: int) -> tuple[int, int, int]:
        """(2 bands, cell rows per band, cell columns) for a frame size."""
        cell = cell_size(height)
        return 2, max(1, int(self.settings.band * height) // cell), width // cell

    def _setup(self, width: int, height: int) -> None:
        self.reset()
        self._size = (width, height)
        self._cell = cell_size(height)
        shape = self._shape(width, height)
        self._band_rows = shape[1]
        self._score = np.zeros(shape, dtype=np.float32)

    def observe(self, image: npt.NDArray[np.uint8]) -> None:
        height, width = image.shape[:2]
        if self._size != (width, height):
            self._setup(width, height)
        assert self._score is not None
        c, rows = self._cell, self._band_rows * self._cell
        top = text_cells(image[:rows], c, self.settings)
        bottom = text_cells(image[height - rows :], c, self.settings)
        self.frames += 1
        # Running mean for the first window, then an exponential average that keeps following.
        alpha = 1.0 / min(self.frames, self.settings.window_frames)
        self._score += alpha * (np.stack([top, bottom]).astype(np.float32) - self._score)
        self._update_mask()

    def _update_mask(self) -> None:
        assert self._score is not None and self._size is not None
        width, height = self._size
        grid_rows, cols = height // self._cell + 1, self._score.shape[2]
        mask = np.zeros((grid_rows, cols), dtype=bool)
        regions: list[Region] = []
        if self.frames >= self.settings.min_frames:
            hot = self._score >= self.settings.persistence
            placed = np.zeros_like(mask)
            r = self._band_rows
            placed[:r] = hot[0]
            # The bottom band is aligned with the last pixel row of the frame.
            bottom0 = (height - r * self._cell) / self._cell
            start = round(bottom0)
            placed[start : start + r] |= hot[1][: grid_rows - start]
            # Join the characters of a line: gaps of one cell between glyphs and words.
            joined = ndimage.binary_closing(placed, structure=np.ones((1, 3), bool))
            labels, _ = ndimage.label(joined | placed)
            tallest = self.settings.max_text_height * height / self._cell
            for index, window in enumerate(ndimage.find_objects(labels), start=1):
                if window is None:
                    continue
                rs, cs = window
                rows, cols = rs.stop - rs.start, cs.stop - cs.start
                # A line of text is thin and long: two characters at least, each about as wide
                # as the line is tall, and 2% of the frame high (two cells) to be readable. A
                # lone blob or a one-cell line is an edge of the scene that never moved.
                if (
                    not 2 <= rows <= tallest
                    or cols < 2 * rows
                    or (labels[window] == index).sum() < 4
                ):
                    continue
                mask[window] = True  # the line's rectangle: the gaps between glyphs are text too
                regions.append(
                    Region(
                        cs.start * self._cell / width,
                        rs.start * self._cell / height,
                        min(1.0, cs.stop * self._cell / width),
                        min(1.0, rs.stop * self._cell / height),
                    )
                )
        self._mask = mask
        self.regions = tuple(regions)
        integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int32)
        integral[1:, 1:] = mask.cumsum(0).cumsum(1)
        self._integral = integral

    def covered(self, xyxy: FloatArray, width: int, height: int) -> FloatArray:
        """Fraction of each box (on the cell grid) inside the overlay mask, shape (N,)."""
        n = len(xyxy)
        if n == 0 or self._integral is None or not self.regions or self._size != (width, height):
            return np.zeros(n, dtype=np.float32)
        c, integral = self._cell, self._integral
        rows, cols = integral.shape[0] - 1, integral.shape[1] - 1
        x1 = np.clip(np.floor(xyxy[:, 0] / c), 0, cols).astype(np.intp)
        x2 = np.clip(np.ceil(xyxy[:, 2] / c), 0, cols).astype(np.intp)
        y1 = np.clip(np.floor(xyxy[:, 1] / c), 0, rows).astype(np.intp)
        y2 = np.clip(np.ceil(xyxy[:, 3] / c), 0, rows).astype(np.intp)
        area = np.maximum((x2 - x1) * (y2 - y1), 1)
        inside = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
        return (inside / area).astype(np.float32)

    def keep(self, xyxy: FloatArray, width: int, height: int) -> BoolArray:
        return np.asarray(self.covered(xyxy, width, height) < self.settings.cover)

    def paint(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The frame with each overlay's rectangle filled with its own median colour (the
        background behind the glyphs), for the detector: text it never sees yields no boxes,
        and no text candidates compete with the people for its detection slots. The input is
        not changed; without overlays it is returned as is."""
        height, width = image.shape[:2]
        if not self.regions or self._size != (width, height):
            return image
        out: npt.NDArray[np.uint8] = image.copy()
        for r in self.regions:  # a few text lines, not boxes
            x1, x2 = int(r.x1 * width), int(np.ceil(r.x2 * width))
            y1, y2 = int(r.y1 * height), int(np.ceil(r.y2 * height))
            patch = out[max(0, y1 - 1) : y2 + 1, max(0, x1 - 1) : x2 + 1]
            patch[:] = np.median(patch.reshape(-1, patch.shape[2]), axis=0).astype(np.uint8)
        return out

    def describe(self) -> str:
        if self.frames < self.settings.min_frames:
            return f"overlays: learning ({self.frames}/{self.settings.min_frames} frames)"
        n = len(self.regions)
        return f"overlays: {n} region{'' if n == 1 else 's'} masked"

    def to_dict(self) -> dict[str, Any]:
        score = [] if self._score is None else np.round(self._score, 3).tolist()
        return {
            "version": STATE_VERSION,
            "size": list(self._size) if self._size else None,
            "frames": self.frames,
            "score": score,
            "regions": [[r.x1, r.y1, r.x2, r.y2] for r in self.regions],  # for people reading it
        }

    def load(self, state: Mapping[str, Any]) -> bool:
        """Take up a state from `to_dict`; False (and nothing changed) if it is not usable."""
        try:
            if state.get("version") != STATE_VERSION or not state.get("size"):
                return False
            width, height = (int(v) for v in state["size"])
            frames = int(state["frames"])
            score = np.asarray(state["score"], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            return False
        if not 0 < width <= 16384 or not 0 < height <= 16384 or frames < 0:
            return False
        if score.shape != self._shape(width, height) or not np.isfinite(score).all():
            return False
        self._setup(width, height)
        self._score = np.clip(score, 0, 1)
        self.frames = frames
        self._update_mask()
        return True
