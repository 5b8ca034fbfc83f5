"""Alert deliveries to the bank's channels: planned from the alerts' records, kept in the store,
sent by one worker thread with retries, backoff, a rate limit and expiry.

Planned from the record, not from the service's calls: every alert event that has happened
(raised, each escalation, accepted, pass done, cleared) is in the `alerts` row, whichever
process made it (an ack through the API lands only there). The planner turns each event a
channel is sent into one `deliveries` row whose id names the alert, the event and the channel,
so planning twice, or again after a restart, adds nothing. A row is sent once (at least once
across a crash between its send and its record: its id is the receivers' key to drop a copy;
a record the store refuses is kept in memory meanwhile, and the row not sent again): it is
`sent` only when the receiver took it, else it waits and is tried again, with a backoff per channel (a
channel down for an hour is tried about 15 times, then delivers what still matters once, in
order). What no longer matters is given up: a "raised" whose alert cleared, an escalation
already accepted, anything older than the channel's expire_after_s.

A channel's rate limit (max_per_minute) is a sliding minute: while more than one slot is free,
messages go one by one; the last slot of the minute takes everything that waits, merged into one
message; beyond it rows wait as `rate_limited` for the next free slot. A storm of alerts is at
most max_per_minute messages a minute, nothing dropped.

The worker's thread is the only one that sends, through the sender process
(edge/alerts/sender.py); the camera and alert paths only wake it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol

from edge.alerts.channels import Channel, Renderer, redact, resolve_all, webhook_body
from edge.alerts.sender import GRACE_S, Job, Outcome, SenderProcess
from edge.alerts.state import SiteNames
from edge.config import ChannelConfig, ChannelEvent, LobbyConfig
from edge.logsafe import shorten
from edge.store import DELIVERIES_SCHEMA, AlertRecord, Store, StoreWriteError

log = logging.getLogger("lobbywatch.delivery")

DeliveryState = Literal["waiting", "rate_limited", "sent", "failed", "expired"]
OPEN_STATES: tuple[DeliveryState, ...] = ("waiting", "rate_limited")
TICK_S = 0.5
#: Backoff of a failing channel: doubled from BACKOFF_MIN_S after each failure, at most
#: BACKOFF_MAX_S; a refusal for good (a wrong key) waits the most at once.
BACKOFF_MIN_S = 2.0
BACKOFF_MAX_S = 300.0
#: Messages merged into one at most when a channel's rate limit holds them back.
MAX_MERGED = 20
WINDOW_S = 60.0
#: Seconds a failing loop (the sender process cannot start: EMFILE) waits at most between tries.
RESTART_MAX_S = 60.0
#: Seconds past the longest attempt (a channel's timeout_s and the sender's grace) without a
#: heartbeat before the worker is reported stalled.
STALL_MARGIN_S = 30.0

CountOf = Callable[[Sequence[str]], "float | None"]


class Sender(Protocol):
    def send(self, job: Job) -> Outcome: ...

    def close(self) -> None: ...


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One row of `deliveries`; times UTC."""

    seq: int
    delivery_id: str
    alert_id: str
    channel: str
    event: ChannelEvent
    number: int
    title: str
    body: str
    payload: str
    created_at: datetime
    state: DeliveryState
    attempts: int
    last_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    merged: int
    done_at: datetime | None

    def view(self, kind: str | None = None) -> DeliveryView:
        return DeliveryView(
            channel=self.channel, kind=kind, event=self.event, number=self.number,
            state=self.state, attempts=self.attempts, last_error=self.last_error,
            last_attempt_at=self.last_attempt_at, sent_at=self.sent_at, merged=self.merged,
        )  # fmt: skip


