"""Everything that talks to the lobby manager, the supervisor and IT, in one thread.

Wires the alert service (decisions, stored first), the outbox publisher (delivery on PUBACK) and
the retained state publisher to one MQTT link. Rule decisions that a frame completes are taken
in the camera worker's thread (through the board) and wake this thread at once, so an alert
leaves within milliseconds of the frame; timers (escalation, cooldown, camera health, pass
effects) are checked here about twice a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from edge.alerts.outbox import OutboxPublisher
from edge.alerts.service import AlertService, utc_now
from edge.board import OccupancyBoard
from edge.config import LobbyConfig
from edge.mqtt import MqttLink
from edge.state_publisher import StatePublisher
from edge.store import Store

log = logging.getLogger("lobbywatch.notifier")

TICK_S = 0.5


class Notifier:
    def __init__(
        self,
        config: LobbyConfig,
        store: Store,
        board: OccupancyBoard,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self._wall = wall_clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.alerts = AlertService(
            config, store, board, wake_publisher=self._wake.set, clock=clock, wall_clock=wall_clock
        )
        board.subscribe(self.alerts.on_board_update)
        self.link: MqttLink | None = None
        self.outbox: OutboxPublisher | None = None
        self.state: StatePublisher | None = None
        if config.mqtt.enabled:
            self.link = MqttLink(
                config.mqtt,
                config.site.id,
                on_connected=self._on_connected,
                on_connection_change=self._on_connection_change,
                on_ack=self.alerts.handle_ack,
            )
            self.outbox = OutboxPublisher(store, self.link, wall_clock)
            self.state = StatePublisher(config, board, self.link, clock)
            board.subscribe(self.state.on_board_update)
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)

    def start(self) -> None:
        self.alerts.restore()
        self.store.set_meta("mqtt_connected", "0")
        if self.link is not None:
            self.link.start()
        self._thread.start()

    def stop(self, drain_s: float = 3.0) -> None:
        """Stop after a last chance to deliver what is queued (up to drain_s seconds)."""
        deadline = time.monotonic() + drain_s
        while self.outbox is not None and self.link is not None and self.link.connected.is_set():
            self._wake.set()
            if time.monotonic() >= deadline or (
                not self.store.pending_messages(self._wall()) and self.outbox.inflight == 0
            ):
                break
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5.0)
        if self.link is not None:
            self.link.stop()
        self.store.set_meta("mqtt_connected", "0")

    def _run(self) -> None:
        next_tick = 0.0
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            try:
                now = time.monotonic()
                if now >= next_tick:
                    self.alerts.tick()
                    if self.state is not None:
                        self.state.tick()
                    next_tick = now + TICK_S
                if self.outbox is not None:
                    self.outbox.pump()
            except Exception:
                # One bad message or a locked database must not end alerting for good.
                log.exception("notifier cycle failed; retrying")
                time.sleep(1.0)

    def _on_connected(self) -> None:
        if self.state is not None:
            self.state.republish_all()
        self._wake.set()

    def _on_connection_change(self, up: bool) -> None:
        self.store.set_meta("mqtt_connected", "1" if up else "0")
        self.store.set_meta("mqtt_connected_at", self._wall().isoformat())
