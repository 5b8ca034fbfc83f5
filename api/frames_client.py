"""The API's side of the frames socket (edge/runtime/frames.py): one request, one answer.

The service holds the frames; the API only asks for one when an admin looks, over the Unix
socket beside the store, with a deadline, and keeps nothing: the JPEG goes straight into the
response. Blocking: call it from a sync route (FastAPI runs those in its thread pool).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.runtime.frames import MAX_SOCKET_PATH

#: Seconds for the whole exchange: the service encodes one JPEG, a few ms.
TIMEOUT_S = 3.0
MAX_HEADER_BYTES = 1024 * 1024
#: A 4K frame at JPEG quality 85 is a few MiB; anything far larger is not a frame.
MAX_JPEG_BYTES = 32 * 1024 * 1024


class FramesUnavailable(Exception):
    """Why no frame came: status 404 (no such camera, frame gone) or 503 (snapshots off in the
    service, service not running, no frame yet, busy), with a reason to show."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Snapshot:
    header: dict[str, Any]  # camera, seq, frame_index, at, width, height, boxes, ...
    jpeg: bytes  # empty when the image was not asked for


def fetch(
    path: Path,
    camera: str,
    *,
    image: bool = True,
    seq: int | None = None,
    timeout_s: float = TIMEOUT_S,
    monotonic: Callable[[], float] = time.monotonic,
) -> Snapshot:
    """The latest frame of `camera` (or the boxes of frame `seq`) from the service at `path`."""
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise FramesUnavailable(503, f"frames socket path {path} is too long for a Unix socket")
    request: dict[str, Any] = {"camera": camera}
    if not image:
        request["image"] = False
    if seq is not None:
        request["seq"] = seq
    deadline = monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.settimeout(timeout_s)
            conn.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise FramesUnavailable(
                503, "the service is not running with snapshots on (no frames socket)"
            ) from None
        except OSError as exc:
            raise FramesUnavailable(503, f"cannot reach the service's frames: {exc}") from None
        try:
            # The service may answer before it reads (busy): its answer says why.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.sendall(json.dumps(request).encode() + b"\n")
            reader = _Reader(conn, deadline, monotonic)
            header = _header(reader.line(MAX_HEADER_BYTES))
            size = header.get("jpeg_bytes", 0)
            if not isinstance(size, int) or not 0 <= size <= MAX_JPEG_BYTES:
                raise FramesUnavailable(503, "the service's answer has a bad image size")
            return Snapshot(header, reader.exactly(size))
        except (OSError, TimeoutError) as exc:
            raise FramesUnavailable(503, f"the service did not answer in time ({exc})") from None


def _header(line: bytes) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        raise FramesUnavailable(503, "the service's answer is not JSON") from None
    if not isinstance(header, dict):
        raise FramesUnavailable(503, "the service's answer is not a JSON object")
    if "error" in header:
        status = header.get("status")
        raise FramesUnavailable(404 if status == 404 else 503, str(header["error"]))
    return header


class _Reader:
    """Buffered reads from the socket, each under what is left of one deadline."""

    def __init__(
        self, conn: socket.socket, deadline: float, monotonic: Callable[[], float]
    ) -> None:
        self.conn, self.deadline, self.monotonic = conn, deadline, monotonic
        self.buffer = b""

    def _more(self, limit: int) -> None:
        left = self.deadline - self.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self.conn.settimeout(left)
        chunk = self.conn.recv(min(limit, 1 << 20))
        if not chunk:
            raise FramesUnavailable(503, "the service closed the connection mid-answer")
        self.buffer += chunk

    def line(self, limit: int) -> bytes:
        while b"\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise FramesUnavailable(503, "the service's answer header is too long")
            self._more(limit + 1 - len(self.buffer))
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._more(size - len(self.buffer))
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


class SnapshotViews:
    """How many times admins looked at a camera's frame (image or boxes), per camera, for
    the metric lobbywatch_snapshot_views_total{camera}. Routes run in threads: locked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_camera: dict[str, int] = {}

    def add(self, camera: str) -> None:
        with self._lock:
            self._by_camera[camera] = self._by_camera.get(camera, 0) + 1

    def by_camera(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_camera)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._by_camera.values())
