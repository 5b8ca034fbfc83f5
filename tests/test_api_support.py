"""Shared set-up for the API tests (this module holds no tests): a site config with one key per
role, a settable clock, and helpers that write history, live state and alerts through the real
`edge.store.Store`, the way the pipeline does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import hash_key
from api.server import uvicorn_options
from edge.config import LobbyConfig, parse_config
from edge.store import AlertRecord, CameraLive, HistoryRow, Store
from edge.types import CameraStatus, ZoneReading
from tests.mqtt_broker import free_port

UTC = timezone.utc
#: A Monday, 00:00 UTC.
T0 = datetime(2024, 5, 6, tzinfo=UTC)

KEYS = {
    "viewer": "viewer-key-0123456789abcdef",
    "manager": "manager-key-0123456789abcdef",
    "admin": "admin-key-0123456789abcdef",
}

CONFIG = """\
site: {{id: branch-1, name: Test branch, timezone: {timezone}}}
cameras:
  - id: lobby
    name: Lobby
    source: rtsp://127.0.0.1/lobby
    zones:
      - {{id: waiting, name: Waiting area, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1]]}}
      - {{id: queue, name: Queue, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1]]}}
  - id: door
    source: rtsp://127.0.0.1/door
    zones:
      - {{id: entrance, role: entrance, polygon: [[0, 0], [1, 0], [1, 1]]}}
storage: {{path: "{db}", interval_s: 10}}
mqtt: {{enabled: {mqtt}}}
api:
  keys: {keys}
  cors_origins: {cors}
  failed_auth_limit_per_min: {limit}
  trusted_proxies: {proxies}
"""


def site_config(
    tmp_path: Path,
    *,
    tz: str = "Europe/Berlin",
    keys: bool = True,
    cors: list[str] | None = None,
    limit: int = 10,
    mqtt: bool = True,
    proxies: list[str] | None = None,
) -> LobbyConfig:
    key_list = (
        "["
        + ", ".join(f"{{id: {r}-1, role: {r}, sha256: {hash_key(k)}}}" for r, k in KEYS.items())
        + "]"
        if keys
        else "[]"
    )
    text = CONFIG.format(
        timezone=tz,
        db=tmp_path / "lw.db",
        keys=key_list,
        cors=cors or [],
        limit=limit,
        mqtt=str(mqtt).lower(),
        proxies=[str(p) for p in proxies or []],
    )
    return parse_config(text, base_dir=tmp_path, environ={})


@dataclass
class Clock:
    """UTC wall time that a test sets and moves."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Monotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def client_for(
    config: LobbyConfig, clock: Clock, monotonic: Monotonic | None = None, **kwargs: Any
) -> TestClient:
    app: FastAPI = create_app(
        config,
        clock=clock,
        monotonic=monotonic or Monotonic(),
        rollup_every_s=None,
        **kwargs,
    )
    return TestClient(app)


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@contextmanager
def served(config: LobbyConfig, apps: list[FastAPI] | None = None) -> Iterator[str]:
    """The app under uvicorn with `lobbywatch api`'s options, on a free loopback port, in a
    thread, with a clock for the failure window that stands still (appended to `apps` for a
    test that looks inside). Streams end once it stops, as under api/server.py."""
    port = free_port()
    app = create_app(config, monotonic=Monotonic(), rollup_every_s=None)
    if apps is not None:
        apps.append(app)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(config, "127.0.0.1", port)))
    app.state.stopping = lambda: server.should_exit
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "the server did not stop (a stream held it?)"


def api_process(site: Path, base: str) -> subprocess.Popen[bytes]:
    """`python -m api --config site` as its own process, output piped, returned once it answers
    /v1/health/live at `base` (within 30 s; killed if it does not)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "api", "--config", str(site), "--host", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/v1/health/live", timeout=1).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.1)
    except BaseException:
        if server.poll() is None:
            server.kill()
        server.communicate()
        raise


def write_history(
    store: Store,
    zone_id: str,
    start: datetime,
    means: list[float | None],
    *,
    camera_id: str = "lobby",
    interval_s: int = 10,
    samples: int = 20,
) -> None:
    """One stored interval per value from `start`: None is an interval with the camera offline
    (no frames, seen 0); a number is `samples` frames averaging it, max = mean + 1."""
    rows = []
    for i, mean in enumerate(means):
        rows.append(
            HistoryRow(
                zone_id=zone_id,
                camera_id=camera_id,
                bucket_start=int(start.timestamp()) + i * interval_s,
                interval_s=interval_s,
                samples=0 if mean is None else samples,
                mean=mean,
                max=None if mean is None else mean + 1,
                min=None if mean is None else max(0.0, mean - 1),
                seen_fraction=0.0 if mean is None else 1.0,
            )
        )
    store.write_history(rows)


def write_live(
    store: Store,
    at: datetime,
    counts: dict[str, float | None],
    *,
    camera_id: str = "lobby",
    status: CameraStatus = CameraStatus.ONLINE,
    fps: float = 2.0,
    inference_ms: float = 80.0,
) -> None:
    readings = [
        ZoneReading(
            zone_id=zone_id,
            camera_id=camera_id,
            count=count,
            raw=None if count is None else round(count),
            at=at,
            camera_status=status,
        )
        for zone_id, count in counts.items()
    ]
    store.write_live(readings, CameraLive(camera_id, status, fps, at, inference_ms))


def insert_alert(
    store: Store,
    alert_id: str,
    raised_at: datetime,
    *,
    zones: tuple[str, ...] = ("waiting",),
    count: float = 12.0,
    kind: str = "diversion",
) -> None:
    store.insert_alert(
        AlertRecord(
            alert_id=alert_id,
            rule="waiting-full",
            kind=kind,
            zones=zones,
            threshold=10.0,
            since=raised_at - timedelta(seconds=60),
            raised_at=raised_at,
            count_at_raise=count,
            message="Waiting area has 12 people: start a diversion pass",
            escalations=0,
            last_notified_at=raised_at,
            acknowledged_at=None,
            acknowledged_by=None,
            count_at_ack=None,
            pass_done_at=None,
            pass_done_by=None,
            effect_after_s=600.0,
            effect_count=None,
            effect_measured_at=None,
            cleared_at=None,
            count_at_clear=None,
            status="open",
        ),
        [],
    )
