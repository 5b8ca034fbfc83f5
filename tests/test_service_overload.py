"""Saying the box is short (issue 14, docs/capacity.md section 3): each camera's frames dropped by
capture and detector runs over the last 30 s, in the status line, the device state, the MQTT
health, the API's health and the metrics; a camera that keeps up says nothing of overload."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge.notifier import DeliveryStatus
from edge.runtime.device_state import StateFile, state_path
from edge.runtime.histogram import DETECTOR_SECONDS_BOUNDS, Histogram
from edge.service import (
    RATE_WINDOW_S,
    CameraWorker,
    RateWindow,
    Service,
    WorkerState,
    health_summary,
    status_line,
)
from edge.store import Store
from edge.types import CameraStatus, Frame
from tests.test_api_support import T0, Clock, auth, client_for, site_config, write_live
from tests.test_service import make_config

ONLINE, OFFLINE = CameraStatus.ONLINE, CameraStatus.OFFLINE


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Step:
    """One read() of the fake camera: time passes, capture drops frames, a frame or none."""

    dt: float = 0.5
    dropped: int = 0
    status: CameraStatus = ONLINE


@dataclass
class ScriptedCamera:
    """A camera stand-in: each read() plays one step on the worker's clock, then records the
    worker's state (what it said after the frames before this one)."""

    steps: list[Step]
    clock: FakeClock
    fps: float = 1.6
    dropped: int = 0
    status: CameraStatus = ONLINE
    finished: bool = False
    seen: list[WorkerState] = field(default_factory=list)
    worker: CameraWorker | None = None
    index: int = 0

    def start(self) -> None:
        pass

    def stop(self, timeout: float) -> None:
        pass

    def read(self, timeout: float) -> Frame | None:
        assert self.worker is not None
        self.seen.append(self.worker.state)
        step = self.steps.pop(0)
        self.finished = not self.steps
        self.clock.now += step.dt
        self.dropped += step.dropped
        self.status = step.status
        if step.status is not ONLINE:
            return None
        self.index += 1
        image = np.zeros((48, 64, 3), np.uint8)
        return Frame("cam", self.index, image, T0, self.clock.now)


@dataclass(frozen=True)
class Processed:
    """What the worker reads of a FrameResult."""

    occupancy: dict[str, float | None]
    raw: dict[str, int]
    inference_s: float
    detector_ran: bool


class ScriptedPipeline:
    """A pipeline stand-in whose detector runs on the frames `runs(index)` says."""

    zone_ids = ("left", "right")

    def __init__(self, runs: Any) -> None:
        self.runs = runs

    def process(self, frame: Frame, now: float) -> Processed:
        ran = self.runs(frame.index)
        return Processed({"left": 2.0, "right": 0.0}, {"left": 2, "right": 0}, 0.12 * ran, ran)

    def mark_unknown(self) -> None:
        pass

    def save_scene(self) -> None:
        pass


def test_the_window_gives_shares_of_the_last_30_s_and_none_without_frames():
    window = RateWindow()
    assert window.shares(0.0) == (None, None)
    window.add(1.0, dropped=2)  # dropped before any frame was processed
    assert window.shares(1.0) == (1.0, None)
    for t in range(2, 10):
        window.add(float(t), processed=1, detector=int(t % 2 == 0))
    assert window.shares(10.0) == (pytest.approx(2 / 10), pytest.approx(4 / 8))
    assert window.shares(1.0 + RATE_WINDOW_S) == (0.0, pytest.approx(4 / 8))  # the drops left
    assert window.shares(9.0 + RATE_WINDOW_S) == (None, None)  # everything left
    window.add(50.0, processed=1, detector=1)
    window.clear()
    assert window.shares(50.0) == (None, None)