@dataclass(frozen=True)
class DeliveryView:
    """A delivery as the alert's lifecycle shows it (docs/handheld.md, `deliveries`)."""

    channel: str
    kind: str | None
    event: str
    number: int
    state: DeliveryState
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None
    sent_at: datetime | None
    merged: int

    def as_json(self, local: Callable[[datetime], datetime] | None = None) -> dict[str, Any]:
        """For the alert state; times in the site's zone when `local` is given."""

        def iso(at: datetime | None) -> str | None:
            if at is None:
                return None
            return (local(at) if local is not None else at).isoformat()

        return {
            "channel": self.channel, "kind": self.kind, "event": self.event,
            "number": self.number, "state": self.state, "attempts": self.attempts,
            "last_error": self.last_error, "last_attempt_at": iso(self.last_attempt_at),
            "sent_at": iso(self.sent_at), "merged": self.merged,
        }  # fmt: skip


def delivery_id(alert_id: str, event: str, number: int, channel: str) -> str:
    return f"{alert_id}:{event}{f':{number}' if event == 'escalated' else ''}@{channel}"


_COLUMNS = (
    "seq, delivery_id, alert_id, channel, event, number, title, body, payload, created_at, "
    "state, attempts, last_attempt_at, last_error, sent_at, merged, done_at"
)


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _row(row: Sequence[Any]) -> Delivery:
    return Delivery(
        seq=row[0], delivery_id=row[1], alert_id=row[2], channel=row[3], event=row[4],
        number=row[5], title=row[6], body=row[7], payload=row[8],
        created_at=datetime.fromisoformat(row[9]), state=row[10], attempts=row[11],
        last_attempt_at=_dt(row[12]), last_error=row[13], sent_at=_dt(row[14]), merged=row[15],
        done_at=_dt(row[16]),
    )  # fmt: skip


Query = Callable[[str, Sequence[object]], Sequence[Sequence[Any]]]


def deliveries_of(
    query: Query, alert_ids: Sequence[str], kinds: Mapping[str, str] | None = None
) -> dict[str, list[DeliveryView]]:
    """Each alert's deliveries, oldest first, through `query` (Store.query, or a read-only
    connection's execute(...).fetchall()); empty for a store that has no deliveries yet."""
    found: dict[str, list[DeliveryView]] = {}
    kinds = kinds or {}
    ids = list(dict.fromkeys(alert_ids))
    for start in range(0, len(ids), 500):  # SQLite's limit on bound variables
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        try:
            rows = query(
                f"SELECT {_COLUMNS} FROM deliveries WHERE alert_id IN ({marks}) ORDER BY seq", chunk
            )
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise
        for row in rows:
            delivery = _row(row)
            found.setdefault(delivery.alert_id, []).append(
                delivery.view(kinds.get(delivery.channel))
            )
    return found


# What a delivery's error says (a receiver's reply, a mail host) is for IT, in /v1/alerts and
# health; the alert state goes to every manager's phone and handheld account.
_NOT_FOR_HANDHELDS = ("last_error",)


def lifecycle(query: Query, alert_id: str, names: SiteNames) -> list[dict[str, Any]]:
    """An alert's deliveries as its state lists them (docs/handheld.md), times in site time,
    without their error texts."""
    found = deliveries_of(query, [alert_id], names.channels).get(alert_id, [])
    shown = [d.as_json(names.site_time) for d in found]
    return [{k: v for k, v in d.items() if k not in _NOT_FOR_HANDHELDS} for d in shown]


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


