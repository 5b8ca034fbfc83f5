"""On-site count calibration: a per-zone linear correction fitted to hand-counted frames.

Every detector misses some people in a given scene (far corners, crowds, a pillar) and sees a
few that are not there; how many depends on the camera's height and angle, which only the site
knows. A few frames counted by hand per zone fix most of that: true ~= scale * detected + offset.
Pure: numpy least squares, no I/O here (the CLI reads the hand counts and writes the result).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

# Below this many frames an offset cannot be told from noise: fit the scale alone.
MIN_FRAMES_FOR_OFFSET = 8
SCALE_BOUNDS = (0.5, 3.0)
OFFSET_BOUNDS = (-10.0, 10.0)


@dataclass(frozen=True)
class ZoneCalibration:
    scale: float = 1.0
    offset: float = 0.0
    frames: int = 0  # hand-counted frames it was fitted on
    mae_before: float | None = None  # on those frames
    mae_after: float | None = None

    def apply(self, detected: int) -> int:
        """The corrected count of one frame, a whole number of people, never negative."""
        return max(0, round(self.scale * detected + self.offset))


IDENTITY = ZoneCalibration()


def fit_zone(detected: Sequence[int], truth: Sequence[float]) -> ZoneCalibration:
    """Least-squares scale (and offset, with enough frames), clipped to sane bounds."""
    if len(detected) != len(truth) or not detected:
        raise ValueError("need the same, non-zero number of detected and hand counts")
    x = np.asarray(detected, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    if len(x) >= MIN_FRAMES_FOR_OFFSET and np.ptp(x) > 0:
        scale, offset = np.polyfit(x, y, 1)
    else:
        scale, offset = (float(y.sum() / x.sum()) if x.sum() > 0 else 1.0), 0.0
    scale = float(np.clip(scale, *SCALE_BOUNDS))
    offset = float(np.clip(offset, *OFFSET_BOUNDS))
    fitted = ZoneCalibration(scale, offset, len(x))
    after = np.mean([abs(fitted.apply(int(d)) - t) for d, t in zip(x, y, strict=True)])
    return ZoneCalibration(scale, offset, len(x), float(np.mean(np.abs(x - y))), float(after))


def save(path: Path, calibrations: Mapping[str, ZoneCalibration]) -> None:
    data = {
        zone: {
            "scale": round(c.scale, 4),
            "offset": round(c.offset, 3),
            "frames": c.frames,
            "mae_before": None if c.mae_before is None else round(c.mae_before, 3),
            "mae_after": None if c.mae_after is None else round(c.mae_after, 3),
        }
        for zone, c in calibrations.items()
    }
    path.write_text(
        "# Written by `lobbywatch calibrate`: true ~= scale * detected + offset per zone.\n"
        + yaml.safe_dump(data, sort_keys=True),
        encoding="utf-8",
    )


def load(path: Path) -> dict[str, ZoneCalibration]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of zone id to calibration")
    result = {}
    for zone, values in data.items():
        if not isinstance(values, dict) or "scale" not in values:
            raise ValueError(f"{path}: zone {zone!r} needs at least a scale")
        scale, offset = float(values["scale"]), float(values.get("offset", 0.0))
        if not SCALE_BOUNDS[0] <= scale <= SCALE_BOUNDS[1]:
            raise ValueError(f"{path}: zone {zone!r}: scale {scale} outside {SCALE_BOUNDS}")
        if not OFFSET_BOUNDS[0] <= offset <= OFFSET_BOUNDS[1]:
            raise ValueError(f"{path}: zone {zone!r}: offset {offset} outside {OFFSET_BOUNDS}")
        result[str(zone)] = ZoneCalibration(
            scale,
            offset,
            int(values.get("frames", 0)),
            values.get("mae_before"),
            values.get("mae_after"),
        )
    return result
