"""The simulated lobby through the product's own alert path, on a simulated clock.

Per frame, the noisy counts go through what the camera worker does after detection: one
OccupancySmoother per zone (the site's occupancy window and quantile), a ZoneReading per zone
on the real OccupancyBoard, whose listener is the real AlertService (RuleEngine per rule,
decisions written to a real SQLite Store in a temp dir), and a HistoryRecorder writing
zone_history. The service's tick runs once a simulated second, as the device runs it. What
does not run: detection itself (the simulator stands in for it), the presence hold (it needs
boxes) and MQTT (the manager reads the store, as the API does, and acks through handle_ack,
the path a handheld's ack takes).

The manager (Manager) hears of each new or escalated alert, reacts after a delay, accepts it,
walks the rows (the lobby's diversion pass) and reports the pass done.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from bench.lobbysim.lobby import ZONES, Lobby
from edge.alerts.service import AlertService
from edge.board import BoardUpdate, OccupancyBoard
from edge.config import LobbyConfig, parse_config
from edge.history import HistoryRecorder
from edge.occupancy import OccupancySmoother
from edge.store import AlertRecord, Store
from edge.types import CameraStatus, ZoneReading

CAMERA = "lobby"
#: Tuesday 1 December 2026, 09:00 UTC: the lobby opens (the site runs on UTC).
OPENS = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)

_ROLES = {"entrance": "entrance", "waiting": "waiting", "queue": "queue",
          "counter": "service", "self_service": "self_service"}  # fmt: skip


def site_config(rules_yaml: str, db: Path, occupancy_yaml: str = "") -> LobbyConfig:
    """A one-camera site with the simulator's five zones (vertical strips of the frame), the
    branch open 09:00-17:00 on weekdays, and `rules_yaml` (the `rules:` list, indented 2)."""
    strips = []
    for i, zone in enumerate(ZONES):
        a, b = i / len(ZONES), (i + 1) / len(ZONES)
        strips.append(
            f"      - {{id: {zone}, role: {_ROLES[zone]}, "
            f"polygon: [[{a}, 0], [{b}, 0], [{b}, 1], [{a}, 1]]}}"
        )
    days = ", ".join(f'{d}: ["09:00-17:00"]' for d in ("mon", "tue", "wed", "thu", "fri"))
    text = f"""\
site: {{id: lobbysim, name: Simulated branch, timezone: UTC}}
cameras:
  - id: {CAMERA}
    source: rtsp://127.0.0.1:9/none
    zones:
{chr(10).join(strips)}
storage: {{path: "{db}", interval_s: 60}}
mqtt: {{enabled: false}}
{occupancy_yaml}
alerts:
  schedule:
    opening_hours: {{{days}}}
  rules:
{rules_yaml}
"""
    return parse_config(text, base_dir=db.parent, environ={})


class SimClock:
    """Monotonic and UTC clocks that move only when the simulation says so."""

    def __init__(self, opens: datetime = OPENS) -> None:
        self.t = 0.0
        self._opens = opens

    def monotonic(self) -> float:
        return 1000.0 + self.t

    def utc(self) -> datetime:
        return self._opens + timedelta(seconds=self.t)


class EngineRig:
    """The product's board, alert service and store for one simulated day, in `workdir`."""

    def __init__(self, config: LobbyConfig) -> None:
        self.config = config
        self.clock = SimClock()
        self.store = Store(
            config.storage.path,
            site_id=config.site.id,
            wall_clock=self.clock.utc,
            clock=self.clock.monotonic,
        )
        self.board = OccupancyBoard({CAMERA: list(ZONES)})
        self.service = AlertService(
            config, self.store, self.board, clock=self.clock.monotonic, wall_clock=self.clock.utc
        )
        self.board.subscribe(self.service.on_board_update)
        occ = config.occupancy
        self._smoothers = {z: OccupancySmoother(occ.window_s, occ.quantile) for z in ZONES}
        self._history = HistoryRecorder(CAMERA, ZONES, config.storage.interval_s)
        self._last_tick: float | None = None
        self._last_frame: float | None = None

    def feed(self, t: float, observed: Mapping[str, int]) -> None:
        """One frame's counts at t (s since opening), as the camera worker hands them on."""
        self.clock.t = t
        now, at = self.clock.monotonic(), self.clock.utc()
        values: dict[str, float | None] = {
            z: self._smoothers[z].update(observed[z], now) for z in ZONES
        }
        readings = tuple(
            ZoneReading(z, CAMERA, values[z], observed[z], at, CameraStatus.ONLINE) for z in ZONES
        )
        self.board.update(BoardUpdate(CAMERA, CameraStatus.ONLINE, readings, frame=True))
        seen = 0.0 if self._last_frame is None else t - self._last_frame
        self._last_frame = t
        self.store.write_history(self._history.observe(at.timestamp(), values, seen))
        if self._last_tick is None or t - self._last_tick >= 1.0:
            self._last_tick = t
            self.service.tick()

    def ack(self, alert_id: str, status: str, by: str = "sim.manager") -> None:
        payload = json.dumps({"by": by, "status": status}).encode()
        self.service.handle_ack(alert_id, payload, source="lobbysim")

    def close(self) -> None:
        self.store.write_history(self._history.flush())
        self.store.close()


