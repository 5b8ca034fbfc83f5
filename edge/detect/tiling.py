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

The grid is fitted to the frame and the model (`fit_grid`, when the settings ask for it), since
a grid written for a landscape camera misserves a portrait one:
- A model that resizes its input without keeping the aspect ratio (the Intel IR families) sees a
  360x640 portrait frame in its 544x320 input squashed threefold, people as flat blobs (on the
  Beijing BRT stills retail-0013 finds 28% of the heads at 0.1 so, 72% in three windows shaped
  like its input). Its windows get rows (columns) added while that brings their shape closer to
  the input's and it is more than ASPECT_TOLERANCE off.
- A letterboxed model gains nothing from a tile that does not enlarge the people: a 2x2 grid on
  a portrait frame gives tiles half as wide as they are tall, letterboxed to the same scale as a
  1x2 grid's. Tiles are dropped while the magnification stays within MAGNIFICATION_KEPT of the
  grid's (a 2x2 grid is 1x2 on a portrait frame and 2x1 on a 16:9 one, 2x2 on 4:3).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
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
# Two pieces cut apart by a window border share this much of the narrower one's width: the
# same body, boxed above and below the cut, spans nearly the same columns; two people one
# behind the other in a queue are offset by more than half a body.
STITCH_SHARE = 0.5
# The most tiles along one axis (the config's bound on tiling.grid).
MAX_GRID = 8

# A resized model's windows may be this far (as a ratio of aspect ratios) from its input's shape.
# Why 25%: it is what a 4:3 camera gives in a 16:9-like input (1.7 / 1.33 = 1.28, the retail
# cameras these models were made for, left as they are since one more row would be worse), while
# a person's own width-to-height ratio varies more than that with pose; a threefold squash is
# far outside any of it.
ASPECT_TOLERANCE = 1.25
# A letterboxed model keeps the fewest tiles that still enlarge people by this share of what the
# configured grid does: a person 5% smaller in the input is within the spread of sizes the
# detector sees from one frame to the next.
MAGNIFICATION_KEPT = 0.95

DetectFn = Callable[[npt.NDArray[np.uint8]], Detections]


class ModelInput(NamedTuple):
    """What the fitting needs of the model: its input (width, height) and whether it letterboxes
    (keeps the aspect ratio, padding the rest) or resizes (stretches to the input's shape)."""

    size: tuple[int, int]
    letterboxed: bool


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


def fit_grid(
    frame_size: tuple[int, int], grid: tuple[int, int], overlap: float, model: ModelInput
) -> tuple[int, int]:
    """The grid fitted to a frame of (width, height) and the model (see the module doc)."""
    if model.letterboxed:
        return _fewest_magnifying(frame_size, grid, overlap, model.size)
    return _shaped_like_input(frame_size, grid, overlap, model.size)


def detect_tiled(
    image: npt.NDArray[np.uint8],
    detect: DetectFn,
    tiling: TilingSettings,
    nms_iou: float,
    model: ModelInput | None = None,
) -> Detections:
    """Run `detect` (boxes in pixels of the image it is given) per tile and merge into frame pixels.

    `detect` is called once per tile and once for the full frame when tiling.full_frame; the
    models have a static batch of 1, so tiles cannot be batched. With tiling.fit and the model's
    input given, the grid is fitted to the frame first; a grid fitted to one tile is one pass.
    """
    height, width = image.shape[:2]
    grid = tiling.grid
    if tiling.fit and model is not None:
        grid = fit_grid((width, height), grid, tiling.overlap, model)
    if grid == (1, 1):
        return detect(image)
    frame = Window(0, 0, width, height)
    passes: list[tuple[Window, Detections]] = []
    if tiling.full_frame:
        passes.append((frame, detect(image)))
    for tile in tile_windows(width, height, grid, tiling.overlap):
        found = detect(image[tile.y0 : tile.y1, tile.x0 : tile.x1])
        passes.append((tile, _shift(found, tile.x0, tile.y0)))
    # Without a pass over the whole frame no pass sees a tall, near person whole.
    return merge_passes(passes, (width, height), nms_iou, stitch=not tiling.full_frame)


def merge_passes(
    passes: list[tuple[Window, Detections]],
    frame_size: tuple[int, int],
    nms_iou: float,
    cover: float = COVER_THRESHOLD,
    stitch: bool = False,
) -> Detections:
    """Merge per-pass detections (already in frame pixels) into one set; see the module rules.

    stitch: first join the pieces of a person cut by a border of two windows (`stitch_pieces`).
    """
    merged = Detections.concatenate([found for _, found in passes])
    if len(merged) == 0:
        return merged
    if stitch:
        merged, passes = stitch_pieces(merged, passes, frame_size)
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


