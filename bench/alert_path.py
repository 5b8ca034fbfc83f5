"""What the alert benchmarks share (alert_latency, channel_latency; no benchmark itself): the
one-camera, one-zone site they run the device's alert path on, the frame's counts handed to the
board as the camera worker hands them, and the latency summary they print."""

from __future__ import annotations

import socket
import statistics
from datetime import datetime, timezone

from edge.board import BoardUpdate, OccupancyBoard
from edge.types import CameraStatus, ZoneReading

#: The site's head: camera `cam` with zone `waiting`, the store at `{db}` (a format field).
#: A piece of a config template (braces doubled); mqtt and alerts follow.
SITE = """\
site: {{id: bench, timezone: UTC}}
cameras:
  - id: cam
    source: rtsp://127.0.0.1:9/none
    zones: [{{id: waiting, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}]
storage: {{path: "{db}"}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def feed(board: OccupancyBoard, count: float) -> None:
    at = datetime.now(timezone.utc)
    reading = ZoneReading("waiting", "cam", count, int(count), at, CameraStatus.ONLINE)
    board.update(BoardUpdate("cam", CameraStatus.ONLINE, (reading,), frame=True))


def summary(latencies: list[float]) -> str:
    """`latencies` in milliseconds: count, median, p90, p99 (nearest rank below) and max."""
    ordered = sorted(latencies)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return (
        f"{len(ordered)} alerts: p50 {statistics.median(ordered):.1f} ms, p90 {p(0.90):.1f} ms,"
        f" p99 {p(0.99):.1f} ms, max {ordered[-1]:.1f} ms"
    )
