"""Is a box a plausible person for where it stands? Learned per camera from its own detections.

On a level floor seen by a fixed camera, a standing person's image height grows linearly with
the image row of their feet (pinhole camera: h = (y_foot - y_horizon) * person height / camera
height), so h ~ a * y + b is the right model, not a convenience. It is fitted per camera from the
confident boxes the camera itself sees (Theil-Sen: the median of pairwise slopes, robust to the
minority of wrong boxes that pass a high threshold), and boxes far off it are dropped: the digits
of a burnt-in clock (8x8 px at the top of a 384x288 frame), clothes on racks, a bag on a chair.

Until enough evidence exists only frame-relative sanity limits apply (see `Plausibility`).
Coordinates: heights and foot rows normalized by the frame height, foot x by the frame width,
so the model survives a change of stream resolution with the same view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.types import FloatArray

BoolArray = npt.NDArray[np.bool_]
STATE_VERSION = 1

# A box edge within this fraction of the frame counts as touching it: the person is cut off.
_EDGE = 0.01
# Fewer foot rows spread than this (normalized): the slope is not determined; fit a constant.
_MIN_Y_SPREAD = 0.1
# Pairs of samples closer than this in foot row give no usable slope.
_MIN_PAIR_DY = 0.02
_MAX_PAIRS = 20_000


@dataclass(frozen=True)
class Plausibility:
    """Limits on person boxes. Fractions of the frame, not pixels, so one default fits any
    stream resolution (the detectors resize every frame to a fixed input anyway).

    min_height: shortest box, as a fraction of the frame height, that can be a person. YOLOX-Nano
    and retail-0013 find no reliable person under ~12-16 px of their ~300-416 px input, which is
    3-4% of the frame they see; 0.035 keeps everything they can find and drops text glyphs
    (8 px of 288 is 0.028). min_aspect / max_aspect: width over height. A standing person is about
    0.25-0.5, a seated one or one cut at the waist up to ~1.2; a box wider than 1.5 times its
    height is a bench, a counter, a row of digits (unless cut by the bottom of the frame: a head
    and shoulders entering from below are wide); thinner than 0.1 is a pole or a door edge (a
    person half hidden behind another can be 0.1-0.15; boxes cut by a side edge are exempt).
    min_height_ratio / max_height_ratio: a box may be this much shorter or taller than the
    learned height at its foot row. Shorter: a person hidden below the shoulders by a counter,
    a railing or the people in front shows about a quarter of their height, and their box ends
    above their feet, so 0.25. Taller: nobody is twice the typical adult at the same spot, so 2.
    learn_confidence,
    min_samples, max_samples: boxes scored at least this teach the model; it is used once it has
    min_samples of them and keeps the latest max_samples.
    """

    min_height: float = 0.035
    min_aspect: float = 0.1
    max_aspect: float = 1.5
    min_height_ratio: float = 0.25
    max_height_ratio: float = 2.0
    learn_confidence: float = 0.6
    min_samples: int = 200
    max_samples: int = 2000
    refit_every: int = 50  # new samples between refits

    def __post_init__(self) -> None:
        if not 0 < self.min_height < 1 or not 0 < self.min_aspect < self.max_aspect:
            raise ValueError("need 0 < min_height < 1 and 0 < min_aspect < max_aspect")
        if not 0 < self.min_height_ratio < 1 < self.max_height_ratio:
            raise ValueError("need 0 < min_height_ratio < 1 < max_height_ratio")
        if not 0 <= self.learn_confidence <= 1:
            raise ValueError("need learn_confidence in [0, 1]")
        if not 1 <= self.min_samples <= self.max_samples or self.refit_every < 1:
            raise ValueError("need 1 <= min_samples <= max_samples and refit_every >= 1")


@dataclass(frozen=True)
class HeightLine:
    """Expected person height (fraction of frame height) at a foot row y (fraction): a * y + b.

    y_low, y_high: the 5th-95th percentile of the foot rows it was fitted on. spread: median
    absolute log ratio of the fitted heights to the line (0.1: typical box ~10% off).
    """

    slope: float
    intercept: float
    samples: int
    y_low: float
    y_high: float
    spread: float

    def expected(self, foot_y: FloatArray, floor: float) -> FloatArray:
        """Heights at the given foot rows, never below `floor` (the line may cross 0 above the
        horizon, where no one stands)."""
        h = self.slope * foot_y.astype(np.float64) + self.intercept
        return np.maximum(h, floor).astype(np.float32)


def fit_height_line(foot_y: FloatArray, height: FloatArray, seed: int = 0) -> HeightLine:
    """Theil-Sen fit of height against foot row, on at most _MAX_PAIRS random pairs.

    Theil-Sen tolerates ~29% wrong samples; the median intercept makes it a fit of the typical
    person. Deterministic for a given seed, so a restart refits the same line from the same file.
    """
    y = np.asarray(foot_y, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    n = len(y)
    if n == 0:
        raise ValueError("no samples to fit")
    y_low, y_high = (float(v) for v in np.percentile(y, [5, 95]))
    slope = 0.0
    if y_high - y_low >= _MIN_Y_SPREAD and n >= 2:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, _MAX_PAIRS)
        j = rng.integers(0, n, _MAX_PAIRS)
        dy = y[j] - y[i]
        ok = np.abs(dy) >= _MIN_PAIR_DY
        if ok.sum() >= 10:
            slope = float(np.median((h[j] - h[i])[ok] / dy[ok]))
    intercept = float(np.median(h - slope * y))
    fitted = np.maximum(slope * y + intercept, 1e-6)
    spread = float(np.median(np.abs(np.log(np.maximum(h, 1e-6) / fitted))))
    return HeightLine(slope, intercept, n, y_low, y_high, spread)


def _geometry(
    xyxy: FloatArray, width: int, height: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Foot x, foot y, box height (normalized) and aspect ratio (width / height, in pixels)."""
    w = np.maximum(xyxy[:, 2] - xyxy[:, 0], 0.0)
    h = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1e-3)
    foot_x = ((xyxy[:, 0] + xyxy[:, 2]) / 2.0 / width).astype(np.float32)
    foot_y = (xyxy[:, 3] / height).astype(np.float32)
    return foot_x, foot_y, (h / height).astype(np.float32), (w / h).astype(np.float32)