def stitch_pieces(
    merged: Detections, passes: list[tuple[Window, Detections]], frame_size: tuple[int, int]
) -> tuple[Detections, list[tuple[Window, Detections]]]:
    """Join the two pieces of a person that a border of two overlapping windows cuts apart.

    A person taller (wider) than the windows' overlap is whole in neither window: the upper one
    boxes the top, cut at its bottom edge, the lower one the rest, cut at its top edge, and both
    count. Two such boxes are one person when each is the other's best partner across that
    border: the first cut at the bottom (right) edge of its window, the second at the top (left)
    edge of a window below (beside) it, the two overlapping along the border and sharing at
    least STITCH_SHARE of the narrower one's width (height). The joined box is their union with
    the higher score; the passes are returned with each joined piece in the first one's pass.
    """
    pass_id = np.concatenate([np.full(len(found), i) for i, (_, found) in enumerate(passes)])
    windows = np.asarray([passes[p][0] for p in pass_id], dtype=np.float32).reshape(-1, 4)
    xyxy = merged.xyxy
    parent = np.arange(len(merged))
    for axis in (1, 0):  # vertical neighbours (rows), then horizontal ones (columns)
        for low, high in _best_partners(xyxy, windows, pass_id, frame_size, axis):
            parent[parent == parent[high]] = parent[low]
    if (parent == np.arange(len(merged))).all():
        return merged, passes
    groups = [np.flatnonzero(parent == root) for root in np.unique(parent)]
    joined_xyxy = np.asarray(
        [[*xyxy[g, :2].min(axis=0), *xyxy[g, 2:].max(axis=0)] for g in groups], dtype=np.float32
    )
    best = np.asarray([g[np.argmax(merged.confidence[g])] for g in groups], dtype=np.intp)
    joined = Detections(
        xyxy=joined_xyxy.reshape(-1, 4),
        confidence=merged.confidence[best],
        class_id=merged.class_id[best],
    )
    owner = pass_id[np.asarray([g[0] for g in groups], dtype=np.intp)]
    regrouped = [(w, joined[np.flatnonzero(owner == i)]) for i, (w, _) in enumerate(passes)]
    order = np.argsort(owner, kind="stable")
    return joined[order], regrouped


def _best_partners(
    xyxy: FloatArray,
    windows: FloatArray,
    pass_id: npt.NDArray[np.int_],
    frame_size: tuple[int, int],
    axis: int,
) -> list[tuple[int, int]]:
    """Pairs (piece before the border, piece after it) along `axis` (1: y, 0: x); see
    stitch_pieces."""
    across = 1 - axis
    end = frame_size[axis]
    margin = (windows[:, 2 + axis] - windows[:, axis]) * BORDER_MARGIN
    cut_after = (windows[:, 2 + axis] < end) & (xyxy[:, 2 + axis] >= windows[:, 2 + axis] - margin)
    cut_before = (windows[:, axis] > 0) & (xyxy[:, axis] <= windows[:, axis] + margin)
    shared = np.maximum(
        0.0,
        np.minimum(xyxy[:, None, 2 + across], xyxy[None, :, 2 + across])
        - np.maximum(xyxy[:, None, across], xyxy[None, :, across]),
    )
    extent = xyxy[:, 2 + across] - xyxy[:, across]
    share = shared / np.maximum(np.minimum(extent[:, None], extent[None, :]), 1e-6)
    # i's window ends inside j's, which starts after i's does: j is the next window along axis.
    next_window = (windows[None, :, axis] > windows[:, None, axis]) & (
        windows[None, :, axis] < windows[:, None, 2 + axis]
    )
    meets = xyxy[:, None, 2 + axis] > xyxy[None, :, axis]
    candidate = (
        cut_after[:, None]
        & cut_before[None, :]
        & next_window
        & meets
        & (pass_id[:, None] != pass_id[None, :])
        & (share >= STITCH_SHARE)
    )
    score = np.where(candidate, share, -1.0)
    pairs = []
    for i in np.flatnonzero(candidate.any(axis=1)):
        j = int(np.argmax(score[i]))
        if int(np.argmax(score[:, j])) == i:  # each is the other's best
            pairs.append((int(i), j))
    return pairs


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


def _tile_size(
    frame_size: tuple[int, int], grid: tuple[int, int], overlap: float
) -> tuple[float, float]:
    return (
        frame_size[0] / (grid[0] - (grid[0] - 1) * overlap),
        frame_size[1] / (grid[1] - (grid[1] - 1) * overlap),
    )


@lru_cache(maxsize=64)
def _fewest_magnifying(
    frame_size: tuple[int, int], grid: tuple[int, int], overlap: float, size: tuple[int, int]
) -> tuple[int, int]:
    def magnification(g: tuple[int, int]) -> float:
        tile_w, tile_h = _tile_size(frame_size, g, overlap)
        return min(size[0] / tile_w, size[1] / tile_h)

    wanted = MAGNIFICATION_KEPT * magnification(grid)
    options = [(c, r) for c in range(1, grid[0] + 1) for r in range(1, grid[1] + 1)]
    enough = [g for g in options if magnification(g) >= wanted]
    return min(enough, key=lambda g: (g[0] * g[1], -magnification(g)))


@lru_cache(maxsize=64)
def _shaped_like_input(
    frame_size: tuple[int, int], grid: tuple[int, int], overlap: float, size: tuple[int, int]
) -> tuple[int, int]:
    def off(g: tuple[int, int]) -> float:
        tile_w, tile_h = _tile_size(frame_size, g, overlap)
        ratio = (tile_w / tile_h) / (size[0] / size[1])
        return max(ratio, 1.0 / ratio)

    columns, rows = grid
    while off((columns, rows)) > ASPECT_TOLERANCE and max(columns, rows) < MAX_GRID:
        tile_w, tile_h = _tile_size(frame_size, (columns, rows), overlap)
        # Too tall for the input: more rows; too wide: more columns.
        more = (columns, rows + 1) if tile_w / tile_h < size[0] / size[1] else (columns + 1, rows)
        if off(more) >= off((columns, rows)):
            break
        columns, rows = more
    return columns, rows


def _spans(length: int, n: int, overlap: float) -> list[tuple[int, int]]:
    tile = length / (n - (n - 1) * overlap)
    step = tile * (1.0 - overlap)
    starts = [min(round(i * step), length - 1) for i in range(n)]
    ends = [round(i * step + tile) for i in range(n - 1)] + [length]
    # Frames narrower than the grid still get non-empty tiles inside the frame.
    return [(s, min(max(e, s + 1), length)) for s, e in zip(starts, ends, strict=True)]
