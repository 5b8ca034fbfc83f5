"""OpenVINO detectors for Intel's Open Model Zoo person models, on Intel NUCs.

The `openvino` package is imported here only, so an install without its native libraries runs
every other family. Input: BGR 0-255, the frame resized to the model input without keeping the
aspect ratio (how these models were trained). Output, by family:

| family         | e.g.                               | output                                    |
|----------------|------------------------------------|-------------------------------------------|
| openvino_ssd   | person-detection-retail-0013       | (1, 1, N, 7) [image, label, conf, x1, y1, |
|                |                                    | x2, y2], normalized to the image          |
| openvino_boxes | person-vehicle-bike-detection-2004 | `boxes` (N, 5) [x1, y1, x2, y2, conf] in  |
|                |                                    | input pixels, `labels` (N,)               |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.detect.decode import decode_boxes, decode_ssd, to_detections
from edge.detect.settings import DetectorSettings
from edge.detect.tiling import ModelInput, detect_tiled
from edge.types import Detections, FloatArray

# "auto" lets OpenVINO pick the Intel device (integrated GPU when present, else CPU).
DEVICE_ENV = "LOBBYWATCH_OPENVINO_DEVICE"


def openvino_device(provider: str, environ: Mapping[str, str] | None = None) -> str:
    """The OpenVINO device for a configured provider: CPU when forced, else what
    `$LOBBYWATCH_OPENVINO_DEVICE` names (GPU, NPU, "AUTO:NPU,GPU,CPU"), else AUTO."""
    env = os.environ if environ is None else environ
    if provider == "cpu":
        return "CPU"
    return env.get(DEVICE_ENV, "").strip() or "AUTO"


def read_model(settings: DetectorSettings) -> tuple[Any, Any]:
    """(core, model) for settings.model_path (an IR .xml, or an ONNX file, which OpenVINO reads
    as well): file checked, model cache applied. openvino is imported only here."""
    if not settings.model_path.is_file():
        raise FileNotFoundError(f"model file not found: {settings.model_path}")
    try:
        import openvino as ov
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "an OpenVINO IR model needs the openvino package: pip install 'lobbywatch[openvino]'"
        ) from exc
    core = ov.Core()
    if settings.cache_dir is not None:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": str(settings.cache_dir)})
    return core, core.read_model(str(settings.model_path))


def compile_options(settings: DetectorSettings) -> dict[str, Any]:
    """compile_model's config: the thread count when one is set."""
    return {"INFERENCE_NUM_THREADS": settings.threads} if settings.threads > 0 else {}


def compile_ir(settings: DetectorSettings, device: str) -> Any:
    """Read and compile an OpenVINO IR model, its input size checked against the settings."""
    core, model = read_model(settings)
    _check_input_shape(list(model.inputs[0].get_partial_shape()), settings)
    return core.compile_model(model, device, compile_options(settings))


class IrDetector:
    """What the OpenVINO IR detectors share: the compiled model, its device, tiling dispatch.

    Subclasses check the family and implement detect_once. Not thread-safe (one input tensor).
    """

    def __init__(self, settings: DetectorSettings) -> None:
        self._settings = settings
        self._compiled: Any = compile_ir(settings, openvino_device(settings.provider))
        self._request: Any = self._compiled.create_infer_request()
        width, height = settings.input_size
        self._tensor = np.empty((1, 3, height, width), dtype=np.float32)

    @property
    def provider(self) -> str:
        devices = self._compiled.get_property("EXECUTION_DEVICES")
        return "OpenVINO:" + ",".join(str(d) for d in devices)

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be BGR uint8 HxWx3, got {image.dtype} {image.shape}")
        s = self._settings
        if s.tiling is None:
            return self.detect_once(image)
        # These models resize the frame to their input's shape: windows shaped like it.
        fitted = ModelInput(s.input_size, letterboxed=False)
        return detect_tiled(image, self.detect_once, s.tiling, s.nms_iou, fitted)

    def detect_once(self, image: npt.NDArray[np.uint8]) -> Detections:
        raise NotImplementedError


class OpenVinoSsdDetector(IrDetector):
    """Person detector for an OpenVINO IR SSD model (person-detection-retail-0013)."""

    def __init__(self, settings: DetectorSettings):
        if settings.family != "openvino_ssd":
            raise ValueError(f"OpenVinoSsdDetector runs openvino_ssd, not {settings.family!r}")
        super().__init__(settings)

    def detect_once(self, image: npt.NDArray[np.uint8]) -> Detections:
        """One model call on the whole of `image`: person boxes in its pixels, after NMS."""
        s = self._settings
        resized = cv2.resize(image, s.input_size, interpolation=cv2.INTER_LINEAR)
        np.copyto(self._tensor[0], resized.transpose(2, 0, 1))
        self._request.infer({0: self._tensor})
        raw: FloatArray = self._request.get_output_tensor(0).data
        found = decode_ssd(raw.reshape(-1, raw.shape[-1]), s.person_class_id, s.confidence)
        width, height = image.shape[1], image.shape[0]
        scale = np.array([width, height, width, height], dtype=np.float32)
        return to_detections(
            found.xyxy * scale, found.scores, (width, height), s.nms_iou, s.person_class_id
        )


class OpenVinoBoxesDetector(IrDetector):
    """Person detector for an OpenVINO IR with `boxes` and `labels` outputs
    (person-vehicle-bike-detection-2004: labels 0 vehicle, 1 person, 2 bike)."""

    OUTPUTS = ("boxes", "labels")

    def __init__(self, settings: DetectorSettings):
        if settings.family != "openvino_boxes":
            raise ValueError(f"OpenVinoBoxesDetector runs openvino_boxes, not {settings.family!r}")
        super().__init__(settings)
        names = {name for out in self._compiled.outputs for name in out.get_names()}
        missing = [n for n in self.OUTPUTS if n not in names]
        if missing:
            raise ValueError(
                f"{settings.model_path}: an openvino_boxes model has outputs "
                f"{' and '.join(self.OUTPUTS)}; this one lacks {', '.join(missing)} "
                f"(it has {', '.join(sorted(names)) or 'none'})"
            )

    def detect_once(self, image: npt.NDArray[np.uint8]) -> Detections:
        """One model call on the whole of `image`: person boxes in its pixels, after NMS."""
        s = self._settings
        resized = cv2.resize(image, s.input_size, interpolation=cv2.INTER_LINEAR)
        np.copyto(self._tensor[0], resized.transpose(2, 0, 1))
        self._request.infer({0: self._tensor})
        boxes: FloatArray = self._request.get_tensor("boxes").data
        labels = self._request.get_tensor("labels").data
        found = decode_boxes(boxes, labels, s.person_class_id, s.confidence)
        width, height = image.shape[1], image.shape[0]
        sx, sy = width / s.input_size[0], height / s.input_size[1]
        scale = np.array([sx, sy, sx, sy], dtype=np.float32)
        return to_detections(
            found.xyxy * scale, found.scores, (width, height), s.nms_iou, s.person_class_id
        )


def _check_input_shape(shape: list[Any], settings: DetectorSettings) -> None:
    """Refuse settings whose input_size differs from the model's static (1, 3, H, W) input."""
    if len(shape) != 4:
        raise ValueError(f"{settings.model_path}: expected a 4-D image input, got {shape}")
    dims = [d.get_length() if d.is_static else None for d in shape[2:]]
    height, width = dims
    if height is not None and width is not None and (width, height) != settings.input_size:
        raise ValueError(
            f"{settings.model_path}: the model input is {width}x{height} (width x height) "
            f"but settings.input_size is {settings.input_size[0]}x{settings.input_size[1]}"
        )
