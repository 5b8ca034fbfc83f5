"""Turns rule and camera events into stored alerts and outbox messages.

Every decision is written to SQLite (the alert row and the messages that announce it, in one
transaction) before anything is published: a crash between deciding and publishing loses
nothing, and the outbox publisher delivers the message after the restart with the same alert id.

A rule watches a value (docs/queueing.md, "Config"): its zones' count from the board, or a
wait, forecast or arrivals figure from the queue monitor. Each ask of the manager (the raise,
an escalation, a re-ask) carries advice made from the queue's snapshot at that moment and the
figures behind it, in the payload and as the alert's details in the store.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.alerts.advice import Advice, advise, compose, kiosk_use
from edge.alerts.engine import (
    AlertEvent,
    Cleared,
    Escalated,
    Raised,
    Reasked,
    RuleEngine,
    new_alert_id,
)
from edge.alerts.messages import MessageCatalog, people_round
from edge.alerts.spool import WriteSpool
from edge.board import BoardUpdate, OccupancyBoard
from edge.config import AlertRuleConfig, LobbyConfig, RuleMetric
from edge.logsafe import LogThrottle, shorten
from edge.mqtt import Topics
from edge.queueing.snapshot import QueueSnapshot, minutes
from edge.schedule import Schedule
from edge.store import AckResult, AlertRecord, OutboxMessage, PassNumber, Store
from edge.types import CameraStatus

log = logging.getLogger("lobbywatch.alerts")

DIVERSION = "diversion"
CAMERA = "camera"


class AckPayload(BaseModel):
    """What a handheld publishes on alerts/<alert id>/ack."""

    model_config = ConfigDict(extra="ignore")
    # No control characters: the name is shown to people and logged.
    by: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
    status: Literal["accepted", "pass_done"]
    # The pass the handheld showed (its state's `passes`); absent from older handhelds: the
    # latest. Another pass changes nothing: a redelivered or doubled ack of a pass done must
    # not take the pass asked after it (docs/handheld.md).
    pass_: PassNumber | None = Field(None, alias="pass")


#: The rule text of a raise, by the rule's metric (edge/alerts/templates); a count rule at the
#: entrance speaks to the greeter.
_RAISED_KEYS: dict[str, str] = {
    "count": "raised",
    "wait": "raised_wait",
    "forecast_wait": "raised_forecast_wait",
    "forecast_count": "raised_forecast_count",
    "arrivals": "raised_arrivals",
}


#: Advice a raise's rule text already says, by the rule's metric: "Wait rising: about 16 min in
#: 15 minutes" needs no "wait rising: ..." under it, nor "Greeter: please go to the ticket
#: machine" an arrival surge line sending the greeter there. Left out of the message only: the
#: payload keeps the whole list (the phone app shows that list, not the message, and has no
#: other line for the surge's figures). A forecast count says nothing of the wait, so it keeps
#: the rising wait; an escalation's or a re-ask's text says neither, so they keep all.
_SAID_BY_RULE_TEXT: dict[str, frozenset[str]] = {
    "forecast_wait": frozenset({"wait_rising"}),
    "arrivals": frozenset({"entrance_surge"}),
}


#: The queue figures behind an ask, besides the zones' count: null where unknown, never 0.
_FIGURES = ("wait_minutes", "wait_confidence", "forecast_15_minutes", "forecast_30_minutes",
            "kiosks_in_use", "kiosks_capacity")  # fmt: skip


class QueueSource(Protocol):
    """What the alert service reads of the queue (edge/runtime/queue_monitor.py QueueMonitor):
    the value of a wait or forecast rule, and the snapshot advice is made from."""

    def snapshot(self) -> QueueSnapshot: ...

    def metric(self, name: RuleMetric, horizon_min: int) -> float | None: ...


@dataclass(frozen=True)
class _Ask:
    """What one ask of the manager carries besides its rule text: the advice, the figures
    behind it (people, minutes; None where unknown) and the rule's value."""

    advice: list[Advice]
    figures: dict[str, Any]
    metric: str
    value: float | None
    point: str

    def payload(self, number: int) -> dict[str, Any]:
        """The payload's fields of this ask; `number` is the pass it asks (1: the raise)."""
        return {
            "pass": number,
            "metric": self.metric,
            "value": self.value,
            "point": self.point,
            "advice": [
                {"kind": a.kind, "text": a.text, "figures": dict(a.figures)} for a in self.advice
            ],
            "figures": self.figures,
        }

    def details(self, number: int) -> str:
        """The alert's details column: this ask's payload fields and which pass it asks."""
        return json.dumps(self.payload(number), ensure_ascii=False, separators=(",", ":"))


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _CameraWatch:
    down_since: float | None = None  # monotonic
    down_since_utc: datetime | None = None
    alert_id: str | None = None


