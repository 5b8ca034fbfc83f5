"""The latest occupancy of every zone and the status of every camera, shared between threads.

Camera workers write it after each frame or status change; the alert service and the MQTT
publisher read it. Listeners are called in the writer's thread, right after the update, so an
alert can be decided on the frame that completes its condition rather than at the next poll.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from edge.tracking.dwell import Visit, ZoneDwell
from edge.types import CameraStatus, ZoneReading

Listener = Callable[["BoardUpdate"], None]


@dataclass(frozen=True)
class BoardUpdate:
    camera_id: str
    status: CameraStatus
    readings: tuple[ZoneReading, ...]
    frame: bool  # True when the readings come from a newly processed frame
    # The visits that ended in this frame and the dwell figures of the camera's timed zones
    # (edge/tracking/dwell.py); empty without a frame or without tracking. For the queue monitor.
    visits: tuple[Visit, ...] = ()
    dwell: Mapping[str, ZoneDwell] = field(default_factory=dict)


class OccupancyBoard:
    def __init__(self, cameras: Mapping[str, Iterable[str]]) -> None:
        """cameras: camera id -> the ids of its zones."""
        self._lock = threading.Lock()
        self._zone_camera = {z: c for c, zones in cameras.items() for z in zones}
        self._readings: dict[str, ZoneReading] = {}
        self._status: dict[str, CameraStatus] = dict.fromkeys(cameras, CameraStatus.OFFLINE)
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def update(self, update: BoardUpdate) -> None:
        with self._lock:
            self._status[update.camera_id] = update.status
            for reading in update.readings:
                self._readings[reading.zone_id] = reading
        for listener in self._listeners:
            listener(update)

    def total(self, zone_ids: Iterable[str]) -> float | None:
        """Sum of the zones' occupancy; None if any of them is unknown."""
        with self._lock:
            total = 0.0
            for zone_id in zone_ids:
                reading = self._readings.get(zone_id)
                if reading is None or reading.count is None:
                    return None
                if self._status.get(self._zone_camera[zone_id]) is not CameraStatus.ONLINE:
                    return None
                total += reading.count
            return total

    def readings(self) -> list[ZoneReading]:
        with self._lock:
            return list(self._readings.values())

    def statuses(self) -> dict[str, CameraStatus]:
        with self._lock:
            return dict(self._status)