@dataclass
class Manager:
    """Reacts to each new or escalated alert after `reaction_s` (lognormal, median given) by
    accepting it and walking the rows; one pass at a time, at least `min_gap_s` apart."""

    rng: np.random.Generator
    reaction_s: float = 90.0
    reaction_sigma: float = 0.5
    min_gap_s: float = 300.0
    due: list[tuple[float, str]] = field(default_factory=list)
    busy_until: float = -1e9
    in_pass: str | None = None
    last_pass: float = -1e9
    notified: dict[str, int] = field(default_factory=dict)  # alert id -> escalations heard

    def hear(self, t: float, alert: AlertRecord) -> None:
        if self.notified.get(alert.alert_id, -1) >= alert.escalations:
            return
        self.notified[alert.alert_id] = alert.escalations
        delay = float(self.rng.lognormal(np.log(self.reaction_s), self.reaction_sigma))
        self.due.append((t + delay, alert.alert_id))

    def act(self, t: float, lobby: Lobby, rig: EngineRig) -> None:
        if self.in_pass is not None and t >= self.busy_until:
            rig.ack(self.in_pass, "pass_done")
            self.in_pass = None
        if self.in_pass is not None or t - self.last_pass < self.min_gap_s:
            return
        ready = [d for d in self.due if d[0] <= t]
        if not ready:
            return
        self.due = [d for d in self.due if d[0] > t]
        # The latest word on the lobby: an alert heard may have cleared (a flapping threshold
        # raises and clears within seconds), but if another is open the lobby is still full.
        open_ids = {a.alert_id for a in rig.store.open_alerts() if a.kind == "diversion"}
        heard = [alert_id for _, alert_id in ready if alert_id in open_ids]
        if not heard and not open_ids:
            return  # everything the manager heard of has cleared
        alert_id = heard[-1] if heard else sorted(open_ids)[-1]
        rig.ack(alert_id, "accepted")
        self.busy_until = lobby.start_pass(t)
        self.in_pass, self.last_pass = alert_id, t


class EngineController:
    """A run_day controller: frames into the product, the manager acting on its alerts."""

    def __init__(self, rig: EngineRig, manager: Manager) -> None:
        self.rig = rig
        self.manager = manager
        self._version = 0
        self.raised: list[tuple[float, str]] = []

    def on_frame(self, t: float, observed: Mapping[str, int], lobby: Lobby) -> None:
        self.rig.feed(t, observed)
        version = self.rig.store.alerts_version()
        if version != self._version:
            for alert in self.rig.store.alerts_changed_since(self._version):
                if alert.kind == "diversion" and alert.cleared_at is None:
                    if alert.alert_id not in self.manager.notified:
                        self.raised.append((t, alert.alert_id))
                    self.manager.hear(t, alert)
            self._version = version
        self.manager.act(t, lobby, self.rig)


def quiet_logs() -> None:
    """Each raise logs a warning: a simulated week would print thousands."""
    logging.getLogger("lobbywatch").setLevel(logging.ERROR)
