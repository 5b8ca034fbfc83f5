"""Everything that talks to the lobby manager, the supervisor and IT, in one thread.

Wires the queue monitor (wait, forecast, kiosks and counters: docs/queueing.md), the alert
service (decisions, stored first), the outbox publisher (delivery on PUBACK), the alert state
publisher (each alert's retained state, docs/handheld.md) and the retained occupancy and queue
publisher to one MQTT link; ticket machine events from the link go to the queue monitor. Rule decisions that a frame completes are taken
in the camera worker's thread (through the board) and wake this thread at once, so an alert
leaves within milliseconds of the frame; timers (escalation, cooldown, camera health, pass
effects) are checked here about twice a second.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.alerts.delivery import build_worker
from edge.alerts.outbox import OutboxPublisher
from edge.alerts.retained import AlertStatePublisher
from edge.alerts.service import AlertService, utc_now
from edge.alerts.state import SiteNames
from edge.board import OccupancyBoard
from edge.config import LobbyConfig
from edge.mqtt import LinkState, MqttLink
from edge.runtime.queue_monitor import QueueMonitor
from edge.state_publisher import StatePublisher
from edge.store import Store, StoreWriteError

log = logging.getLogger("lobbywatch.notifier")

TICK_S = 0.5


@dataclass(frozen=True)
class DeliveryStatus:
    """How alerts are getting out, for the status line, health and metrics."""

    broker: LinkState | None  # None: MQTT is disabled
    backlog: int  # alert messages the broker has not acknowledged yet
    unsaved_writes: int  # alert writes kept in memory while the store refuses writes
    expired: int  # alert messages given up in this process (expired before the broker took them)
    channels: dict[str, Any] | None = None  # the bank's channels (DeliveryWorker.status)


class Notifier:
    def __init__(
        self,
        config: LobbyConfig,
        store: Store,
        board: OccupancyBoard,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
        queue: QueueMonitor | None = None,
    ) -> None:
        """queue: the site's queue monitor (the service's); one is made here if none is given."""
        self.store = store
        self._wall = wall_clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        # The bank's channels (WeCom, e-mail...): their own thread, woken with this one.
        self.deliveries = build_worker(
            config, store, board.total, clock=clock, wall_clock=wall_clock
        )
        # The monitor hears each frame before the alert service, so a rule on the wait decides
        # on the frame that changed it.
        self.queue = queue or QueueMonitor(config, board, store, clock=clock, wall_clock=wall_clock)
        board.subscribe(self.queue.on_board_update)
        self.alerts = AlertService(
            config, store, board, wake_publisher=self._wake_all, clock=clock,
            wall_clock=wall_clock, queue=self.queue,
        )  # fmt: skip
        board.subscribe(self.alerts.on_board_update)
        self.link: MqttLink | None = None
        self.outbox: OutboxPublisher | None = None
        self.state: StatePublisher | None = None
        self.alert_states: AlertStatePublisher | None = None
        if config.mqtt.enabled:
            self.link = MqttLink(
                config.mqtt,
                config.site.id,
                on_connected=self._on_connected,
                on_connection_change=self._on_connection_change,
                on_ack=self.alerts.handle_ack,
                on_retained_state=self._on_retained_state,
                on_acked=self._wake.set,
                on_ticket_events=self.queue.on_ticket_message,
                clock=clock,
                wall_clock=wall_clock,
            )
            self.outbox = OutboxPublisher(
                store, self.link, wall_clock, spool=self.alerts.spool, clock=clock,
                born=self.alerts.born,
            )  # fmt: skip
            self.state = StatePublisher(config, board, self.link, clock)
            board.subscribe(self.state.on_board_update)
            self.alert_states = AlertStatePublisher(
                store, self.link, SiteNames.of(config), board.total,
                cleared_expiry_s=config.mqtt.alert_expiry_s,
            )  # fmt: skip
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)

    def start(self) -> None:
        self.alerts.restore()
        self._set_meta(mqtt_connected="0")
        if self.link is not None:
            self.link.start()
        self._thread.start()
        if self.deliveries is not None:
            self.deliveries.start()

    def stop(self, drain_s: float = 3.0, *, clean: bool = True, final: bool = True) -> None:
        """Stop after a last chance to deliver what is queued (up to drain_s seconds). The
        retained availability says "stopped" for a stop on purpose, "offline" otherwise;
        final=False (a config reload: another notifier follows at once) says neither."""
        deadline = time.monotonic() + drain_s
        while self.outbox is not None and self.link is not None and self.link.connected.is_set():
            self._wake.set()
            if time.monotonic() >= deadline or self.outbox.idle():
                break
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5.0)
        if self.deliveries is not None:
            self.deliveries.stop()  # what is not sent is in the store: sent after the restart
        if self.link is not None:
            self.link.stop(clean=clean, announce=final)
        self._set_meta(mqtt_connected="0")

    def status(self) -> DeliveryStatus:
        return DeliveryStatus(
            broker=self.link.state if self.link is not None else None,
            backlog=self.outbox.backlog() if self.outbox is not None else 0,
            unsaved_writes=len(self.alerts.spool),
            expired=self.outbox.expired if self.outbox is not None else 0,
            channels=self.deliveries.status() if self.deliveries is not None else None,
        )

    def _wake_all(self) -> None:
        self._wake.set()
        if self.deliveries is not None:
            self.deliveries.wake()

    def publish_health(self, health: dict[str, Any]) -> None:
        """The device's health, retained, for whoever watches the broker (IT, head office)."""
        if self.state is not None:
            self.state.publish_health(json.dumps(health, ensure_ascii=False))

    def _run(self) -> None:
        next_tick = 0.0
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            try:
                now = time.monotonic()
                if now >= next_tick:
                    self._tick_queue()
                    self.alerts.tick()
                    if self.state is not None:
                        self.state.tick()
                    next_tick = now + TICK_S
                if self.outbox is not None:
                    self.outbox.pump()
                if self.alert_states is not None:
                    # Every tick too: an ack through the API (another process) shows only here.
                    self.alert_states.pump()
            except Exception:
                # One bad message or a locked database must not end alerting for good.
                log.exception("notifier cycle failed; retrying")
                time.sleep(1.0)

    def _tick_queue(self) -> None:
        # Its own guard: a broken forecast must not hold up the alerts' timers.
        try:
            payload = self.queue.tick()
        except Exception:
            log.exception("queue monitor tick failed; retrying")
            return
        if payload is not None and self.state is not None:
            self.state.publish_queue(payload)

    def _on_connected(self) -> None:
        if self.state is not None:
            self.state.republish_all()
        if self.alert_states is not None:
            self.alert_states.on_connected()
        self._wake.set()

    def _on_retained_state(self, alert_id: str) -> None:
        if self.alert_states is not None:
            self.alert_states.on_retained(alert_id)
            self._wake.set()

    def _on_connection_change(self, up: bool) -> None:
        self._set_meta(mqtt_connected="1" if up else "0", mqtt_connected_at=self._wall().isoformat())

    def _set_meta(self, **values: str) -> None:
        # For an API reading an older device's store; the device state file is the live truth.
        try:
            for key, value in values.items():
                self.store.set_meta(key, value)
        except StoreWriteError:
            pass  # the store's condition already says it is failing
