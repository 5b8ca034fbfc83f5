"""Zone geometry as properties: one zone per person, order independence, ignore masks."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.types import Detections
from edge.zones import Zone, assign_zones, count_in_zones, points_in_polygon

coord = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
points_st = st.lists(st.tuples(coord, coord), min_size=0, max_size=40)


def rect(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


@st.composite
def polygons(draw: st.DrawFn) -> tuple[tuple[float, float], ...]:
    """Simple (non self-intersecting) polygons: points sorted by angle around a centre."""
    n = draw(st.integers(3, 8))
    cx, cy = draw(coord), draw(coord)
    angles = sorted(
        draw(
            st.lists(st.floats(0, 2 * np.pi, exclude_max=True), min_size=n, max_size=n, unique=True)
        )
    )
    radii = draw(st.lists(st.floats(0.05, 0.6), min_size=n, max_size=n))
    return tuple(
        (float(np.clip(cx + r * np.cos(a), 0, 1)), float(np.clip(cy + r * np.sin(a), 0, 1)))
        for a, r in zip(angles, radii, strict=True)
    )


@st.composite
def zone_sets(draw: st.DrawFn) -> list[Zone]:
    n = draw(st.integers(1, 5))
    return [Zone(f"z{i}", draw(polygons()), draw(st.integers(-2, 2))) for i in range(n)]


def _far_from_edges(points: np.ndarray, polygon: tuple[tuple[float, float], ...]) -> np.ndarray:
    # Points within a hair of an edge may fall either way; exclude them from the oracle check.
    boundary = shapely.Polygon(polygon).boundary
    return np.array([boundary.distance(shapely.Point(p)) > 1e-6 for p in points], dtype=bool)


@settings(max_examples=200, deadline=None)
@given(points=points_st, polygon=polygons())
def test_point_in_polygon_agrees_with_shapely(points, polygon):
    pts = np.array(points, dtype=np.float32).reshape(-1, 2)
    ours = points_in_polygon(pts, polygon)
    poly = shapely.Polygon(polygon)
    if not poly.is_valid or poly.area < 1e-6:
        return
    theirs = shapely.contains_xy(poly, pts[:, 0].astype(float), pts[:, 1].astype(float))
    keep = _far_from_edges(pts, polygon)
    assert np.array_equal(ours[keep], theirs[keep])


@settings(max_examples=200, deadline=None)
@given(points=points_st, zones=zone_sets())
def test_each_person_counts_in_at_most_one_zone_which_contains_them(points, zones):
    pts = np.array(points, dtype=np.float32).reshape(-1, 2)
    assigned = assign_zones(pts, zones)
    by_id = {z.id: z for z in zones}
    assert len(assigned) == len(pts)
    for point, zone_id in zip(pts, assigned, strict=True):
        inside = [z for z in zones if points_in_polygon(point[None, :], z.polygon)[0]]
        if zone_id is None:
            assert not inside
        else:
            assert points_in_polygon(point[None, :], by_id[zone_id].polygon)[0]
            best = max(inside, key=lambda z: (z.priority, [-ord(c) for c in z.id]))
            assert by_id[zone_id].priority == best.priority


@settings(max_examples=100, deadline=None)
@given(points=points_st, zones=zone_sets(), data=st.data())
def test_result_does_not_depend_on_zone_order(points, zones, data):
    pts = np.array(points, dtype=np.float32).reshape(-1, 2)
    shuffled = data.draw(st.permutations(zones))
    assert assign_zones(pts, zones) == assign_zones(pts, shuffled)


@settings(max_examples=100, deadline=None)
@given(points=points_st, zones=zone_sets(), mask=polygons())
def test_nobody_inside_an_ignore_mask_is_counted(points, zones, mask):
    pts = np.array(points, dtype=np.float32).reshape(-1, 2)
    masked = points_in_polygon(pts, mask)
    assigned = assign_zones(pts, zones, ignore=[mask])
    assert all(zone_id is None for zone_id, m in zip(assigned, masked, strict=True) if m)
    # and masking never adds people anywhere
    unmasked = assign_zones(pts, zones)
    assert sum(a is not None for a in assigned) <= sum(a is not None for a in unmasked)


def boxes(*xyxy: tuple[float, float, float, float]) -> Detections:
    n = len(xyxy)
    return Detections(
        xyxy=np.array(xyxy, dtype=np.float32).reshape(n, 4),
        confidence=np.full(n, 0.9, dtype=np.float32),
        class_id=np.zeros(n, dtype=np.int32),
    )


def test_people_are_placed_by_their_feet_not_their_box_centre():
    # A tall person standing in the front zone whose head reaches into the back zone.
    back, front = Zone("back", rect(0, 0, 1, 0.5)), Zone("front", rect(0, 0.5, 1, 1))
    person = boxes((40, 20, 60, 90))  # 100x100 image: centre y=55 -> front; feet y=90 -> front
    head_only = boxes((40, 10, 60, 45))  # feet at 45 -> back
    assert count_in_zones(person, 100, 100, [back, front]) == {"back": 0, "front": 1}
    assert count_in_zones(head_only, 100, 100, [back, front]) == {"back": 1, "front": 0}


@pytest.mark.parametrize(
    ("priorities", "expected"),
    [
        ((0, 0), {"a": 1, "b": 0}),  # equal priority: lower id wins, declared order does not matter
        ((0, 1), {"a": 0, "b": 1}),
        ((2, 1), {"a": 1, "b": 0}),
    ],
)
def test_overlap_is_settled_by_priority(priorities, expected):
    a = Zone("a", rect(0, 0, 0.6, 1), priorities[0])
    b = Zone("b", rect(0.4, 0, 1, 1), priorities[1])
    person = boxes((45, 10, 55, 80))  # feet at (0.5, 0.8): in both
    assert count_in_zones(person, 100, 100, [b, a]) == expected


def test_empty_zones_report_zero_and_no_detections_is_fine():
    zones = [Zone("a", rect(0, 0, 1, 1))]
    assert count_in_zones(Detections.empty(), 640, 480, zones) == {"a": 0}


def test_zone_needs_three_points():
    with pytest.raises(ValueError, match="at least 3 points"):
        Zone("a", ((0, 0), (1, 1)))
