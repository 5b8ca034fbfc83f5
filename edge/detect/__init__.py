"""Person detection: frames in, person boxes in source-frame pixels out.

create_detector(settings) picks the implementation for the model family. ONNX Runtime is the
runtime for the YOLO families; OpenVINO (optional extra) for Intel's SSD models and for Ultralytics
models exported to OpenVINO IR (.xml), imported only when such a model is asked for.
"""

from __future__ import annotations

from edge.detect.onnx import (
    OnnxDetector,
    ProviderNotAvailableError,
    select_providers,
)
from edge.detect.settings import Detector, DetectorSettings, TilingSettings

__all__ = [
    "Detector",
    "DetectorSettings",
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
    if settings.runs_on_openvino:
        from edge.detect.openvino_ultralytics import OpenVinoUltralyticsDetector

        return OpenVinoUltralyticsDetector(settings)
    return OnnxDetector(settings)