class DeliveryLog:
    """The `deliveries` table, through the service's store (its lock, its failure accounting)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ready = False

    def ensure(self) -> bool:
        """Create the table where the store predates it; False while the store refuses."""
        if not self.ready:
            try:
                with self.store.transaction() as db:
                    # One statement at a time: executescript would commit outside the store's
                    # transaction. The schema's comments hold no semicolon.
                    for statement in DELIVERIES_SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                self.ready = True
            except StoreWriteError:
                return False
        return True

    def insert(self, rows: Iterable[tuple[Any, ...]]) -> None:
        with self.store.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (delivery_id, alert_id, channel, event, number,"
                " title, body, payload, created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                list(rows),
            )

    def open_rows(self, channel: str, limit: int = 200) -> list[Delivery]:
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM deliveries WHERE channel = ? AND state IN (?, ?)"
            " ORDER BY seq LIMIT ?",
            (channel, *OPEN_STATES, limit),
        )
        return [_row(r) for r in rows]

    def of_alert(self, alert_id: str, channel: str) -> list[Delivery]:
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM deliveries WHERE alert_id = ? AND channel = ? ORDER BY seq",
            (alert_id, channel),
        )
        return [_row(r) for r in rows]

    def planned(self, alert_ids: Sequence[str]) -> set[str]:
        """Delivery ids already planned for these alerts."""
        ids: set[str] = set()
        for start in range(0, len(alert_ids), 500):
            chunk = list(alert_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.store.query(
                f"SELECT delivery_id FROM deliveries WHERE alert_id IN ({marks})", chunk
            )
            ids.update(str(r[0]) for r in rows)
        return ids

    def candidates(self, cutoff: datetime) -> list[str]:
        """Alerts that are open or cleared since `cutoff`: the only ones with news to plan."""
        rows = self.store.query(
            "SELECT alert_id FROM alerts WHERE cleared_at IS NULL OR cleared_at >= ?"
            " ORDER BY raised_at",
            (_iso(cutoff),),
        )
        return [str(r[0]) for r in rows]

    def update(self, ids: Sequence[str], **values: object) -> None:
        """Set columns of the rows `ids` (attempts=+1 counts an attempt)."""
        sets, params = [], []
        for column, value in values.items():
            if column == "attempts":
                sets.append("attempts = attempts + 1")
                continue
            sets.append(f"{column} = ?")
            params.append(_iso(value) if isinstance(value, datetime) else value)
        marks = ",".join("?" * len(ids))
        with self.store.transaction() as db:
            db.execute(
                f"UPDATE deliveries SET {', '.join(sets)} WHERE delivery_id IN ({marks})",
                [*params, *ids],
            )

    def counts(self) -> dict[tuple[str, str], int]:
        """Rows per (channel, state)."""
        try:
            rows = self.store.query(
                "SELECT channel, state, COUNT(*) FROM deliveries GROUP BY 1, 2", ()
            )
        except sqlite3.OperationalError:
            return {}
        return {(str(c), str(s)): int(n) for c, s, n in rows}


# --- pure decisions ------------------------------------------------------------------------------


def events_of(
    alert: AlertRecord, channel: ChannelConfig
) -> list[tuple[ChannelEvent, int, datetime]]:
    """The events of `alert` that `channel` is sent, in order: (event, number, when, UTC).

    A camera alert goes to IT's channels only, a diversion alert to the others. A supervisor's
    channel hears of an alert from its first escalation on. What follows an alert (accepted,
    pass done, cleared) is sent only where its opening was, or would have been, sent: a group
    told "back to normal" of an alert it never heard of would only wonder.
    """
    camera = alert.kind == "camera"
    if camera != (channel.audience == "it"):
        return []
    happened: list[tuple[ChannelEvent, int, datetime]] = [("raised", 0, alert.raised_at)]
    happened += [("escalated", n, alert.last_notified_at) for n in range(1, alert.escalations + 1)]
    if alert.acknowledged_at is not None and not camera:
        happened.append(("accepted", 0, alert.acknowledged_at))
    if alert.pass_done_at is not None and not camera:
        happened.append(("pass_done", 0, alert.pass_done_at))
    if alert.cleared_at is not None:
        happened.append(("cleared", 0, alert.cleared_at))
    sends = set(channel.sends)
    if channel.audience == "supervisor":
        sends.discard("raised")
    openings = [e for e in happened if e[0] in ("raised", "escalated") and e[0] in sends]
    opening_sent = bool(sends & {"raised", "escalated"})
    follow = (
        bool(openings)
        if opening_sent
        else (channel.audience != "supervisor" or alert.escalations > 0)
    )
    return [
        e for e in happened
        if e[0] in sends and (e[0] in ("raised", "escalated") or follow)
    ]  # fmt: skip


def stale_reason(
    delivery: Delivery,
    alert: AlertRecord | None,
    siblings: Sequence[Delivery],
    local: Callable[[datetime], datetime],
) -> str | None:
    """Why a waiting delivery is no longer worth sending (None: it still is).

    `siblings`: the alert's other deliveries on the same channel, as they stand now."""

    def hhmm(at: datetime) -> str:
        return local(at).strftime("%H:%M")

    if alert is None:
        return "its alert is not in the store"
    if delivery.event == "raised" and alert.cleared_at is not None and alert.kind != "camera":
        return f"the alert cleared at {hhmm(alert.cleared_at)} before it could be sent"
    if delivery.event == "escalated":
        if alert.acknowledged_at is not None:
            by = alert.acknowledged_by or "?"
            return f"accepted by {by} at {hhmm(alert.acknowledged_at)} before it could be sent"
        if alert.cleared_at is not None:
            return f"the alert cleared at {hhmm(alert.cleared_at)} before it could be sent"
    if delivery.event in ("accepted", "pass_done", "cleared"):
        openings = [
            s for s in siblings if s.event in ("raised", "escalated") and s.seq < delivery.seq
        ]
        if openings and not any(s.state == "sent" or s.state in OPEN_STATES for s in openings):
            return "nothing of this alert reached this channel"
    return None


