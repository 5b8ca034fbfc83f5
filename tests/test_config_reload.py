"""The service takes up a change of its config file without a restart (docs/ui.md 5): a real
Service replaying frames, its file rewritten with a new zone, the zone counted within seconds
while availability on a real Mosquitto never reads offline or stopped and the zones that stay
never turn unknown; an invalid rewrite is kept out, the service runs on, and health says so."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import cv2
import httpx
import numpy as np
from fastapi.testclient import TestClient

from api.app import create_app
from edge.config import LobbyConfig, load_config
from edge.runtime.config_watch import ConfigWatch
from edge.runtime.device_state import read_state, state_path
from edge.service import Service, health_summary
from edge.store import Store
from tests.mqtt_broker import free_port
from tests.processes import Watcher
from tests.test_api_support import KEYS, Monotonic, hash_key
from tests.test_service import TwoPeopleLeft
from tests.test_snapshots_service import Running
from tests.waiting import wait_for

SITE = """\
# The reload test's site (comments survive: the file is edited in place)
site: {{id: reload-site, timezone: Europe/Berlin}}
detector: {{model: yolox_nano, fusion: {{models: []}}}}
cameras:
  - id: cam
    source: "{frames}/seq_%06d.jpg"
    source_fps: 4
    fps: 4
    loop: true
    scene: {{perspective: {{enabled: false}}, overlays: {{enabled: false}}, clutter: {{enabled: false}}}}
    gating: {{enabled: false}}
    zones:
{zones}
storage: {{path: "{db}", interval_s: 1}}
tracking: {{enabled: false}}
occupancy: {{window_s: 0.5, hold_frames: 0}}
mqtt: {{host: 127.0.0.1, port: {mqtt}, reconnect_min_s: 0.2, reconnect_max_s: 1}}
{alerts}api:
  enabled: {api}
  host: 127.0.0.1
  port: {port}
  keys: [{{id: it, role: admin, sha256: "{sha}"}}]
"""
# TwoPeopleLeft's feet: x 0.15 and 0.35 of the frame.
BEFORE = """\
      - {id: left, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
      - {id: right, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}"""
AFTER = """\
      - {id: left, role: waiting, polygon: [[0, 0], [0.25, 0], [0.25, 1], [0, 1]]}
      - {id: middle, role: waiting, polygon: [[0.25, 0], [0.5, 0], [0.5, 1], [0.25, 1]]}
      - {id: right, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}"""
PIXELS = """\
      - {id: left, role: waiting, polygon: [[0, 0], [320, 0], [320, 480]]}"""
RULE = "alerts:\n  rules:\n    - {id: busy, zones: [gone], raise_at: 5, clear_at: 2}\n"


class Site:
    """The config file, rewritten the way an editor's save does (temp file, rename)."""

    def __init__(self, tmp_path: Path, mqtt_port: int, *, api: bool = False) -> None:
        frames = tmp_path / "frames"
        frames.mkdir()
        for i in range(4):
            cv2.imwrite(
                str(frames / f"seq_{i + 1:06d}.jpg"), np.full((48, 64, 3), 40 * i, np.uint8)
            )
        self.path = tmp_path / "lobbywatch.yaml"
        self.values = {"frames": frames, "db": tmp_path / "lw.db", "mqtt": mqtt_port,
                       "api": str(api).lower(), "port": free_port(),
                       "sha": hash_key(KEYS["admin"])}  # fmt: skip
        self.write(BEFORE)

    def write(self, zones: str, alerts: str = "") -> None:
        temp = self.path.with_name(".lobbywatch.yaml.tmp")
        temp.write_text(SITE.format(zones=zones, alerts=alerts, **self.values))
        os.replace(temp, self.path)

    def config(self) -> LobbyConfig:
        return load_config(self.path, environ={})

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.values['port']}"


def live(store_path: Path) -> dict[str, float | None]:
    store = Store(store_path, site_id="reload-site")
    try:
        return {r.zone_id: r.count for r in store.live()}
    finally:
        store.close()


def counts(watcher: Watcher, zone: str) -> list[float | None]:
    return [json.loads(p)["count"] for p in watcher.all(f"zone/{zone}/occupancy") if p]