def test_a_worker_says_what_capture_dropped_and_how_often_the_detector_ran(tmp_path):
    """40 frames at 2 fps with every 4th read dropping one (10 of 50: overloaded) and the detector
    on every 5th; then 40 s of frames with none dropped and the detector on each; then offline."""
    config = make_config(tmp_path, fps=2)
    clock = FakeClock()
    steps = [Step(dropped=int(i % 4 == 3)) for i in range(40)]
    steps += [Step() for _ in range(80)] + [Step(status=OFFLINE)]
    camera = ScriptedCamera(steps, clock)
    pipeline = ScriptedPipeline(lambda index: (index <= 40 and index % 5 == 0) or index > 40)
    store = Store(config.storage.path, site_id=config.site.id)
    worker = CameraWorker(
        config.cameras[0], camera, pipeline, store, 1,
        clock=clock, wall_clock=lambda: T0 + timedelta(seconds=clock.now),
    )  # fmt: skip
    camera.worker = worker
    worker.start()
    worker.join(10)
    assert not worker.alive and worker.error is None

    assert camera.seen[0].dropped_share is None and not camera.seen[0].overloaded  # no data yet
    assert camera.seen[39].inference_ms == pytest.approx(120)  # frame 39 reused frame 35's
    short = camera.seen[40]  # after the first 40 frames, at 20 s
    assert short.target_fps == 2
    assert short.dropped_share == pytest.approx(10 / 50)
    assert short.detector_share == pytest.approx(8 / 40)
    assert short.overloaded
    line = status_line("cam", short)
    assert line.startswith(
        "camera cam online 1.6/2 fps, 20% dropped (overloaded), detector 20% of frames, "
        "infer 120 ms | left=2 (raw 2) right=0 (raw 0)"
    ), line

    caught_up = camera.seen[120]  # at 60 s: the last 30 s had no drops
    assert caught_up.dropped_share == 0.0 and caught_up.detector_share == 1.0
    assert not caught_up.overloaded
    assert "dropped" not in status_line("cam", caught_up)
    assert "overloaded" not in status_line("cam", caught_up)

    down = worker.state  # offline: nothing to take a share of, no overload
    assert down.status is OFFLINE and down.dropped_share is None and not down.overloaded
    assert status_line("cam", down).startswith("camera cam offline 1.6/2 fps, infer 0 ms |")
    store.close()


@pytest.mark.parametrize(
    ("dropped", "detector", "says", "never"),
    [
        (0.2, 0.15, "1.6/2 fps, 20% dropped (overloaded), detector 15% of frames, infer", ()),
        (0.05, 1.0, "1.6/2 fps, 5% dropped, detector 100% of frames, infer", ("overloaded",)),
        (0.1, 1.0, "10% dropped, detector", ("overloaded",)),  # at the limit: not yet
        (0.001, 0.5, "<1% dropped, detector 50% of frames", ("overloaded",)),
        (0.0, 0.5, "1.6/2 fps, detector 50% of frames, infer", ("dropped", "overloaded")),
        (None, None, "1.6/2 fps, infer 120 ms |", ("dropped", "overloaded", "detector")),
    ],
)
def test_the_status_line_says_the_shortfall_only_when_there_is_one(dropped, detector, says, never):
    state = WorkerState(ONLINE, 1.6, {"left": 2.0}, {"left": 2}, 120.0, 2.0, dropped, detector)
    line = status_line("c1", state)
    assert line.startswith("camera c1 online ") and line.endswith("| left=2 (raw 2)")
    assert says in line
    for word in never:
        assert word not in line


def service_with(config: Any, states: dict[str, WorkerState]) -> tuple[Service, Any, Any]:
    """A Service whose workers are stand-ins with these states, and a store and notifier that
    say all is well: what snapshot() reads."""
    service = Service(config)
    service.workers = [
        SimpleNamespace(camera_id=c, state=s, unsaved_history=[], dropped_history=0,
                        detector_seconds=Histogram(DETECTOR_SECONDS_BOUNDS))
        for c, s in states.items()
    ]
    store = SimpleNamespace(condition=SimpleNamespace(
        writable=True, since=None, error=None, failed_writes=0, memory_only=False
    ))  # fmt: skip
    notifier = SimpleNamespace(
        status=lambda: DeliveryStatus(None, 0, 0, 0),
        queue=SimpleNamespace(unsaved_tickets=0, tickets_lost=0),
        outbox=None,
    )
    return service, store, notifier


NOW = T0 + timedelta(hours=10)


@pytest.fixture
def config(tmp_path):
    return site_config(tmp_path)


@pytest.fixture
def states() -> dict[str, WorkerState]:
    return {
        "lobby": WorkerState(ONLINE, 1.6, {}, None, 120.0, 2.0, 0.2, 0.15),
        "door": WorkerState(ONLINE, 2.0, {}, None, 90.0, 2.0, 0.04, 0.5),
    }


