"""The simulated lobby through the product's own alert path, on a simulated clock.

Per frame, the noisy counts go through what the camera worker does after detection: one
OccupancySmoother per zone (the site's occupancy window and quantile), a ZoneReading per zone
on the real OccupancyBoard, whose listener is the real AlertService (RuleEngine per rule,
decisions written to a real SQLite Store in a temp dir), and a HistoryRecorder writing
zone_history. The service's tick runs once a simulated second, as the device runs it. What
does not run: detection itself (the simulator stands in for it), the presence hold (it needs
boxes) and MQTT (the manager reads the store, as the API does, and acks through handle_ack,
the path a handheld's ack takes).

With `tracks` (TrackNoise), the rig also runs what the product does with tracks: each frame's
true presence goes through the tracking faults of bench/lobbysim/tracks.py into the product's
own DwellBook (edge.pipeline.build_tracking), whose finished visits ride on the BoardUpdate to
the real QueueMonitor (edge/runtime/queue_monitor.py): the wait estimate, kiosks, counters (a
staff desk zone per counter, occupied while the counter is staffed) and the advice the alert
service puts in each ask. The monitor ticks before the alert service, as in the notifier.

The manager (Manager) hears of each new, escalated or re-asked alert, reacts after a delay,
accepts it, walks the rows (the lobby's diversion pass) and reports the pass done. With
`follow_advice`, they read the ask's advice first: kiosks full, or a counter unstaffed, and
they call a colleague from the back office to open a counter (one at a time, for
`colleague_stay_s`, at most one call per `colleague_gap_s`); with the kiosks full there is no
one to move, so no pass is walked.
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
from bench.lobbysim.tracks import TrackFaker, TrackNoise
from edge.alerts.service import AlertService
from edge.board import BoardUpdate, OccupancyBoard
from edge.config import LobbyConfig, parse_config
from edge.history import HistoryRecorder
from edge.occupancy import OccupancySmoother
from edge.pipeline import build_tracking
from edge.runtime.queue_monitor import QueueMonitor
from edge.store import AlertRecord, Store
from edge.tracking.dwell import DwellBook, Visit, ZoneDwell
from edge.types import CameraStatus, ZoneReading

CAMERA = "lobby"
#: Tuesday 1 December 2026, 09:00 UTC: the lobby opens (the site runs on UTC).
OPENS = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)

_ROLES = {"entrance": "entrance", "waiting": "waiting", "queue": "queue",
          "counter": "service", "self_service": "self_service"}  # fmt: skip


def desk(number: int) -> str:
    """The staff desk zone of counter `number` (1-based)."""
    return f"desk-{number}"


def site_config(
    rules_yaml: str,
    db: Path,
    occupancy_yaml: str = "",
    *,
    kiosks: int | None = None,
    counters: int = 0,
) -> LobbyConfig:
    """A one-camera site with the simulator's five zones (vertical strips of the frame), the
    branch open 09:00-17:00 on weekdays, and `rules_yaml` (the `rules:` list, indented 2).
    kiosks: the self-service zone's capacity; counters: a staff desk zone per counter (small
    boxes above the counter strip, numbered 1..counters)."""
    strips = []
    for i, zone in enumerate(ZONES):
        a, b = i / len(ZONES), (i + 1) / len(ZONES)
        extra = f", capacity: {kiosks}" if zone == "self_service" and kiosks else ""
        strips.append(
            f"      - {{id: {zone}, role: {_ROLES[zone]}{extra}, "
            f"polygon: [[{a}, 0], [{b}, 0], [{b}, 1], [{a}, 1]]}}"
        )
    a, b = 3 / len(ZONES), 4 / len(ZONES)  # the counter strip
    for k in range(counters):
        top, bottom = k / counters * 0.2, (k + 1) / counters * 0.2
        strips.append(
            f"      - {{id: {desk(k + 1)}, role: staff, counter: '{k + 1}', priority: 1, "
            f"polygon: [[{a}, {top}], [{b}, {top}], [{b}, {bottom}], [{a}, {bottom}]]}}"
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
    """The product's board, alert service and store for one simulated day, in `workdir`.

    tracks: run the product's tracking path and queue monitor on faked tracks (module doc)."""

    def __init__(
        self,
        config: LobbyConfig,
        *,
        tracks: TrackNoise | None = None,
        seed: int = 0,
        fps: float = 1.0,
    ) -> None:
        self.config = config
        self.clock = SimClock()
        self.store = Store(
            config.storage.path,
            site_id=config.site.id,
            wall_clock=self.clock.utc,
            clock=self.clock.monotonic,
        )
        camera = config.camera(CAMERA)
        self.zones = tuple(z.id for z in camera.zones)
        self.desks = tuple(z.id for z in camera.zones if z.role == "staff")
        self.board = OccupancyBoard({CAMERA: list(self.zones)})
        self.monitor: QueueMonitor | None = None
        self._faker: TrackFaker | None = None
        self._dwell: DwellBook | None = None
        if tracks is not None:
            _, self._dwell = build_tracking(camera, config.tracking)
            self._faker = TrackFaker(tracks, np.random.default_rng([seed, 11]), fps)
            self.monitor = QueueMonitor(
                config, self.board, self.store,
                clock=self.clock.monotonic, wall_clock=self.clock.utc,
            )  # fmt: skip
            self.board.subscribe(self.monitor.on_board_update)  # first, as in the notifier
        self.service = AlertService(
            config, self.store, self.board, clock=self.clock.monotonic,
            wall_clock=self.clock.utc, queue=self.monitor,
        )  # fmt: skip
        self.board.subscribe(self.service.on_board_update)
        occ = config.occupancy
        self._smoothers = {z: OccupancySmoother(occ.window_s, occ.quantile) for z in self.zones}
        self._history = HistoryRecorder(CAMERA, self.zones, config.storage.interval_s)
        self._last_tick: float | None = None
        self._last_frame: float | None = None

    def feed(self, t: float, observed: Mapping[str, int], lobby: Lobby | None = None) -> None:
        """One frame's counts at t (s since opening), as the camera worker hands them on; with
        tracks, the lobby gives who is where and which counters are staffed."""
        self.clock.t = t
        now, at = self.clock.monotonic(), self.clock.utc()
        counts = dict(observed)
        visits: tuple[Visit, ...] = ()
        dwell: dict[str, ZoneDwell] = {}
        if lobby is not None:
            staffed = [s for s, _ in lobby.counter_states()]
            for k, zone in enumerate(self.desks):
                counts[zone] = int(k < len(staffed) and staffed[k])
            if self._faker is not None and self._dwell is not None:
                dwell = self._dwell.update(self._faker.frame(t, lobby.present()), now)
                visits = self._dwell.ended
        values: dict[str, float | None] = {
            z: self._smoothers[z].update(counts.get(z, 0), now) for z in self.zones
        }
        readings = tuple(
            ZoneReading(z, CAMERA, values[z], counts.get(z, 0), at, CameraStatus.ONLINE)
            for z in self.zones
        )
        self.board.update(BoardUpdate(CAMERA, CameraStatus.ONLINE, readings, True, visits, dwell))
        seen = 0.0 if self._last_frame is None else t - self._last_frame
        self._last_frame = t
        self.store.write_history(self._history.observe(at.timestamp(), values, seen))
        if self._last_tick is None or t - self._last_tick >= 1.0:
            self._last_tick = t
            if self.monitor is not None:
                self.monitor.tick()
            self.service.tick()

    def ack(self, alert_id: str, status: str, by: str = "sim.manager") -> None:
        payload = json.dumps({"by": by, "status": status}).encode()
        self.service.handle_ack(alert_id, payload, source="lobbysim")

    def close(self) -> None:
        self.store.write_history(self._history.flush())
        self.store.close()


