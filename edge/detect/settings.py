"""Settings and the interface of the person detector.

Frozen dataclasses validated when built, so a bad value fails at start-up with a message naming
the field, not as an odd count hours later. Validation here is pure (no file system access): the
model file is checked when a detector is created from these settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt

from edge.types import Detections

Family = Literal["yolox", "ultralytics", "openvino_ssd", "openvino_boxes"]
Provider = Literal["auto", "tensorrt", "cuda", "openvino", "cpu"]
Channels = Literal["bgr", "rgb"]

FAMILIES: tuple[str, ...] = get_args(Family)
PROVIDERS: tuple[str, ...] = get_args(Provider)
# The Intel IR families take BGR 0-255 as the IR itself defines it; the detector only resizes
# (stretches the image to the input's shape, as they were trained), where the YOLO families
# letterbox.
_OPENVINO_FAMILIES = ("openvino_ssd", "openvino_boxes")


def letterboxes(family: Family) -> bool:
    """Whether the family keeps the image's aspect ratio in its input (pads), or stretches it."""
    return family not in _OPENVINO_FAMILIES

# The YOLO heads predict on grids of stride 8, 16 and 32: an input side that is not a multiple
# of 32 gives a grid the exported graph does not have.
_YOLO_STRIDE = 32
# An Ultralytics model exported to OpenVINO IR (`lobbywatch models export --format openvino`) runs
# on the OpenVINO runtime (Intel CPU, iGPU, NPU); its ONNX export on ONNX Runtime. A YOLOX as IR
# (bench/runtimes.py's int8 YOLOX-Nano) runs on OpenVINO too.
_MODEL_SUFFIX: dict[str, tuple[str, ...]] = {
    "yolox": (".onnx", ".xml"),
    "ultralytics": (".onnx", ".xml"),
    "openvino_ssd": (".xml",),
    "openvino_boxes": (".xml",),
}


def _is_finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(value)


@dataclass(frozen=True)
class Normalization:
    """How the input tensor is made from pixels: (pixel - mean) / std per channel.

    pixel: 0-255, channels in `channels` order; mean and std are in pixel units, in that same
    order (OpenVINO's mean_values / scale_values convention). A model fed differently from its
    training sees shifted colours and loses recall without any error, so a model whose training
    differs from its family's (ByteTrack's YOLOX: RGB, ImageNet mean and std) says so here.
    """

    channels: Channels = "bgr"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, list):  # YAML and JSON give lists
                object.__setattr__(self, name, tuple(value))
        if self.channels not in ("bgr", "rgb"):
            raise ValueError(
                f"normalization.channels must be 'bgr' or 'rgb', got {self.channels!r}"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(_is_finite(v) for v in value):
                raise ValueError(f"normalization.{name} must be three numbers, got {value}")
        if min(self.std) <= 0:
            raise ValueError(f"normalization.std must be > 0, got {self.std}")


# Each family's own input, as its training pipeline made it (see the table in onnx.py).
FAMILY_NORMALIZATION: dict[str, Normalization] = {
    "yolox": Normalization("bgr"),
    "ultralytics": Normalization("rgb", std=(255.0, 255.0, 255.0)),
}


@dataclass(frozen=True)
class TilingSettings:
    """Run the model on overlapping tiles of the frame, to find small, distant people.

    grid: (columns, rows) of tiles, each >= 1. overlap: fraction of a tile's width (height) shared
    with its horizontal (vertical) neighbour, in [0, 0.5]; it should exceed the width of a typical
    distant person so that each such person lies whole inside at least one tile. full_frame: also
    run once on the whole frame, which finds the large, near people that tiles cut apart.
    fit: fit the grid to each frame and the model (edge/detect/tiling.py, `fit_grid`): windows
    shaped like a resizing model's input, no tile a letterboxed model gains nothing from. A grid
    of (1, 1) without full_frame is then the whole frame unless the model needs it cut.
    """

    grid: tuple[int, int] = (2, 2)
    overlap: float = 0.2
    full_frame: bool = True
    fit: bool = True

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
    COCO YOLO models; 1 for the OpenVINO SSD detectors, whose class 0 is the background, and for
    person-vehicle-bike-detection, whose 0 is a vehicle).
    threads: intra-op threads, 0 = runtime default. cache_dir: TensorRT engine cache and OpenVINO
    compiled-model cache, so that a restart does not rebuild engines (minutes on a Jetson).
    normalization: how pixels become the input tensor; None is the family's own
    (FAMILY_NORMALIZATION). Only for yolox and ultralytics: the IR families define their input.
    frame_sized (yolox only): run each image at its own size rounded up to a multiple of 32 rather
    than letterboxed into input_size, which then only caps the longer side (an image larger than
    that is scaled down first). The model is reshaped for each new size, which ONNX Runtime
    cannot do with a static ONNX file, so this runs on the OpenVINO runtime.
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
    normalization: Normalization | None = None
    frame_sized: bool = False

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
            self.family in ("ultralytics", "yolox")
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
        if self.family in _OPENVINO_FAMILIES:
            self._check_openvino()
        if not _is_int(self.threads) or self.threads < 0:
            raise ValueError(
                f"threads must be an integer >= 0 (0 = runtime default), got {self.threads}"
            )
        if self.normalization is not None and self.family not in FAMILY_NORMALIZATION:
            raise ValueError(
                f"normalization is for the yolox and ultralytics families; an {self.family} IR "
                "defines its own input"
            )
        self._check_frame_sized()

    @property
    def runs_on_openvino(self) -> bool:
        """True for OpenVINO IR models (.xml), which the OpenVINO runtime runs, not ONNX Runtime."""
        return self.model_path.suffix.lower() == ".xml"

    @property
    def pixels(self) -> Normalization:
        """The normalization in use: the settings' own, else the family's."""
        if self.normalization is not None:
            return self.normalization
        return FAMILY_NORMALIZATION.get(self.family, Normalization())

    def _check_frame_sized(self) -> None:
        if not isinstance(self.frame_sized, bool):
            raise ValueError(f"frame_sized must be true or false, got {self.frame_sized!r}")
        if not self.frame_sized:
            return
        if self.family != "yolox":
            raise ValueError(f"frame_sized is for the yolox family, not {self.family!r}")
        if self.provider in ("tensorrt", "cuda"):
            raise ValueError(
                f"provider {self.provider!r} cannot reshape a model to the frame's size; "
                "frame_sized runs on OpenVINO: use 'auto', 'openvino' or 'cpu'"
            )

    def _check_input_size(self) -> None:
        size = self.input_size
        if len(size) != 2 or any(not _is_int(n) or n < 1 for n in size):
            raise ValueError(f"input_size must be two integers >= 1 (width, height), got {size}")
        if self.family not in _OPENVINO_FAMILIES and any(n % _YOLO_STRIDE for n in size):
            raise ValueError(f"input_size for {self.family} must be multiples of 32, got {size}")

    def _check_openvino(self) -> None:
        if self.family == "openvino_ssd" and self.person_class_id == 0:
            # SSD DetectionOutput reserves label 0 for the background: 0 would never match.
            raise ValueError(
                "person_class_id 0 is the SSD background label; "
                "person-detection-retail-0013 labels persons 1"
            )
        if self.provider in ("tensorrt", "cuda"):
            raise ValueError(
                f"provider {self.provider!r} is not available for {self.family}; "
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
