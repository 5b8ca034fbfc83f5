"""The site's queue as it stands: the wait, its forecast, kiosks and counters (docs/queueing.md).

The monitor listens to the occupancy board like the alert service: every camera update brings
the line's count and the visits that ended in that frame (edge/tracking/dwell.py), which feed
one WaitEstimator (edge/queueing/wait.py):

- departures: finished visits of the timed service zones that lasted at least
  `queue.min_service_s`; where no service zone is timed, finished line visits whose person was
  in no other line zone when the visit ended (`Visit.went_to`): they left the line, not moved
  along it;
- arrivals: finished entrance visits;
- line dwell: a person's time in the line, across its zones (waiting, then queue, is one wait).

Once a second (tick, in the notifier's thread) it reads new ticket machine events from the
store, rebuilds the line's CountModel from the stored history every 5 minutes, writes the
snapshot for the API and says when the retained MQTT state is due.

Listeners run in the camera threads and tick in the notifier's: one lock guards the state, and
the store is read outside it. A store that refuses writes or reads never raises out of here:
the figures it would have given show as unknown, with a reason where the snapshot has one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from edge.board import BoardUpdate, OccupancyBoard
from edge.config import LINE_ROLES, LobbyConfig, RuleMetric, ZoneConfig
from edge.logsafe import LogThrottle, shorten
from edge.queueing.forecast import SLOT_S, CountForecast, CountModel, ForecastParams
from edge.queueing.history import Interval, slot_history
from edge.queueing.snapshot import QueueSnapshot, ZoneUse, minutes
from edge.queueing.tickets import TicketBook, TicketEvent, parse_ticket_events
from edge.queueing.wait import (
    WaitEstimate,
    WaitEstimator,
    WaitForecast,
    WaitSettings,
    forecast_wait,
)
from edge.store import Store, StoreWriteError
from edge.tracking.dwell import Visit, ZoneDwell
from edge.types import CameraStatus

log = logging.getLogger("lobbywatch.queue")

HORIZONS_MIN = (15, 30)
#: How often the line's count model is rebuilt from the stored history; also once a quarter
#: hour has closed and SLOT_SETTLE_S have passed (its last intervals written).
MODEL_EVERY_S = 300.0
SLOT_SETTLE_S = 60
#: The retained queue state and the API's row: at least this often...
PUBLISH_EVERY_S = 5.0
#: ...and sooner when the wait's whole minutes or confidence change, but not more often.
PUBLISH_MIN_GAP_S = 1.0
#: A counter or kiosk zone holding fewer people than this (smoothed) is empty.
EMPTY_BELOW = 0.5
#: The line count is sampled this often for its trend, over TREND_S.
TREND_SAMPLE_S = 10.0
TREND_S = 600.0
ARRIVALS_S = 300.0
#: The usual arrivals: the rate of the hour before the last 5 minutes (see _expected_arrivals).
EXPECTED_S = 3600.0
#: A gap between two board updates longer than this is not counted as the line's cameras being
#: online: the workers update several times a second, so a longer one is a stall.
MAX_GAP_S = 5.0
#: Ticket events kept in memory while the store refuses writes (a day's tickets at a busy
#: branch several times over); beyond it the oldest are dropped and counted as lost.
MAX_UNSAVED_TICKETS = 5000
#: Ticket rows read per page, and pages per tick (a restart reads today's feed at once).
TICKET_PAGE = 1000
TICKET_PAGES = 20
#: Ticket events further ahead of the device's clock than this are refused (docs/queueing.md).
TICKET_FUTURE_S = 300.0
#: Ticket events taken from MQTT: a burst of this many (a busy day's feed, resent after an
#: outage), then this many a second (a hundred times a busy branch's); beyond, messages are
#: refused whole. Whoever can publish on the broker could otherwise fill the disk (every event
#: is a row) and hold up the MQTT thread, which also carries the acks.
TICKET_BURST = 5000
TICKET_RATE_PER_S = 2.0

FORECAST_PARAMS = ForecastParams()
#: The entrance's model is asked only for its profile (the usual people there now), so every
#: slot, however quiet, may size its interval: an entrance holds less than one person mostly.
ENTRANCE_PARAMS = ForecastParams(busy_at=0.0)
#: History read for the forecast: the profile's weeks and the calibration days (as the API).
LOOKBACK_S = (7 * FORECAST_PARAMS.weeks + FORECAST_PARAMS.calibration_days + 1) * 86400

_HISTORY_SQL = (
    "SELECT zone_id, bucket_start / {slot} * {slot} AS slot, SUM(samples),"
    " SUM(mean * samples) / SUM(samples) FROM zone_history"
    " WHERE zone_id IN ({zones}) AND bucket_start >= ? AND bucket_start < ?"
    " AND mean IS NOT NULL AND samples > 0 GROUP BY zone_id, slot"
)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class _Roles:
    """The site's zones by what the monitor does with them."""

    line: tuple[str, ...]
    departures: frozenset[str]  # timed service zones (empty: departures from line visits)
    entrance: frozenset[str]  # timed entrance zones
    kiosks: tuple[ZoneConfig, ...]
    counters: tuple[ZoneConfig, ...]
    camera_of: Mapping[str, str]

    @classmethod
    def of(cls, config: LobbyConfig) -> _Roles:
        zones = [z for c in config.cameras for z in c.zones]
        timed = set(config.tracking.roles) if config.tracking.enabled else set()
        return cls(
            line=tuple(z.id for z in zones if z.role in LINE_ROLES),
            departures=frozenset(z.id for z in zones if z.role == "service" and z.role in timed),
            entrance=frozenset(z.id for z in zones if z.role == "entrance" and z.role in timed),
            kiosks=tuple(z for z in zones if z.role == "self_service"),
            counters=tuple(
                z
                for z in zones
                if z.role == "service" or (z.role == "staff" and z.counter is not None)
            ),
            camera_of={z.id: c.id for c in config.cameras for z in c.zones},
        )


