"""Delivers outbox messages to the broker and marks them sent on PUBACK, never before.

Each stored message is handed to paho once per process: paho keeps unacknowledged QoS 1
messages and resends them itself after a reconnect, so handing them again would only make
duplicates. A message handed but not acknowledged when the process dies is handed again after
the restart (the handheld de-duplicates on message_id); one that expired meanwhile is not sent:
the manager would only be ordered around by old news.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from datetime import datetime

from paho.mqtt.enums import MQTTErrorCode

from edge.mqtt import MqttLink
from edge.store import Store

log = logging.getLogger("lobbywatch.outbox")


class OutboxPublisher:
    def __init__(self, store: Store, link: MqttLink, wall_clock: Callable[[], datetime]) -> None:
        self.store = store
        self.link = link
        self._wall = wall_clock
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._handed: set[int] = set()  # outbox seqs given to paho in this process

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def pump(self) -> int:
        """Record PUBACKs, then hand new messages to paho; returns how many were handed.

        Call from one thread only (it owns the in-flight table)."""
        self._record_acks()
        now = self._wall()
        handed = 0
        for message in self.store.pending_messages(now):
            assert message.seq is not None
            if message.seq in self._handed:
                continue
            remaining = None
            if message.expires_at is not None:
                remaining = int((message.expires_at - now).total_seconds())
            info = self.link.publish(
                message.topic, message.payload, qos=message.qos, expiry_s=remaining
            )
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                break  # paho's queue is full: try again on the next pump
            self._inflight[info.mid] = message.seq
            self._handed.add(message.seq)
            handed += 1
        return handed

    def _record_acks(self) -> None:
        while True:
            try:
                mid, ok = self.link.acked.get_nowait()
            except queue.Empty:
                return
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue  # a state message (retained occupancy), not from the outbox
            if not ok:
                # The broker refused it (an ACL, most likely): retrying cannot help; say so loudly.
                log.error("broker refused outbox message %d; check the broker ACL", seq)
            self.store.mark_sent(seq, self._wall())
