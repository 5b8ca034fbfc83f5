"""Polygons: one clear error for points given in pixels, wherever a polygon is (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, parse_config

BASE = """\
site: {{id: branch-1}}
cameras:
  - id: lobby
    source: rtsp://10.0.0.5/stream1
    zones:
      - {{id: waiting, role: waiting, polygon: {zone}}}
    ignore:
      - {{id: window, polygon: {ignore}}}
    gating:
      masks:
        - {{id: screen, polygon: {mask}}}
storage: {{path: lw.db}}
"""
GOOD = "[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]"
PIXELS = "[[120, 300], [600, 300], [600, 450]]"
HINT = (
    "a polygon's points are fractions of the frame (x / width, y / height, 0..1, x right, y down)"
)


def errors_of(**polygons: str) -> list[str]:
    text = BASE.format(**{"zone": GOOD, "ignore": GOOD, "mask": GOOD, **polygons})
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="site.yaml", base_dir=Path("/srv"), environ={})
    return [str(issue) for issue in info.value.issues]


def test_a_good_polygon_in_every_place_is_valid():
    config = parse_config(
        BASE.format(zone=GOOD, ignore=GOOD, mask=GOOD),
        source="site.yaml",
        base_dir=Path("/srv"),
        environ={},
    )
    assert config.cameras[0].gating.masks[0].polygon[2] == (0.9, 0.9)


@pytest.mark.parametrize(
    ("place", "path", "line"),
    [
        ("zone", "cameras.0.zones.0.polygon", 6),
        ("ignore", "cameras.0.ignore.0.polygon", 8),
        ("mask", "cameras.0.gating.masks.0.polygon", 11),
    ],
)
def test_a_polygon_in_pixels_gets_one_error_saying_so_and_how_to_convert(place, path, line):
    assert errors_of(**{place: PIXELS}) == [
        f"{path} (line {line}): points look like pixels (a coordinate above 1: 600); {HINT}:"
        " e.g. in a 640x480 frame [120, 300] is [0.1875, 0.625]"
    ]


def test_the_example_frame_is_the_smallest_common_one_the_points_fit_in():
    (error,) = errors_of(zone="[[100, 200], [1800, 200], [1800, 1000]]")
    assert error.endswith("e.g. in a 1920x1080 frame [100, 200] is [0.05208, 0.1852]")


def test_points_beyond_any_common_frame_get_the_rule_without_an_example():
    (error,) = errors_of(zone="[[100, 200], [5000, 200], [5000, 3000]]")
    assert error.endswith(f"(a coordinate above 1: 5000); {HINT}")


def test_a_point_just_past_the_edge_is_outside_the_frame_not_pixels():
    assert errors_of(zone="[[0.1, 0.1], [0.9, 0.1], [1.2, 0.9]]") == [
        f"cameras.0.zones.0.polygon (line 6): point [1.2, 0.9] lies outside the frame"
        f" (a coordinate above 1); {HINT}"
    ]


@pytest.mark.parametrize(
    ("polygon", "expected"),
    [
        (
            "[[-0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]",
            ["cameras.0.zones.0.polygon.0.0 (line 6): Input should be greater than or equal to 0"],
        ),
        (
            "[[.nan, 0.1], [0.9, 0.1], [0.9, 0.9]]",
            ["cameras.0.zones.0.polygon.0.0 (line 6): Input should be a finite number"],
        ),
        (
            "[[0.1, 0.1, 0.5], [0.9, 0.1], [0.9, 0.9]]",
            [
                "cameras.0.zones.0.polygon.0 (line 6): Tuple should have at most 2 items after"
                " validation, not 3"
            ],
        ),
        (
            "[[true, 0.1], [0.9, 0.1], [0.9, 0.9]]",
            ["cameras.0.zones.0.polygon (line 6): must be a number, not true/false"],
        ),
        (
            f"[[{10**400}, 0.1], [0.9, 0.1], [0.9, 0.9]]",
            ["cameras.0.zones.0.polygon.0.0 (line 6): Input should be a valid number"],
        ),
    ],
    ids=["negative", "nan", "three numbers", "boolean", "huge integer"],
)
def test_other_point_mistakes_keep_their_own_message_at_the_point(polygon, expected):
    assert errors_of(zone=polygon) == expected