class QueueMonitor:
    def __init__(
        self,
        config: LobbyConfig,
        board: OccupancyBoard,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.site_id = config.site.id
        self.board = board
        self.store = store
        self._clock = clock
        self._wall = wall_clock
        self.tz = ZoneInfo(config.site.timezone)
        self.holidays = tuple(config.alerts.schedule.holidays)
        q = config.queue
        self.settings = WaitSettings(q.window_s, q.min_departures, q.min_service_s, q.max_wait_s)
        self.roles = _Roles.of(config)
        r = self.roles
        self._line_cameras = frozenset(r.camera_of[z] for z in r.line)
        self._entrance_cameras = frozenset(r.camera_of[z] for z in r.entrance)
        self._zones_of = {c.id: tuple(z.id for z in c.zones) for c in config.cameras}
        self._lock = threading.Lock()
        self._throttle = LogThrottle(log, clock=clock)
        self.estimator = WaitEstimator(self.settings, wall_clock=wall_clock)
        now = clock()
        self._last_observe: float | None = None
        self._line_start: dict[tuple[str, int], tuple[float, float]] = {}  # (cam, track) -> start
        self._dwell: dict[str, ZoneDwell] = {}
        self._empty_since: dict[str, float | None] = {z.id: None for z in r.counters}
        self._trend: deque[tuple[float, float | None]] = deque()
        self._arrivals: deque[float] = deque()
        # Arrivals are known only for the time the entrance cameras have been online without a
        # break since this process began watching them.
        self._entrance_up_since: float | None = None
        self._statuses: dict[str, CameraStatus] = {}
        # Tickets: the book of today, read from the store in row order.
        self.book = TicketBook(self.tz)
        self._ticket_row = 0
        self._unsaved_tickets: list[TicketEvent] = []
        self._save_lock = threading.Lock()
        self.tickets_lost = 0  # events dropped: kept in memory past MAX_UNSAVED_TICKETS
        self.tickets_refused = 0  # messages or events refused (bad JSON, not today, a flood)
        self._ticket_tokens, self._tokens_at = float(TICKET_BURST), now  # the MQTT thread's
        # Forecast: slot aggregates kept between refreshes, so each reads only what is new.
        self._slots: dict[tuple[str, int], tuple[int, float]] = {}
        self._slots_until: int | None = None
        self._model: CountModel | None = None
        self._entrance_model: CountModel | None = None
        self._entrance_usual: float | None = None  # people in the entrance, usually, now
        self._entrance_dwell: deque[tuple[float, float]] = deque()  # (ended at, seconds)
        self._model_reason = "the forecast is not built yet"
        self._next_model = now
        self._counts: dict[int, CountForecast] = {}
        self._counts_key: tuple[int, int] | None = None
        self._model_version = 0
        # Publication.
        self._published_at: float | None = None
        self._published_key: tuple[int | None, str] | None = None
        self._written_at: float | None = None

    # --- camera threads -------------------------------------------------------------------

    def on_board_update(self, update: BoardUpdate) -> None:
        """Never raises: a bug or a bad figure here must not end a camera's worker."""
        try:
            with self._lock:
                self._on_update(update)
        except Exception as exc:
            self._throttle.warning("update", "queue monitor: a board update failed: %r", exc)
            log.debug("queue monitor: board update failed", exc_info=True)

    def _on_update(self, update: BoardUpdate) -> None:
        now = self._clock()
        self._statuses[update.camera_id] = update.status
        online = update.status is CameraStatus.ONLINE
        if update.camera_id in self._entrance_cameras:
            entrance_up = all(
                self._statuses.get(c) is CameraStatus.ONLINE for c in self._entrance_cameras
            )
            if not entrance_up:
                self._entrance_up_since = None
            elif self._entrance_up_since is None:
                self._entrance_up_since = now
        camera_zones = self._zones_of.get(update.camera_id, ())
        if not online:
            for zone_id in camera_zones:
                self._dwell.pop(zone_id, None)
        elif update.frame:
            self._dwell.update(update.dwell)
        for zone in self.roles.counters:
            if zone.id in camera_zones:
                self._watch_empty(zone.id, now)
        if update.camera_id in self._line_cameras:
            self._observe(now, self._line_count())
        for visit in update.visits:
            self._on_visit(update.camera_id, visit, now)

    def _line_count(self) -> float | None:
        """The line's people: the smoothed count, or the tracked people present where the
        tracks hold more. The detector misses more people the fuller the line (occlusion),
        while a track is held through missed frames (bench/wait_estimate.py: the undercount of
        a full line was most of the wait estimate's bias)."""
        line = self.board.total(self.roles.line)
        tracked = [self._dwell.get(z) for z in self.roles.line]
        if line is None or any(d is None for d in tracked):
            return line
        return max(line, float(sum(d.present for d in tracked if d is not None)))

    def _observe(self, now: float, line: float | None) -> None:
        gap = 0.0 if self._last_observe is None else now - self._last_observe
        online_s = gap if line is not None and 0 < gap <= MAX_GAP_S else 0.0
        self._last_observe = now
        # People at counters now: the estimator's service rate is counters in use over the
        # mean service time (a closed counter shows at once, not after a window of departures).
        serving = self.board.total(self.roles.departures) if self.roles.departures else None
        self.estimator.observe(now, line, online_s, serving)
        if not self._trend or now - self._trend[-1][0] >= TREND_SAMPLE_S:
            self._trend.append((now, line))
            while self._trend and now - self._trend[0][0] > TREND_S:
                self._trend.popleft()

    def _watch_empty(self, zone_id: str, now: float) -> None:
        count = self.board.total([zone_id])
        if count is None or count >= EMPTY_BELOW:
            self._empty_since[zone_id] = None
        elif self._empty_since[zone_id] is None:
            self._empty_since[zone_id] = now

    def _on_visit(self, camera_id: str, visit: Visit, now: float) -> None:
        r, s = self.roles, self.settings
        # A visit ends an exit grace after the person was last seen: departures are dated
        # when they happened (the estimator reads whether the line was busy then). The visit's
        # times are the frames' steady clock, the monitor's in the service; one outside the
        # window (another clock) is dated now.
        at = visit.left_at if now - s.window_s < visit.left_at <= now else now
        if visit.zone_id in r.departures:
            # Every service visit, however short: the estimator drops passers-by
            # (min_service_s) and joins one service split by an id switch at the counter.
            self.estimator.departure(at, service_s=visit.dwell_s, zone=visit.zone_id)
        elif visit.zone_id in r.entrance:
            self.estimator.arrival(at)
            self._arrivals.append(now)
            while self._arrivals and now - self._arrivals[0] > EXPECTED_S + ARRIVALS_S:
                self._arrivals.popleft()
            self._entrance_dwell.append((now, visit.dwell_s))
            while self._entrance_dwell and now - self._entrance_dwell[0][0] > s.window_s:
                self._entrance_dwell.popleft()
        elif visit.zone_id in r.line:
            key = (camera_id, visit.track_id)
            if visit.went_to in r.line:
                # Moving along the line (waiting area to queue): one wait, not yet over.
                start, _ = self._line_start.get(key, (visit.entered_at, now))
                self._line_start[key] = (min(start, visit.entered_at), now)
            else:
                start, _ = self._line_start.pop(key, (visit.entered_at, now))
                self.estimator.line_visit(now, visit.left_at - min(start, visit.entered_at))
                if not r.departures:
                    self.estimator.departure(at)
            for stale in [k for k, (_, at) in self._line_start.items() if now - at > s.window_s]:
                del self._line_start[stale]

    # --- MQTT thread ----------------------------------------------------------------------

    def on_ticket_message(self, payload: bytes) -> int:
        """Ticket machine events from MQTT: checked, stored (the API's path writes the same
        table), and applied at once. A bad message is logged (rate-limited) and dropped; events
        the store refuses (a full disk) are kept in memory and written later. Past TICKET_BURST
        events, at most TICKET_RATE_PER_S are taken. Returns the events taken."""
        now = self._clock()
        refill = max(0.0, now - self._tokens_at) * TICKET_RATE_PER_S
        self._ticket_tokens = min(float(TICKET_BURST), self._ticket_tokens + refill)
        self._tokens_at = now
        if self._ticket_tokens < 1.0:  # not even parsed: a flood costs as little as it can
            return self._flooded(None)
        try:
            events = parse_ticket_events(payload)
        except ValueError as exc:
            self.tickets_refused += 1
            self._throttle.warning("bad-tickets", "ignoring ticket events: %s", shorten(exc))
            return 0
        if len(events) > self._ticket_tokens:
            return self._flooded(len(events))
        self._ticket_tokens -= len(events)
        wall = self._wall()
        today = wall.astimezone(self.tz).date()
        late = [e for e in events if e.at.astimezone(self.tz).date() < today]
        ahead = [e for e in events if (e.at - wall).total_seconds() > TICKET_FUTURE_S]
        if late or ahead:
            self.tickets_refused += 1
            bad = (late + ahead)[0]
            self._throttle.warning(
                "bad-tickets",
                "ignoring %d ticket event(s) older than today or more than %.0f s ahead"
                " (ticket %s at %s)",
                len(late) + len(ahead), TICKET_FUTURE_S, shorten(bad.ticket), bad.at.isoformat(),
            )  # fmt: skip
            events = [e for e in events if e not in late and e not in ahead]
            if not events:
                return 0
        self._save_tickets(events)
        return len(events)

    def _flooded(self, events: int | None) -> int:
        self.tickets_refused += 1
        self._throttle.warning(
            "tickets-flood",
            "ignoring a ticket message (%s events): more than %d at once or %.0f a second",
            "?" if events is None else events, TICKET_BURST, TICKET_RATE_PER_S,
        )  # fmt: skip
        return 0

    @property
    def unsaved_tickets(self) -> int:
        """Ticket events kept in memory because the store refused them."""
        return len(self._unsaved_tickets)

    def _save_tickets(self, events: list[TicketEvent]) -> None:
        """Write the events with any kept from before; keep them all if the store refuses.
        One save at a time (the MQTT thread and the tick both save), so none is written twice."""
        with self._save_lock:
            pending = self._unsaved_tickets + events
            if not pending:
                return
            try:
                self.store.insert_tickets(pending)
            except (StoreWriteError, sqlite3.Error) as exc:
                with self._lock:
                    for event in events:  # the estimate goes on; the book ignores a repeat
                        self.book.apply(event)
                overflow = len(pending) - MAX_UNSAVED_TICKETS
                if overflow > 0:
                    self.tickets_lost += overflow
                    pending = pending[overflow:]
                self._unsaved_tickets = pending
                self._throttle.warning("tickets-unsaved", "ticket events kept in memory: %s", exc)
                return
            if self._unsaved_tickets:
                log.warning("%d ticket events kept in memory are in the store",
                            len(self._unsaved_tickets))  # fmt: skip
            self._unsaved_tickets = []

    # --- notifier thread ------------------------------------------------------------------

    def tick(self) -> str | None:
        """Once a second: tickets from the store, the forecast model when due, the API's row.
        Returns the JSON to publish retained on the queue topic when it is due, else None."""
        now = self._clock()
        if self._unsaved_tickets:
            self._save_tickets([])
        self._read_tickets()
        if now >= self._next_model or self._slot_closed():
            self._next_model = now + MODEL_EVERY_S
            self._refresh_model()
        self._refresh_counts()
        snapshot = self.snapshot()
        key = self._publish_key(snapshot.wait)
        since = None if self._published_at is None else now - self._published_at
        changed = key != self._published_key and (since is None or since >= PUBLISH_MIN_GAP_S)
        due = since is None or since >= PUBLISH_EVERY_S or changed
        write = self._written_at is None or now - self._written_at >= PUBLISH_EVERY_S
        if not (due or write):
            return None
        payload = json.dumps(self.to_json(snapshot), ensure_ascii=False)
        if write:
            self._written_at = now
            # A failed write is replaced by the next in 5 s; the store's condition says why.
            with contextlib.suppress(StoreWriteError, sqlite3.Error):
                self.store.write_queue(payload, snapshot.at)
        if not due:
            return None
        self._published_at, self._published_key = now, key
        return payload

    @staticmethod
    def _publish_key(wait: WaitEstimate) -> tuple[int | None, str]:
        minutes = None if wait.wait_s is None else int(wait.wait_s // 60)
        return minutes, wait.confidence

    def _read_tickets(self) -> None:
        try:
            if self._ticket_row == 0:
                self._ticket_row = self._first_row_of_today()
            for _ in range(TICKET_PAGES):
                rows = self.store.tickets_after(self._ticket_row, TICKET_PAGE)
                with self._lock:
                    for row_id, event in rows:
                        self.book.apply(event)
                        self._ticket_row = max(self._ticket_row, row_id)
                if len(rows) < TICKET_PAGE:
                    break
        except (sqlite3.Error, StoreWriteError, OSError) as exc:
            self._throttle.warning("tickets-read", "ticket events unreadable: %s", exc)
        with self._lock:
            self.book.roll(self._wall())
            self.estimator.tickets(self.book if self.book.last_event_at() is not None else None)

    def _first_row_of_today(self) -> int:
        """Where to start reading the ticket table: before today's first event (the book
        takes only today's, and the table keeps the history's days)."""
        local = self._wall().astimezone(self.tz)
        midnight = datetime.combine(local.date(), datetime.min.time(), self.tz)
        rows = self.store.query(
            "SELECT COALESCE(MIN(seq) - 1, (SELECT MAX(seq) FROM ticket_events), 0)"
            " FROM ticket_events WHERE at >= ?",
            [midnight.astimezone(timezone.utc).isoformat()],
        )
        return max(0, int(rows[0][0])) if rows else 0

    def _slot_closed(self) -> bool:
        """A quarter hour has closed since the model was built, and its last intervals have had
        SLOT_SETTLE_S to land: the forecast is anchored on the last whole slot (forecast.py), so
        a model a few minutes older than the slot falls back to the profile alone."""
        if self._slots_until is None:
            return False
        ts = int(self._wall().timestamp())
        return ts // SLOT_S * SLOT_S > self._slots_until and ts % SLOT_S >= SLOT_SETTLE_S

    def _refresh_model(self) -> None:
        """The count models of the line and of the entrance from the stored 15-minute means up
        to the last whole slot. A failed read keeps the models there are."""
        line, entrance = self.roles.line, tuple(sorted(self.roles.entrance))
        if not line:
            self._model_reason = "the site has no waiting or queue zone"
        zones = line + entrance
        if not zones:
            return
        origin = int(self._wall().timestamp()) // SLOT_S * SLOT_S
        start = origin - LOOKBACK_S
        # The slot before the last read may have grown since (an interval closes late).
        since = start if self._slots_until is None else max(start, self._slots_until - SLOT_S)
        sql = _HISTORY_SQL.format(slot=SLOT_S, zones=", ".join("?" * len(zones)))
        try:
            rows = self.store.query(sql, [*zones, since, origin])
        except (sqlite3.Error, StoreWriteError, OSError) as exc:
            self._throttle.warning("history", "history unreadable for the forecast: %s", exc)
            if self._model is None and line:
                self._model_reason = f"history unreadable: {exc}"
            return
        for zone_id, slot, samples, mean in rows:
            self._slots[(str(zone_id), int(slot))] = (int(samples), float(mean))
        self._slots = {k: v for k, v in self._slots.items() if k[1] >= start}
        self._slots_until = origin
        intervals: list[Interval] = [(z, at, n, m) for (z, at), (n, m) in self._slots.items()]
        model = entrance_model = None
        if line:
            history = slot_history(line, start, origin, intervals)
            model = CountModel(history, self.tz, self.holidays, FORECAST_PARAMS)
        if entrance:
            history = slot_history(entrance, start, origin, intervals)
            entrance_model = CountModel(history, self.tz, self.holidays, ENTRANCE_PARAMS)
        with self._lock:
            self._model, self._entrance_model = model, entrance_model
            self._model_reason = "" if line else self._model_reason
            self._model_version += 1

    def _refresh_counts(self) -> None:
        """The count forecasts, asked again when the models or the current slot change."""
        ts = int(self._wall().timestamp())
        key = (ts // SLOT_S, self._model_version)
        if key == self._counts_key:
            return
        model = self._model
        counts: dict[int, CountForecast] = {}
        for horizon in HORIZONS_MIN:
            if model is None:
                counts[horizon] = CountForecast(
                    horizon * 60, ts, ts, FORECAST_PARAMS.coverage, reason=self._model_reason
                )
            else:
                counts[horizon] = model.forecast(ts, horizon * 60)
        usual = None
        if self._entrance_model is not None:
            now_slot = self._entrance_model.forecast(ts, 0)
            usual = now_slot.basis.profile if now_slot.basis is not None else None
        with self._lock:
            self._counts, self._counts_key = counts, key
            self._entrance_usual = usual

    # --- answers --------------------------------------------------------------------------

    def snapshot(self) -> QueueSnapshot:
        with self._lock:
            now, at = self._clock(), self._wall()
            wait = self._estimate(now)
            cap = self.settings.max_wait_s
            forecast = {m: forecast_wait(c, wait, max_wait_s=cap) for m, c in self._counts.items()}
            for minutes in HORIZONS_MIN:
                if minutes not in forecast:
                    forecast[minutes] = WaitForecast(
                        minutes * 60, None, None, None, None, None, None, self._model_reason
                    )
            return QueueSnapshot(
                at=at,
                line_zones=self.roles.line,
                wait=wait,
                forecast=forecast,
                kiosks=tuple(self._use(z, now) for z in self.roles.kiosks),
                counters=tuple(self._use(z, now) for z in self.roles.counters),
                line_trend_per_10min=self._line_trend(now),
                arrivals_5min=self._arrivals_in(now, now - ARRIVALS_S, now),
                arrivals_expected_5min=self._expected_arrivals(now),
                dwell=dict(self._dwell),
            )

    def _estimate(self, now: float) -> WaitEstimate:
        if not self.roles.line:
            return WaitEstimate(
                None, None, None, "unknown", "none", None, None, None, None,
                "the site has no waiting or queue zone",
            )  # fmt: skip
        return self.estimator.estimate(now)

    def _use(self, zone: ZoneConfig, now: float) -> ZoneUse:
        count = self.board.total([zone.id])
        since = self._empty_since.get(zone.id)
        empty_s = now - since if since is not None and count is not None else 0.0
        return ZoneUse(zone.id, zone.name or zone.id, count, zone.capacity, zone.counter, empty_s)

    def _line_trend(self, now: float) -> float | None:
        """The least-squares slope of the line count over the last 10 minutes, per 10 minutes;
        unknown unless known samples cover most of that time."""
        points = [(t, c) for t, c in self._trend if c is not None and now - t <= TREND_S]
        if len(points) < 3 or points[-1][0] - points[0][0] < 0.8 * TREND_S:
            return None
        mean_t = sum(t for t, _ in points) / len(points)
        mean_c = sum(c for _, c in points) / len(points)
        var = sum((t - mean_t) ** 2 for t, _ in points)
        cov = sum((t - mean_t) * (c - mean_c) for t, c in points)
        return cov / var * TREND_S if var > 0 else None

    def _arrivals_in(self, now: float, start: float, end: float) -> float | None:
        """Entrance arrivals in (start, end]; unknown unless the entrance cameras were online
        throughout."""
        up = self._entrance_up_since
        if not self.roles.entrance or up is None or start < up:
            return None
        return float(sum(1 for t in self._arrivals if start < t <= end))

    def _expected_arrivals(self, now: float) -> float | None:
        """The usual arrivals in 5 minutes now. By Little's law on the entrance: the people it
        usually holds at this quarter hour (the median over past same weekdays, from the stored
        history) over the time a person spends in it (the mean of the entrance visits in the
        window). Where that profile is not known yet (3 weeks of history), the arrivals of the
        hour before the last 5 minutes, scaled to 5 minutes: the lobby's recent pace."""
        dwells = [d for t, d in self._entrance_dwell if now - t <= self.settings.window_s]
        mean_dwell = sum(dwells) / len(dwells) if dwells else 0.0
        if self._entrance_usual is not None and mean_dwell > 0:
            return self._entrance_usual / mean_dwell * ARRIVALS_S
        hour = self._arrivals_in(now, now - ARRIVALS_S - EXPECTED_S, now - ARRIVALS_S)
        return None if hour is None else hour * ARRIVALS_S / EXPECTED_S

    def metric(self, name: RuleMetric, horizon_min: int) -> float | None:
        """An alert rule's figure, in its unit (docs/queueing.md, "Config"); None: unknown."""
        snapshot = self.snapshot()
        if name == "count":  # people, not tickets, whatever the wait came from
            return self.board.total(self.roles.line) if self.roles.line else None
        if name == "wait":
            return _per_minute(snapshot.wait.wait_s)
        if name == "arrivals":
            return snapshot.arrivals_5min
        forecast = snapshot.forecast.get(horizon_min)
        if forecast is None:
            return None
        if name == "forecast_count":
            return forecast.count
        return _per_minute(forecast.wait_s)

    def to_json(self, snapshot: QueueSnapshot) -> dict[str, Any]:
        """The retained queue state (docs/queueing.md); unknown is null, never 0."""
        w = snapshot.wait
        return {
            "site": self.site_id,
            "at": _iso(snapshot.at),
            "line_zones": list(snapshot.line_zones),
            "wait": {
                "minutes": minutes(w.wait_s),
                "low_minutes": minutes(w.low_s),
                "high_minutes": minutes(w.high_s),
                "confidence": w.confidence,
                "method": w.method,
                "line_count": _round(w.line_count),
                "throughput_per_min": _round(w.throughput_per_min, 2),
                "arrivals_per_min": _round(w.arrivals_per_min, 2),
                "dwell_p50_minutes": minutes(w.dwell_p50_s),
                "reason": w.reason,
            },
            "forecast": {
                str(m): {
                    "count": _round(f.count),
                    "count_low": _round(f.count_low),
                    "count_high": _round(f.count_high),
                    "minutes": minutes(f.wait_s),
                    "low_minutes": minutes(f.low_s),
                    "high_minutes": minutes(f.high_s),
                    "reason": f.reason,
                }
                for m, f in sorted(snapshot.forecast.items())
            },
            "kiosks": [
                {
                    "zone": k.zone_id,
                    "name": k.name,
                    "in_use": _round(k.count),
                    "capacity": k.capacity,
                }
                for k in snapshot.kiosks
            ],
            "counters": [
                {
                    "zone": c.zone_id,
                    "name": c.name,
                    "counter": c.counter,
                    "occupied": None if c.count is None else c.count >= EMPTY_BELOW,
                    "empty_minutes": None if c.count is None else minutes(c.empty_s),
                }
                for c in snapshot.counters
            ],
            "line_trend_per_10min": _round(snapshot.line_trend_per_10min),
            "arrivals_5min": _round(snapshot.arrivals_5min),
            "arrivals_expected_5min": _round(snapshot.arrivals_expected_5min),
            "dwell": {zone_id: _dwell_json(d) for zone_id, d in sorted(snapshot.dwell.items())},
        }


def _dwell_json(d: ZoneDwell) -> dict[str, Any]:
    return {
        "present": d.present,
        "present_p50_minutes": minutes(d.present_p50_s),
        "present_p90_minutes": minutes(d.present_p90_s),
        "finished": d.finished,
        "finished_p50_minutes": minutes(d.finished_p50_s),
        "finished_p90_minutes": minutes(d.finished_p90_s),
    }


def _per_minute(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60.0


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
