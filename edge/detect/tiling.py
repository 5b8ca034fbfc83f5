"""Tiled detection: overlapping tiles (upscaled to the model input) plus an optional full pass.

In a 640x480 lobby camera a distant person is 10-20 pixels wide; letterboxed into a 416 input
they shrink below what a nano model finds. Cutting the frame into tiles makes each tile fill
the model input, so small people get more input pixels. Tiles cut big people apart, which is
what the full-frame pass is for; the merge below removes the duplicates the two produce.

Merge rules, in order (all boxes in source-frame pixels):
1. Border fragments: a tile box that touches an inner tile edge (one that is not a frame edge)
   and lies mostly (>= COVER_THRESHOLD of its area) inside a larger box from another pass is the
   cut-off part of a person that other pass saw whole: drop it.
2. IoU NMS over all remaining boxes (the same person seen whole in two overlapping tiles, or in a
   tile and the full frame).
3. Containment across passes: a box mostly inside a higher-scoring box from another pass is the
   same person boxed differently (a tile sees the torso, the full frame the whole body). Only
   pairs from different passes: within one pass, the model's NMS already decided, and a child in
   front of an adult is two people.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from edge.detect.decode import box_area, nms, pairwise_intersection
from edge.detect.settings import TilingSettings
from edge.types import Detections, FloatArray

# Share of the smaller box's area inside the other box from which two boxes of different passes
# count as one person (rules 1 and 3). A fragment cut off by a tile edge lies 80-100 % inside the
# whole person's box. On 40 Mall frames (yolox_nano, 2x2 tiles + full frame) thresholds 0.5-0.65
# scored alike (true minus false people within 2 of 900), 0.75 and above kept more duplicates;
# 0.65 is the top of that range, the one least likely to merge two people in a crowd.
COVER_THRESHOLD = 0.65

# Distance, as a fraction of the tile's side, within which a box edge "touches" a tile edge. Boxes
# cut by a tile edge end on it after clipping, or a few pixels short of it: the model's regression
# rarely runs exactly to the image edge (seen: 4 px short on a 400 px tile).
BORDER_MARGIN = 0.02

DetectFn = Callable[[npt.NDArray[np.uint8]], Detections]


class Window(NamedTuple):
    """A tile: [x0, x1) x [y0, y1) in source-frame pixels."""

    x0: int
    y0: int
    x1: int
    y1: int


def tile_windows(width: int, height: int, grid: tuple[int, int], overlap: float) -> list[Window]:
    """Tiles covering a width x height frame (pixels), row by row, neighbours sharing `overlap`.

    Each tile is frame / (n - (n - 1) * overlap) long on its axis, so n tiles overlapping by that
    fraction exactly span the frame; the last tile ends on the frame edge.
    """
    columns, rows = grid
    xs = _spans(width, columns, overlap)
    ys = _spans(height, rows, overlap)
    return [Window(x0, y0, x1, y1) for (y0, y1) in ys for (x0, x1) in xs]


def detect_tiled(
    image: npt.NDArray[np.uint8], detect: DetectFn, tiling: TilingSettings, nms_iou: float
) -> Detections:
    """Run `detect` (boxes in pixels of the image it is given) per tile and merge into frame pixels.

    `detect` is called once per tile and once for the full frame when tiling.full_frame; the
    models have a static batch of 1, so tiles cannot be batched.
    """
    height, width = image.shape[:2]
    frame = Window(0, 0, width, height)
    passes: list[tuple[Window, Detections]] = []
    if tiling.full_frame:
        passes.append((frame, detect(image)))
    for tile in tile_windows(width, height, tiling.grid, tiling.overlap):
        found = detect(image[tile.y0 : tile.y1, tile.x0 : tile.x1])
        passes.append((tile, _shift(found, tile.x0, tile.y0)))
    return merge_passes(passes, (width, height), nms_iou)


def merge_passes(
    passes: list[tuple[Window, Detections]],
    frame_size: tuple[int, int],
    nms_iou: float,
    cover: float = COVER_THRESHOLD,
) -> Detections:
    """Merge per-pass detections (already in frame pixels) into one set; see the module rules."""
    merged = Detections.concatenate([found for _, found in passes])
    if len(merged) == 0:
        return merged
    pass_id = np.concatenate([np.full(len(found), i) for i, (_, found) in enumerate(passes)])
    windows = np.concatenate(
        [np.tile(np.asarray(w, dtype=np.float32), (len(f), 1)) for w, f in passes]
    ).reshape(-1, 4)
    xyxy = merged.xyxy
    cover_matrix = _covered_fraction(xyxy)
    other_pass = pass_id[:, None] != pass_id[None, :]

    area = box_area(xyxy)
    larger = area[None, :] > area[:, None]
    on_border = touches_inner_edge(xyxy, windows, frame_size)
    fragment = on_border & ((cover_matrix >= cover) & other_pass & larger).any(axis=1)
    kept = np.flatnonzero(~fragment)

    kept = kept[nms(xyxy[kept], merged.confidence[kept], nms_iou)]
    pairs = np.ix_(kept, kept)
    kept = kept[_suppress_contained(cover_matrix[pairs], other_pass[pairs], cover)]
    return merged[kept]


def touches_inner_edge(
    xyxy: FloatArray, windows: FloatArray, frame_size: tuple[int, int]
) -> npt.NDArray[np.bool_]:
    """Whether each box (N, 4) ends on an edge of its tile (N, 4) that is not a frame edge."""
    width, height = frame_size
    mx = (windows[:, 2] - windows[:, 0]) * BORDER_MARGIN
    my = (windows[:, 3] - windows[:, 1]) * BORDER_MARGIN
    left = (windows[:, 0] > 0) & (xyxy[:, 0] <= windows[:, 0] + mx)
    top = (windows[:, 1] > 0) & (xyxy[:, 1] <= windows[:, 1] + my)
    right = (windows[:, 2] < width) & (xyxy[:, 2] >= windows[:, 2] - mx)
    bottom = (windows[:, 3] < height) & (xyxy[:, 3] >= windows[:, 3] - my)
    result: npt.NDArray[np.bool_] = left | top | right | bottom
    return result


def _suppress_contained(
    cover_matrix: FloatArray, other_pass: npt.NDArray[np.bool_], cover: float
) -> npt.NDArray[np.intp]:
    """Greedy over boxes sorted by descending score (as NMS returns them): keep a box unless a
    kept, higher-scoring box from another pass shares >= `cover` of the smaller box's area."""
    smaller_covered = np.maximum(cover_matrix, cover_matrix.T)
    same_person = (smaller_covered >= cover) & other_pass
    kept: list[int] = []
    for i in range(len(cover_matrix)):
        if not kept or not same_person[i, kept].any():
            kept.append(i)
    return np.asarray(kept, dtype=np.intp)


def _covered_fraction(xyxy: FloatArray) -> FloatArray:
    """(N, N) matrix: share of box i's area inside box j; 0 on the diagonal."""
    inter = pairwise_intersection(xyxy)
    fraction = np.asarray(inter / np.maximum(box_area(xyxy), 1e-6)[:, None], dtype=np.float32)
    np.fill_diagonal(fraction, 0.0)
    return fraction


def _shift(found: Detections, dx: int, dy: int) -> Detections:
    offset = np.array([dx, dy, dx, dy], dtype=np.float32)
    return Detections(
        xyxy=found.xyxy + offset, confidence=found.confidence, class_id=found.class_id
    )


def _spans(length: int, n: int, overlap: float) -> list[tuple[int, int]]:
    tile = length / (n - (n - 1) * overlap)
    step = tile * (1.0 - overlap)
    starts = [min(round(i * step), length - 1) for i in range(n)]
    ends = [round(i * step + tile) for i in range(n - 1)] + [length]
    # Frames narrower than the grid still get non-empty tiles inside the frame.
    return [(s, min(max(e, s + 1), length)) for s, e in zip(starts, ends, strict=True)]
