"""ONNX Runtime detector for the YOLOX and Ultralytics model families.

The two families differ only in how the input is built and how the output is read:

| family      | channels | scale | letterbox | output                        |
|-------------|----------|-------|-----------|-------------------------------|
| yolox       | BGR      | 0-255 | top-left  | (1, cells, 5 + classes) grid  |
| ultralytics | RGB      | 0-1   | centred   | (1, 4 + classes, cells) boxes |

Both pad with grey 114; feeding a model differently from its training shifts boxes or costs recall.
A model trained otherwise than its family (ByteTrack's YOLOX: RGB, ImageNet mean and std) gives
its own normalization (DetectorSettings.normalization, from the manifest's `preprocess`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from edge.detect.decode import (
    Candidates,
    decode_ultralytics,
    decode_yolox,
    to_detections,
    yolox_grid,
)
from edge.detect.letterbox import letterbox_into
from edge.detect.settings import DetectorSettings
from edge.detect.tensor import fill_tensor
from edge.detect.tiling import ModelInput, detect_tiled
from edge.types import Detections, FloatArray

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"

# Fastest first. CPU ends every list: ONNX Runtime places there the nodes the others cannot run.
PREFERENCE = (TENSORRT, CUDA, OPENVINO, CPU)
_BY_NAME = {"tensorrt": TENSORRT, "cuda": CUDA, "openvino": OPENVINO, "cpu": CPU}


class ProviderNotAvailableError(RuntimeError):
    """A forced execution provider is not in this ONNX Runtime build."""


def select_providers(requested: str, available: list[str]) -> list[str]:
    """Execution providers to ask ONNX Runtime for, most preferred first, always ending with CPU.

    "auto": every available one of TensorRT > CUDA > OpenVINO, then CPU. A forced provider: that
    one (TensorRT also keeps CUDA when available, for the nodes TensorRT rejects), then CPU; if it
    is not installed, raise rather than quietly run on the CPU at a fraction of the frame rate.
    """
    if requested == "auto":
        chosen = [p for p in PREFERENCE[:-1] if p in available]
    elif requested in _BY_NAME:
        wanted = _BY_NAME[requested]
        if wanted != CPU and wanted not in available:
            raise ProviderNotAvailableError(
                f"provider {requested!r} ({wanted}) is not installed; "
                f"this onnxruntime has {', '.join(available) or 'none'}"
            )
        chosen = [wanted] if wanted != CPU else []
        if wanted == TENSORRT and CUDA in available:
            chosen.append(CUDA)
    else:
        raise ValueError(f"provider must be one of auto, {', '.join(_BY_NAME)}; got {requested!r}")
    return [*chosen, CPU]


def provider_options(provider: str, cache_dir: Path | None) -> dict[str, Any]:
    """Options per provider: the engine cache, so a restart does not rebuild TensorRT engines."""
    if cache_dir is None:
        return {}
    if provider == TENSORRT:
        return {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache_dir),
        }
    if provider == OPENVINO:
        return {"cache_dir": str(cache_dir)}
    return {}


def create_session(settings: DetectorSettings) -> ort.InferenceSession:
    """An inference session for settings.model_path on the selected providers."""
    if not settings.model_path.is_file():
        raise FileNotFoundError(f"model file not found: {settings.model_path}")
    providers = select_providers(settings.provider, ort.get_available_providers())
    if settings.cache_dir is not None:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        str(settings.model_path),
        sess_options=options,
        providers=providers,
        provider_options=[provider_options(p, settings.cache_dir) for p in providers],
    )


class OnnxDetector:
    """Person detector for one ONNX model; see the module table for the family differences.

    Holds one input canvas and one input tensor, reused for every call (tiles included).
    Not thread-safe: give each camera thread its own detector.
    """

    def __init__(self, settings: DetectorSettings, session: ort.InferenceSession | None = None):
        if settings.family not in ("yolox", "ultralytics"):
            raise ValueError(f"OnnxDetector runs yolox and ultralytics, not {settings.family!r}")
        self._settings = settings
        self._session = session if session is not None else create_session(settings)
        model_input = self._session.get_inputs()[0]
        self._input_name: str = model_input.name
        _check_input_shape(model_input.shape, settings.input_size, settings.model_path)
        width, height = settings.input_size
        self._canvas = np.empty((height, width, 3), dtype=np.uint8)
        self._tensor = np.empty((1, 3, height, width), dtype=np.float32)
        self._yolox = settings.family == "yolox"
        self._grid = yolox_grid(settings.input_size) if self._yolox else None

    @property
    def provider(self) -> str:
        return str(self._session.get_providers()[0])

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        _check_image(image)
        s = self._settings
        if s.tiling is None:
            return self.detect_once(image)
        fitted = ModelInput(s.input_size, letterboxed=True)
        return detect_tiled(image, self.detect_once, s.tiling, s.nms_iou, fitted)

    def detect_once(self, image: npt.NDArray[np.uint8]) -> Detections:
        """One model call on the whole of `image`: person boxes in its pixels, after NMS."""
        box = letterbox_into(image, self._canvas, centred=not self._yolox)
        fill_tensor(self._canvas, self._tensor, self._settings.pixels)
        raw: FloatArray = self._session.run(None, {self._input_name: self._tensor})[0]
        found = self._decode(raw)
        s = self._settings
        size = (image.shape[1], image.shape[0])
        return to_detections(
            box.to_source(found.xyxy), found.scores, size, s.nms_iou, s.person_class_id
        )

    def _decode(self, raw: FloatArray) -> Candidates:
        s = self._settings
        if raw.ndim != 3 or raw.shape[0] != 1:
            raise ValueError(f"{s.model_path}: expected a (1, ., .) output, got {raw.shape}")
        if self._grid is not None:
            return decode_yolox(raw[0], self._grid, s.person_class_id, s.confidence)
        return decode_ultralytics(raw[0], s.person_class_id, s.confidence)


def _check_input_shape(shape: list[Any], input_size: tuple[int, int], path: Path) -> None:
    """Refuse settings whose input_size differs from a static model input (N, 3, H, W)."""
    if len(shape) != 4:
        raise ValueError(f"{path}: expected a 4-D image input (N, 3, H, W), got {shape}")
    height, width = shape[2], shape[3]
    if isinstance(width, int) and isinstance(height, int) and (width, height) != input_size:
        raise ValueError(
            f"{path}: the model input is {width}x{height} (width x height) "
            f"but settings.input_size is {input_size[0]}x{input_size[1]}"
        )


def _check_image(image: npt.NDArray[np.uint8]) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be BGR uint8 HxWx3, got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: {image.shape}")
