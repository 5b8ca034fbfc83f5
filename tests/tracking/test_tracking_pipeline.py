"""The pipeline gives each detection an id and each waiting or queue zone its dwell; the
tracking section of the config is checked as it is read."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from edge.config import ConfigError, parse_config
from edge.pipeline import CameraPipeline
from edge.types import Detections, Frame

W, H = 640, 480

CONFIG = """\
site: {{id: test-site}}
cameras:
  - id: lobby
    source: unused.mp4
    zones:
      - {{id: seats, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 0.7], [0, 0.7]]}}
      - {{id: line, role: queue, polygon: [[0.5, 0], [1, 0], [1, 0.7], [0.5, 0.7]]}}
      - {{id: counter, role: staff, polygon: [[0, 0.7], [1, 0.7], [1, 1], [0, 1]]}}
occupancy: {{hold_frames: 0, window_s: 0}}
storage: {{path: "{db}"}}
mqtt: {{enabled: false}}
{extra}
"""


def config(tmp_path: Path, extra: str = ""):
    text = CONFIG.format(db=tmp_path / "lw.db", extra=extra)
    return parse_config(text, base_dir=tmp_path, environ={})


class Lobby:
    """A customer seated in the waiting area, a teller behind the counter."""

    provider = "fake"

    def detect(self, image: np.ndarray) -> Detections:
        xyxy = np.array([[100, 150, 150, 300], [400, 300, 450, 450]], dtype=np.float32)
        return Detections(xyxy, np.full(2, 0.9, np.float32), np.zeros(2, np.int32))


def frame(i: int) -> Frame:
    return Frame("lobby", i, np.zeros((H, W, 3), np.uint8), datetime.now(timezone.utc), float(i))


def test_the_seated_customer_has_an_id_and_a_dwell_and_the_teller_none(tmp_path):
    cfg = config(tmp_path)
    pipeline = CameraPipeline(cfg.cameras[0], Lobby(), cfg.occupancy, tracking=cfg.tracking)
    results = [pipeline.process(frame(i), float(i)) for i in range(61)]
    last = results[-1]
    assert results[0].track_ids == (None, None)
    assert last.track_ids[0] == results[1].track_ids[0] is not None
    assert set(last.dwell) == {"seats", "line"}  # the staff zone is never timed
    assert last.dwell["seats"].present == 1
    assert last.dwell["seats"].present_p50_s == 59.0  # confirmed in the second frame
    assert last.dwell["line"].present == 0


def test_with_tracking_off_there_are_no_ids_and_no_dwell(tmp_path):
    cfg = config(tmp_path, "tracking: {enabled: false}")
    pipeline = CameraPipeline(cfg.cameras[0], Lobby(), cfg.occupancy, tracking=cfg.tracking)
    result = pipeline.process(frame(0), 0.0)
    assert result.track_ids == () and result.dwell == {}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{roles: [waiting, staff]}", "staff zones are never timed"),
        ("{lost_s: 20, exit_grace_s: 10}", "exit_grace_s must be at least lost_s"),
        ("{roles: []}", "at least 1"),
        ("{gate: 0}", "greater than 0"),
        ("{grace: 10}", "grace"),
    ],
)
def test_a_tracking_section_that_cannot_work_is_refused(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, f"tracking: {section}")
