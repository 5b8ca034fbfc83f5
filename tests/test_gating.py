"""The change gate lets the detector rest on a still view and wakes it on change or refresh; the
pipeline counts still people from the last run, and the config is checked as it is read."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import ConfigError, parse_config
from edge.detect.gating import ChangeGate, GateSettings
from edge.pipeline import CameraPipeline
from edge.types import Detections, Frame

W, H = 640, 480


def lobby(seed: int = 0, noise: int = 0) -> np.ndarray:
    """A textured lobby (so blur and shrinking leave something to compare), with sensor noise."""
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(40, 200, (H, W, 3), dtype=np.uint8), (9, 9), 0)
    if noise:
        jitter = np.random.default_rng(seed).integers(-noise, noise + 1, image.shape)
        image = np.clip(image.astype(np.int16) + jitter, 0, 255).astype(np.uint8)
    return image


def with_person(image: np.ndarray, x: int, y: int = 300, w: int = 15, h: int = 40) -> np.ndarray:
    """A small, far person: 15x40 px of a 640x480 frame, darker than the floor."""
    out = image.copy()
    out[y : y + h, x : x + w] = 20
    return out


def test_the_first_frame_runs_then_the_same_view_rests_until_the_refresh():
    gate = ChangeGate(GateSettings(refresh_s=10.0))
    view = lobby()
    assert gate.decide(view, 0.0).reason == "first"
    decisions = [gate.decide(view, t) for t in (0.5, 5.0, 9.5)]
    assert [d.run for d in decisions] == [False, False, False]
    assert all(d.reason == "still" and d.changed == 0.0 for d in decisions)
    assert gate.decide(view, 10.0).reason == "refresh"
    assert not gate.decide(view, 10.5).run  # the refresh is the new reference


def test_sensor_noise_is_no_change():
    gate = ChangeGate(GateSettings())
    gate.decide(lobby(noise=8, seed=0), 0.0)
    assert not any(gate.decide(lobby(noise=8, seed=s), s * 0.5).run for s in range(1, 12))


def test_a_small_far_person_walking_in_wakes_the_detector():
    gate = ChangeGate(GateSettings())
    empty = lobby()
    gate.decide(empty, 0.0)
    decision = gate.decide(with_person(empty, 500), 0.5)
    assert decision.run and decision.reason == "changed" and decision.changed > 0.02


def test_a_slow_change_adds_up_against_the_frame_of_the_last_run():
    """Each step moves the person 2 px, too little between two frames; against the frame the
    detector last ran on, it adds up and wakes it."""
    gate = ChangeGate(GateSettings(refresh_s=1000.0))
    start = with_person(lobby(), 300)
    gate.decide(start, 0.0)
    runs = [gate.decide(with_person(lobby(), 300 + 2 * k), float(k)).run for k in range(1, 20)]
    assert not runs[0] and any(runs)


def test_change_inside_a_mask_never_wakes_the_detector():
    screen = [(0.7, 0.5), (0.9, 0.5), (0.9, 0.8), (0.7, 0.8)]
    gate = ChangeGate(GateSettings(masks=(screen,)))
    empty = lobby()
    gate.decide(empty, 0.0)
    flicker = empty.copy()
    flicker[250:380, 460:570] = 255  # the screen changes its picture
    assert not gate.decide(flicker, 0.5).run
    assert gate.decide(with_person(flicker, 100), 1.0).run  # outside the mask it still sees


def test_reset_and_a_clock_that_went_back_make_the_next_frame_run():
    gate = ChangeGate(GateSettings())
    view = lobby()
    gate.decide(view, 100.0)
    gate.reset()
    assert gate.decide(view, 100.5).reason == "first"
    assert gate.decide(view, 50.0).run


@pytest.mark.parametrize(
    "settings",
    [
        {"refresh_s": 0},
        {"pixel_threshold": 0},
        {"cell_share": 0},
        {"cell_share": 1.5},
        {"grid": (0, 6)},
    ],
)
def test_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValueError):
        GateSettings(**settings)


CONFIG = """\
site: {{id: test-site}}
cameras:
  - id: lobby
    source: unused.mp4
    zones:
      - {{id: seats, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
      - {{id: door, role: entrance, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}}
    ignore:
      - {{id: poster, polygon: [[0.55, 0.05], [0.95, 0.05], [0.95, 0.45], [0.55, 0.45]]}}
{gating}occupancy: {{hold_frames: 0, window_s: 0}}
storage: {{path: "{db}"}}
mqtt: {{enabled: false}}
"""


def config(tmp_path: Path, gating: str = ""):
    text = CONFIG.format(db=tmp_path / "lw.db", gating=gating)
    return parse_config(text, base_dir=tmp_path, environ={})


class Seated:
    """Two people seated on the left; counts the calls."""

    provider = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> Detections:
        self.calls += 1
        xyxy = np.array([[60, 200, 110, 330], [180, 210, 230, 340]], np.float32)
        return Detections(xyxy, np.full(2, 0.9, np.float32), np.zeros(2, np.int32))


def frame(i: int, image: np.ndarray) -> Frame:
    return Frame("lobby", i, image, datetime.now(timezone.utc), i * 0.5)


def test_still_people_stay_counted_while_the_detector_rests(tmp_path):
    cfg = config(tmp_path, "    gating: {refresh_s: 10}\n")
    detector = Seated()
    pipeline = CameraPipeline(cfg.cameras[0], detector, cfg.occupancy)
    view = lobby()
    results = [pipeline.process(frame(i, view), i * 0.5) for i in range(60)]  # 30 s at 2 fps
    assert [r.raw["seats"] for r in results] == [2] * 60
    assert detector.calls == 3  # the first frame, then a refresh at 10 s and at 20 s
    assert [r.detector_ran for r in results[:3]] == [True, False, False]
    assert results[1].gate_reason == "still" and results[1].inference_s == 0.0
    assert results[20].gate_reason == "refresh"
    assert len(results[1].detections) == 2  # the last run's boxes stand


def test_motion_wakes_the_detector_but_the_ignored_poster_does_not(tmp_path):
    cfg = config(tmp_path)
    detector = Seated()
    pipeline = CameraPipeline(cfg.cameras[0], detector, cfg.occupancy)
    view = lobby()
    pipeline.process(frame(0, view), 0.0)
    poster = view.copy()
    poster[40:200, 370:600] = 250  # an animated poster inside the ignore polygon
    assert not pipeline.process(frame(1, poster), 0.5).detector_ran
    assert pipeline.process(frame(2, with_person(poster, 420)), 1.0).detector_ran


def test_a_camera_back_online_runs_the_detector_on_its_first_frame(tmp_path):
    cfg = config(tmp_path)
    detector = Seated()
    pipeline = CameraPipeline(cfg.cameras[0], detector, cfg.occupancy)
    view = lobby()
    pipeline.process(frame(0, view), 0.0)
    pipeline.mark_unknown()
    assert pipeline.process(frame(1, view), 0.5).gate_reason == "first"
    assert detector.calls == 2


def test_a_failed_run_is_not_the_reference_of_the_next_frame(tmp_path):
    class FailsOnce(Seated):
        def detect(self, image: np.ndarray) -> Detections:
            if self.calls == 1:
                self.calls += 1
                raise RuntimeError("inference failed")
            return super().detect(image)

    cfg = config(tmp_path)
    detector = FailsOnce()
    pipeline = CameraPipeline(cfg.cameras[0], detector, cfg.occupancy)
    view = lobby()
    pipeline.process(frame(0, view), 0.0)
    moved = with_person(view, 420)
    with pytest.raises(RuntimeError):
        pipeline.process(frame(1, moved), 0.5)
    assert pipeline.process(frame(2, moved), 1.0).detector_ran


def test_gating_off_runs_the_detector_on_every_frame(tmp_path):
    cfg = config(tmp_path, "    gating: {enabled: false}\n")
    detector = Seated()
    pipeline = CameraPipeline(cfg.cameras[0], detector, cfg.occupancy)
    results = [pipeline.process(frame(i, lobby()), i * 0.5) for i in range(5)]
    assert detector.calls == 5 and {r.gate_reason for r in results} == {"off"}


@pytest.mark.parametrize(
    ("gating", "message"),
    [
        ("{refresh_s: 0}", "greater than 0"),
        ("{grid: [0, 6]}", "1..64"),
        ("{cell_share: 2}", "less than or equal to 1"),
        (
            "{masks: [{id: a, polygon: [[0, 0], [1, 0], [1, 1]]}, {id: a, polygon: [[0, 0], [1, 0], [0, 1]]}]}",
            "motion mask",
        ),
        ("{sensitivity: 3}", "sensitivity"),
    ],
)
def test_a_wrong_gating_section_is_refused_with_its_reason(tmp_path, gating, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, f"    gating: {gating}\n")