@dataclass
class Manager:
    """Reacts to each new, escalated or re-asked alert after `reaction_s` (lognormal, median
    given) by accepting it and walking the rows; one pass at a time, at least `min_gap_s`
    apart. With follow_advice, acts on the ask's advice first (module doc)."""

    rng: np.random.Generator
    reaction_s: float = 90.0
    reaction_sigma: float = 0.5
    min_gap_s: float = 300.0
    follow_advice: bool = False
    colleague_delay_s: float = 180.0  # lognormal median: from the call to the counter opening
    colleague_stay_s: float = 1800.0
    colleague_gap_s: float = 3600.0
    due: list[tuple[float, str]] = field(default_factory=list)
    busy_until: float = -1e9
    in_pass: str | None = None
    last_pass: float = -1e9
    last_call: float = -1e9
    #: alert id -> (passes asked, escalations) heard: a re-ask resets the escalations.
    notified: dict[str, tuple[int, int]] = field(default_factory=dict)
    calls: list[tuple[float, str]] = field(default_factory=list)  # (when, which advice)

    def hear(self, t: float, alert: AlertRecord) -> None:
        heard = (alert.passes, alert.escalations)
        if alert.alert_id in self.notified and self.notified[alert.alert_id] >= heard:
            return
        self.notified[alert.alert_id] = heard
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
        kinds = self._advice(rig, alert_id) if self.follow_advice else set()
        wanted = kinds & {"kiosks_full", "counter_unstaffed"}
        if wanted and t - self.last_call >= self.colleague_gap_s:
            delay = float(self.rng.lognormal(np.log(self.colleague_delay_s), 0.5))
            lobby.call_colleague(t + delay, t + delay + self.colleague_stay_s)
            self.last_call = t
            self.calls.append((t, ",".join(sorted(wanted))))
        if "kiosks_full" in kinds:  # no one can be moved: the ask is answered by the call
            rig.ack(alert_id, "pass_done")
            self.last_pass = t
            return
        self.busy_until = lobby.start_pass(t)
        self.in_pass, self.last_pass = alert_id, t

    @staticmethod
    def _advice(rig: EngineRig, alert_id: str) -> set[str]:
        record = rig.store.alert(alert_id)
        if record is None or not record.details:
            return set()
        details = json.loads(record.details)
        return {str(a.get("kind")) for a in details.get("advice") or []}


class EngineController:
    """A run_day controller: frames into the product, the manager acting on its alerts.

    With the rig's queue monitor, the wait it estimates is sampled every `sample_s` while the
    branch is open (waits: (t, seconds or None)), to be scored against the day's true waits."""

    def __init__(self, rig: EngineRig, manager: Manager, sample_s: float = 60.0) -> None:
        self.rig = rig
        self.manager = manager
        self._version = 0
        self.raised: list[tuple[float, str]] = []
        self.sample_s = sample_s
        self.waits: list[tuple[float, float | None]] = []

    def on_frame(self, t: float, observed: Mapping[str, int], lobby: Lobby) -> None:
        self.rig.feed(t, observed, lobby)
        monitor = self.rig.monitor
        due = not self.waits or t - self.waits[-1][0] >= self.sample_s
        if monitor is not None and due and t < lobby.params.open_s:
            self.waits.append((t, monitor.snapshot().wait.wait_s))
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
