"""Static clutter in the scene, the config and the pipeline: configured under
cameras[].scene.clutter, kept with the rest of the scene, shown by the status line and doctor,
forgotten by a reset."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from edge.config import ConfigError, SceneConfig, parse_config
from edge.counting.clutter import ClutterSettings
from edge.counting.scene import Scene
from edge.doctor import check_scene
from edge.pipeline import CameraPipeline
from edge.storage.scene_file import SceneFile, scene_path
from edge.types import Detections, Frame
from tests.counting.test_clutter import Room


def test_the_scene_keeps_clutter_with_the_rest_and_loads_a_file_saved_before_it_existed():
    scene = Scene(clutter=ClutterSettings(suggest_after_s=600, drop_after_s=1200))
    room = Room(np.random.default_rng(11), seated=False)
    t = 0.0
    for _ in range(50):
        boxes = room.boxes()
        det = Detections(
            boxes, np.full(len(boxes), 0.8, np.float32), np.zeros(len(boxes), np.int32)
        )
        keep = scene.update(room.draw(), det, t)
        t += 30.0
    assert keep.tolist() == [False]
    assert "clutter: 1 dropped" in scene.describe()
    assert scene.suggestions() and scene.suggestions()[0].startswith("dropped")
    state = json.loads(json.dumps(scene.to_dict()))
    again = Scene(clutter=ClutterSettings(suggest_after_s=600, drop_after_s=1200))
    assert again.load(state) == ["clutter"]
    assert again.describe() == scene.describe()
    old = {k: v for k, v in state.items() if k != "clutter"}  # a file from before clutter
    fresh = Scene(clutter=ClutterSettings())
    assert fresh.load(old) == [] and fresh.clutter is not None and fresh.clutter.sites == []
    scene.reset()
    assert "nothing static found" in scene.describe()


def test_the_config_defaults_are_the_settings_defaults():
    clutter = SceneConfig().clutter
    assert clutter.enabled
    assert ClutterSettings(**clutter.model_dump(exclude={"enabled"})) == ClutterSettings()


CONFIG = """\
site: {{id: s}}
cameras:
  - id: hall
    source: unused.mp4
    zones: [{{id: floor, role: waiting, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}]
    scene: {{clutter: {clutter}}}
storage: {{path: lw.db}}
mqtt: {{enabled: false}}
"""


@pytest.mark.parametrize(
    "clutter,where,message",
    [
        ("{suggest_after_s: 10}", "suggest_after_s", "greater than or equal to 60"),
        ("{drop_after_s: 3600}", "clutter", "drop_after_s must not be less than suggest_after_s"),
        ("{drop_change_fraction: 0.5}", "clutter", "must not exceed change_fraction"),
        ("{change_fraction: 1}", "change_fraction", "less than 1"),
        ("{match_iou: 0}", "match_iou", "greater than 0"),
        ("{max_sites: 0}", "max_sites", "greater than or equal to 1"),
        ("{max_step: 30}", "max_step", "unknown key"),
    ],
)
def test_a_bad_clutter_config_is_refused_naming_the_field(clutter, where, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.format(clutter=clutter), environ={})
    (issue,) = caught.value.issues
    assert issue.path.startswith("cameras.0.scene.clutter") and issue.line == 6
    assert where in issue.path and message in issue.message


@pytest.mark.parametrize(
    "clutter,drop",
    [("{}", 28800.0), ("{drop_after_s: null}", None), ("{enabled: false}", 28800.0)],
)
def test_a_good_clutter_config_is_taken(clutter, drop):
    config = parse_config(CONFIG.format(clutter=clutter), environ={})
    assert config.cameras[0].scene.clutter.drop_after_s == drop


class StillThing:
    """A detector that finds the mannequin in every frame (and nothing else)."""

    provider = "fake"

    def __init__(self, room: Room) -> None:
        self.room = room

    def detect(self, image: np.ndarray) -> Detections:
        boxes = self.room.boxes()
        return Detections(
            boxes, np.full(len(boxes), 0.7, np.float32), np.zeros(len(boxes), np.int32)
        )


def test_the_pipeline_stops_counting_a_still_thing_shows_it_keeps_it_and_resets_it(tmp_path):
    text = CONFIG.format(clutter="{suggest_after_s: 60, drop_after_s: 120}").replace(
        "lw.db", str(tmp_path / "lw.db")
    )
    config = parse_config(text + "occupancy: {hold_frames: 0, window_s: 0}\n", environ={})
    room = Room(np.random.default_rng(20), seated=False)
    path = scene_path(tmp_path, "hall")
    pipeline = CameraPipeline(
        config.cameras[0], StillThing(room), config.occupancy, scene_file=SceneFile(path)
    )
    counts = []
    for i in range(8):  # a frame every 30 s
        frame = Frame("hall", i, room.draw(), datetime.now(timezone.utc), 30.0 * i)
        result = pipeline.process(frame, 30.0 * i)
        counts.append(result.raw["floor"])
    # Seen twice before it is a place; unchanged 60 s: suggested, 120 s: dropped.
    assert counts == [1, 1, 1, 1, 1, 0, 0, 0]
    assert result.dropped == 1
    line = pipeline.describe_scene()
    assert "clutter: 1 dropped (x 0.19-0.28 y 0.4" in line and "unchanged 3 min)" in line
    pipeline.save_scene()
    doctor = check_scene(config.cameras[0], tmp_path)
    assert doctor.status.value == "warn" and "clutter: 1 dropped" in doctor.summary
    assert any("cameras[].ignore: {id: clutter-1, polygon: [[" in d for d in doctor.details)
    pipeline.reset_scene()
    assert not path.exists()
    assert "clutter: nothing static found" in pipeline.describe_scene()
