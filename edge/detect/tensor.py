"""The model input tensor from a letterboxed canvas: channel order, then (pixel - mean) / std.

Shared by every detector that letterboxes (YOLOX and Ultralytics, on ONNX Runtime or OpenVINO),
so a model's normalization (DetectorSettings.pixels) means the same on either runtime.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge.detect.settings import Normalization
from edge.types import FloatArray


def fill_tensor(canvas: npt.NDArray[np.uint8], tensor: FloatArray, pixels: Normalization) -> None:
    """Write `canvas` (H x W x 3, BGR uint8) into `tensor` (1, 3, H, W) float32, in place.

    The division is a multiplication by the float32 reciprocal, as the families always did
    (x * float32(1/255)), so the default inputs are bit for bit what they were.
    """
    chw = canvas.transpose(2, 0, 1)
    np.copyto(tensor[0], chw if pixels.channels == "bgr" else chw[::-1])
    if any(pixels.mean):
        tensor[0] -= np.asarray(pixels.mean, dtype=np.float32)[:, None, None]
    if pixels.std != (1.0, 1.0, 1.0):
        reciprocal = (1.0 / np.asarray(pixels.std, dtype=np.float64)).astype(np.float32)
        tensor[0] *= reciprocal[:, None, None]
