"""Several person detectors on one frame, their boxes fused into one set.

Two small models of different families miss different people: YOLOX-Nano (COCO, tiled) and
Intel's person-detection-retail-0013 (trained on overhead retail cameras) fail on different
poses and occlusions, and their false boxes rarely coincide. Fusion rules (all boxes in frame
pixels, each model's own NMS and tile merging already done):

1. Greedy over all boxes by descending score: a box joins the cluster whose leader (its first,
   highest-scoring box) overlaps it most, at IoU >= `iou`, provided that cluster has no box of the
   same model yet; otherwise it starts a cluster, unless it overlaps such a full cluster, in which
   case it is that model's duplicate and is dropped.
2. The fused score is the mean over the models of each one's score in the cluster, a model that
   did not see the person scoring 0: a person one model is unsure of counts when the other agrees,
   and a box only one model sees must be twice as sure as the threshold. The box is the
   score-weighted mean of the cluster's boxes.

The members run at a low candidate threshold so that agreement can lift a weak box; the fused
score is then compared with the detector's confidence. The rules follow weighted boxes fusion
(Solovyev et al., 2021); the `ensemble-boxes` package that implements it pulls pandas and numba,
too heavy for an edge box, for what is some forty lines here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edge.detect.decode import box_area, pairwise_intersection
from edge.detect.settings import Detector
from edge.types import Detections, FloatArray


def fuse(found: Sequence[Detections], iou: float) -> Detections:
    """One person set from the detections of several models (see the module rules)."""
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    merged = Detections.concatenate(list(found))
    if len(merged) == 0:
        return merged
    model_of = np.concatenate([np.full(len(f), k) for k, f in enumerate(found)])
    overlap = _iou(merged.xyxy)
    clusters: list[list[int]] = []  # box indices, the leader (highest score) first
    for box in np.argsort(-merged.confidence, kind="stable").tolist():
        ious = overlap[box, [c[0] for c in clusters]]
        near = [c for c in np.argsort(-ious, kind="stable") if ious[c] >= iou]
        if not near:
            clusters.append([box])
            continue
        # The nearest cluster without a box of this model; none: a duplicate of its own box.
        free = next((c for c in near if model_of[box] not in model_of[clusters[c]]), None)
        if free is not None:
            clusters[free].append(box)
    return _clusters_to_detections(merged, clusters, len(found))


class FusedDetector:
    """Runs every member detector on the frame and keeps fused boxes scoring >= `confidence`.

    The members should find candidates at a threshold below `confidence` (see the module doc).
    """

    def __init__(self, members: Sequence[Detector], iou: float, confidence: float) -> None:
        if len(members) < 2:
            raise ValueError(f"fusion needs at least two detectors, got {len(members)}")
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {confidence}")
        self.members = tuple(members)
        self.iou = iou
        self.confidence = confidence

    @property
    def provider(self) -> str:
        return " + ".join(m.provider for m in self.members)

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        fused = fuse([m.detect(image) for m in self.members], self.iou)
        return fused[np.flatnonzero(fused.confidence >= self.confidence)]


def _clusters_to_detections(
    merged: Detections, clusters: list[list[int]], models: int
) -> Detections:
    xyxy = np.empty((len(clusters), 4), dtype=np.float32)
    score = np.empty(len(clusters), dtype=np.float32)
    for c, boxes in enumerate(clusters):
        weights = merged.confidence[boxes]
        xyxy[c] = (merged.xyxy[boxes] * weights[:, None]).sum(axis=0) / max(weights.sum(), 1e-6)
        # One box per model in a cluster, so the sum over the cluster is the sum over models.
        score[c] = weights.sum() / models
    leaders = np.asarray([boxes[0] for boxes in clusters], dtype=np.intp)
    return Detections(xyxy=xyxy, confidence=score, class_id=merged.class_id[leaders])


def _iou(xyxy: FloatArray) -> FloatArray:
    inter = pairwise_intersection(xyxy)
    area = box_area(xyxy)
    union = area[:, None] + area[None, :] - inter
    return np.asarray(inter / np.maximum(union, 1e-6), dtype=np.float32)
