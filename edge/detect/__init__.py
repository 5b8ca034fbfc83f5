"""Person detection: frames in, person boxes in source-frame pixels out.

create_detector(settings) picks the implementation for the model family. ONNX Runtime is the
runtime for the YOLO families; OpenVINO for Intel's IR models (openvino_ssd, openvino_boxes), for
Ultralytics models exported to OpenVINO IR (.xml), for a YOLOX as IR and for a YOLOX run at the
frame's own size (frame_sized: OpenVINO reshapes a static ONNX file, ONNX Runtime cannot),
imported only when such a model is asked for.
"""

from __future__ import annotations

from edge.detect.onnx import (
    OnnxDetector,
    ProviderNotAvailableError,
    select_providers,
)
from edge.detect.settings import Detector, DetectorSettings, Normalization, TilingSettings

__all__ = [
    "Detector",
    "DetectorSettings",
    "Normalization",
    "OnnxDetector",
    "ProviderNotAvailableError",
    "TilingSettings",
    "create_detector",
    "select_providers",
]


def create_detector(settings: DetectorSettings) -> Detector:
    """A ready detector for `settings`; raises FileNotFoundError naming a missing model file."""
    if settings.family == "openvino_ssd":
        from edge.detect.openvino import OpenVinoSsdDetector

        return OpenVinoSsdDetector(settings)
    if settings.family == "openvino_boxes":
        from edge.detect.openvino import OpenVinoBoxesDetector

        return OpenVinoBoxesDetector(settings)
    if settings.family == "yolox" and (settings.frame_sized or settings.runs_on_openvino):
        from edge.detect.openvino_yolox import OpenVinoYoloxDetector

        return OpenVinoYoloxDetector(settings)
    if settings.runs_on_openvino:
        from edge.detect.openvino_ultralytics import OpenVinoUltralyticsDetector

        return OpenVinoUltralyticsDetector(settings)
    return OnnxDetector(settings)
