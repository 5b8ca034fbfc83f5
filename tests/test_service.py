"""The running service: honest unknowns when a camera stalls or dies, history across restarts,
and the offline `count` replay format."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from edge.capture import Camera, CaptureError, CaptureSettings
from edge.cli import app
from edge.config import parse_config
from edge.pipeline import CameraPipeline
from edge.service import CameraWorker
from edge.store import Store
from edge.types import CameraStatus, Detections
from tests.waiting import wait_for

CONFIG = """\
site: {{id: test-site, timezone: Europe/Berlin}}
detector: {{model: yolox_nano, confidence: 0.2, threads: 2}}
cameras:
  - id: cam
    source: "{source}"
    source_fps: {source_fps}
    fps: {fps}
    stale_after_s: 0.4
    offline_after_s: 1.0
    zones:
      - {{id: left, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
      - {{id: right, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}}
storage: {{path: "{db}", interval_s: 1}}
mqtt: {{enabled: false}}
"""


def make_config(tmp_path: Path, source: str = "unused", source_fps: float = 10, fps: float = 10):
    text = CONFIG.format(source=source, source_fps=source_fps, fps=fps, db=tmp_path / "lw.db")
    return parse_config(text, base_dir=tmp_path, environ={})


class TwoPeopleLeft:
    """A detector stand-in: two people standing in the left half of any frame."""

    provider = "fake"

    def detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        xyxy = np.array(
            [[0.1 * w, 0.2 * h, 0.2 * w, 0.9 * h], [0.3 * w, 0.2 * h, 0.4 * w, 0.8 * h]]
        )
        return Detections(
            xyxy.astype(np.float32), np.full(2, 0.9, np.float32), np.zeros(2, np.int32)
        )


class StallingSource:
    """A live camera that delivers `frames` frames and then blocks in read() until released."""

    live = True
    fps = None

    def __init__(self, frames: int) -> None:
        self.left = frames
        self.release = threading.Event()
        self.index = 0

    def read(self):
        if self.left <= 0:
            self.release.wait()
            return None
        self.left -= 1
        time.sleep(0.02)
        self.index += 1
        return self.index - 1, np.zeros((48, 64, 3), np.uint8)

    def skip(self):
        return self.index

    def close(self) -> None:
        self.release.set()


def worker_for(config, opener) -> tuple[CameraWorker, Store]:
    camera_config = config.cameras[0]
    store = Store(config.storage.path, site_id=config.site.id)
    settings = CaptureSettings(
        camera_id="cam",
        source="rtsp://127.0.0.1/x",
        target_fps=50.0,
        stale_after_s=camera_config.stale_after_s,
        offline_after_s=camera_config.offline_after_s,
        reconnect_min_s=0.2,
        reconnect_max_s=0.5,
    )
    camera = Camera(settings, opener=opener)
    pipeline = CameraPipeline(camera_config, TwoPeopleLeft(), config.occupancy)
    return CameraWorker(camera_config, camera, pipeline, store, interval_s=1), store


def live_counts(store: Store) -> dict[str, tuple[float | None, CameraStatus]]:
    return {r.zone_id: (r.count, r.camera_status) for r in store.live()}


def test_a_stalled_camera_goes_stale_then_offline_and_its_zones_turn_unknown(tmp_path):
    source = StallingSource(frames=10)
    worker, store = worker_for(make_config(tmp_path), lambda _settings: source)
    worker.start()
    try:
        wait_for(lambda: live_counts(store).get("left") == (2.0, CameraStatus.ONLINE))
        assert live_counts(store)["right"] == (0.0, CameraStatus.ONLINE)  # known empty is 0
        wait_for(lambda: live_counts(store)["left"][1] is CameraStatus.STALE)
        assert live_counts(store) == {
            "left": (None, CameraStatus.STALE),
            "right": (None, CameraStatus.STALE),
        }
        wait_for(lambda: live_counts(store)["left"][1] is CameraStatus.OFFLINE)
        assert live_counts(store)["left"][0] is None
    finally:
        worker.stop()
        worker.join(8)
        source.release.set()
    assert not worker.alive and worker.error is None


def test_a_dead_camera_is_offline_unknown_and_its_history_says_unseen(tmp_path):
    def refuse(_settings):
        raise CaptureError("connection refused")

    worker, store = worker_for(make_config(tmp_path), refuse)
    worker.start()
    try:
        time.sleep(2.5)  # spans at least one whole 1-second history interval
        assert live_counts(store) == {
            "left": (None, CameraStatus.OFFLINE),
            "right": (None, CameraStatus.OFFLINE),
        }
    finally:
        worker.stop()
        worker.join(8)
    rows = store.history("left")
    assert rows, "an offline interval is still recorded"
    assert all(r.samples == 0 and r.mean is None and r.seen_fraction == 0.0 for r in rows)


def write_config(tmp_path: Path, **values) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "lw.db", **values))
    return path


def test_count_writes_one_json_line_per_processed_frame(tmp_path, mall_sequence):
    config = write_config(tmp_path, source=mall_sequence, source_fps=2, fps=1)  # every 2nd frame
    out = tmp_path / "counts.jsonl"
    result = CliRunner().invoke(
        app, ["count", "--config", str(config), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["frame"] for rec in lines] == [0, 2, 4]
    for rec in lines:
        assert set(rec["zones"]) == {"left", "right"}
        assert all(isinstance(v, int) for v in rec["zones"].values())
        # Mall frames hold 29-35 people; a detector that lost them would fail this
        assert 15 <= sum(rec["zones"].values()) <= 45


def test_count_reports_a_bad_source_clearly(tmp_path, models_dir, monkeypatch):
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    config = write_config(tmp_path, source=str(tmp_path / "none_%06d.jpg"), source_fps=2, fps=2)
    result = CliRunner().invoke(
        app, ["count", "--config", str(config), "--out", str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 1
    assert "error:" in result.output


def test_run_keeps_history_across_restarts(tmp_path, mall_sequence):
    # The service paces a file like a live camera (and may drop frames it cannot keep up with):
    # 6 frames at 4 fps take 1.5 s of real time per run.
    config = write_config(tmp_path, source=mall_sequence, source_fps=4, fps=4)
    runner = CliRunner()
    samples = []
    for _ in range(2):
        result = runner.invoke(app, ["run", "--config", str(config)])
        assert result.exit_code == 0, result.output
        with Store(tmp_path / "lw.db") as store:
            samples.append(sum(r.samples for r in store.history("left")))
    assert samples[0] >= 3
    assert samples[1] > samples[0]  # the first run's history is still there, the second's added
    store = Store(tmp_path / "lw.db")
    rows = store.history("left") + store.history("right")
    assert all(r.mean is not None and r.mean >= 0 for r in rows if r.samples)
    total_people = max(r.max or 0 for r in store.history("left")) + max(
        r.max or 0 for r in store.history("right")
    )
    assert total_people >= 15
    # after a clean stop the live state says unknown, not the last count
    assert {r.count for r in store.live()} == {None}


def test_systemd_is_told_ready_fed_while_frames_flow_and_told_stopping(tmp_path, mall_sequence):
    import os
    import signal
    import socket
    import subprocess
    import sys

    config = write_config(tmp_path, source=mall_sequence, source_fps=4, fps=4)
    config.write_text(
        config.read_text().replace("cameras:", "logging: {status_interval_s: 1}\ncameras:")
    )
    config.write_text(config.read_text().replace("    fps: 4\n", "    fps: 4\n    loop: true\n"))
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)], env=env
    )
    messages: list[str] = []
    try:
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert "READY=1" in messages[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                break
            if "STOPPING=1" in messages[-1]:
                break
        assert any("STOPPING=1" in m for m in messages)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


def test_the_hourly_purge_says_what_it_removed(tmp_path, caplog):
    # purge_before removes ticket events too: the line must not call them history rows
    from datetime import datetime, timedelta, timezone

    from edge.queueing.tickets import TicketEvent
    from edge.service import Service
    from edge.store import HistoryRow

    caplog.set_level(logging.INFO, logger="lobbywatch.service")
    config = make_config(tmp_path)
    long_ago = datetime.now(timezone.utc) - timedelta(days=config.storage.retention_days + 2)
    with Store(config.storage.path, site_id=config.site.id) as store:
        bucket = int(long_ago.timestamp())
        store.write_history([HistoryRow("a", "cam", bucket, 10, 1, 1.0, 1.0, 1.0, 1.0)])
        store.insert_tickets(
            [TicketEvent.model_validate({"kind": "issued", "ticket": "A001", "at": long_ago})]
        )
        Service(config)._purge(store)
    (line,) = [r.getMessage() for r in caplog.records if "purged" in r.getMessage()]
    assert line.startswith("purged 2 rows (history and ticket events) older than ")
