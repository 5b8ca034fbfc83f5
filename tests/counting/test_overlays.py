"""Burnt-in clock, camera name and logo found in synthetic frames; people beside them kept."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.counting.overlays import OverlayDetector, OverlaySettings

W, H = 384, 288


_NOISE = [
    np.random.default_rng(k).normal(110, 6, (H, W, 3)).clip(0, 255).astype(np.uint8)
    for k in range(4)
]


def scene(i: int, rng: np.random.Generator) -> np.ndarray:
    """A mid-grey corridor with sensor noise and a person walking along the bottom of it."""
    img = _NOISE[int(rng.integers(0, len(_NOISE)))].copy()
    cv2.rectangle(img, (0, 120), (W, 130), (70, 70, 70), -1)  # a skirting board
    x = 20 + (i * 7) % 300
    cv2.rectangle(img, (x, 150), (x + 30, 280), (40, 40, 160), -1)
    return img


def text(img: np.ndarray, s: str, org: tuple[int, int], color=(255, 255, 255)) -> None:
    """Recorder style: a white or yellow glyph with a dark outline."""
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 3)
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_PLAIN, 0.8, color, 1)


def frames(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = scene(i, rng)
        text(img, f"2024-05-01 10:{i // 60 % 60:02d}:{i % 60:02d}", (6, 12))  # a running clock
        text(img, "BANK", (330, 12), (0, 230, 255))  # a yellow logo
        text(img, "CAM 3 LOBBY", (6, 282))  # the camera name
        yield img


def learned(n: int = 60) -> OverlayDetector:
    detector = OverlayDetector()
    for img in frames(n):
        detector.observe(img)
    return detector


def boxes(*xywh: tuple[float, float, float, float]) -> np.ndarray:
    return np.array([[x, y, x + w, y + h] for x, y, w, h in xywh], dtype=np.float32)


def test_the_changing_clock_the_logo_and_the_camera_name_are_found():
    detector = learned()
    regions = detector.regions
    assert len(regions) == 3, regions
    clock, logo, name = (
        sorted(regions, key=lambda r: (r.y1, r.x1))[0:1]
        + sorted((r for r in regions if r.y1 < 0.1 and r.x1 > 0.5), key=lambda r: r.x1)
        + [r for r in regions if r.y1 > 0.5]
    )
    assert clock.x1 < 0.05 and clock.x2 > 0.3 and clock.y2 < 0.08  # the whole time line
    assert logo.x1 > 0.8
    assert name.y1 > 0.9 and name.x2 < 0.4
    assert detector.describe() == "overlays: 3 regions masked"


def test_boxes_on_the_text_are_dropped_and_a_person_beside_or_in_front_is_kept():
    detector = learned()
    candidates = boxes(
        (40, 3, 8, 9),  # a digit of the clock
        (6, 2, 120, 12),  # the whole time line
        (332, 2, 30, 12),  # the logo
        (8, 273, 70, 10),  # the camera name
        (30, 150, 32, 132),  # a person standing over the camera name
        (300, 2, 40, 120),  # a person under the logo, head at the top edge
        (150, 20, 20, 60),  # a person just below the clock
    )
    assert detector.keep(candidates, W, H).tolist() == [
        False, False, False, False, True, True, True
    ]  # fmt: skip


def test_nothing_is_masked_in_a_scene_without_text_nor_before_min_frames():
    rng = np.random.default_rng(3)
    plain = OverlayDetector()
    for i in range(60):
        plain.observe(scene(i, rng))
    assert plain.regions == ()
    early = OverlayDetector(OverlaySettings(min_frames=10))
    for img in frames(9):
        early.observe(img)
    assert early.regions == ()
    assert early.keep(boxes((40, 3, 8, 9)), W, H).tolist() == [True]


def test_a_tall_static_high_contrast_thing_is_not_taken_for_text():
    rng = np.random.default_rng(4)
    detector = OverlayDetector()
    for i in range(60):
        img = scene(i, rng)
        cv2.rectangle(img, (100, 0), (160, 40), (0, 0, 0), -1)  # a dark sign board...
        cv2.rectangle(img, (104, 4), (156, 36), (255, 255, 255), 2)  # ...with a bright frame
        detector.observe(img)
    assert detector.regions == ()


def test_text_that_goes_away_stops_being_masked():
    detector = learned(60)
    rng = np.random.default_rng(5)
    for i in range(120):  # 0.995 ** 120 = 0.55, under the persistence of 0.7
        detector.observe(scene(i, rng))
    assert detector.regions == ()


def test_state_round_trips_through_json_and_reset_forgets():
    detector = learned()
    again = OverlayDetector()
    assert again.load(json.loads(json.dumps(detector.to_dict())))
    assert again.regions == detector.regions
    again.reset()
    assert again.regions == () and again.frames == 0


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"version": 1, "size": [384, 288], "frames": 5, "score": [[1.0]]},  # wrong shape
        {"version": 1, "size": [0, 288], "frames": 5, "score": []},
        {"version": 2, "size": [384, 288], "frames": 5, "score": []},
    ],
)
def test_a_state_that_does_not_fit_is_refused(state):
    detector = learned(20)
    regions = detector.regions
    assert not detector.load(state)
    assert detector.regions == regions


def test_a_new_frame_size_starts_afresh():
    detector = learned()
    detector.observe(np.zeros((480, 640, 3), dtype=np.uint8))
    assert detector.regions == () and detector.frames == 1


def test_the_detector_gets_the_frame_with_the_text_painted_out_and_the_rest_untouched():
    detector = learned()
    img = next(iter(frames(1)))
    painted = detector.paint(img)
    assert painted is not img and (img[2:14, 6:120].max(axis=2) >= 250).any()  # input kept
    assert (painted[2:14, 6:120].max(axis=2) < 200).all()  # no bright stroke left
    assert np.array_equal(painted[40:250], img[40:250])  # the floor as it was
    assert OverlayDetector().paint(img) is img  # nothing learned: no copy
