"""Data types passed between pipeline stages.

One type per stage, validated when built. Imports only the standard library and numpy so the
core can be tested without a camera, a model or a broker.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]


class CameraStatus(str, enum.Enum):
    """Health of one camera as the pipeline sees it.

    online: frames are arriving. stale: the source is open but no new frame came for a while
    (a hung read, a frozen encoder). offline: the source cannot be opened or keeps failing.
    Only an online camera yields counts; the others make its zones report unknown.
    """

    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded image from a camera.

    index: 0-based position of the frame in its source (files and image sequences), or a running
    counter for live streams. captured_at: UTC wall time, for records only. monotonic: seconds
    from time.monotonic(), for every duration computed from this frame.
    """

    camera_id: str
    index: int
    image: npt.NDArray[np.uint8]
    captured_at: datetime
    monotonic: float

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"frame image must be HxWx3 BGR, got shape {self.image.shape}")
        if self.captured_at.tzinfo is None:
            raise ValueError("captured_at must be timezone-aware (UTC)")
        if self.index < 0:
            raise ValueError(f"frame index must be >= 0, got {self.index}")

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


def _empty_boxes() -> FloatArray:
    return np.zeros((0, 4), dtype=np.float32)


def _empty_floats() -> FloatArray:
    return np.zeros((0,), dtype=np.float32)


def _empty_ints() -> IntArray:
    return np.zeros((0,), dtype=np.int32)


@dataclass(frozen=True, eq=False)
class Detections:
    """Columnar detections for one frame.

    xyxy: (N, 4) box corners in pixels of the source frame (not the model input).
    confidence: (N,) in [0, 1]. class_id: (N,) model class ids (0 = person for COCO models).
    """

    xyxy: FloatArray = field(default_factory=_empty_boxes)
    confidence: FloatArray = field(default_factory=_empty_floats)
    class_id: IntArray = field(default_factory=_empty_ints)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        if self.confidence.shape != (n,):
            raise ValueError(f"confidence must have shape ({n},), got {self.confidence.shape}")
        if self.class_id.shape != (n,):
            raise ValueError(f"class_id must have shape ({n},), got {self.class_id.shape}")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Detections:
        return Detections(
            xyxy=self.xyxy[index], confidence=self.confidence[index], class_id=self.class_id[index]
        )

    @classmethod
    def empty(cls) -> Detections:
        return cls()

    @classmethod
    def concatenate(cls, parts: list[Detections]) -> Detections:
        if not parts:
            return cls()
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]).astype(np.float32, copy=False),
            confidence=np.concatenate([p.confidence for p in parts]).astype(np.float32, copy=False),
            class_id=np.concatenate([p.class_id for p in parts]).astype(np.int32, copy=False),
        )

    def anchors(self, width: int, height: int) -> FloatArray:
        """Bottom centre of each box in normalized (x, y) image coordinates, shape (N, 2).

        The feet, not the box centre, place a person on the floor plan: a tall standing person's
        centre can fall into the zone behind them.
        """
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2.0 / width
        y = self.xyxy[:, 3] / height
        return np.stack([x, y], axis=1).astype(np.float32)


@dataclass(frozen=True)
class ZoneReading:
    """Occupancy of one zone at one moment.

    count is None when the camera is not online: unknown is never reported as 0.
    raw is the detector count of the latest frame (None when unknown).
    """

    zone_id: str
    camera_id: str
    count: float | None
    raw: int | None
    at: datetime
    camera_status: CameraStatus

    @property
    def known(self) -> bool:
        return self.count is not None
