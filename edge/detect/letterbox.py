"""Letterbox: resize keeping the aspect ratio, pad the rest, and map boxes back.

The model sees the image scaled by one factor and shifted by the padding; everything downstream
(zones, anchors) works in source-frame pixels, so every box is mapped back with the same affine
map that built the input. Stretching the image instead would change people's shape, which the
YOLO models were not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.types import FloatArray

PAD_VALUE = 114  # grey used by both YOLOX and Ultralytics training pipelines


@dataclass(frozen=True)
class Letterbox:
    """Affine map from source pixels to model-input pixels: input = source * scale + pad.

    scale: one factor for both axes (aspect ratio kept). pad_x, pad_y: pixels of padding before
    the image in the input (0 for top-left placement). resized: (width, height) in input pixels
    of the image part, the rest of the input being padding.
    """

    scale: float
    pad_x: int
    pad_y: int
    resized: tuple[int, int]

    def to_input(self, xyxy: FloatArray) -> FloatArray:
        """Boxes (N, 4) in source pixels -> model-input pixels."""
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        return np.asarray(xyxy * np.float32(self.scale) + offset, dtype=np.float32)

    def to_source(self, xyxy: FloatArray) -> FloatArray:
        """Boxes (N, 4) in model-input pixels -> source pixels (not clipped)."""
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        return np.asarray((xyxy - offset) / np.float32(self.scale), dtype=np.float32)


def compute_letterbox(
    source: tuple[int, int], target: tuple[int, int], *, centred: bool
) -> Letterbox:
    """The letterbox for a source (width, height) placed in a target (width, height), in pixels.

    centred: split the padding evenly on both sides (Ultralytics); otherwise the image sits at the
    top-left and all padding is right and bottom (YOLOX). The model must be fed the way it was
    trained, or boxes shift by up to half the padding.
    """
    src_w, src_h = source
    dst_w, dst_h = target
    if min(src_w, src_h, dst_w, dst_h) < 1:
        raise ValueError(f"letterbox sizes must be positive, got source {source}, target {target}")
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w = min(dst_w, max(1, round(src_w * scale)))
    new_h = min(dst_h, max(1, round(src_h * scale)))
    pad_x = (dst_w - new_w) // 2 if centred else 0
    pad_y = (dst_h - new_h) // 2 if centred else 0
    return Letterbox(scale=scale, pad_x=pad_x, pad_y=pad_y, resized=(new_w, new_h))


def letterbox_into(
    image: npt.NDArray[np.uint8], canvas: npt.NDArray[np.uint8], *, centred: bool
) -> Letterbox:
    """Write the letterboxed `image` into `canvas` (model H x W x 3, reused between calls).

    Reusing the canvas avoids one allocation per model call, which adds up with tiling.
    """
    dst_h, dst_w = canvas.shape[:2]
    box = compute_letterbox((image.shape[1], image.shape[0]), (dst_w, dst_h), centred=centred)
    new_w, new_h = box.resized
    canvas.fill(PAD_VALUE)
    region = canvas[box.pad_y : box.pad_y + new_h, box.pad_x : box.pad_x + new_w]
    if (new_w, new_h) == (image.shape[1], image.shape[0]):
        region[...] = image
    else:
        region[...] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return box
