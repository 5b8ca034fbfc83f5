"""YOLOX on the OpenVINO runtime: at each image's own size (DetectorSettings.frame_sized), or at
the fixed input size as ONNX Runtime runs it.

A YOLOX exported with a static input (ByteTrack's bytetrack_nano: 1088x608) letterboxes a
360x640 portrait frame into a landscape input: 60 % of the pixels the model computes are padding
and the people shrink by 0.95. ONNX Runtime refuses any other shape for a static file; OpenVINO
reads the same ONNX file and reshapes it when it is loaded. So each image runs at its own size
rounded up to a multiple of 32 (the padding stays under 32 pixels a side), its longer side capped
at the longer side of settings.input_size (the exported size: an HD frame is scaled down to it
rather than costing four times as much). The grid, and so the decoding, follows the size.

The model is compiled once per input size it meets and kept (a camera has one frame size; tiles
are letterboxed into the frame's size, so they add none). Not thread-safe: one canvas, one tensor.

Without frame_sized every image and tile is letterboxed into settings.input_size, the tiles
fitted as OnnxDetector fits them, so the boxes are those of ONNX Runtime up to the runtime's
arithmetic (bench/runtimes.py measures both, BENCHMARKS.md "Runtimes (issue #14)").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.detect.decode import decode_yolox, to_detections, yolox_grid
from edge.detect.letterbox import letterbox_into
from edge.detect.openvino import compile_options, openvino_device, read_model
from edge.detect.settings import DetectorSettings
from edge.detect.tensor import fill_tensor
from edge.detect.tiling import ModelInput, detect_tiled
from edge.types import Detections, FloatArray

STRIDE = 32  # the coarsest YOLOX grid: an input side must be a multiple of it
# Sizes kept compiled. One camera needs one; more only serve a detector shared by cameras of
# different resolutions (a benchmark over several scenes). Each costs a few MiB.
MAX_SIZES = 8


def frame_input_size(image_size: tuple[int, int], longest: int) -> tuple[int, int]:
    """The model input (width, height) for an image of `image_size` (width, height) pixels:
    scaled down so that its longer side is at most `longest`, then each side rounded up to a
    multiple of 32."""
    width, height = image_size
    if min(width, height) < 1 or longest < STRIDE:
        raise ValueError(f"bad sizes: image {image_size}, longest side {longest}")
    scale = min(1.0, longest / max(width, height))
    # At least one pixel, as the letterbox keeps it (a 1x4000 strip is still an image).
    return (
        math.ceil(max(1, round(width * scale)) / STRIDE) * STRIDE,
        math.ceil(max(1, round(height * scale)) / STRIDE) * STRIDE,
    )


@dataclass
class _Sized:
    """The model compiled for one input size, with its request, buffers and grid."""

    request: Any
    canvas: npt.NDArray[np.uint8]
    tensor: FloatArray
    grid: FloatArray


class OpenVinoYoloxDetector:
    """Person detector for a YOLOX model on OpenVINO, at each image's own size or the fixed
    input size (see the module doc).

    compile_config: more of compile_model's config, over the settings' own (a benchmark's
    INFERENCE_PRECISION_HINT).
    """

    def __init__(
        self, settings: DetectorSettings, compile_config: Mapping[str, Any] | None = None
    ) -> None:
        if settings.family != "yolox":
            raise ValueError(f"OpenVinoYoloxDetector runs yolox models, not {settings.family!r}")
        self._settings = settings
        self._core, self._model = read_model(settings)
        shape = self._model.inputs[0].get_partial_shape()
        if len(shape) != 4:
            raise ValueError(f"{settings.model_path}: expected a 4-D image input, got {shape}")
        if not settings.frame_sized:
            _check_fixed_size(shape, settings)
        self._config = {**compile_options(settings), **(compile_config or {})}
        self._device = openvino_device(settings.provider)
        self._longest = max(settings.input_size)
        self._sized: dict[tuple[int, int], _Sized] = {}
        self._devices: list[str] = []

    @property
    def provider(self) -> str:
        # Compiled on the first image; until then, the device asked for.
        return "OpenVINO:" + ",".join(self._devices or [self._device])

    @property
    def input_sizes(self) -> list[tuple[int, int]]:
        """The (width, height) inputs compiled so far, oldest first."""
        return list(self._sized)

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be BGR uint8 HxWx3, got {image.dtype} {image.shape}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image is empty: {image.shape}")
        s = self._settings
        if not s.frame_sized:
            if s.tiling is None:
                return self.detect_once(image)
            fitted = ModelInput(s.input_size, letterboxed=True)
            return detect_tiled(image, self.detect_once, s.tiling, s.nms_iou, fitted)
        sized = self._sized_for(image)
        if s.tiling is None:
            return self._detect_at(image, sized)
        # Tiles go into the whole frame's input, enlarged: what tiling is for.
        return detect_tiled(
            image,
            lambda tile: self._detect_at(tile, sized),
            s.tiling,
            s.nms_iou,
        )

    def detect_once(self, image: npt.NDArray[np.uint8]) -> Detections:
        """One model call on the whole of `image`, at its own size (frame_sized) or letterboxed
        into the input size: boxes in its pixels."""
        return self._detect_at(image, self._sized_for(image))

    def _sized_for(self, image: npt.NDArray[np.uint8]) -> _Sized:
        if not self._settings.frame_sized:
            return self._compiled_for(self._settings.input_size)
        return self._compiled_for(frame_input_size((image.shape[1], image.shape[0]), self._longest))

    def _detect_at(self, image: npt.NDArray[np.uint8], sized: _Sized) -> Detections:
        s = self._settings
        box = letterbox_into(image, sized.canvas, centred=False)
        fill_tensor(sized.canvas, sized.tensor, s.pixels)
        sized.request.infer({0: sized.tensor})
        raw: FloatArray = np.asarray(sized.request.get_output_tensor(0).data, dtype=np.float32)
        if raw.ndim != 3 or raw.shape[0] != 1:
            raise ValueError(f"{s.model_path}: expected a (1, ., .) output, got {raw.shape}")
        found = decode_yolox(raw[0], sized.grid, s.person_class_id, s.confidence)
        size = (image.shape[1], image.shape[0])
        return to_detections(
            box.to_source(found.xyxy), found.scores, size, s.nms_iou, s.person_class_id
        )

    def _compiled_for(self, size: tuple[int, int]) -> _Sized:
        sized = self._sized.get(size)
        if sized is not None:
            return sized
        if len(self._sized) >= MAX_SIZES:
            del self._sized[next(iter(self._sized))]
        width, height = size
        model = self._model.clone()
        model.reshape({0: [1, 3, height, width]})
        compiled = self._core.compile_model(model, self._device, self._config)
        self._devices = [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
        sized = _Sized(
            request=compiled.create_infer_request(),
            canvas=np.empty((height, width, 3), dtype=np.uint8),
            tensor=np.empty((1, 3, height, width), dtype=np.float32),
            grid=yolox_grid(size),
        )
        self._sized[size] = sized
        return sized


def _check_fixed_size(shape: Any, settings: DetectorSettings) -> None:
    """Refuse, as OnnxDetector does, settings whose input_size differs from a static input."""
    height, width = shape[2], shape[3]
    if height.is_static and width.is_static:
        static = (width.get_length(), height.get_length())
        if static != settings.input_size:
            raise ValueError(
                f"{settings.model_path}: the model input is {static[0]}x{static[1]} "
                f"(width x height) but settings.input_size is "
                f"{settings.input_size[0]}x{settings.input_size[1]}"
            )
