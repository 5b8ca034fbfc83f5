"""The API against a store filled by the real pipeline: real Mall frames, the real yolox_nano
detector, `lobbywatch run` in a process of its own, the API reading the same SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from api.schemas import HealthOut, HistoryOut, OccupancyOut
from edge.config import load_config
from edge.store import Store
from tests.test_api_support import KEYS, Clock, auth, client_for
from tests.waiting import wait_for

CONFIG = """\
site: {{id: mall-test, timezone: Europe/London}}
detector: {{model: yolox_nano, confidence: 0.2, threads: 2}}
cameras:
  - id: cam
    source: "{source}"
    source_fps: 4
    fps: 4
    loop: true
    stale_after_s: 2
    offline_after_s: 5
    zones:
      - {{id: left, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
      - {{id: right, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}}
storage: {{path: "{db}", interval_s: 1}}
mqtt: {{enabled: false}}
api:
  enabled: true
  port: {port}
  keys: [{{id: viewer-1, role: viewer, env: LW_TEST_VIEWER_KEY}}]
"""


@pytest.fixture
def site(tmp_path, mall_sequence) -> Path:
    """A config replaying six real Mall frames in a loop, like a live camera at 4 fps."""
    path = tmp_path / "site.yaml"
    text = CONFIG.format(source=mall_sequence, db=tmp_path / "lw.db", port=free_port())
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_api_reads_live_counts_and_history_while_the_pipeline_runs_in_another_process(
    site, models_dir
):
    """In-process (TestClient) for the details, and the API child that `lobbywatch run` starts
    when api.enabled, over real HTTP, for the wiring."""
    environ = {"LW_TEST_VIEWER_KEY": KEYS["viewer"]}
    env = {**os.environ, "LOBBYWATCH_MODELS": str(models_dir), **environ}
    config = load_config(site, environ=environ)
    served = f"http://127.0.0.1:{config.api.port}/v1/occupancy"
    pipeline = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(site)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    started = datetime.now(timezone.utc)
    clock = Clock(started)
    client = client_for(config, clock, environ=environ)

    def occupancy() -> OccupancyOut:
        clock.now = datetime.now(timezone.utc)
        response = client.get("/v1/occupancy", headers=auth("viewer"))
        assert response.status_code == 200, response.text
        return OccupancyOut.model_validate(response.json())

    try:
        wait_for(lambda: all(z.count is not None for z in occupancy().zones), 60, "live counts")
        now = occupancy()
        people = sum(z.count or 0 for z in now.zones)
        assert 15 <= people <= 45, now  # the Mall frames hold 29-35 people
        assert {z.camera_status for z in now.zones} == {"online"}
        assert client.get("/v1/health").status_code == 200  # a camera online, store writable
        wait_for(lambda: _served_counts(served) is not None, 30, "the API child's answer")
        wait_for(lambda: _history_samples(client, clock) >= 8, 30, "history intervals")
    finally:
        pipeline.send_signal(signal.SIGTERM)
        _, stderr = pipeline.communicate(timeout=30)
    assert pipeline.returncode == 0, stderr.decode()[-2000:]
    with pytest.raises(httpx.TransportError):  # the API child stopped with the pipeline
        httpx.get(served, timeout=2)

    # Stopped cleanly: the API says unknown, not the last count, and health is not ready.
    after = occupancy()
    assert {z.count for z in after.zones} == {None}
    assert {z.camera_status for z in after.zones} == {"offline"}
    health = client.get("/v1/health")
    assert health.status_code == 503 and not HealthOut.model_validate(health.json()).ready

    # The history the API reports is the pipeline's, interval for interval.
    clock.now = datetime.now(timezone.utc)
    got = _history(client, clock)
    with Store(config.storage.path) as store:
        for zone in got.zones:
            rows = store.history(zone.zone_id)
            assert sum(p.samples for p in zone.points) == sum(r.samples for r in rows)
            assert max(p.max or 0 for p in zone.points) == max(r.max or 0 for r in rows)
    busiest = [p for p in got.zones[0].points if p.samples]
    assert busiest and all(p.mean is not None and p.coverage > 0 for p in busiest)
    assert sum(max(p.max or 0 for p in z.points) for z in got.zones) >= 15


def _served_counts(url: str) -> list[float | None] | None:
    """The counts the API child serves over HTTP, or None while it does not answer."""
    try:
        response = httpx.get(url, headers=auth("viewer"), timeout=2)
    except httpx.TransportError:
        return None
    assert response.status_code == 200, response.text
    counts = [z["count"] for z in response.json()["zones"]]
    return counts if all(c is not None for c in counts) else None


def _history(client, clock) -> HistoryOut:
    start = (clock.now - timedelta(minutes=10)).isoformat()
    end = (clock.now + timedelta(minutes=1)).isoformat()
    response = client.get(
        "/v1/occupancy/history",
        params={"bucket": "1m", "start": start, "end": end},
        headers=auth("viewer"),
    )
    assert response.status_code == 200, response.text
    return HistoryOut.model_validate(response.json())


def _history_samples(client, clock) -> int:
    clock.now = datetime.now(timezone.utc)
    return sum(p.samples for p in _history(client, clock).zones[0].points)
