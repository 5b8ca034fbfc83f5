"""Delivers outbox messages to the broker and marks them sent on PUBACK, never before.

Each stored message is handed to paho once per process: paho keeps unacknowledged QoS 1
messages and resends them itself after a reconnect, so handing them again would only make
duplicates. A message handed but not acknowledged when the process dies is handed again after
the restart (the handheld de-duplicates on message_id); one that expired meanwhile is not sent:
the manager would only be ordered around by old news.
"""

from __future__ import annotations

import logging
import math
import queue
import time
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from paho.mqtt.enums import MQTTErrorCode

from edge.alerts.spool import WriteSpool
from edge.mqtt import MqttLink
from edge.runtime.histogram import ALERT_LATENCY_BOUNDS, Histogram
from edge.store import OutboxMessage, Store, StoreWriteError

log = logging.getLogger("lobbywatch.outbox")

Outcome = Literal["sent", "expired"]


class OutboxPublisher:
    """Hands outbox messages to paho and records what became of them.

    Messages come from the store's outbox and, while the store refuses writes, from the write
    spool. A PUBACK is recorded in the store as soon as it arrives (the link wakes the notifier
    for it): a kill right after delivery must not leave a delivered alert looking unsent, or
    it is delivered again after the restart. Outcomes the store cannot take yet (a full disk,
    a message still in the spool) are kept and recorded on a later pump.

    Expiry is decided on the monotonic clock, from when the message was made (`born`, kept by
    the alert service) or, for one a previous process made, from the time its wall clock said
    was left when this process first saw it: a wall-clock step (NTP fixing a clock that was
    hours out) must not drop the alerts waiting for the broker.

    `latency` counts, for each message made in this process and acknowledged by the broker,
    the seconds from its making (`born`: the decision) to the PUBACK, on the link's monotonic
    clock (the same clock as `born`: the notifier gives both the same one). A message made
    before a restart has no monotonic birth and is not counted.
    """

    def __init__(
        self,
        store: Store,
        link: MqttLink,
        wall_clock: Callable[[], datetime],
        spool: WriteSpool | None = None,
        clock: Callable[[], float] = time.monotonic,
        born: dict[str, float] | None = None,
    ) -> None:
        self.store = store
        self._born = born if born is not None else {}
        self.link = link
        self.spool = spool
        self._wall = wall_clock
        self._clock = clock
        self._inflight: dict[int, str] = {}  # paho mid -> message id
        self._handed: set[str] = set()  # message ids given to paho in this process
        self._deadline: dict[str, float] = {}  # message id -> monotonic expiry
        self._outcomes: dict[str, tuple[Outcome, datetime]] = {}  # not yet in the store
        self.expired = 0
        self.latency = Histogram(ALERT_LATENCY_BOUNDS)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def backlog(self) -> int:
        """Messages not yet acknowledged by the broker: the store's and the spool's, less those
        whose PUBACK (or expiry) came and waits to be recorded."""
        spooled = len(self.spool.messages()) if self.spool is not None else 0
        return max(0, self.store.unsent_count() + spooled - len(self._outcomes))

    def idle(self) -> bool:
        """Nothing left to hand or to hear back about."""
        return not self._inflight and not self._outcomes and self._pending() == []

    def pump(self) -> int:
        """Record PUBACKs, then hand new messages to paho; returns how many were handed.

        Call from one thread only (it owns the in-flight table)."""
        self._record_acks()
        self._record_outcomes()
        now = self._clock()
        handed = 0
        for message in self._pending():
            if message.message_id in self._handed:
                continue
            remaining = self._remaining(message, now)
            if remaining is not None and remaining <= 0:
                self._expire(message)
                continue
            expiry_s = None if remaining is None else math.ceil(remaining)
            info = self.link.publish(
                message.topic, message.payload, qos=message.qos, expiry_s=expiry_s
            )
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                break  # paho's queue is full: try again on the next pump
            self._inflight[info.mid] = message.message_id
            self._handed.add(message.message_id)
            handed += 1
        return handed

    def _pending(self) -> list[OutboxMessage]:
        stored = self.store.pending_messages()
        spooled = self.spool.messages() if self.spool is not None else []
        return [m for m in stored + spooled if m.message_id not in self._outcomes]

    def _remaining(self, message: OutboxMessage, now: float) -> float | None:
        """Seconds left before the message expires (None: it never does)."""
        if message.expires_at is None:
            return None
        deadline = self._deadline.get(message.message_id)
        if deadline is None:
            full = (message.expires_at - message.created_at).total_seconds()
            born = self._born.get(message.message_id)
            if born is not None:
                deadline = born + full
            else:  # made before a restart: only the wall clock knows its age
                left = (message.expires_at - self._wall()).total_seconds()
                deadline = now + min(max(left, 0.0), full)  # a clock set back adds no time
            self._deadline[message.message_id] = deadline
        return deadline - now

    def _expire(self, message: OutboxMessage) -> None:
        log.warning("alert message %s expired before the broker took it: not sent",
                    message.message_id)  # fmt: skip
        self.expired += 1
        self._outcomes[message.message_id] = ("expired", self._wall())

    def _record_acks(self) -> None:
        while True:
            try:
                mid, ok, acked_at = self.link.acked.get_nowait()
            except queue.Empty:
                return
            message_id = self._inflight.pop(mid, None)
            if message_id is None:
                continue  # a state message (retained occupancy), not from the outbox
            born = self._born.get(message_id)
            if ok and born is not None:
                self.latency.observe(max(0.0, acked_at - born))
            if not ok:
                # The broker refused it (an ACL, most likely): retrying cannot help; say so loudly.
                log.error("broker refused outbox message %s; check the broker ACL", message_id)
            self._outcomes[message_id] = ("sent", self._wall())

    def _record_outcomes(self) -> None:
        spooled = (
            {m.message_id for m in self.spool.messages()} if self.spool is not None else set()
        )
        for message_id, (outcome, at) in list(self._outcomes.items()):
            mark = self.store.mark_sent if outcome == "sent" else self.store.mark_expired
            try:
                recorded = mark(message_id, at)
            except StoreWriteError:
                return  # the store is failing: keep them all for the next pump
            if recorded or message_id not in spooled:
                del self._outcomes[message_id]
                self._handed.discard(message_id)
                self._deadline.pop(message_id, None)
                self._born.pop(message_id, None)