def test_a_saved_zone_is_counted_without_a_restart_and_availability_never_drops(tmp_path, broker):
    site = Site(tmp_path, broker.port)
    config = site.config()
    watcher = Watcher(broker.port, "reload-site")
    service = Service(config, config_path=site.path, detector_factory=TwoPeopleLeft,
                      config_loader=load_config)  # fmt: skip
    try:
        with Running(service):
            wait_for(lambda: live(config.storage.path).get("left") == 2.0, 60, "two on the left")
            wait_for(lambda: 2.0 in counts(watcher, "left"), 30, "left published")
            camera = service.workers[0].camera
            seen_before = len(counts(watcher, "left"))

            site.write(AFTER)
            wait_for(lambda: live(config.storage.path).get("middle") == 1.0, 30, "middle counted")
            wait_for(lambda: live(config.storage.path).get("left") == 1.0, 30, "left shrunk")
            assert service.watch is not None and service.watch.status.reloads == 1
            assert service.workers[0].camera is camera  # the stream stayed open
            assert [z.id for z in service.config.cameras[0].zones] == ["left", "middle", "right"]
            wait_for(lambda: 1.0 in counts(watcher, "middle"), 30, "middle published")
            # The zone that stayed went from 2 to 1, never through unknown.
            assert None not in counts(watcher, "left")[seen_before - 1 :]
            assert set(watcher.all("availability")) == {b"online"}
            assert service.watch.status.state == "ok"
    finally:
        watcher_availability = watcher.all("availability")
        watcher.stop()
    assert watcher_availability[-1] == b"stopped"  # said once, by the real stop
    assert set(watcher_availability[:-1]) == {b"online"}


def test_an_invalid_rewrite_is_kept_out_and_health_says_so_until_fixed(tmp_path, broker):
    site = Site(tmp_path, broker.port, api=True)
    config = site.config()
    service = Service(config, config_path=site.path, detector_factory=TwoPeopleLeft,
                      config_loader=load_config)  # fmt: skip
    headers = {"Authorization": f"Bearer {KEYS['admin']}"}
    with Running(service):
        wait_for(lambda: live(config.storage.path).get("left") == 2.0, 60, "two on the left")
        assert service.api is not None
        wait_for(lambda: _answers(f"{site.api_base}/v1/health/live"), 30, "the API child")
        api_pid = service.api.state.pid

        site.write(PIXELS)
        assert service.watch is not None
        wait_for(lambda: service.watch.status.state == "invalid", 30, "the pixel file seen")
        error = service.watch.status.error or ""
        assert "cameras.0.zones.0.polygon" in error and "pixels" in error
        site.write(AFTER, RULE)  # valid YAML, a rule on a zone that does not exist
        wait_for(lambda: "unknown zone 'gone'" in (service.watch.status.error or ""), 30)
        since = service.watch.status.since

        # Still counting on the config it had, same API child; health says why.
        assert [z.id for z in service.config.cameras[0].zones] == ["left", "right"]
        assert service.api.state.pid == api_pid and service.watch.status.reloads == 0
        wait_for(lambda: _device_config(config) == "invalid", 10, "state file says invalid")
        assert service.notifier is not None
        summary = health_summary(service.snapshot(_store(config), service.notifier))
        assert summary["status"] == "degraded"
        assert summary["config"]["state"] == "invalid" and "gone" in summary["config"]["error"]
        health = httpx.get(f"{site.api_base}/v1/health", timeout=5).json()
        assert health["config"]["state"] == "invalid"
        assert health["config"]["since"] == since.isoformat().replace("+00:00", "Z") or (
            datetime.fromisoformat(health["config"]["since"].replace("Z", "+00:00")) == since
        )
        assert health["status"] in ("degraded", "fail")

        site.write(AFTER)  # fixed: taken, and the API child serves the new zones
        wait_for(lambda: service.watch.status.reloads == 1, 30, "the fixed file taken")
        assert service.watch.status.state == "ok"
        wait_for(lambda: _zones(site.api_base, headers) == ["left", "middle", "right"], 60,
                 "the restarted API serves the new zones")  # fmt: skip
        assert service.api.state.pid != api_pid
        wait_for(lambda: live(config.storage.path).get("middle") == 1.0, 30, "middle counted")