def _touching(xyxy: FloatArray, width: int, height: int) -> tuple[BoolArray, BoolArray, BoolArray]:
    """Boxes cut by the top, the bottom, and the left or right edge of the frame."""
    top = xyxy[:, 1] <= _EDGE * height
    bottom = xyxy[:, 3] >= (1 - _EDGE) * height
    side = (xyxy[:, 0] <= _EDGE * width) | (xyxy[:, 2] >= (1 - _EDGE) * width)
    return top, bottom, side


def sane(xyxy: FloatArray, width: int, height: int, limits: Plausibility) -> BoolArray:
    """Boxes within the frame-relative size and shape limits that hold before anything is
    learned: not shorter than min_height, not wider than max_aspect unless cut by the bottom of
    the frame, not thinner than min_aspect unless cut by a side of it."""
    _, _, h, aspect = _geometry(xyxy, width, height)
    _, bottom, side = _touching(xyxy, width, height)
    return (
        (h >= limits.min_height)
        & ((aspect <= limits.max_aspect) | bottom)
        & ((aspect >= limits.min_aspect) | side)
    )


def plausible(
    xyxy: FloatArray, width: int, height: int, line: HeightLine | None, limits: Plausibility
) -> BoolArray:
    """Sane boxes whose height is within the ratio limits of the line at their foot row.

    A box cut by the top or bottom of the frame (head or feet out of view) is shorter than a
    whole person there: only the upper bound applies to it.
    """
    keep = sane(xyxy, width, height, limits)
    if line is None or len(xyxy) == 0:
        return keep
    _, foot_y, h, _ = _geometry(xyxy, width, height)
    top, bottom, _ = _touching(xyxy, width, height)
    ratio = h / line.expected(foot_y, limits.min_height)
    low, high = limits.min_height_ratio, limits.max_height_ratio
    return keep & (ratio <= high) & ((ratio >= low) | top | bottom)


