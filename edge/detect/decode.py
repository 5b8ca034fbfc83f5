"""Turn raw model outputs into person boxes; pure numpy plus OpenCV's NMS.

Each decoder keeps only the person class and only scores >= the confidence threshold before
building boxes, so the cost follows the number of candidates, not the size of the output grid.
A person score is taken directly from the person column rather than requiring person to be the
arg-max class: we only count people, and a box that is "person 0.5, mannequin 0.6" is still a
person candidate for the threshold to judge.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.types import Detections, FloatArray

YOLO_STRIDES = (8, 16, 32)


@dataclass(frozen=True, eq=False)
class Candidates:
    """Person boxes before NMS: xyxy (N, 4) in the decoder's coordinates, scores (N,) in [0, 1]."""

    xyxy: FloatArray
    scores: FloatArray


def yolox_grid(input_size: tuple[int, int], strides: tuple[int, ...] = YOLO_STRIDES) -> FloatArray:
    """Cell origin and stride per YOLOX output row: (N, 3) of [grid_x, grid_y, stride].

    Rows follow the export order: stride 8 first, cells row-major (x fastest) within a stride.
    input_size is (width, height) in model-input pixels.
    """
    width, height = input_size
    parts = []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, stride)], axis=1)
        parts.append(cells)
    return np.concatenate(parts).astype(np.float32)


def decode_yolox(
    raw: FloatArray, grid: FloatArray, person_class_id: int, confidence: float
) -> Candidates:
    """YOLOX raw head output (N, 5 + classes) -> person boxes in model-input pixels.

    Columns: cx, cy offsets in cells, log w, log h in strides, objectness, class scores. The
    exported graph already applies the sigmoid to objectness and classes (both lie in [0, 1]), so
    score = objectness * person score without another sigmoid.
    """
    _check_columns(raw, person_class_id + 5 + 1, "YOLOX output (N, 5 + classes)")
    if len(raw) != len(grid):
        raise ValueError(f"YOLOX output has {len(raw)} rows, the input grid has {len(grid)} cells")
    scores = raw[:, 4] * raw[:, 5 + person_class_id]
    keep = scores >= confidence
    rows, cells = raw[keep], grid[keep]
    stride = cells[:, 2:3]
    centre = (rows[:, 0:2] + cells[:, 0:2]) * stride
    size = np.exp(rows[:, 2:4]) * stride
    return Candidates(_corners(centre, size), scores[keep].astype(np.float32))


def decode_ultralytics(raw: FloatArray, person_class_id: int, confidence: float) -> Candidates:
    """Ultralytics head output (4 + classes, N) -> person boxes in model-input pixels.

    Rows 0..3 are cx, cy, w, h in input pixels; rows 4.. are class scores, already sigmoided.
    """
    if raw.ndim != 2 or raw.shape[0] < 4 + person_class_id + 1:
        raise ValueError(f"Ultralytics output must be (4 + classes, N), got shape {raw.shape}")
    scores = raw[4 + person_class_id]
    keep = scores >= confidence
    boxes = raw[:4, keep].T
    return Candidates(_corners(boxes[:, 0:2], boxes[:, 2:4]), scores[keep].astype(np.float32))


def decode_ssd(raw: FloatArray, person_class_id: int, confidence: float) -> Candidates:
    """SSD DetectionOutput rows (N, 7) -> person boxes in normalized [0, 1] image coordinates.

    Row: [image_id, label, conf, x1, y1, x2, y2]; image_id -1 ends the valid rows. The SSD boxes
    are relative to the (stretched) input, hence to the whole source image.
    """
    _check_columns(raw, 7, "SSD output (N, 7)")
    keep = (raw[:, 0] >= 0) & (raw[:, 1] == person_class_id) & (raw[:, 2] >= confidence)
    return Candidates(raw[keep, 3:7].astype(np.float32), raw[keep, 2].astype(np.float32))


def decode_boxes(
    boxes: FloatArray, labels: npt.NDArray[np.integer], person_class_id: int, confidence: float
) -> Candidates:
    """`boxes` (N, 5) [x1, y1, x2, y2, conf] and `labels` (N,) -> person boxes, in the
    coordinates of `boxes` (model-input pixels for person-vehicle-bike-detection-2004)."""
    _check_columns(boxes, 5, "boxes output (N, 5)")
    labels = labels.reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
    keep = (labels == person_class_id) & (boxes[:, 4] >= confidence)
    return Candidates(boxes[keep, :4].astype(np.float32), boxes[keep, 4].astype(np.float32))


def to_detections(
    xyxy: FloatArray,
    scores: FloatArray,
    image_size: tuple[int, int],
    nms_iou: float,
    class_id: int,
) -> Detections:
    """Clip boxes (source pixels) to the (width, height) image, drop empty ones, apply NMS.

    Boxes thinner than a pixel after clipping lie outside the frame and cannot be a visible person.
    """
    width, height = image_size
    clipped = np.empty_like(xyxy, dtype=np.float32)
    np.clip(xyxy[:, 0::2], 0, width, out=clipped[:, 0::2])
    np.clip(xyxy[:, 1::2], 0, height, out=clipped[:, 1::2])
    visible = ((clipped[:, 2] - clipped[:, 0]) >= 1) & ((clipped[:, 3] - clipped[:, 1]) >= 1)
    clipped, scores = clipped[visible], scores[visible]
    kept = nms(clipped, scores, nms_iou)
    return Detections(
        xyxy=clipped[kept],
        confidence=scores[kept].astype(np.float32),
        class_id=np.full(len(kept), class_id, dtype=np.int32),
    )


def box_area(xyxy: FloatArray) -> FloatArray:
    """(N,) areas of (N, 4) x1, y1, x2, y2 boxes."""
    return np.asarray((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]), dtype=np.float32)


def pairwise_intersection(xyxy: FloatArray) -> FloatArray:
    """(N, N) areas of the overlap of box i with box j (the diagonal is each box's area)."""
    top_left = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    bottom_right = np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    return np.asarray(np.prod(np.clip(bottom_right - top_left, 0, None), axis=2), dtype=np.float32)


def nms(xyxy: FloatArray, scores: FloatArray, iou: float) -> npt.NDArray[np.intp]:
    """Indices of the boxes kept by IoU NMS, highest score first (OpenCV's implementation).

    A box is dropped when its IoU with a higher-scoring kept box exceeds `iou`.
    """
    if len(xyxy) == 0:
        return np.zeros((0,), dtype=np.intp)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    # Python floats select OpenCV's Rect2d overload (sub-pixel boxes); NMSBoxes returns an empty
    # tuple rather than an array when nothing is kept.
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, float(iou))
    return np.asarray(kept, dtype=np.intp).reshape(-1)


def _corners(centre: FloatArray, size: FloatArray) -> FloatArray:
    half = size / 2.0
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def _check_columns(raw: FloatArray, minimum: int, what: str) -> None:
    if raw.ndim != 2 or raw.shape[1] < minimum:
        raise ValueError(f"{what} expected, got shape {raw.shape}")
