"""The running service's own state, for the API, `doctor` and MQTT in other processes.

What only the service knows (is the store taking writes, how many alert writes wait in memory,
is the broker reachable and why not, is the API child running) cannot go through the store:
on a full disk the store is exactly what fails. So the service rewrites a small JSON snapshot
about once a second into a file it preallocates at start, beside the store, in place: writing
over blocks a file already owns needs no free space (ext4, xfs and tmpfs; not copy-on-write
file systems such as btrfs or zfs, where a full disk shows as a missing or stale snapshot).

Layout: 8 bytes of header (b"LWS1" and the length, big-endian) then the UTF-8 JSON. A reader
that catches a write half done sees bad JSON and tries again.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("lobbywatch.state")

SIZE = 64 * 1024
_MAGIC = b"LWS1"
_HEADER = struct.Struct(">4sI")
#: A snapshot older than this says nothing about now (the service writes one a second).
FRESH_S = 5.0


def state_path(store_path: Path) -> Path:
    """Where the service that owns `store_path` keeps its snapshot."""
    return store_path.with_name(store_path.name + ".state")


class StateFile:
    """The writer's side: one per service."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._warned = False
        self._open()

    def _open(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            self._warn(exc)
            return
        try:
            if os.fstat(fd).st_size < SIZE:
                os.posix_fallocate(fd, 0, SIZE)
        except OSError as exc:  # a full disk at the first start: try again on the next write
            os.close(fd)
            self._warn(exc)
            return
        self._fd = fd

    def _warn(self, exc: OSError) -> None:
        if not self._warned:
            log.error("state file %s cannot be written (%s): health seen from the API and "
                      "doctor will be incomplete", self.path, exc)  # fmt: skip
            self._warned = True

    def write(self, snapshot: dict[str, Any]) -> bool:
        if self._fd is None:
            self._open()
            if self._fd is None:
                return False
        data = json.dumps(snapshot, ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) > SIZE - _HEADER.size:
            data = json.dumps({**_essentials(snapshot), "truncated": True}).encode()
        try:
            os.pwrite(self._fd, _HEADER.pack(_MAGIC, len(data)) + data, 0)
        except OSError as exc:
            self._warn(exc)
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _essentials(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {k: snapshot[k] for k in ("pid", "at", "running", "store", "broker") if k in snapshot}


@dataclass(frozen=True)
class DeviceState:
    """A snapshot as read back; `current` is False when it is old or its writer is gone."""

    data: dict[str, Any]
    at: datetime
    current: bool

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}


def read_state(path: Path, now: datetime, attempts: int = 3) -> DeviceState | None:
    """The latest snapshot, or None when there is none (no service ever ran here)."""
    for attempt in range(attempts):
        try:
            with path.open("rb") as f:
                raw = f.read(SIZE)
        except OSError:
            return None
        parsed = _parse(raw)
        if parsed is not None:
            at = datetime.fromisoformat(parsed["at"])
            # Freshness alone, not the pid: the reader may live in another PID namespace (a
            # container), and a writer killed with -9 is out of date within FRESH_S anyway.
            current = bool(parsed.get("running")) and abs((now - at).total_seconds()) <= FRESH_S
            return DeviceState(parsed, at, current)
        if attempt + 1 < attempts:
            time.sleep(0.01)  # caught a write half done
    return None


def _parse(raw: bytes) -> dict[str, Any] | None:
    if len(raw) < _HEADER.size:
        return None
    magic, length = _HEADER.unpack_from(raw)
    if magic != _MAGIC or length > len(raw) - _HEADER.size:
        return None
    try:
        data = json.loads(raw[_HEADER.size : _HEADER.size + length])
        datetime.fromisoformat(data["at"])
    except (ValueError, KeyError, TypeError):
        return None
    return data if isinstance(data, dict) else None
