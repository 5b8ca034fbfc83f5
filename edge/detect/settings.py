"""Settings and the interface of the person detector.

Frozen dataclasses validated when built, so a bad value fails at start-up with a message naming
the field, not as an odd count hours later. Validation here is pure (no file system access): the
model file is checked when a detector is created from these settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt

from edge.types import Detections

Family = Literal["yolox", "ultralytics", "openvino_ssd"]
Provider = Literal["auto", "tensorrt", "cuda", "openvino", "cpu"]

FAMILIES: tuple[str, ...] = get_args(Family)
PROVIDERS: tuple[str, ...] = get_args(Provider)

# The YOLO heads predict on grids of stride 8, 16 and 32: an input side that is not a multiple
# of 32 gives a grid the exported graph does not have.
_YOLO_STRIDE = 32
# An Ultralytics model exported to OpenVINO IR (`lobbywatch models export --format openvino`) runs
# on the OpenVINO runtime (Intel CPU, iGPU, NPU); its ONNX export on ONNX Runtime.
_MODEL_SUFFIX: dict[str, tuple[str, ...]] = {
    "yolox": (".onnx",),
    "ultralytics": (".onnx", ".xml"),
    "openvino_ssd": (".xml",),
}


@dataclass(frozen=True)
class TilingSettings:
    """Run the model on overlapping tiles of the frame, to find small, distant people.

    grid: (columns, rows) of tiles, each >= 1. overlap: fraction of a tile's width (height) shared
    with its horizontal (vertical) neighbour, in [0, 0.5]; it should exceed the width of a typical
    distant person so that each such person lies whole inside at least one tile. full_frame: also
    run once on the whole frame, which finds the large, near people that tiles cut apart.
    """

    grid: tuple[int, int] = (2, 2)
    overlap: float = 0.2
    full_frame: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.grid, list):  # YAML and JSON give lists
            object.__setattr__(self, "grid", tuple(self.grid))
        if len(self.grid) != 2 or any(not _is_int(n) or n < 1 for n in self.grid):
            raise ValueError(
                f"tiling.grid must be two integers >= 1 (columns, rows), got {self.grid}"
            )
        if not 0.0 <= self.overlap <= 0.5:
            raise ValueError(f"tiling.overlap must be in [0, 0.5], got {self.overlap}")
        if self.grid == (1, 1) and self.full_frame:
            raise ValueError(
                "tiling.grid (1, 1) with full_frame runs the same pass twice; use tiling=None"
            )

    @property
    def passes(self) -> int:
        """Model calls per frame."""
        return self.grid[0] * self.grid[1] + int(self.full_frame)


@dataclass(frozen=True)
class DetectorSettings:
    """What model to run, how to read its output and where to run it.

    input_size: (width, height) of the model input in pixels. For ONNX models with a static input
    shape it must equal the model's shape: a mismatch raises when the detector is created rather
    than silently running at a size the configuration does not state.
    confidence: minimum person score in [0, 1]. nms_iou: IoU in [0, 1] above which the lower-scoring
    of two person boxes is dropped. person_class_id: the model's class index for a person (0 for
    COCO YOLO models; 1 for the OpenVINO SSD detectors, whose class 0 is the background).
    threads: intra-op threads, 0 = runtime default. cache_dir: TensorRT engine cache and OpenVINO
    compiled-model cache, so that a restart does not rebuild engines (minutes on a Jetson).
    """

    model_path: Path
    family: Family
    input_size: tuple[int, int]
    confidence: float = 0.25
    nms_iou: float = 0.45
    person_class_id: int = 0
    tiling: TilingSettings | None = None
    provider: Provider = "auto"
    threads: int = 0
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        # Accept str paths from callers that build settings by hand; the field stays a Path.
        object.__setattr__(self, "model_path", Path(self.model_path))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if isinstance(self.input_size, list):  # YAML and JSON give lists
            object.__setattr__(self, "input_size", tuple(self.input_size))
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}, got {self.provider!r}")
        suffixes = _MODEL_SUFFIX[self.family]
        if self.model_path.suffix.lower() not in suffixes:
            raise ValueError(
                f"model_path for family {self.family!r} must be a {' or '.join(suffixes)} file, "
                f"got {self.model_path}"
            )
        if (
            self.family == "ultralytics"
            and self.runs_on_openvino
            and self.provider in ("tensorrt", "cuda")
        ):
            raise ValueError(
                f"provider {self.provider!r} cannot run an OpenVINO model ({self.model_path.name}); "
                "use 'auto', 'openvino' or 'cpu'"
            )
        self._check_input_size()
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")
        if not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1], got {self.nms_iou}")
        if not _is_int(self.person_class_id) or self.person_class_id < 0:
            raise ValueError(f"person_class_id must be an integer >= 0, got {self.person_class_id}")
        if self.family == "openvino_ssd":
            self._check_openvino()
        if not _is_int(self.threads) or self.threads < 0:
            raise ValueError(
                f"threads must be an integer >= 0 (0 = runtime default), got {self.threads}"
            )

    @property
    def runs_on_openvino(self) -> bool:
        """True for OpenVINO IR models (.xml), which the OpenVINO runtime runs, not ONNX Runtime."""
        return self.model_path.suffix.lower() == ".xml"

    def _check_input_size(self) -> None:
        size = self.input_size
        if len(size) != 2 or any(not _is_int(n) or n < 1 for n in size):
            raise ValueError(f"input_size must be two integers >= 1 (width, height), got {size}")
        if self.family != "openvino_ssd" and any(n % _YOLO_STRIDE for n in size):
            raise ValueError(f"input_size for {self.family} must be multiples of 32, got {size}")

    def _check_openvino(self) -> None:
        if self.person_class_id == 0:
            # SSD DetectionOutput reserves label 0 for the background: 0 would never match.
            raise ValueError(
                "person_class_id 0 is the SSD background label; "
                "person-detection-retail-0013 labels persons 1"
            )
        if self.provider in ("tensorrt", "cuda"):
            raise ValueError(
                f"provider {self.provider!r} is not available for openvino_ssd; "
                "use 'auto', 'openvino' or 'cpu'"
            )


class Detector(Protocol):
    """Finds people in one image. Instances hold input buffers: not safe to share across threads."""

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        """Person boxes in pixels of `image` (BGR uint8, HxWx3), after NMS and tile merging."""
        ...

    @property
    def provider(self) -> str:
        """The execution provider (device) actually in use, e.g. "CPUExecutionProvider"."""
        ...


def _is_int(value: object) -> bool:
    # bool is an int subclass; True as a grid size or thread count is a config mistake.
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
