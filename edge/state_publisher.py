"""Retained state on the broker: availability, camera status, zone occupancy, device health,
the queue (wait, forecast, kiosks, counters: docs/queueing.md).

Published on change, again every `occupancy_interval_s`, and whole on every (re)connect, so a
client that connects late, or a broker that restarted without persistence, still sees the
current numbers (the lesson of Frigate #5295). Unknown is published as count null, stale true.
With `mqtt.home_assistant.enabled`, Home Assistant's discovery configs go first on every
(re)connect (edge/integrations/homeassistant.py), then the states they point to.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timezone

from edge.board import BoardUpdate, OccupancyBoard
from edge.config import LobbyConfig
from edge.integrations.homeassistant import DiscoveryPublisher
from edge.mqtt import MqttLink
from edge.types import CameraStatus, ZoneReading


class StatePublisher:
    def __init__(
        self,
        config: LobbyConfig,
        board: OccupancyBoard,
        link: MqttLink,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board = board
        self.link = link
        self.topics = link.topics
        self.interval_s = config.mqtt.occupancy_interval_s
        self._zones = {z.id: (z, c.id) for c in config.cameras for z in c.zones}
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[object, ...]] = {}
        self._status: dict[str, CameraStatus] = {}
        self._health: str | None = None  # the latest health payload
        self._health_sent: str | None = None
        self._queue: str | None = None  # the latest queue payload (published when given)
        self._next_full = 0.0
        self.discovery = (
            DiscoveryPublisher(config, link) if config.mqtt.home_assistant.enabled else None
        )
        # The head-office feed's hooks (edge/integrations/central.py, set by the service when
        # central.enabled): every queue snapshot, and every board update's camera status.
        self.on_queue: Callable[[str], None] = lambda _payload: None
        self.on_camera_status: Callable[[str, CameraStatus], None] = lambda _id, _status: None

    def on_board_update(self, update: BoardUpdate) -> None:
        self.on_camera_status(update.camera_id, update.status)
        with self._lock:
            changed = self._status.get(update.camera_id) is not update.status
            topic = self.topics.camera_status(update.camera_id)
            if changed and self.link.publish_state(topic, update.status.value):
                self._status[update.camera_id] = update.status
            for reading in update.readings:
                key = (reading.count, reading.camera_status)
                if self._last.get(reading.zone_id) != key:
                    self._publish_zone(reading, key)

    def publish_health(self, payload: str) -> None:
        """The device's health (store, delivery, API), when it changed."""
        with self._lock:
            self._health = payload
            if payload != self._health_sent and self.link.publish_state(self.topics.health, payload):
                self._health_sent = payload

    def publish_queue(self, payload: str) -> bool:
        """The queue snapshot (the monitor says when one is due); kept for every reconnect."""
        self.on_queue(payload)  # while the broker is away too: paho keeps the feed's minute
        with self._lock:
            self._queue = payload
            return self.link.publish_state(self.topics.queue, payload)

    def republish_all(self) -> None:
        """Everything, now: after a (re)connect and every interval."""
        with self._lock:
            if self.discovery is not None:
                self.discovery.publish_if_new_connection()
            if self._health is not None and self.link.publish_state(
                self.topics.health, self._health
            ):
                self._health_sent = self._health
            if self._queue is not None:
                self.link.publish_state(self.topics.queue, self._queue)
            for camera_id, status in self.board.statuses().items():
                if self.link.publish_state(self.topics.camera_status(camera_id), status.value):
                    self._status[camera_id] = status
            for reading in self.board.readings():
                self._publish_zone(reading, (reading.count, reading.camera_status))
            self._next_full = self._clock() + self.interval_s

    def tick(self) -> None:
        if self._clock() >= self._next_full:
            self.republish_all()

    def _publish_zone(self, reading: ZoneReading, key: tuple[object, ...]) -> None:
        zone, camera_id = self._zones[reading.zone_id]
        payload = {
            "zone": reading.zone_id,
            "name": zone.name or zone.id,
            "role": zone.role,
            "camera": camera_id,
            "count": reading.count,
            "raw": reading.raw,
            "at": reading.at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
            "stale": reading.camera_status is not CameraStatus.ONLINE,
            "camera_status": reading.camera_status.value,
        }
        if self.link.publish_state(
            self.topics.zone_occupancy(reading.zone_id), json.dumps(payload, ensure_ascii=False)
        ):
            self._last[reading.zone_id] = key