def _store(config: LobbyConfig) -> Store:
    return Store(config.storage.path, site_id=config.site.id)


def _device_config(config: LobbyConfig) -> str | None:
    state = read_state(state_path(config.storage.path), datetime.now(timezone.utc))
    return None if state is None else state.section("config").get("state")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _zones(base: str, headers: dict[str, str]) -> list[str] | None:
    try:
        response = httpx.get(f"{base}/v1/zones", headers=headers, timeout=2)
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    return [z["id"] for z in response.json()["zones"]]


def test_the_api_reads_the_same_health_from_the_state_file(tmp_path, broker):
    """GET /v1/health (an API of its own, the state file between) carries the watch's state."""
    site = Site(tmp_path, broker.port)
    config = site.config()
    service = Service(config, config_path=site.path, detector_factory=TwoPeopleLeft,
                      config_loader=load_config)  # fmt: skip
    client = TestClient(create_app(config, rollup_every_s=None, monotonic=Monotonic()))
    with Running(service):
        wait_for(lambda: _device_config(config) == "ok", 60, "the state file")
        assert client.get("/v1/health").json()["config"]["state"] == "ok"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_watch_polls_on_its_clock_and_takes_only_a_change_that_means_something(tmp_path):
    site = Site(tmp_path, free_port())
    clock = Clock()
    loads: list[Path] = []

    def load(path: Path) -> LobbyConfig:
        loads.append(path)
        return load_config(path, environ={})

    watch = ConfigWatch(site.path, site.config(), load=load, clock=clock)
    site.write(AFTER)
    assert watch.poll() is None and loads == []  # not yet 2 s
    clock.now = 2.0
    changed = watch.poll()
    assert changed is not None and [z.id for z in changed.cameras[0].zones][1] == "middle"
    watch.taken(changed)
    clock.now = 4.0
    assert watch.poll() is None and len(loads) == 1  # nothing changed: not even read

    site.path.write_text(site.path.read_text() + "# a comment\n")
    clock.now = 6.0
    assert watch.poll() is None and len(loads) == 2  # read, same config: no reload
    assert watch.status.state == "ok" and watch.status.reloads == 1

    site.write(PIXELS)
    clock.now = 8.0
    assert watch.poll() is None and watch.status.state == "invalid"
    since = watch.status.since
    site.write(PIXELS, RULE)
    clock.now = 10.0
    assert watch.poll() is None and watch.status.since == since  # still invalid since then
    site.write(AFTER)  # back to what runs: ok again, nothing to reload
    clock.now = 12.0
    assert watch.poll() is None and watch.status.state == "ok"


def test_a_worker_that_takes_a_camera_over_starts_from_the_zones_last_counts(tmp_path):
    """Until its first frame, the next worker says what the last one knew of the zones that
    remain (a new zone is unknown): a slow camera's reload publishes no unknown in between."""
    from edge.capture import Camera, CaptureSettings
    from edge.config import parse_config
    from edge.pipeline import CameraPipeline
    from edge.service import CameraWorker, WorkerState
    from edge.types import CameraStatus

    site = Site(tmp_path, free_port())
    site.write(AFTER)
    new = parse_config(site.path.read_text(), base_dir=tmp_path, environ={})
    camera_config = new.cameras[0]
    camera = Camera(CaptureSettings(camera_id="cam", source="rtsp://127.0.0.1/x", target_fps=1))
    old = WorkerState(CameraStatus.ONLINE, 3.9, {"left": 2.0, "right": 0.0}, {"left": 2},
                      target_fps=4.0)  # fmt: skip
    pipeline = CameraPipeline(camera_config, TwoPeopleLeft(), new.occupancy)
    store = Store(new.storage.path, site_id=new.site.id)
    try:
        worker = CameraWorker(camera_config, camera, pipeline, store, 1, handed_over=old)
        assert worker.state.status is CameraStatus.ONLINE
        assert worker.state.occupancy == {"left": 2.0, "middle": None, "right": 0.0}
        assert worker.state.raw == {"left": 2}
    finally:
        store.close()