def test_the_device_state_and_the_mqtt_health_name_the_overloaded_cameras(config, states):
    service, store, notifier = service_with(config, states)
    snapshot = service.snapshot(store, notifier)
    assert snapshot["cameras"] == {
        "lobby": {"status": "online", "fps": 1.6, "target_fps": 2.0, "dropped_share": 0.2,
                  "detector_share": 0.15, "overloaded": True},
        "door": {"status": "online", "fps": 2.0, "target_fps": 2.0, "dropped_share": 0.04,
                 "detector_share": 0.5, "overloaded": False},
    }  # fmt: skip
    health = health_summary(snapshot)
    assert health["status"] == "degraded" and health["overloaded"] == ["lobby"]
    assert health["store"]["state"] == "ok"

    service, store, notifier = service_with(config, {"door": states["door"]})
    health = health_summary(service.snapshot(store, notifier))
    assert health["status"] == "ok" and health["overloaded"] == []


def test_the_api_health_and_metrics_show_the_shortfall(config, states):
    client = client_for(config, Clock(NOW))
    store = client.app.state.lobbywatch.store.store()
    write_live(store, NOW, {"waiting": 3.0, "queue": 1.0}, camera_id="lobby", fps=1.6)
    write_live(store, NOW, {"entrance": 0.0}, camera_id="door")
    service, device_store, notifier = service_with(config, states)
    snapshot = service.snapshot(device_store, notifier) | {"at": NOW.isoformat()}
    state = StateFile(state_path(config.storage.path))
    try:
        assert state.write(snapshot)
        response = client.get("/v1/health")
        metrics = client.get("/metrics", headers=auth("viewer")).text
    finally:
        state.close()
    body = response.json()
    assert response.status_code == 200 and body["ready"] is True  # short, still counting
    assert body["status"] == "degraded" and body["overloaded"] == ["lobby"]
    cameras = {c["camera_id"]: c for c in body["cameras"]}
    assert cameras["lobby"] | {"updated_at": None} == {
        "camera_id": "lobby", "status": "online", "fps": 1.6, "inference_ms": 80.0,
        "updated_at": None, "stale": False, "target_fps": 2.0, "dropped_share": 0.2,
        "detector_share": 0.15, "overloaded": True,
    }  # fmt: skip
    assert cameras["door"]["overloaded"] is False and cameras["door"]["dropped_share"] == 0.04
    for line in (
        'lobbywatch_camera_target_fps{camera="lobby"} 2.0',
        'lobbywatch_camera_dropped_share{camera="lobby"} 0.2',
        'lobbywatch_camera_detector_share{camera="lobby"} 0.15',
        'lobbywatch_camera_dropped_share{camera="door"} 0.04',
    ):
        assert line in metrics, line


def test_an_overload_reported_for_a_camera_the_store_says_is_down_is_not_one(config, states):
    """The store's camera row is the newer word: a camera offline there is not short of compute."""
    client = client_for(config, Clock(NOW))
    store = client.app.state.lobbywatch.store.store()
    write_live(store, NOW, {"waiting": None, "queue": None}, camera_id="lobby",
               status=CameraStatus.OFFLINE)  # fmt: skip
    write_live(store, NOW, {"entrance": 0.0}, camera_id="door")
    service, device_store, notifier = service_with(config, states)
    state = StateFile(state_path(config.storage.path))
    try:
        assert state.write(service.snapshot(device_store, notifier) | {"at": NOW.isoformat()})
        body = client.get("/v1/health").json()
    finally:
        state.close()
    assert body["overloaded"] == []
    assert {c["camera_id"]: c["overloaded"] for c in body["cameras"]} == {
        "lobby": False,
        "door": False,
    }


def test_without_a_running_pipeline_health_and_metrics_have_no_rates(config):
    client = client_for(config, Clock(NOW))
    write_live(client.app.state.lobbywatch.store.store(), NOW, {"waiting": 3.0, "queue": 1.0})
    body = client.get("/v1/health").json()
    lobby = next(c for c in body["cameras"] if c["camera_id"] == "lobby")
    assert lobby["dropped_share"] is None and lobby["overloaded"] is False
    assert body["overloaded"] == []
    assert (
        "lobbywatch_camera_dropped_share{"
        not in client.get("/metrics", headers=auth("viewer")).text
    )
