"""Snapshots through the real service (docs/ui.md 3): `Service` counts the real Mall frames with
the real detector, and the API's detections of a frame are the boxes the pipeline counts in that
very frame; the image is that frame. Off, the running service has no frames socket."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from edge.config import LobbyConfig, parse_config
from edge.pipeline import CameraPipeline, build_detector
from edge.runtime.frames import socket_path
from edge.service import Service
from edge.types import Frame
from tests.test_api_support import KEYS, T0, Monotonic, auth, hash_key
from tests.test_service import TwoPeopleLeft
from tests.waiting import wait_for

CONFIG = """\
site: {{id: branch-1, timezone: Europe/Berlin}}
detector:
  model: yolox_nano
  confidence: 0.2
  threads: 1
  tiling: {{enabled: false}}
  fusion: {{models: []}}
cameras:
  - id: hall
    source: "{source}"
    source_fps: 4
    fps: 4
    loop: true
    scene: {{perspective: {{enabled: false}}, overlays: {{enabled: false}}, clutter: {{enabled: false}}}}
    gating: {{enabled: false}}
    zones:
      - {{id: left, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
      - {{id: right, role: queue, polygon: [[0.5, 0], [1, 0], [1, 0.6], [0.5, 0.6]]}}
    ignore:
      - {{id: plant, polygon: [[0.75, 0.6], [1, 0.6], [1, 1], [0.75, 1]], reason: a plant}}
storage: {{path: "{db}", interval_s: 5}}
mqtt: {{enabled: false}}
api:
  keys: [{{id: it, role: admin, sha256: "{sha}"}}]
  snapshots: {{enabled: {enabled}}}
"""


def site(tmp_path: Path, source: str, *, enabled: bool) -> LobbyConfig:
    text = CONFIG.format(
        source=source,
        db=tmp_path / "lw.db",
        sha=hash_key(KEYS["admin"]),
        enabled=str(enabled).lower(),
    )
    return parse_config(text, base_dir=tmp_path, environ={})


class Running:
    """The service's run() in a thread, stopped and joined on exit."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(service.run()), daemon=True)

    def __enter__(self) -> Service:
        self.thread.start()
        return self.service

    def __exit__(self, *_exc: object) -> None:
        self.service.stop()
        self.thread.join(60)
        assert self.code == [0]


def test_the_snapshots_boxes_are_the_ones_the_pipeline_counts_in_that_frame(
    tmp_path, mall_sequence
):
    config = site(tmp_path, mall_sequence, enabled=True)
    client = TestClient(create_app(config, rollup_every_s=None, monotonic=Monotonic()))
    with Running(Service(config)) as service:
        wait_for(lambda: service.workers and service.workers[0].last_frame_at is not None, 120)
        assert socket_path(config.storage.path).exists()
        image = client.get("/v1/cameras/hall/snapshot.jpg", headers=auth("admin"))
        assert image.status_code == 200, image.text
        seq = image.headers["x-lobbywatch-seq"]
        found = client.get(f"/v1/cameras/hall/detections?seq={seq}", headers=auth("admin"))
        assert found.status_code == 200, found.text
    assert not socket_path(config.storage.path).exists()  # removed on stop
    body = found.json()

    # The same frame, read from its file and counted by a pipeline of the same config.
    path = mall_sequence % (body["frame_index"] + 1)  # seq_000001 is frame 0
    source = cv2.imread(path, cv2.IMREAD_COLOR)
    camera = config.cameras[0]
    pipeline = CameraPipeline(camera, build_detector(config.detector), config.occupancy)
    result = pipeline.process(Frame("hall", body["frame_index"], source, T0, 0.0), 0.0)

    decoded = cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == source.shape == (body["height"], body["width"], 3)
    assert np.abs(decoded.astype(int) - source.astype(int)).mean() < 4  # that frame, as JPEG

    boxes = body["boxes"]
    assert len(boxes) == len(result.detections) >= 10  # the Mall frames hold 20-40 people
    for box, xyxy, zone in zip(boxes, result.detections.xyxy, result.zone_of, strict=True):
        assert box["xyxy"] == pytest.approx(xyxy.tolist(), abs=0.5)
        assert box["zone"] == zone and box["counted"] == (zone is not None)
    assert body["counted"] == sum(result.detected.values())
    reasons = {b["reason"] for b in boxes if not b["counted"]}
    assert reasons <= {"ignored", "no zone"} and "ignored" in reasons  # the plant's corner


def test_off_the_running_service_has_no_frames_socket(tmp_path, mall_sequence):
    config = site(tmp_path, mall_sequence, enabled=False)
    with Running(Service(config, detector_factory=TwoPeopleLeft)) as service:
        wait_for(lambda: service.workers and service.workers[0].last_frame_at is not None, 60)
        assert service.workers[0].frames is None
        assert not socket_path(config.storage.path).exists()
        client = TestClient(create_app(config, rollup_every_s=None, monotonic=Monotonic()))
        response = client.get("/v1/cameras/hall/snapshot.jpg", headers=auth("admin"))
        assert response.status_code == 503 and "snapshots are off" in response.json()["detail"]