class RateWindow:
    """Sends of one channel in the last minute (monotonic seconds)."""

    def __init__(self, per_minute: int, window_s: float = WINDOW_S) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._sent: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.popleft()

    def free(self, now: float) -> int:
        self._trim(now)
        return max(0, self.per_minute - len(self._sent))

    def next_free(self, now: float) -> float:
        self._trim(now)
        return now if len(self._sent) < self.per_minute else self._sent[0] + self.window_s

    def note(self, now: float) -> None:
        self._sent.append(now)


def backoff_s(failures: int, outcome: Outcome) -> float:
    """Seconds before a channel that failed `failures` times in a row is tried again."""
    wait = (
        BACKOFF_MAX_S
        if outcome.permanent
        else min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** max(0, failures - 1))
    )
    return max(wait, outcome.retry_after_s or 0.0)


# --- the worker ------------------------------------------------------------------------------


@dataclass
class ChannelHealth:
    """How one channel is doing, in this process."""

    kind: str
    audience: str
    failures: int = 0  # in a row
    failing_since: datetime | None = None
    last_error: str | None = None
    last_sent_at: datetime | None = None
    retry_at: float = 0.0  # monotonic
    sent: int = 0
    failed: int = 0
    expired: int = 0
    messages: int = 0  # messages sent (a merged one carries several deliveries)

    @property
    def state(self) -> str:
        return "failing" if self.failures else "ok"