class AlertService:
    def __init__(
        self,
        config: LobbyConfig,
        store: Store,
        board: OccupancyBoard,
        *,
        wake_publisher: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
        alert_ids: Callable[[str, datetime], str] = new_alert_id,
        queue: QueueSource | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.board = board
        self.queue = queue
        self.topics = Topics(config.mqtt.topic_prefix, config.site.id)
        self.catalog = MessageCatalog(config.alerts.language, config.alerts.templates_dir)
        self.schedule = Schedule(config.alerts.schedule, config.site.timezone)
        self.engines = {
            rule.id: RuleEngine(rule, self.schedule, alert_ids=alert_ids)
            for rule in config.alerts.rules
        }
        self._alert_ids = alert_ids
        self._zone_names = {z.id: z.name or z.id for c in config.cameras for z in c.zones}
        self._camera_zones = {c.id: [z.id for z in c.zones] for c in config.cameras}
        self._cameras = {c.id: _CameraWatch() for c in config.cameras}
        self._wake = wake_publisher
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.RLock()
        # Decisions wait here while the store refuses writes; their messages still go out.
        self.spool = WriteSpool(store)
        # When each message was made, on the monotonic clock: its expiry counts from here, not
        # from a wall clock that NTP may step (the outbox publisher reads and prunes it).
        self.born: dict[str, float] = {}
        # Whoever can publish on the broker can send acks: their warnings are rate-limited.
        self._throttle = LogThrottle(log, clock=clock)
        inert = [r.id for r in config.alerts.rules if r.metric != "count"]
        if queue is None and inert:
            log.warning(
                "alert rule(s) %s watch a wait, forecast or arrivals, which need tracking and "
                "the queue monitor: without them they never raise", ", ".join(inert),
            )  # fmt: skip

    # --- life cycle -----------------------------------------------------------------------

    def restore(self) -> None:
        """Pick up alerts that were open when the process stopped."""
        now = self._clock()
        for alert in self.store.open_alerts():
            if alert.kind == DIVERSION and alert.rule in self.engines:
                acknowledged = alert.acknowledged_at is not None
                self.engines[alert.rule].restore(
                    alert.alert_id, alert.escalations, acknowledged, now,
                    passes=alert.passes, pass_done=alert.pass_done_at is not None,
                )  # fmt: skip
                log.info("resumed alert %s (%s)", alert.alert_id, alert.status)
            elif alert.kind == CAMERA:
                camera_id = alert.rule.removeprefix("camera-")
                if camera_id in self._cameras:
                    watch = self._cameras[camera_id]
                    watch.alert_id, watch.down_since, watch.down_since_utc = (
                        alert.alert_id, now, alert.since,
                    )  # fmt: skip

    def on_board_update(self, update: BoardUpdate) -> None:
        """Evaluate the rules that watch this camera's zones, in the worker's thread."""
        zones = set(self._camera_zones.get(update.camera_id, ()))
        with self._lock:
            for engine in self.engines.values():
                if zones.intersection(engine.rule.zones):
                    self._step(engine)

    def tick(self) -> None:
        """Time-driven work, about once a second: timers, camera health, acks, pass effects."""
        self.spool.flush()
        with self._lock:
            self._sync_acks()  # first: an ack through the API must stop a due escalation
            for engine in self.engines.values():
                self._step(engine)
            self._check_cameras()
        self._measure_effects()

    # --- acknowledgements -----------------------------------------------------------------

    def handle_ack(self, alert_id: str, payload: bytes, source: str = "mqtt") -> AlertRecord | None:
        """Apply an ack message; malformed ones are logged and ignored, never raised."""
        try:
            ack = AckPayload.model_validate_json(payload)
        except ValidationError as exc:
            self._throttle.warning(
                "malformed-ack", "ignoring malformed ack for %s from %s: %s",
                shorten(alert_id), shorten(source),
                shorten(exc.errors(include_url=False, include_input=False), 300),
            )  # fmt: skip
            return None
        known = self._lookup(alert_id)
        if known is None:
            self._throttle.warning(
                "unknown-ack", "ignoring ack for unknown alert %s from %s",
                shorten(alert_id), shorten(source),
            )  # fmt: skip
            return None
        at = self._wall()
        wait_s = self._snapshot_wait()
        results: list[AckResult | None] = []
        self.spool.write(
            lambda store: results.append(
                store.apply_ack(alert_id, ack.by, ack.status, at, wait_s=wait_s, number=ack.pass_)
            )
        )
        result = results[0] if results else None
        record = result.record if result is not None else known
        latest = self._latest_pass(record)
        if ack.pass_ is not None and ack.pass_ != latest:
            # an ack of an earlier pass (or of one never asked): the pass asked now stands, it
            # still escalates, and its re-ask timer is not started
            log.info("alert %s: %s by %s for pass %d changes nothing: pass %d is asked",
                     alert_id, ack.status, shorten(ack.by), ack.pass_, latest)  # fmt: skip
            return record
        if result is None:  # kept in memory until the store takes writes: taken as given
            log.info("alert %s: %s by %s", alert_id, ack.status, shorten(ack.by))
        elif result.outcome == "cleared":
            log.info("alert %s: %s by %s ignored: it cleared at %s", alert_id, ack.status,
                     shorten(ack.by), record.cleared_at)  # fmt: skip
            return record
        elif result.outcome == "already":
            log.info("alert %s: %s by %s changes nothing: already %s", alert_id, ack.status,
                     shorten(ack.by), _already(record, ack.status))  # fmt: skip
        else:
            log.info("alert %s: %s by %s", alert_id, ack.status, shorten(ack.by))
        with self._lock:
            if record.rule in self.engines:
                engine = self.engines[record.rule]
                engine.acknowledge(alert_id, self._clock())
                if ack.status == "pass_done" and (result is None or record.pass_done_at):
                    engine.pass_done(alert_id, self._clock())  # the re-ask timer starts
        self._wake()  # its new state goes out now, not at the next tick
        return record

    def _latest_pass(self, record: AlertRecord) -> int:
        """The pass asked now: the engine's (a re-ask it made may not be in the store yet, on
        a full disk), else the record's (1 for an alert without passes rows)."""
        with self._lock:
            engine = self.engines.get(record.rule)
            if engine is not None and engine.alert_id == record.alert_id:
                return engine.state.passes
        return max(record.passes, 1)

    def _lookup(self, alert_id: str) -> AlertRecord | None:
        """An alert from the store, or from the spool while the store could not take it."""
        return self.spool.record(alert_id) or self.store.alert(alert_id)

    def _sync_acks(self) -> None:
        # Acks may also arrive through the store (the API's POST .../ack in another process).
        for alert in self.store.open_alerts():
            engine = self.engines.get(alert.rule)
            if engine is None:
                continue
            if engine.alert_id == alert.alert_id and max(1, alert.passes) < engine.state.passes:
                # The store's acks are of an earlier pass: the re-ask is not in it yet (kept
                # in memory on a full disk). Taken for the pass asked now, they would stop its
                # escalation and time a re-ask of a pass nobody did.
                continue
            if alert.acknowledged_at is not None:
                engine.acknowledge(alert.alert_id, self._clock())
            if alert.pass_done_at is not None:
                engine.pass_done(alert.alert_id, self._clock())

    def _measure_effects(self) -> None:
        now = self._wall()
        for alert in self.store.effects_due(now):
            key = f"effect:{alert.alert_id}"
            if self.spool.waiting(key):
                continue  # measured already; the store has not taken it yet
            count = self.board.total(alert.zones)
            snapshot = self._snapshot()
            wait_s = kiosks = None
            if snapshot is not None:
                wait_s, kiosks = snapshot.wait.wait_s, kiosk_use(snapshot.kiosks)
            self.spool.write(
                functools.partial(
                    Store.record_effect, alert_id=alert.alert_id, count=count, at=now,
                    wait_s=wait_s, kiosks_in_use=None if kiosks is None else kiosks[0],
                    kiosks_capacity=None if kiosks is None else kiosks[1],
                ),
                key=key,
            )  # fmt: skip
            log.info(
                "alert %s: %s people, wait %s s, %d s after the pass (were %s at ack)",
                alert.alert_id, count, wait_s, alert.effect_after_s, alert.count_at_ack,
            )  # fmt: skip

    # --- rules ----------------------------------------------------------------------------

    def _step(self, engine: RuleEngine) -> None:
        value = self._value(engine.rule)
        for event in engine.step(value, self._clock(), self._wall()):
            self._emit(engine.rule, event)

    def _value(self, rule: AlertRuleConfig) -> float | None:
        """The rule's value in its unit; None (unknown: never raises or clears) for a queue
        metric without a queue monitor."""
        if rule.metric == "count":
            return self.board.total(rule.zones)
        if self.queue is None:
            return None
        return self.queue.metric(rule.metric, rule.horizon_min)

    def _snapshot(self) -> QueueSnapshot | None:
        return None if self.queue is None else self.queue.snapshot()

    def _snapshot_wait(self) -> float | None:
        snapshot = self._snapshot()
        return None if snapshot is None else snapshot.wait.wait_s

    def _ask(self, rule: AlertRuleConfig, value: float | None) -> _Ask:
        """Advice and figures for an ask of `rule` now (none without a queue monitor)."""
        snapshot = self._snapshot()
        figures: dict[str, Any] = {"count": self.board.total(rule.zones), **dict.fromkeys(_FIGURES)}
        advice: list[Advice] = []
        if snapshot is not None:
            settings = self.config.queue
            advice = advise(
                snapshot, rule.point, self.catalog,
                unstaffed_after_s=settings.unstaffed_after_s, surge_factor=settings.surge_factor,
            )  # fmt: skip
            wait_s = snapshot.wait.wait_s
            if wait_s is not None:
                figures["wait_minutes"] = minutes(wait_s)
                figures["wait_confidence"] = snapshot.wait.confidence
            for horizon in (15, 30):
                ahead = snapshot.forecast.get(horizon)
                if ahead is not None and ahead.wait_s is not None:
                    figures[f"forecast_{horizon}_minutes"] = minutes(ahead.wait_s)
            kiosks = kiosk_use(snapshot.kiosks)
            if kiosks is not None:
                figures["kiosks_in_use"], figures["kiosks_capacity"] = kiosks
        return _Ask(advice, figures, rule.metric, value, rule.point)

    def _rule_text(self, rule: AlertRuleConfig, key: str, value: float, since: str) -> str:
        """The rule's own sentence in its unit: people for a count (or a forecast count, in
        whole people), whole minutes for a wait or forecast wait (with the zones' count now),
        arrivals in 5 minutes (whole people)."""
        names = [self._zone_names[z] for z in rule.zones]
        count = self.board.total(rule.zones)
        minutes: Any = ""
        if rule.metric in ("wait", "forecast_wait"):
            minutes = people_round(value)
        elif rule.metric in ("forecast_count", "arrivals"):
            count = float(people_round(value))
        else:
            count = value
        return self.catalog.render(
            key, count=count, zones=names, since=since, rule=rule.name, minutes=minutes,
            horizon=rule.horizon_min,
        )  # fmt: skip

    def _emit(self, rule: AlertRuleConfig, event: AlertEvent) -> None:
        zones = list(rule.zones)
        names = [self._zone_names[z] for z in zones]
        audience = "greeter" if rule.point == "entrance" else "lobby_manager"
        if isinstance(event, Raised):
            since = self._local_time(event.since)
            key = _RAISED_KEYS[rule.metric]
            if key == "raised" and rule.point == "entrance":
                key = "raised_entrance"
            ask = self._ask(rule, event.count)
            said = _SAID_BY_RULE_TEXT.get(rule.metric, frozenset())
            told = [a for a in ask.advice if a.kind not in said]
            text = compose(self._rule_text(rule, key, event.count, since), told, self.catalog)
            count = event.count if rule.metric == "count" else self.board.total(rule.zones)
            record = _new_record(
                event.alert_id, rule.id, DIVERSION, zones, event.threshold, event.since,
                event.at, count, text, rule.effect_after_s, ask.details(1),
            )  # fmt: skip
            payload = self._payload("raised", record, count, text, audience, ask=ask, number=1)
            self._insert(
                record, [self._message(self.topics.alerts, record, "raised", payload, event.at)]
            )
            log.warning("alert %s raised: %s", event.alert_id, text)
        elif isinstance(event, Reasked):
            stored = self._lookup(event.alert_id)
            if stored is None:
                return
            ask = self._ask(rule, event.value)
            count = ask.figures["count"]
            rule_text = self.catalog.render(
                "reasked", count=count, zones=names, number=event.number, rule=rule.name,
                since=self._local_time(stored.since),
            )  # fmt: skip
            text = compose(rule_text, ask.advice, self.catalog)
            payload = self._payload(
                "reasked", stored, count, text, audience, ask=ask, number=event.number
            )
            key = f"reasked:{event.number}"
            messages = [self._message(self.topics.alerts, stored, key, payload, event.at)]
            alert_id, number, at = event.alert_id, event.number, event.at
            details = ask.details(number)
            taken: list[bool] = []
            self.spool.write(
                lambda store: taken.append(
                    store.reask_alert(alert_id, number, at, details, messages)
                ),
                messages,
            )
            if taken == [False]:  # cleared meanwhile: nothing asked
                log.info("alert %s: not re-asked, it has cleared", alert_id)
                return
            log.warning("alert %s re-asked (pass %d): %s", alert_id, number, text)
        elif isinstance(event, Escalated):
            stored = self._lookup(event.alert_id)
            if stored is None:
                return
            since = self._local_time(stored.since)
            # The pass asked is the engine's: a re-ask the store has not taken yet (a full
            # disk) is still the pass this escalation is for, and the one an accept must name.
            ask, number = self._ask(rule, event.count), self.engines[rule.id].state.passes
            count = ask.figures["count"]
            rule_text = self.catalog.render(
                "escalated", count=count, zones=names, since=since, number=event.number
            )
            text = compose(rule_text, ask.advice, self.catalog)
            payload = self._payload(
                "escalated", stored, count, text, audience, event.number, ask=ask, number=number
            )
            boss = self._payload(
                "escalated", stored, count, text, "supervisor", event.number, ask=ask, number=number
            )
            key = f"escalated:{event.number}"
            messages = [
                self._message(self.topics.alerts, stored, key, payload, event.at),
                self._message(self.topics.supervisor_alerts, stored, f"{key}:supervisor", boss, event.at),
            ]  # fmt: skip
            alert_id, at, details = event.alert_id, event.at, ask.details(number)
            escalated: list[bool] = []

            def escalate(store: Store) -> None:
                # Retried whole from the spool if the store refuses a part: an escalation it
                # took already is not counted (nor its messages queued) a second time.
                if not escalated:
                    escalated.append(store.escalate_alert(alert_id, at, messages))
                if escalated[0]:  # the figures of this ask replace those of the last
                    store.set_alert_details(alert_id, details)

            self.spool.write(escalate, messages)
            if escalated == [False]:  # accepted meanwhile (the API): no escalation after all
                self.engines[rule.id].acknowledge(alert_id, self._clock())
                log.info("alert %s: not escalated, it was accepted meanwhile", alert_id)
                return
            log.warning("alert %s escalated (%d): %s", event.alert_id, event.number, text)
        elif isinstance(event, Cleared):
            stored = self._lookup(event.alert_id)
            if stored is None:
                return
            count = event.count if rule.metric == "count" else self.board.total(rule.zones)
            text = self.catalog.render("cleared", count=count, zones=names)
            payload = self._payload("cleared", stored, count, text, audience)
            self._clear(
                stored, event.at, event.count,
                self._message(self.topics.alerts, stored, "cleared", payload, event.at),
            )  # fmt: skip
            log.info("alert %s cleared: %s", event.alert_id, text)
        self._wake()

    # --- cameras --------------------------------------------------------------------------

    def _check_cameras(self) -> None:
        settings = self.config.alerts.camera_offline
        if not settings.enabled:
            return
        now, utc = self._clock(), self._wall()
        for camera_id, status in self.board.statuses().items():
            watch = self._cameras[camera_id]
            if status is CameraStatus.ONLINE:
                if watch.alert_id is not None:
                    self._camera_back(camera_id, watch, utc)
                watch.down_since = watch.down_since_utc = None
                continue
            if watch.down_since is None:
                watch.down_since, watch.down_since_utc = now, utc
            if watch.alert_id is None and now - watch.down_since >= settings.after_s:
                self._camera_down(camera_id, watch, utc)

    def _camera_down(self, camera_id: str, watch: _CameraWatch, utc: datetime) -> None:
        assert watch.down_since_utc is not None
        alert_id = self._alert_ids(f"camera-{camera_id}", utc)
        since = self._local_time(watch.down_since_utc)
        text = self.catalog.render("camera_offline", camera=camera_id, since=since)
        record = _new_record(
            alert_id, f"camera-{camera_id}", CAMERA, self._camera_zones[camera_id], None,
            watch.down_since_utc, utc, None, text, 0.0, None,
        )  # fmt: skip
        payload = self._payload("raised", record, None, text, audience="it")
        self._insert(record, [self._message(self.topics.it_alerts, record, "raised", payload, utc)])
        watch.alert_id = alert_id
        log.warning("camera %s: alert %s to IT: %s", camera_id, alert_id, text)
        self._wake()

    def _camera_back(self, camera_id: str, watch: _CameraWatch, utc: datetime) -> None:
        assert watch.alert_id is not None
        stored = self._lookup(watch.alert_id)
        watch.alert_id = None
        if stored is None:
            return
        text = self.catalog.render("camera_online", camera=camera_id)
        payload = self._payload("cleared", stored, None, text, audience="it")
        self._clear(
            stored, utc, None, self._message(self.topics.it_alerts, stored, "cleared", payload, utc)
        )
        log.info("camera %s back online: alert %s cleared", camera_id, stored.alert_id)
        self._wake()

    # --- writes (through the spool: a full disk delays them, never stops an alert) ---------

    def _insert(self, record: AlertRecord, messages: list[OutboxMessage]) -> None:
        self.spool.write(
            lambda store: store.insert_alert(record, messages), messages, record=record
        )

    def _clear(
        self, stored: AlertRecord, at: datetime, count: float | None, message: OutboxMessage
    ) -> None:
        self.spool.write(
            lambda store: store.clear_alert(stored.alert_id, at, count, [message]), [message]
        )

    # --- payloads -------------------------------------------------------------------------

    def _payload(
        self,
        kind: str,
        record: AlertRecord,
        count: float | None,
        text: str,
        audience: str,
        escalation: int = 0,
        *,
        ask: _Ask | None = None,
        number: int = 1,
    ) -> dict[str, Any]:
        """An alert message. Diversion asks (raised, escalated, reasked) also carry the rule's
        metric and value, the advice and the figures behind it, and `number`, the pass asked."""
        payload = {
            "alert_id": record.alert_id,
            "kind": kind,
            "rule": record.rule,
            "site": self.config.site.id,
            "audience": audience,
            "zones": list(record.zones),
            "zone_names": [self._zone_names.get(z, z) for z in record.zones],
            "count": count,
            "threshold": record.threshold,
            "since": _iso(record.since),
            "at": _iso(self._wall()),
            "escalation": escalation,
            "message": text,
            "language": self.catalog.language,
        }
        if ask is not None:
            payload.update(ask.payload(number))
        return payload

    def _message(
        self, topic: str, record: AlertRecord, key: str, payload: dict[str, Any], at: datetime
    ) -> OutboxMessage:
        message_id = f"{record.alert_id}:{key}"
        self.born[message_id] = self._clock()
        payload = {**payload, "message_id": message_id}
        expiry = timedelta(seconds=self.config.mqtt.alert_expiry_s)
        return OutboxMessage(
            message_id=message_id,
            topic=topic,
            payload=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
            qos=1,
            created_at=at,
            expires_at=at + expiry,
            alert_id=record.alert_id,
        )

    def _local_time(self, at: datetime) -> str:
        return self.schedule.local(at).strftime("%H:%M")


def _new_record(
    alert_id: str,
    rule: str,
    kind: str,
    zones: list[str],
    threshold: float | None,
    since: datetime,
    at: datetime,
    count: float | None,
    message: str,
    effect_after_s: float,
    details: str | None,
) -> AlertRecord:
    return AlertRecord(
        alert_id=alert_id, rule=rule, kind=kind, zones=tuple(zones), threshold=threshold,
        since=since, raised_at=at, count_at_raise=count, message=message, escalations=0,
        last_notified_at=at, acknowledged_at=None, acknowledged_by=None, count_at_ack=None,
        pass_done_at=None, pass_done_by=None, effect_after_s=effect_after_s, effect_count=None,
        effect_measured_at=None, cleared_at=None, count_at_clear=None, status="open",
        details=details,
    )  # fmt: skip


def _already(record: AlertRecord, status: str) -> str:
    if status == "pass_done":
        return f"pass done by {shorten(record.pass_done_by)} at {record.pass_done_at}"
    return f"accepted by {shorten(record.acknowledged_by)} at {record.acknowledged_at}"


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
