"""Zone geometry: which zone, if any, each detected person stands in.

Pure functions over numpy arrays; nothing here mutates its inputs or keeps state. Polygons and
points are in normalized image coordinates (x right, y down, both in 0..1), so a zone drawn on a
snapshot keeps its meaning when the stream resolution changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge.types import Detections

Points = npt.NDArray[np.float32]

# Vertices this close (normalized) to the image border are taken to mean "to the border".
# People who stand at the bottom of the picture have their feet on, or beyond, the last row;
# a zone drawn by hand to 0.998 would otherwise never count them.
EDGE_SNAP = 0.01


@dataclass(frozen=True)
class Zone:
    """A counting zone on one camera image.

    priority settles overlaps: a person standing where two zones overlap counts only in the zone
    with the higher priority, then the lower id. Ids (not list order) break ties so that the result
    does not depend on the order in which zones were declared.
    """

    id: str
    polygon: tuple[tuple[float, float], ...]
    priority: int = 0

    def __post_init__(self) -> None:
        if len(self.polygon) < 3:
            raise ValueError(f"zone {self.id!r}: polygon needs at least 3 points")
        object.__setattr__(self, "polygon", snap_to_border(self.polygon))


def snap_to_border(
    polygon: Sequence[tuple[float, float]], margin: float = EDGE_SNAP
) -> tuple[tuple[float, float], ...]:
    """Move coordinates within `margin` of 0 or 1 onto the border (a little past it, for 1)."""

    def snap(v: float) -> float:
        if v <= margin:
            return -1e-6
        if v >= 1.0 - margin:
            return 1.0 + 1e-6
        return float(v)

    return tuple((snap(x), snap(y)) for x, y in polygon)


def points_in_polygon(
    points: Points, polygon: Sequence[tuple[float, float]]
) -> npt.NDArray[np.bool_]:
    """Even-odd ray casting for many points against one polygon, shape (N,) booleans.

    Points exactly on an edge may fall either way; a person's feet are never that precise.
    """
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    poly = np.asarray(polygon, dtype=np.float64)
    x = points[:, 0].astype(np.float64)[:, None]
    y = points[:, 1].astype(np.float64)[:, None]
    x1, y1 = poly[:, 0][None, :], poly[:, 1][None, :]
    x2, y2 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    crossings = straddles & (x < x_cross)
    return np.asarray(np.count_nonzero(crossings, axis=1) % 2 == 1)


def in_any_polygon(
    points: Points, polygons: Sequence[Sequence[tuple[float, float]]]
) -> npt.NDArray[np.bool_]:
    inside = np.zeros(len(points), dtype=bool)
    for polygon in polygons:
        inside |= points_in_polygon(points, polygon)
    return inside


def assign_zones(
    points: Points,
    zones: Sequence[Zone],
    ignore: Sequence[Sequence[tuple[float, float]]] = (),
) -> list[str | None]:
    """The one zone id each point belongs to, or None (outside every zone or inside an ignore mask).

    Ignore masks (posters, mannequins, screens) win over zones: a detection there is dropped.
    """
    assigned: list[str | None] = [None] * len(points)
    if len(points) == 0:
        return assigned
    points = np.clip(points, 0.0, 1.0)
    free = ~in_any_polygon(points, ignore)
    for zone in sorted(zones, key=lambda z: (-z.priority, z.id)):
        hit = free & points_in_polygon(points, zone.polygon)
        for i in np.flatnonzero(hit):
            assigned[i] = zone.id
        free &= ~hit
    return assigned


def count_in_zones(
    detections: Detections,
    width: int,
    height: int,
    zones: Sequence[Zone],
    ignore: Sequence[Sequence[tuple[float, float]]] = (),
) -> dict[str, int]:
    """People per zone for one frame; every zone is present in the result, empty ones with 0."""
    assigned = assign_zones(detections.anchors(width, height), zones, ignore)
    return tally(assigned, [zone.id for zone in zones])


def tally(assigned: Sequence[str | None], zone_ids: Sequence[str]) -> dict[str, int]:
    """Counts per zone from per-person assignments (None = in no zone)."""
    counts = dict.fromkeys(zone_ids, 0)
    for zone_id in assigned:
        if zone_id is not None:
            counts[zone_id] += 1
    return counts