class PerspectiveModel:
    """One camera's learned person height along the floor, and the filter it gives.

    `observe` feeds boxes of a processed frame; `keep` answers for boxes of a frame using what
    was learned before it. A box that stays put (a mannequin, a coat on a rack, a person seated
    for an hour) adds one sample, not one per frame, so it cannot outvote the people who pass.
    """

    def __init__(self, limits: Plausibility | None = None) -> None:
        self.limits = limits or Plausibility()
        self._clear()

    def _clear(self) -> None:
        self._samples = np.zeros((0, 3), dtype=np.float32)  # foot x, foot y, height (normalized)
        self._next = 0  # ring position once full
        self._since_fit = 0
        self._line: HeightLine | None = None
        self.seen = 0  # samples ever added (kept across restarts)

    @property
    def line(self) -> HeightLine | None:
        """The fitted line once min_samples were seen, else None (sanity limits only)."""
        return self._line

    @property
    def samples(self) -> int:
        return len(self._samples)

    def keep(self, xyxy: FloatArray, width: int, height: int) -> BoolArray:
        return plausible(xyxy, width, height, self._line, self.limits)

    def observe(
        self,
        xyxy: FloatArray,
        confidence: FloatArray,
        width: int,
        height: int,
        usable: BoolArray | None = None,
    ) -> None:
        """Learn from the confident, sane, uncut boxes of one frame (`usable`: also allowed by
        the caller, e.g. not on a text overlay)."""
        if len(xyxy) == 0:
            return
        top, bottom, side = _touching(xyxy, width, height)
        take = (
            (confidence >= self.limits.learn_confidence)
            & sane(xyxy, width, height, self.limits)
            & ~(top | bottom | side)
        )
        if usable is not None:
            take &= usable
        if not take.any():
            return
        foot_x, foot_y, h, _ = _geometry(xyxy[take], width, height)
        new = np.stack([foot_x, foot_y, h], axis=1).astype(np.float32)
        new = new[~self._already_seen(new)]
        if len(new):
            self._add(new)

    def _already_seen(self, new: FloatArray) -> BoolArray:
        """Samples within 1% of the frame and 5% in height of one already kept: the same box."""
        if len(self._samples) == 0:
            return np.zeros(len(new), dtype=bool)
        old = self._samples
        near = (np.abs(new[:, None, 0] - old[None, :, 0]) <= 0.01) & (
            np.abs(new[:, None, 1] - old[None, :, 1]) <= 0.01
        )
        near &= np.abs(new[:, None, 2] - old[None, :, 2]) <= 0.05 * old[None, :, 2]
        return np.asarray(near.any(axis=1))

    def _add(self, new: FloatArray) -> None:
        cap = self.limits.max_samples
        new = new[-cap:]
        count = len(new)
        room = cap - len(self._samples)
        if room > 0:
            self._samples = np.concatenate([self._samples, new[:room]])
            new = new[room:]
        if len(new):  # full: overwrite the oldest
            self._samples[(self._next + np.arange(len(new))) % cap] = new
            self._next = (self._next + len(new)) % cap
        self.seen += count
        self._since_fit += count
        self._maybe_refit()

    def _maybe_refit(self) -> None:
        if len(self._samples) < self.limits.min_samples:
            return
        if self._line is None or self._since_fit >= self.limits.refit_every:
            self._line = fit_height_line(self._samples[:, 1], self._samples[:, 2], seed=self.seen)
            self._since_fit = 0

    def reset(self) -> None:
        """Forget everything learned (the camera was moved or re-aimed)."""
        self._clear()

    def describe(self, frame_height: int | None = None) -> str:
        """One line for the status line and doctor."""
        line = self._line
        if line is None:
            return (
                f"perspective: learning ({len(self._samples)}/{self.limits.min_samples} "
                "confident boxes), size and shape limits only"
            )
        lo, hi = line.expected(np.array([line.y_low, line.y_high], dtype=np.float32), 0.0)
        if frame_height:
            size = f"person {lo * frame_height:.0f}-{hi * frame_height:.0f} px high"
        else:
            size = f"person {lo:.0%}-{hi:.0%} of the frame high"
        return f"perspective: learned from {line.samples} boxes, {size}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "seen": self.seen,
            "next": self._next,
            "samples": [[round(float(v), 4) for v in row] for row in self._samples],
        }

    def load(self, state: Mapping[str, Any]) -> bool:
        """Take up a state from `to_dict`; False (and nothing changed) if it is not usable."""
        try:
            if state.get("version") != STATE_VERSION:
                return False
            samples = np.asarray(state["samples"], dtype=np.float32).reshape(-1, 3)
            seen, nxt = int(state["seen"]), int(state["next"])
        except (KeyError, TypeError, ValueError):
            return False
        if not np.isfinite(samples).all() or ((samples < 0) | (samples > 2)).any():
            return False
        samples = samples[-self.limits.max_samples :]
        self._samples = samples.copy()
        self._next = nxt % self.limits.max_samples if len(samples) else 0
        self.seen = max(seen, len(samples))
        self._since_fit = 0
        self._line = None
        if len(samples) >= self.limits.min_samples:
            self._line = fit_height_line(samples[:, 1], samples[:, 2], seed=self.seen)
        return True