class DeliveryWorker:
    """Plans, sends and records the deliveries of `channels`, in a thread of its own."""

    def __init__(
        self,
        config: LobbyConfig,
        store: Store,
        channels: Sequence[Channel],
        sender: Sender,
        *,
        counts: CountOf = lambda zones: None,
        on_change: Callable[[set[str]], None] = lambda alert_ids: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        problems: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.channels = list(channels)
        self.log = DeliveryLog(store)
        self.store = store
        self.sender = sender
        self.renderer = Renderer(config)
        self.problems = dict(problems or {})  # channel id -> why it could not be set up
        self._counts = counts
        self._on_change = on_change
        self._clock = clock
        self._wall = wall_clock
        self._windows = {c.id: RateWindow(c.config.max_per_minute) for c in self.channels}
        self._lock = threading.Lock()
        self._health = {c.id: ChannelHealth(c.kind, c.config.audience) for c in self.channels}
        self._deadlines: dict[str, float] = {}
        self._seen: dict[str, tuple[object, ...]] = {}  # alert id -> what was planned from
        self._secrets = {c.id: c.secrets() for c in self.channels}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._job_ids = itertools.count(1)  # a late answer can never pass for a retry's
        # Row updates the store refused (a full disk, a lock), in order, until it takes writes
        # again. Only the worker's thread changes it.
        self._unrecorded: list[_Kept] = []
        self._thread = threading.Thread(target=self._run, name="delivery", daemon=True)
        self.heartbeat = clock()
        self.stall_s = (
            STALL_MARGIN_S + GRACE_S + max((c.config.timeout_s for c in self.channels), default=0.0)
        )
        self._ended: str | None = None  # why the thread ended, where it did

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self.channels:
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        # The sender first: it ends a send in flight at once (a receiver that never answers
        # would hold the thread for the channel's timeout_s and the sender's grace).
        self.sender.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # shown by status(), not only in the log
            self._ended = f"{type(exc).__name__}: {exc}"
            log.critical("the delivery worker ended: %s", self._ended, exc_info=True)

    def _loop(self) -> None:
        # The sender process starts now, not with the first alert (it loads apprise); inside
        # the loop's try, so that a start that fails (EMFILE) is tried again, not fatal.
        warm = getattr(self.sender, "warm", None)
        failures = 0
        while not self._stop.is_set():
            busy = False
            try:
                if warm is not None:
                    warm()
                    warm = None
                busy = self.cycle()
                failures = 0
            except Exception:
                # A locked database, a bad row or no file descriptor left must not end
                # deliveries for good.
                failures += 1
                wait = min(RESTART_MAX_S, 2.0 ** (failures - 1))
                log.exception("delivery cycle failed; retrying in %.0f s", wait)
                self._stop.wait(wait)
            self.heartbeat = self._clock()
            if not busy:
                self._wake.wait(TICK_S)
                self._wake.clear()

    def stalled(self) -> str | None:
        """Why the worker is not turning (its thread ended, or no heartbeat for stall_s, while
        it should run); None while it is."""
        if not self._thread.is_alive():
            if self._thread.ident is None or self._stop.is_set():
                return None  # not started yet, or stopped on purpose
            return f"the delivery worker ended ({self._ended or 'no reason known'})"
        quiet = self._clock() - self.heartbeat
        if quiet > self.stall_s:
            return f"the delivery worker has not turned for {quiet:.0f} s"
        return None

    # --- one pass ------------------------------------------------------------------------------

    def cycle(self) -> bool:
        """Plan what is new, then send at most one message per channel; True when something
        was sent (there may be more: call again at once)."""
        if not self.log.ensure():
            return False
        self._flush()
        # Planned again once the store takes writes; what is planned already still goes out.
        with contextlib.suppress(StoreWriteError):
            self.plan()
        busy = False
        for channel in self.channels:
            if self._stop.is_set():
                break
            self.heartbeat = self._clock()  # each channel may take one attempt's timeout
            try:
                busy |= self._serve(channel)
            except StoreWriteError:
                return False
        return busy

    # --- updates the store refused ---------------------------------------------------------------

    def _write(self, channel_id: str, rows: Sequence[Delivery], **values: object) -> bool:
        """Update the rows `ids` now, or keep the update until the store takes writes (behind
        any kept before it, so the rows end as they were decided). True when it is written.

        Kept, not dropped: a row sent but still `waiting` in the store would be sent again on
        every tick (the rows a kept update settles are skipped meanwhile: `_settled`). What is
        kept is lost if the process dies first; then the row is sent again after the restart,
        and its delivery id lets the receiver drop the copy."""
        ids = tuple(r.delivery_id for r in rows)
        if not self._unrecorded:
            try:
                self.log.update(ids, **values)
                return True
            except StoreWriteError as exc:
                log.error("delivery records kept in memory until the store takes writes again"
                          " (%s); what was sent is not sent again", exc)  # fmt: skip
        kept = _Kept(channel_id, ids, frozenset(r.alert_id for r in rows), dict(values))
        with self._lock:  # status() counts them
            self._unrecorded.append(kept)
        return False

    def _flush(self) -> None:
        """Write the kept updates, in order, until the store refuses one."""
        written: set[str] = set()
        while self._unrecorded:
            kept = self._unrecorded[0]
            try:
                self.log.update(kept.ids, **kept.values)
            except StoreWriteError:
                break
            with self._lock:
                del self._unrecorded[0]
            written |= kept.alert_ids
        if written and not self._unrecorded:
            log.warning("the delivery records kept in memory are in the store")
        if written:
            self._on_change(written)

    def _settled(self) -> dict[str, DeliveryState]:
        """Rows whose final state is only kept in memory so far."""
        settled: dict[str, DeliveryState] = {}
        for kept in self._unrecorded:
            state = kept.values.get("state")
            for did in kept.ids:
                if state in ("sent", "failed", "expired"):
                    settled[did] = state
                elif state in OPEN_STATES:
                    settled.pop(did, None)
        return settled

    def plan(self) -> int:
        """Add a row for each event a channel is sent and has not been planned; returns how many."""
        if not self.channels:
            return 0
        now = self._wall()
        longest = max(c.config.expire_after_s for c in self.channels)
        ids = self.log.candidates(now - timedelta(seconds=longest))
        alerts = [a for a in (self.store.alert(i) for i in ids) if a is not None]
        changed = [a for a in alerts if self._seen.get(a.alert_id) != _fingerprint(a)]
        self._seen = {a.alert_id: self._seen.get(a.alert_id, ()) for a in alerts}
        if not changed:
            return 0
        planned = self.log.planned([a.alert_id for a in changed])
        rows: list[tuple[Any, ...]] = []
        born = self._clock()
        for alert in changed:
            for channel in self.channels:
                for event, number, at in events_of(alert, channel.config):
                    did = delivery_id(alert.alert_id, event, number, channel.id)
                    age = (now - at).total_seconds()
                    if did in planned or age > channel.config.expire_after_s:
                        continue
                    message = self.renderer.render(
                        channel, alert, event, number, at, self._count(alert, event)
                    )
                    payload = {**message.payload, "delivery_id": did}
                    rows.append((
                        did, alert.alert_id, channel.id, event, number, message.title,
                        message.body, webhook_body(payload).decode(), _iso(at), "waiting",
                    ))  # fmt: skip
                    self._deadlines[did] = born + channel.config.expire_after_s - max(age, 0.0)
        if rows:
            self.log.insert(rows)
            self._on_change({r[1] for r in rows})
        for alert in changed:
            self._seen[alert.alert_id] = _fingerprint(alert)
        return len(rows)

    def _count(self, alert: AlertRecord, event: str) -> float | None:
        if event == "raised":
            return alert.count_at_raise
        if event == "accepted":
            return alert.count_at_ack
        if event == "cleared":
            return alert.count_at_clear
        return self._counts(alert.zones)

    def _serve(self, channel: Channel) -> bool:
        settled = self._settled()
        rows = [r for r in self.log.open_rows(channel.id) if r.delivery_id not in settled]
        rows = self._current(channel, rows, settled)
        if not rows:
            return False
        health = self._health[channel.id]
        now = self._clock()
        if now < health.retry_at:
            return False
        window = self._windows[channel.id]
        free = window.free(now)
        if free == 0:
            held = [r.delivery_id for r in rows if r.state != "rate_limited"]
            if held:
                try:
                    self.log.update(held, state="rate_limited")
                except StoreWriteError:
                    return False  # only what the lifecycle shows: they wait either way
                self._on_change({r.alert_id for r in rows})
            return False
        batch = rows[:1] if free > 1 or len(rows) == 1 else rows[:MAX_MERGED]
        # The attempt is in the store before the message leaves (a crash in between leaves a
        # trace), or kept with the rest when the store refuses it.
        self._write(channel.id, batch, attempts=1, last_attempt_at=self._wall())
        outcome = self._send(channel, batch)
        self._record(channel, batch, outcome, now)
        return outcome.ok

    def _current(
        self, channel: Channel, rows: list[Delivery], settled: Mapping[str, DeliveryState]
    ) -> list[Delivery]:
        """The rows still worth sending; the others are given up (expired, or failed when they
        were tried), in order, so that a follow-up sees its opening's fate (`settled`: final
        states not in the store yet)."""
        if not rows:
            return rows
        now, wall = self._clock(), self._wall()
        keep: list[Delivery] = []
        given_up: dict[str, DeliveryState] = dict(settled)
        alerts: dict[str, AlertRecord | None] = {}
        for row in rows:
            if row.alert_id not in alerts:
                alerts[row.alert_id] = self.store.alert(row.alert_id)
            siblings = [
                s if s.delivery_id not in given_up else _with_state(s, given_up[s.delivery_id])
                for s in self.log.of_alert(row.alert_id, channel.id)
            ]
            reason = stale_reason(row, alerts[row.alert_id], siblings, self.renderer.local)
            if reason is None and now >= self._deadline(row, channel, now, wall):
                reason = f"older than expire_after_s ({channel.config.expire_after_s:g} s)"
            if reason is None:
                keep.append(row)
                continue
            state: DeliveryState = "failed" if row.attempts else "expired"
            text = reason if not row.attempts else f"gave up ({reason}): {row.last_error}"
            self._write(channel.id, [row], state=state, last_error=text, done_at=wall)
            given_up[row.delivery_id] = state
            with self._lock:
                health = self._health[channel.id]
                if state == "failed":
                    health.failed += 1
                else:
                    health.expired += 1
            log.info("channel %s: %s not sent: %s", channel.id, row.delivery_id, text)
            self._deadlines.pop(row.delivery_id, None)
            self._on_change({row.alert_id})
        return keep

    def _deadline(self, row: Delivery, channel: Channel, now: float, wall: datetime) -> float:
        """When `row` expires, on the monotonic clock. One planned by an earlier process has only
        its wall-clock age: taken once, and never more than expire_after_s (a clock set back
        adds no time; one stepped forward does not drop everything at once)."""
        deadline = self._deadlines.get(row.delivery_id)
        if deadline is None:
            full = channel.config.expire_after_s
            age = (wall - row.created_at).total_seconds()
            deadline = now + min(max(full - age, 0.0), full)
            self._deadlines[row.delivery_id] = deadline
        return deadline

    def _send(self, channel: Channel, batch: Sequence[Delivery]) -> Outcome:
        if len(batch) == 1:
            title, body, payload = batch[0].title, batch[0].body, batch[0].payload
        else:
            title, body = self.renderer.digest(channel.language, [(r.title, r.body) for r in batch])
            payload = webhook_body({
                "event": "digest", "title": title, "text": body,
                "deliveries": [json.loads(r.payload) for r in batch],
            }).decode()  # fmt: skip
        job = Job(
            id=next(self._job_ids), kind=channel.kind, url=channel.url.value, title=title, body=body,
            timeout_s=channel.config.timeout_s, api_base=channel.config.api_base,
            webhook_body=payload if channel.kind == "webhook" else None,
            webhook_secret=channel.signing_secret.value if channel.signing_secret else None,
            delivery_id=batch[0].delivery_id if len(batch) == 1 else f"digest:{batch[0].delivery_id}",
        )  # fmt: skip
        try:
            return self.sender.send(job)
        except Exception as exc:  # a sender bug must not stop the other channels
            log.exception("channel %s: sender failed", channel.id)
            return Outcome(False, f"sender error: {type(exc).__name__}")

    def _record(
        self, channel: Channel, batch: Sequence[Delivery], outcome: Outcome, now: float
    ) -> None:
        wall = self._wall()
        health = self._health[channel.id]
        if outcome.ok:
            self._windows[channel.id].note(now)
            self._write(
                channel.id, batch, state="sent", sent_at=wall, done_at=wall, merged=len(batch),
                last_error=None,
            )  # fmt: skip
            with self._lock:
                if health.failures:
                    log.warning("channel %s works again after %d failed attempts",
                                channel.id, health.failures)  # fmt: skip
                health.failures, health.failing_since, health.retry_at = 0, None, 0.0
                health.sent += len(batch)
                health.messages += 1
                health.last_sent_at = wall
            for r in batch:
                self._deadlines.pop(r.delivery_id, None)
            merged = f" ({len(batch)} merged: rate limit)" if len(batch) > 1 else ""
            log.info("channel %s: sent %s%s", channel.id, batch[0].delivery_id, merged)
        else:
            error = shorten(
                redact(outcome.error or "not delivered", self._secrets[channel.id]), 300
            )
            self._write(channel.id, batch, state="waiting", last_error=error)
            with self._lock:
                health.failures += 1
                wait = backoff_s(health.failures, outcome)
                health.retry_at = now + wait
                health.last_error = error
                if health.failing_since is None:
                    health.failing_since = wall
                    log.warning("channel %s: delivery failed (%s); retrying, backing off up to %.0f s",
                                channel.id, error, BACKOFF_MAX_S)  # fmt: skip
        self._on_change({r.alert_id for r in batch})

    # --- what health and metrics show -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Per channel, for the device state file (health, metrics, the status line)."""
        counts = self.log.counts() if self.log.ready else {}
        stalled = self.stalled()
        with self._lock:
            unrecorded = {
                cid: len({i for k in self._unrecorded if k.channel == cid for i in k.ids})
                for cid in self._health
            }
            channels = {
                cid: {
                    "kind": h.kind,
                    "audience": h.audience,
                    "state": h.state,
                    "since": None if h.failing_since is None else h.failing_since.isoformat(),
                    "last_error": h.last_error if h.failures else None,
                    "failures": h.failures,
                    "waiting": counts.get((cid, "waiting"), 0),
                    "rate_limited": counts.get((cid, "rate_limited"), 0),
                    # sent or given up, not in the store yet (it refuses writes)
                    "unrecorded": unrecorded[cid],
                    "sent": h.sent,
                    "failed": h.failed,
                    "expired": h.expired,
                    "last_sent_at": None if h.last_sent_at is None else h.last_sent_at.isoformat(),
                    "worker": "running",
                }
                for cid, h in self._health.items()
            }
        if stalled is not None:
            # Nothing of these channels is sent while the worker is stalled: each is failing
            # (the state health, metrics and the status line know), the worker says why.
            since = self._wall() - timedelta(seconds=max(0.0, self._clock() - self.heartbeat))
            for channel in channels.values():
                channel.update(
                    state="failing", worker="stalled", last_error=stalled,
                    since=channel["since"] or since.isoformat(),
                )  # fmt: skip
        kinds = {c.id: c.kind for c in self.config.alerts.channels}
        for cid, problem in self.problems.items():
            channels[cid] = {"kind": kinds.get(cid), "state": "off", "last_error": problem}
        return channels


@dataclass(frozen=True)
class _Kept:
    """An update of `deliveries` rows that the store refused, kept until it takes writes."""

    channel: str
    ids: tuple[str, ...]
    alert_ids: frozenset[str]
    values: dict[str, object]


def _fingerprint(alert: AlertRecord) -> tuple[object, ...]:
    return (alert.escalations, alert.acknowledged_at, alert.pass_done_at, alert.cleared_at)


def _with_state(delivery: Delivery, state: DeliveryState) -> Delivery:
    return replace(delivery, state=state)


def build_worker(
    config: LobbyConfig,
    store: Store,
    counts: CountOf,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> DeliveryWorker | None:
    """The worker for the configured channels (None when there are none). A channel whose URL
    or secret cannot be read is left out, loudly (`lobbywatch run` refuses to start on it
    first: edge/tools/preflight.py), and shows in health."""
    if not config.alerts.channels:
        return None
    channels, problems = resolve_all(config, os.environ if environ is None else environ)
    for problem in problems.values():
        log.error("%s: the channel is off", problem)
    sender = SenderProcess([s for c in channels for s in c.secrets()])

    def republish(alert_ids: set[str]) -> None:
        # The alerts' states list their deliveries: a new version sends them again (MQTT,
        # streams). Best effort: the delivery itself is recorded either way.
        try:
            store.touch_alerts(alert_ids)
        except StoreWriteError as exc:
            log.warning("deliveries changed but the alert states are not resent: %s", exc)

    return DeliveryWorker(
        config, store, channels, sender, counts=counts, on_change=republish, clock=clock,
        wall_clock=wall_clock, problems=problems,
    )  # fmt: skip
