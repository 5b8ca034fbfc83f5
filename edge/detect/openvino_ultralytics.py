"""OpenVINO detector for Ultralytics YOLO models exported to OpenVINO IR, on Intel NUCs.

`lobbywatch models export NAME --format openvino` writes the IR (.xml + .bin). Same input and
output as the ONNX export (RGB 0-1, centred letterbox padded with 114; output (1, 4 + classes,
boxes)), so pre-processing and decoding are shared with the ONNX Runtime detector; only the
runtime differs. The OpenVINO runtime reaches the Intel iGPU and NPU, which ONNX Runtime's CPU
build cannot.

Device: provider "cpu" -> CPU; "auto"/"openvino" -> OpenVINO's AUTO (NPU or iGPU when present,
else CPU), or `$LOBBYWATCH_OPENVINO_DEVICE` (e.g. GPU, NPU, "AUTO:NPU,GPU,CPU") to pin one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge.detect.decode import decode_ultralytics, to_detections
from edge.detect.letterbox import letterbox_into
from edge.detect.openvino import IrDetector
from edge.detect.settings import DetectorSettings
from edge.detect.tensor import fill_tensor
from edge.types import Detections, FloatArray


class OpenVinoUltralyticsDetector(IrDetector):
    """Person detector for an Ultralytics OpenVINO IR model. Not thread-safe (one input tensor)."""

    def __init__(self, settings: DetectorSettings) -> None:
        if settings.family != "ultralytics" or not settings.runs_on_openvino:
            raise ValueError(
                f"OpenVinoUltralyticsDetector runs ultralytics .xml models, not {settings.family!r} "
                f"{settings.model_path.name}"
            )
        super().__init__(settings)
        width, height = settings.input_size
        self._canvas = np.empty((height, width, 3), dtype=np.uint8)

    def raw(self, image: npt.NDArray[np.uint8]) -> FloatArray:
        """The model's raw output (1, 4 + classes, boxes) for `image` letterboxed to the input."""
        letterbox_into(image, self._canvas, centred=True)
        return self._infer()

    def detect_once(self, image: npt.NDArray[np.uint8]) -> Detections:
        """One model call on the whole of `image`: person boxes in its pixels, after NMS."""
        s = self._settings
        box = letterbox_into(image, self._canvas, centred=True)
        raw = self._infer()
        if raw.ndim != 3 or raw.shape[0] != 1:
            raise ValueError(f"{s.model_path}: expected a (1, ., .) output, got {raw.shape}")
        found = decode_ultralytics(raw[0], s.person_class_id, s.confidence)
        size = (image.shape[1], image.shape[0])
        return to_detections(
            box.to_source(found.xyxy), found.scores, size, s.nms_iou, s.person_class_id
        )

    def _infer(self) -> FloatArray:
        fill_tensor(self._canvas, self._tensor, self._settings.pixels)
        self._request.infer({0: self._tensor})
        out: FloatArray = np.asarray(self._request.get_output_tensor(0).data, dtype=np.float32)
        return out
