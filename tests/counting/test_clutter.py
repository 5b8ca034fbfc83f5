"""Static clutter learned from synthetic frames: a still thing beside a seated person who moves
a few pixels, a poster under changing light, a person who leaves and comes back; what it
decided kept, shown and forgotten."""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import yaml

from edge.config import IgnoreMaskConfig
from edge.counting.clutter import (
    CELLS,
    ClutterModel,
    ClutterSettings,
    changed_fraction,
    thumbnail,
)
from edge.zones import points_in_polygon

W, H = 320, 240
HOUR = 3600.0


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth random colour texture (folds of clothes, a printed poster), float BGR."""
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), 3)
    return np.clip(128 + 45 * t / t.std(), 0, 255)


BACKGROUND = 0.5 * texture(H, W, 1) + 60  # a wall, darker and flatter than what stands there
MANNEQUIN = texture(80, 30, 2)  # at THING
PERSON = texture(70, 34, 3)  # seated at SEAT
OTHER = texture(70, 34, 4)  # someone else
THING = (60, 100)  # top left (x, y) in pixels
SEAT = (200, 110)


@dataclass
class Room:
    """What stands in the room; draw() renders a frame as a camera would: the room light (gain,
    offset) on everything, sensor noise, JPEG."""

    rng: np.random.Generator
    mannequin: bool = True
    seated: bool = True
    dx: int = 0  # the seated person's shift, pixels
    dy: int = 0
    gain: float = 1.0
    offset: float = 0.0
    in_front: np.ndarray | None = None  # someone standing in front of the mannequin

    def draw(self) -> np.ndarray:
        img = BACKGROUND.copy()
        if self.mannequin:
            x, y = THING
            img[y : y + 80, x : x + 30] = MANNEQUIN
        if self.in_front is not None:
            x, y = THING
            img[y + 5 : y + 75, x - 2 : x + 32] = self.in_front
        if self.seated:
            x, y = SEAT[0] + self.dx, SEAT[1] + self.dy
            img[y : y + 70, x : x + 34] = PERSON
        img = img * self.gain + self.offset + self.rng.normal(0, 3, img.shape)
        jpeg = cv2.imencode(
            ".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 75]
        )[1]
        return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)

    def boxes(self, missed: bool = False) -> np.ndarray:
        """The detector's boxes: the mannequin (unless missed) and the seated person, each with
        a pixel or two of jitter."""
        out = []
        j = self.rng.normal(0, 1.0, 8)
        if self.mannequin and not missed:
            x, y = THING
            out.append([x + j[0], y + j[1], x + 30 + j[2], y + 80 + j[3]])
        if self.seated:
            x, y = SEAT[0] + self.dx, SEAT[1] + self.dy
            out.append([x + j[4], y + j[5], x + 34 + j[6], y + 70 + j[7]])
        return np.array(out, dtype=np.float32).reshape(-1, 4)

    def fidget(self) -> None:
        """The seated person shifts by 2-3 pixels, staying within 4 of where they sat."""
        step = self.rng.choice([-3, -2, 2, 3], 2)
        self.dx = int(np.clip(self.dx + step[0], -4, 4))
        self.dy = int(np.clip(self.dy + step[1], -4, 4))


def watch(model: ClutterModel, room: Room, seconds: float, step: float, t0: float = 0.0,
          fidget_every_s: float | None = None, missed: bool = False) -> tuple[float, list[np.ndarray]]:  # fmt: skip
    """Feed `seconds` of frames `step` apart; returns the time reached and each frame's boxes
    with the keep mask (as (boxes, keep) pairs, boxes first)."""
    t, kept = t0, []
    next_fidget = t0 + (fidget_every_s or 0)
    while t < t0 + seconds:
        if fidget_every_s is not None and t >= next_fidget:
            room.fidget()
            next_fidget += fidget_every_s
        boxes = room.boxes(missed)
        keep = model.update(room.draw(), boxes, np.ones(len(boxes), bool), t)
        kept.append((boxes, keep))
        t += step
    return t, kept


def level_at(model: ClutterModel, xy: tuple[int, int]) -> str | None:
    """The level of the site at a top-left pixel (None: no site there)."""
    for site in model.sites:
        if abs(site.box[0] * W - xy[0]) < 8 and abs(site.box[1] * H - xy[1]) < 8:
            return model.level(site)
    return None


def counted(kept) -> list[int]:
    return [int(keep.sum()) for _, keep in kept]


def test_a_still_thing_is_suggested_then_dropped_while_the_seated_person_beside_it_stays_counted():
    # The shipped defaults, on a camera that delivers a frame every 30 s (the most a frame
    # interval counts): 10 h of a mannequin and a customer who shifts by 2-3 px a quarter hour
    # and is otherwise as still as the mannequin.
    model = ClutterModel()
    room = Room(np.random.default_rng(0))
    t, kept = watch(model, room, 1.5 * HOUR, 30.0, fidget_every_s=900)
    assert level_at(model, THING) == "watching" and counted(kept) == [2] * len(kept)
    t, kept = watch(model, room, 1 * HOUR, 30.0, t, fidget_every_s=900)
    assert level_at(model, THING) == "suggested"  # 2 h unchanged: shown, still counted
    assert counted(kept)[-1] == 2
    assert "1 suggested as ignore region (x 0.19-0.28 y 0.42-0.75 unchanged" in model.describe()
    t, kept = watch(model, room, 6 * HOUR, 30.0, t, fidget_every_s=900)
    assert level_at(model, THING) == "dropped"  # 8 h unchanged: no longer counted
    assert counted(kept)[-1] == 1
    t, kept = watch(model, room, 1.5 * HOUR, 30.0, t, fidget_every_s=900)
    assert counted(kept) == [1] * len(kept)  # the seated person, all along
    person = [site for site in model.sites if abs(site.box[0] * W - SEAT[0]) < 8]
    assert person and all(site.unchanged_s <= 900 for site in person)
    assert person[0].changes >= 30  # every shift of a few pixels was seen
    assert "1 dropped (x 0.19-0.28 y 0.42-0.75 unchanged 10.0 h)" in model.describe()


def test_at_two_frames_a_second_the_detectors_jitter_does_not_pass_for_movement():
    # Durations scaled down, the evidence the same: every frame's box jitters by a pixel, the
    # seated person shifts a few pixels every 20 s.
    settings = ClutterSettings(suggest_after_s=60, drop_after_s=240)
    model = ClutterModel(settings)
    room = Room(np.random.default_rng(1))
    _, kept = watch(model, room, 300, 0.5, fidget_every_s=20)
    assert level_at(model, THING) == "dropped"
    assert level_at(model, (SEAT[0] + room.dx, SEAT[1] + room.dy)) == "watching"
    assert counted(kept)[-1] == 1


def test_a_poster_whose_light_changes_with_the_room_is_still_recognised():
    model = ClutterModel(ClutterSettings(suggest_after_s=HOUR, drop_after_s=3 * HOUR))
    room = Room(np.random.default_rng(2), seated=False)
    t = 0.0
    # Evening: the room dims in steps and the exposure follows (brightness and contrast of
    # everything change), then the lights come back on full.
    for gain, offset in [(1.0, 0), (0.8, 10), (0.6, 20), (0.5, 5), (1.2, -15), (0.9, 0)]:
        room.gain, room.offset = gain, offset
        t, kept = watch(model, room, 0.6 * HOUR, 30.0, t)
    assert level_at(model, THING) == "dropped"
    assert counted(kept)[-1] == 0


def test_a_person_who_leaves_and_comes_back_stays_counted_however_still_they_sit():
    # As still as a mannequin (no shift at all) for 1.5 h, away for 5 min, back for 1.5 h in
    # the very same pose: 3 h without a change of pixels, but a thing never leaves.
    model = ClutterModel()
    room = Room(np.random.default_rng(3), mannequin=False)
    t, kept = watch(model, room, 1.5 * HOUR, 30.0)
    room.seated = False
    t, _ = watch(model, room, 300, 30.0, t)
    assert model.sites == []  # the empty chair: the place shows something else
    room.seated = True
    t, back = watch(model, room, 1.5 * HOUR, 30.0, t)
    assert level_at(model, SEAT) == "watching"
    assert counted(kept + back) == [1] * len(kept + back)


def test_a_thing_the_detector_misses_for_a_while_has_not_left():
    model = ClutterModel()
    room = Room(np.random.default_rng(4), seated=False)
    t, _ = watch(model, room, 1.5 * HOUR, 30.0)
    t, _ = watch(model, room, 0.5 * HOUR, 30.0, t, missed=True)  # its crop unchanged
    assert level_at(model, THING) == "watching"  # no time counted while not detected
    watch(model, room, 0.6 * HOUR, 30.0, t)
    assert level_at(model, THING) == "suggested"


def test_someone_in_front_of_a_dropped_mannequin_is_counted_from_the_first_frame():
    model = ClutterModel(ClutterSettings(suggest_after_s=600, drop_after_s=1200))
    room = Room(np.random.default_rng(5), seated=False)
    t, kept = watch(model, room, 1500, 30.0)
    assert counted(kept)[-1] == 0
    room.in_front = OTHER  # the mannequin's box now holds someone else
    t, kept = watch(model, room, 60, 30.0, t)
    assert counted(kept) == [1, 1]
    # Still suggested (the crop may come back: someone in front), no longer dropped.
    assert level_at(model, THING) == "suggested"
    room.in_front = None
    t, kept = watch(model, room, 600, 30.0, t)
    assert counted(kept) == [1] * len(kept)  # the drop clock starts afresh
    watch(model, room, 700, 30.0, t)
    assert level_at(model, THING) == "dropped"


def test_someone_who_stays_in_front_for_longer_than_occlusion_s_is_a_change():
    model = ClutterModel(ClutterSettings(suggest_after_s=600, drop_after_s=1200))
    room = Room(np.random.default_rng(15), seated=False)
    t, _ = watch(model, room, 900, 30.0)
    assert level_at(model, THING) == "suggested"
    room.in_front = OTHER
    watch(model, room, 120, 30.0, t)
    assert level_at(model, THING) == "watching"
    (site,) = model.sites
    assert site.changes == 1 and site.same_s <= 30  # a new reference: whoever stands there


def test_passers_by_the_detector_misses_delay_no_suggestion_but_prevent_a_drop():
    # Every 10 minutes someone walks past in front of the poster, hiding it for one frame, not
    # detected themselves (and the poster not either): a difference that comes back.
    model = ClutterModel(ClutterSettings(suggest_after_s=HOUR, drop_after_s=2 * HOUR))
    room = Room(np.random.default_rng(16), seated=False)
    t = 0.0
    for _ in range(14):
        t, _ = watch(model, room, 570, 30.0, t)
        room.in_front = OTHER
        t, _ = watch(model, room, 30, 30.0, t, missed=True)
        room.in_front = None
    assert level_at(model, THING) == "suggested"
    (site,) = model.sites
    assert site.same_s > 1.8 * HOUR and site.unchanged_s <= 600


def test_a_passer_by_in_front_of_a_poster_is_no_evidence_either_way():
    model = ClutterModel(ClutterSettings(suggest_after_s=600, drop_after_s=1200))
    room = Room(np.random.default_rng(6), seated=False)
    t = 0.0
    for _ in range(5):
        t, _ = watch(model, room, 300, 30.0, t)
        # A walker in front of it, detected: the poster's crop differs for that frame.
        room.in_front = OTHER
        x, y = THING
        walker = np.array([[x - 2, y + 5, x + 32, y + 75]], np.float32)
        boxes = np.concatenate([room.boxes(), walker])
        model.update(room.draw(), boxes, np.ones(len(boxes), bool), t)
        room.in_front = None
        t += 30.0
    assert level_at(model, THING) == "dropped"


@pytest.mark.parametrize("gain,offset", [(0.5, 0), (1.4, -30), (0.7, 40), (1.0, 25)])
def test_a_thumbnail_ignores_brightness_and_contrast_of_the_whole_box(gain, offset):
    room = Room(np.random.default_rng(7), seated=False)
    box = np.array([THING[0] / W, THING[1] / H, (THING[0] + 30) / W, (THING[1] + 80) / H])
    ref = thumbnail(room.draw(), box, 8.0)
    room.gain, room.offset = gain, offset
    now = thumbnail(room.draw(), box, 8.0)
    assert ref is not None and now is not None and ref.shape == (CELLS * CELLS,)
    assert changed_fraction(ref, now, 0.5) <= 0.01


@pytest.mark.parametrize("shift", [2, 3, 4])
def test_a_shift_of_a_few_pixels_changes_the_thumbnail(shift):
    room = Room(np.random.default_rng(8), mannequin=False)
    box = np.array([SEAT[0] / W, SEAT[1] / H, (SEAT[0] + 34) / W, (SEAT[1] + 70) / H])
    ref = thumbnail(room.draw(), box, 8.0)
    room.dx = shift
    now = thumbnail(room.draw(), box, 8.0)
    assert ref is not None and now is not None
    assert changed_fraction(ref, now, 0.5) > ClutterSettings().change_fraction


def test_a_flat_crop_gives_no_thumbnail():
    flat = np.full((H, W, 3), 90, np.uint8)
    assert thumbnail(flat, np.array([0.1, 0.1, 0.3, 0.5]), 8.0) is None
    assert thumbnail(flat, np.array([0.1, 0.1, 0.1, 0.5]), 0.0) is None  # no width


def learned_model() -> ClutterModel:
    model = ClutterModel(ClutterSettings(suggest_after_s=600, drop_after_s=1200))
    watch(model, Room(np.random.default_rng(9)), 1500, 30.0, fidget_every_s=300)
    return model


def test_what_was_learned_survives_a_round_trip_through_json():
    model = learned_model()
    state = json.loads(json.dumps(model.to_dict()))
    again = ClutterModel(model.settings)
    assert again.load(state)
    assert again.describe() == model.describe()
    assert [again.level(s) for s in again.sites] == [model.level(s) for s in model.sites]
    assert "dropped" in [site["level"] for site in state["sites"]]
    # It goes on where it stopped: the mannequin is not counted in the first frame.
    room = Room(np.random.default_rng(10))
    boxes = room.boxes()
    assert again.update(room.draw(), boxes, np.ones(2, bool), 0.0).tolist() == [False, True]


def test_the_suggestions_carry_an_ignore_mask_that_covers_the_things_feet():
    model = learned_model()
    (line,) = model.suggestions()
    assert line.startswith("dropped (dropped from the counts): unchanged for ")
    ignore = IgnoreMaskConfig(**yaml.safe_load(line[line.index("{id:") :]))
    x1, _, x2, y2 = (float(v) for v in model.found()[0][0].box)
    feet = np.array([[(x1 + x2) / 2, y2]], np.float32)
    assert points_in_polygon(feet, ignore.polygon).tolist() == [True]


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"sites": "none"},
        {"sites": [{"box": [0.5, 0.1, 0.2, 0.4]}]},
        {"box": [0.5, 0.1, 0.2, 0.4]},  # x1 > x2
        {"box": [0.1, 0.1, 1.5, 0.4]},  # outside the frame
        {"ref": [0.0] * 10},
        {"unchanged_s": -5},
        {"unchanged_s": float("nan")},
        {"changes": "many"},
    ],
)
def test_a_damaged_state_is_refused_and_changes_nothing(change):
    model = learned_model()
    state = json.loads(json.dumps(model.to_dict()))
    if "version" in change or "sites" in change:
        state.update(change)
    else:
        state["sites"][0].update(change)
    before = model.describe()
    assert not model.load(state)
    assert model.describe() == before


def test_reset_forgets_every_place():
    model = learned_model()
    assert model.sites
    model.reset()
    assert model.sites == []
    assert model.describe() == "clutter: nothing static found; watching 0 places"


def test_a_longer_gap_between_frames_counts_only_max_step_s():
    model = ClutterModel(ClutterSettings(max_step_s=30))
    room = Room(np.random.default_rng(12), seated=False)
    for t in (0.0, 10.0, 20.0, 20.0 + 5 * HOUR, 20.0 + 5 * HOUR + 10, 15.0):  # outage, clock back
        boxes = room.boxes()
        model.update(room.draw(), boxes, np.ones(len(boxes), bool), t)
    (site,) = model.sites
    assert site.unchanged_s == pytest.approx(10 + 30 + 10)  # first sighting, then the steps


def test_boxes_other_tests_ruled_out_form_no_place():
    model = ClutterModel(ClutterSettings(suggest_after_s=60, drop_after_s=60))
    room = Room(np.random.default_rng(13), seated=False)
    for t in range(0, 600, 30):
        boxes = room.boxes()
        assert model.update(room.draw(), boxes, np.zeros(len(boxes), bool), float(t)).all()
    assert model.sites == []


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"suggest_after_s": 0}, "suggest_after_s > 0"),
        ({"drop_after_s": 60.0, "suggest_after_s": 120.0}, "drop_after_s >= suggest_after_s"),
        ({"match_iou": 0}, "match_iou"),
        ({"drop_change_fraction": 0.2}, "drop_change_fraction <= change_fraction"),
        ({"change_fraction": 1.0}, "change_fraction < 1"),
        ({"max_step_s": 0}, "max_step_s > 0"),
        ({"max_sites": 0}, "max_sites >= 1"),
    ],
)
def test_settings_out_of_bounds_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ClutterSettings(**kwargs)


def test_only_suggesting_never_drops():
    model = ClutterModel(ClutterSettings(suggest_after_s=60, drop_after_s=None))
    room = Room(np.random.default_rng(14), seated=False)
    _, kept = watch(model, room, 1200, 30.0)
    assert level_at(model, THING) == "suggested" and counted(kept)[-1] == 1
