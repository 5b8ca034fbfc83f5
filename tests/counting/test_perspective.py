"""The person-height line learned from a camera's own boxes, and the boxes it rules out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.counting.perspective import (
    PerspectiveModel,
    Plausibility,
    fit_height_line,
    plausible,
    sane,
)

W, H = 384, 288
SLOPE, INTERCEPT = 0.3, 0.02  # person height = 0.3 * foot row + 0.02, fractions of H


def people(n: int, seed: int = 0, outliers: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of people standing on a level floor (heights growing with the foot row), with a
    share of wrong boxes of random size."""
    rng = np.random.default_rng(seed)
    foot = rng.uniform(0.3, 0.95, n)
    h = (SLOPE * foot + INTERCEPT) * rng.normal(1.0, 0.06, n)
    wrong = rng.random(n) < outliers
    h[wrong] = rng.uniform(0.02, 0.6, wrong.sum())
    x = rng.uniform(0.1, 0.8, n) * W
    w = 0.4 * h * H
    boxes = np.stack([x, (foot - h) * H, x + w, foot * H], axis=1).astype(np.float32)
    return boxes, np.full(n, 0.9, dtype=np.float32)


def learned(n: int = 600, **kw) -> PerspectiveModel:
    model = PerspectiveModel(Plausibility(**kw))
    boxes, scores = people(n, outliers=0.2)
    for frame in np.array_split(np.arange(n), n // 3):
        model.observe(boxes[frame], scores[frame], W, H)
    return model


def box(x: float, y: float, w: float, h: float) -> list[float]:
    return [x, y, x + w, y + h]


def test_theil_sen_recovers_the_height_line_despite_a_fifth_of_wrong_boxes():
    boxes, _ = people(1000, outliers=0.2)
    line = fit_height_line(boxes[:, 3] / H, (boxes[:, 3] - boxes[:, 1]) / H)
    assert line.slope == pytest.approx(SLOPE, abs=0.04)
    assert line.intercept == pytest.approx(INTERCEPT, abs=0.03)


def test_foot_rows_all_alike_give_a_flat_line_not_a_wild_slope():
    y = np.full(300, 0.6, dtype=np.float32) + np.random.default_rng(1).normal(0, 0.005, 300)
    line = fit_height_line(y.astype(np.float32), np.full(300, 0.3, dtype=np.float32))
    assert line.slope == 0.0
    assert line.intercept == pytest.approx(0.3)


def test_the_model_is_used_only_after_min_samples_distinct_confident_boxes():
    model = PerspectiveModel(Plausibility(min_samples=200))
    boxes, scores = people(150)
    model.observe(boxes, scores, W, H)
    assert model.line is None
    model.observe(boxes, scores, W, H)  # the same boxes again teach nothing new
    assert model.samples == 150
    low = np.full(100, 0.3, dtype=np.float32)
    model.observe(*people(100, seed=5), W, H)
    assert model.line is not None
    model.observe(people(100, seed=9)[0], low, W, H)  # unconfident: not learned from
    assert 240 <= model.samples <= 250  # a few random boxes coincide with earlier ones


@pytest.mark.parametrize(
    ("name", "xyxy", "kept"),
    [
        ("a person near the camera", box(100, 288 * 0.9 - 84, 35, 84), True),
        ("a person far away", box(200, 288 * 0.35 - 36, 15, 36), True),
        ("a clock digit at the top", box(20, 2, 8, 8), False),
        ("a digit-sized box lower down", box(200, 150, 8, 8), False),
        ("too wide for a person", box(50, 150, 120, 60), False),
        ("thinner than a person", box(50, 100, 4, 100), False),
        ("twice too tall for its place", box(100, 0.25 * 288, 80, 0.65 * 288), False),
        ("a third of a person: hidden below the shoulders", box(150, 200, 25, 0.11 * 288), True),
        ("a tenth of a person where one stands", box(150, 240, 10, 0.04 * 288), False),
        ("a head entering from the bottom edge: wide", box(150, 250, 60, 38), True),
    ],
)
def test_learned_model_keeps_people_and_rejects_boxes_no_person_makes(name, xyxy, kept):
    model = learned()
    assert model.line is not None
    result = model.keep(np.array([xyxy], dtype=np.float32), W, H)
    assert bool(result[0]) is kept, name


def test_before_anything_is_learned_only_size_and_shape_limits_apply():
    limits = Plausibility()
    boxes = np.array(
        [box(20, 2, 8, 8), box(100, 50, 30, 200), box(10, 10, 200, 60), box(100, 50, 20, 40)],
        dtype=np.float32,
    )
    assert sane(boxes, W, H, limits).tolist() == [False, True, False, True]
    assert plausible(boxes, W, H, None, limits).tolist() == [False, True, False, True]


def test_a_box_that_never_moves_adds_one_sample_not_one_per_frame():
    model = PerspectiveModel()
    rack = np.array([box(300, 100, 40, 60)], dtype=np.float32)
    for _ in range(500):
        model.observe(rack, np.array([0.95], dtype=np.float32), W, H)
    assert model.samples == 1


def test_state_round_trips_through_json_and_reset_forgets():
    model = learned()
    state = json.loads(json.dumps(model.to_dict()))
    again = PerspectiveModel()
    assert again.load(state)
    assert again.samples == model.samples
    assert again.line is not None and model.line is not None
    assert again.line.slope == pytest.approx(model.line.slope, abs=0.01)
    probe = np.array([box(20, 2, 8, 8), box(100, 120, 40, 0.5 * 288 * 0.6)], dtype=np.float32)
    assert again.keep(probe, W, H).tolist() == model.keep(probe, W, H).tolist()
    again.reset()
    assert again.line is None and again.samples == 0


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"version": 99, "seen": 1, "next": 0, "samples": []},
        {"version": 1, "seen": 1, "next": 0, "samples": [[0.1, "x", 0.2]]},
        {"version": 1, "seen": 1, "next": 0, "samples": [[0.1, 0.2, float("nan")]]},
        {"version": 1, "seen": 1, "next": 0, "samples": [[0.1, 0.2, 1e9]]},
    ],
)
def test_a_state_that_does_not_fit_is_refused_and_changes_nothing(state):
    model = learned()
    before = model.to_dict()
    assert not model.load(state)
    assert model.to_dict() == before


def test_describe_says_what_was_learned_in_pixels():
    assert "learning (0/200" in PerspectiveModel().describe(H)
    text = learned().describe(H)
    assert text.startswith("perspective: learned from ")
    assert "px high" in text


def test_the_config_defaults_are_the_settings_defaults():
    # The pipeline builds the settings from the config's fields; the two sets of defaults
    # must not drift apart.
    from edge.config import SceneConfig
    from edge.counting.overlays import OverlaySettings
    from edge.counting.perspective import Plausibility

    config = SceneConfig()
    assert Plausibility(**config.perspective.model_dump(exclude={"enabled"})) == Plausibility()
    assert OverlaySettings(**config.overlays.model_dump(exclude={"enabled"})) == OverlaySettings()
