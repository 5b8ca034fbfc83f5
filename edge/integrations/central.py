"""The device's feed to the head office (docs/central.md, "Device feed"), with `central.enabled`.

Four kinds of message under `<prefix>/<site>/history/`, QoS 1, not retained, through the
device's one MqttLink; the local Mosquitto bridges them to the centre, which stores each on its
natural key, so a message sent twice is stored once:

- `history/intervals`: each closed `central.bucket`, every configured zone, built with the same
  code as the device's `GET /v1/occupancy/history` (edge/storage/aggregate.py);
- `history/queue`: the first queue snapshot of each UTC minute;
- `history/alerts`: the state of each alert that changed (as on `alerts/<id>/state`);
- `history/cameras`: a camera's status when it changes, and every camera's on each connect.

Intervals and alerts keep a cursor in the store's `meta` table (the end of the last bucket, the
alert version), so a restart or an outage sends what was missed (intervals at most
`central.catch_up_days` back). With `central.receipts` (the default) a cursor advances only on
the centre's receipts (`<prefix>/<site>/central/receipts`, after its database committed): the
local broker's PUBACK, and the bridge's, do not prove the centre has a message (NATS acks an
MQTT publish before JetStream stored it). `Outstanding` keeps what is waiting for its receipt.
Without receipts (a centre that sends none) a cursor advances on the local PUBACK. Queue
minutes have no history in the store: with receipts the feed keeps the last day's in memory
(`QueueMinutes`) until their receipts come, and sends again those receipts show lost; a restart
forgets them. Camera statuses are handed to paho, which keeps them through a broker outage but
not a restart: a camera's status is the branch's present, and every connect sends it again.

The work runs in its own thread: reading a day of history after an outage must never hold up
the notifier's alert loop. Imports edge's config, store, link and alert state; nothing of api/.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from paho.mqtt.client import MQTTMessageInfo
from paho.mqtt.enums import MQTTErrorCode

from edge.alerts.delivery import lifecycle
from edge.alerts.state import SiteNames, build_state
from edge.config import LobbyConfig
from edge.logsafe import LogThrottle, shorten
from edge.mqtt import MqttLink
from edge.storage.aggregate import Buckets, Int64Array, aggregate, coverage, fetch_intervals
from edge.store import Store, StoreWriteError
from edge.types import CameraStatus

log = logging.getLogger("lobbywatch.central")

#: Payload format version of every feed message.
VERSION = 1
FEED_TICK_S = 1.0
#: Seconds after a bucket's last stored interval closes (end + storage.interval_s) before the
#: bucket counts as closed: a worker writes an interval with the first frame after it ends.
SETTLE_S = 5.0
#: Buckets (and alert states) handed to the link in one tick while catching up: a week of
#: 15-minute buckets (672) goes out in about 14 s without flooding paho's queue at once.
MAX_PER_TICK = 50
#: Unacknowledged (or, with receipts, unreceipted) messages at most; no more are sent until
#: PUBACKs (receipts) come back. While the centre is away the device's store is the queue.
MAX_IN_FLIGHT = 200
#: Connected this long without the PUBACK of the oldest message: send again from the cursor
#: (the centre stores a copy once).
RESEND_AFTER_S = 60.0
BUCKET_SECONDS = {"1m": 60, "15m": 900}
#: `meta` keys of the two cursors: UTC seconds of the end of the last acknowledged bucket, and
#: the alert version of the last acknowledged alert state.
INTERVALS_CURSOR = "central_intervals_until"
ALERTS_CURSOR = "central_alerts_version"
#: A receipt larger than this is not the centre's (a batch holds at most a few hundred keys).
MAX_RECEIPT_BYTES = 64 * 1024
#: Queue minutes kept in memory for their receipts: a day's (about 300 B each). An older one
#: still without its receipt is forgotten (counted, warned).
MAX_QUEUE_KEPT = 1440


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso_z(at: datetime | int | float) -> str:
    """UTC ISO 8601 with a Z suffix (seconds, as the API's bucket edges; finer when given)."""
    if not isinstance(at, datetime):
        at = datetime.fromtimestamp(at, timezone.utc)
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class FeedZone:
    """A configured zone as each interval names it."""

    zone: str
    role: str
    camera: str

    @classmethod
    def all_of(cls, config: LobbyConfig) -> list[FeedZone]:
        return [cls(z.id, z.role, c.id) for c in config.cameras for z in c.zones]


def first_bucket(cursor: int | None, now: float, size: int, catch_up_s: float) -> int:
    """Start (UTC seconds) of the first bucket to send: the cursor's bucket boundary (rounded
    up, for a cursor of another bucket size), or the current bucket without a cursor (a first
    enable sends no old history), never earlier than `catch_up_s` before now."""
    current = math.floor(now / size) * size
    if cursor is None:
        return current
    oldest = math.floor((now - catch_up_s) / size) * size
    return max(math.ceil(cursor / size) * size, oldest)


def last_closed_end(now: float, size: int, interval_s: int) -> int:
    """End (UTC seconds) of the latest bucket whose last stored interval is in."""
    return math.floor((now - interval_s - SETTLE_S) / size) * size


def interval_payloads(
    site: str,
    bucket: str,
    zones: Sequence[FeedZone],
    per_zone: Sequence[Buckets],
    edges: Int64Array,
    closed_at: str,
) -> list[dict[str, Any]]:
    """One `history/intervals` payload per bucket between `edges`: the API's point of each zone
    (mean, max, p90 null where unknown, never 0; coverage 0..1; frames counted)."""
    columns = [
        (
            _nullable(b.mean),
            _nullable(b.max),
            _nullable(b.p90),
            coverage(b, edges).tolist(),
            b.samples.tolist(),
        )
        for b in per_zone
    ]
    payloads = []
    for i in range(len(edges) - 1):
        payloads.append({
            "v": VERSION,
            "site": site,
            "bucket": bucket,
            "start": iso_z(int(edges[i])),
            "end": iso_z(int(edges[i + 1])),
            "closed_at": closed_at,
            "zones": [
                {
                    "zone": zone.zone, "role": zone.role, "camera": zone.camera,
                    "mean": mean[i], "max": peak[i], "p90": p90[i],
                    "coverage": cover[i], "samples": samples[i],
                }
                for zone, (mean, peak, p90, cover, samples) in zip(zones, columns, strict=True)
            ],
        })  # fmt: skip
    return payloads


def queue_payload(site: str, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The `history/queue` payload from the retained queue JSON (docs/mqtt.md "Queue")."""
    wait = snapshot.get("wait") or {}
    at = _parse_utc(str(snapshot["at"]))
    return {
        "v": VERSION,
        "site": site,
        "minute": iso_z(at.replace(second=0, microsecond=0)),
        "at": snapshot["at"],
        "wait_minutes": wait.get("minutes"),
        "low_minutes": wait.get("low_minutes"),
        "high_minutes": wait.get("high_minutes"),
        "confidence": wait.get("confidence"),
        "method": wait.get("method"),
        "line_count": wait.get("line_count"),
    }


# --- receipts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """A receipt from the centre: the keys of what one committed batch held for this site
    (intervals: bucket ends, UTC seconds; alerts: state versions; queue: minutes, UTC
    seconds), stored now or before."""

    intervals: tuple[int, ...] = ()
    alerts: tuple[int, ...] = ()
    queue: tuple[int, ...] = ()


def parse_receipt(payload: bytes, site: str) -> Receipt:
    """The receipt in `payload` (docs/central.md "Device feed"); ValueError saying why it is not
    one (too large, not JSON, another version or site, keys not integers). Camera keys are not
    read: a camera's status keeps no cursor."""
    if len(payload) > MAX_RECEIPT_BYTES:
        raise ValueError(f"{len(payload)} bytes, more than {MAX_RECEIPT_BYTES}")
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if document.get("v") != VERSION:
        raise ValueError(f"version {shorten(repr(document.get('v')))}, not {VERSION}")
    if document.get("site") != site:
        raise ValueError(f"site {shorten(repr(document.get('site')))}, not {site!r}")
    keys = {}
    for kind in ("intervals", "alerts", "queue"):
        values = document.get(kind, [])
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values
        ):
            raise ValueError(f"{kind} is not a list of integers")
        keys[kind] = tuple(values)
    return Receipt(keys["intervals"], keys["alerts"], keys["queue"])


@dataclass
class _Sent:
    key: int
    at: float  # monotonic, when it was handed over
    receipted: bool = False
    heard: float | None = None  # monotonic, the first receipt (of anything) after it was sent


@dataclass(frozen=True)
class Settled:
    """What `Outstanding.settle` found. `cursor`: the key to persist now (None: it did not
    move). `lost`: the key judged lost (None: none); the window was then cleared, so send
    again from the persisted cursor."""

    cursor: int | None
    lost: int | None

    @property
    def resend(self) -> bool:
        return self.lost is not None


class Outstanding:
    """Keys sent to the centre and not yet receipted, in sending order. Pure (no store, no
    broker), one per cursor; times are monotonic seconds, given by the caller.

    - `sent(key, at)`: a message with `key` was handed over at `at`; keys rise in sending order
      (a bucket's end, an alert version), ValueError otherwise.
    - `receipted(keys, at)`: a receipt arrived at `at` listing `keys` of this kind (possibly
      none, or none of ours: a duplicate's). Any receipt also says the path to the centre works.
    - `settle() -> Settled`: the cursor to persist, the highest key that and every key sent
      before it are receipted; and whether the oldest outstanding key is lost: the centre has
      sent receipts for `resend_after_s` since it was sent (its first receipt after the key
      went, and a later one that much after it), none for this key. Then the window is cleared
      and the caller sends again from its cursor (the centre stores a copy once). Measuring
      from the first receipt after sending, not from sending, keeps a centre that comes back
      and works through the bridge's backlog (receipts for what was queued before) from
      triggering a resend of everything outstanding. No receipts at all (centre or bridge
      down): never lost; the caller stops sending at its limit (`len`) and waits.
    - `clear()`: forget every key (a message the local broker never took: send again).
    - `len()`, `last` (the newest key sent), `waiting` (keys still without a receipt).
    """

    def __init__(self, resend_after_s: float) -> None:
        self.resend_after_s = resend_after_s
        self._window: deque[_Sent] = deque()
        self._by_key: dict[int, _Sent] = {}
        self._last_receipt: float | None = None

    def __len__(self) -> int:
        return len(self._window)

    @property
    def last(self) -> int | None:
        """The newest key sent and outstanding (sending goes on after it), None when empty."""
        return self._window[-1].key if self._window else None

    @property
    def waiting(self) -> list[int]:
        """The keys outstanding without their receipt yet, in sending order."""
        return [entry.key for entry in self._window if not entry.receipted]

    def sent(self, key: int, at: float) -> None:
        if self._window and key <= self._window[-1].key:
            raise ValueError(f"key {key} sent after {self._window[-1].key}: keys must rise")
        entry = _Sent(key, at)
        self._window.append(entry)
        self._by_key[key] = entry

    def receipted(self, keys: Iterable[int], at: float) -> None:
        self._last_receipt = at
        # Those not heard of yet are the newest: walk back from the end until one was.
        for entry in reversed(self._window):
            if entry.heard is not None:
                break
            if entry.at <= at:
                entry.heard = at
        for key in keys:
            receipted = self._by_key.get(key)
            if receipted is not None:
                receipted.receipted = True

    def settle(self) -> Settled:
        cursor = None
        while self._window and self._window[0].receipted:
            cursor = self._window.popleft().key
            del self._by_key[cursor]
        oldest = self._window[0] if self._window else None
        if (
            oldest is not None
            and oldest.heard is not None
            and self._last_receipt is not None
            and self._last_receipt - oldest.heard >= self.resend_after_s
        ):
            self.clear()
            return Settled(cursor, oldest.key)
        return Settled(cursor, None)

    def clear(self) -> None:
        self._window.clear()
        self._by_key.clear()

    def forget_oldest(self) -> int | None:
        """Stop waiting for the oldest key (a bounded window); its key, None when empty."""
        if not self._window:
            return None
        key = self._window.popleft().key
        del self._by_key[key]
        return key


class QueueMinutes:
    """The queue minutes sent and not yet receipted, with their payloads: the store keeps no
    history of them, so this is what is sent again. Pure (times given by the caller, no lock:
    the feed holds its own); at most `kept` minutes, the oldest forgotten beyond.

    - `sent(key, payload, at)`: a minute (UTC seconds) was handed over; False when its key
      does not rise (the clock stepped back): it is then not kept.
    - `receipted(keys, at)`, as Outstanding's.
    - `settle() -> list[(key, payload)]`: forget the receipted; when the centre evidently never
      got the oldest (Outstanding's rule), the minutes still without receipt, oldest first,
      to hand over again (and `sent` again by the caller).
    """

    def __init__(self, resend_after_s: float, kept: int = MAX_QUEUE_KEPT) -> None:
        self.outstanding = Outstanding(resend_after_s)
        self.kept = kept
        self.payloads: dict[int, dict[str, Any]] = {}
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self.payloads)

    def sent(self, key: int, payload: dict[str, Any], at: float) -> bool:
        last = self.outstanding.last
        if last is not None and key <= last:
            return False
        self.outstanding.sent(key, at)
        self.payloads[key] = payload
        while len(self.outstanding) > self.kept:
            oldest = self.outstanding.forget_oldest()
            if oldest is not None and self.payloads.pop(oldest, None) is not None:
                self.forgotten += 1
        return True

    def receipted(self, keys: Iterable[int], at: float) -> None:
        self.outstanding.receipted(keys, at)

    def settle(self) -> list[tuple[int, dict[str, Any]]]:
        waiting = set(self.outstanding.waiting)
        settled = self.outstanding.settle()
        if settled.cursor is not None:
            for key in [k for k in self.payloads if k <= settled.cursor]:
                del self.payloads[key]
        if not settled.resend:
            return []
        again = [(k, self.payloads[k]) for k in sorted(self.payloads) if k in waiting]
        self.payloads.clear()  # the caller sends `again` anew; the receipted ones are done
        return again


# --- cursors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flight:
    """A message handed to paho: its cursor value once acknowledged, and when it was sent."""

    key: int
    info: MQTTMessageInfo
    sent_at: float  # monotonic


class _Cursor:
    """A cursor kept in the store's meta table, advanced in sending order: on the centre's
    receipts with `outstanding`, else on the local broker's PUBACK. `flights` (messages paho
    holds without PUBACK) serve both: a message paho lost is sent again from the cursor."""

    def __init__(self, store: Store, key: str, outstanding: Outstanding | None = None) -> None:
        self.store = store
        self.key = key
        stored = store.get_meta(key)
        self.value: int | None = None if stored is None else int(stored)
        self.flights: deque[_Flight] = deque()
        self.outstanding = outstanding

    def set(self, value: int) -> None:
        self.value = value
        # A failed write keeps it in memory; the next acknowledgement writes it (the store's
        # condition says why it failed).
        with contextlib.suppress(StoreWriteError):
            self.store.set_meta(self.key, str(value))

    @property
    def next(self) -> int | None:
        """Where sending goes on: after the last message in flight (outstanding), else after
        the cursor."""
        if self.outstanding is not None:
            last = self.outstanding.last
        else:
            last = self.flights[-1].key if self.flights else None
        return self.value if last is None else last

    @property
    def in_flight(self) -> int:
        """Messages that count against MAX_IN_FLIGHT: unreceipted, or unacknowledged."""
        return len(self.outstanding) if self.outstanding is not None else len(self.flights)

    def sent(self, key: int, info: MQTTMessageInfo, now: float) -> None:
        self.flights.append(_Flight(key, info, now))
        if self.outstanding is not None:
            self.outstanding.sent(key, now)

    def receipted(self, keys: Iterable[int], at: float) -> None:
        if self.outstanding is not None:
            self.outstanding.receipted(keys, at)

    def settle(self, now: float, connected_since: float | None) -> None:
        """Advance over the messages acknowledged (receipted) in order; forget what is in
        flight (so it is sent again) when paho lost a message, the oldest went unacknowledged
        too long, or (receipts) the centre evidently never got the oldest."""
        acked = None
        lost = False
        while self.flights:
            flight = self.flights[0]
            try:
                published = flight.info.is_published()
            except (RuntimeError, ValueError):  # paho did not take it (not connected, full)
                lost = True
                break
            if published:
                acked = flight.key
                self.flights.popleft()
                continue
            if connected_since is not None and now - max(flight.sent_at, connected_since) > (
                RESEND_AFTER_S
            ):
                log.warning("no PUBACK for %s %d within %.0f s: sending again from the cursor",
                            self.key, flight.key, RESEND_AFTER_S)  # fmt: skip
                lost = True
            break
        if self.outstanding is None:
            if lost:
                self.flights.clear()
            if acked is not None:
                self.set(acked)
            return
        settled = self.outstanding.settle()
        if settled.cursor is not None:
            self.set(settled.cursor)
        if settled.lost is not None:
            log.warning("no receipt from the centre for %s %d though it sent receipts for "
                        "%.0f s since: sending again from %s", self.key, settled.lost,
                        self.outstanding.resend_after_s, self.value)  # fmt: skip
        if lost or settled.resend:
            self.flights.clear()
            self.outstanding.clear()


class CentralFeed:
    """Publishes the head-office feed through `link`; `tick` (its thread's, or a test's) sends
    intervals and alert states, `on_queue` and `on_camera_status` are the state publisher's
    hooks (the notifier's and the camera workers' threads)."""

    def __init__(
        self,
        config: LobbyConfig,
        store: Store,
        link: MqttLink,
        count_now: Callable[[Sequence[str]], float | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.site = config.site.id
        self.store = store
        self.link = link
        self.base = f"{link.topics.base}/history"
        self.bucket = config.central.bucket
        self.size = BUCKET_SECONDS[self.bucket]
        self.catch_up_s = config.central.catch_up_days * 86400
        self.interval_s = config.storage.interval_s
        self.zones = FeedZone.all_of(config)
        self.names = SiteNames.of(config)
        self._count_now = count_now
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self.receipts = config.central.receipts
        resend_after_s = config.central.resend_after_s
        self.intervals = _Cursor(
            store, INTERVALS_CURSOR, Outstanding(resend_after_s) if self.receipts else None
        )
        self.alerts = _Cursor(
            store, ALERTS_CURSOR, Outstanding(resend_after_s) if self.receipts else None
        )
        self.queue_minutes = QueueMinutes(resend_after_s) if self.receipts else None
        #: Receipts as they came (paho's thread), with their arrival time; read by tick.
        self._receipts: queue.SimpleQueue[tuple[Receipt, float]] = queue.SimpleQueue()
        self._bad_receipts = LogThrottle(log, clock=clock)
        if self.receipts:
            # Renewed on every (re)connect with the link's other subscriptions; the feed is
            # built before the link starts (edge/service.py).
            link.watch(f"{link.topics.base}/central/receipts", self._on_receipt)
        self._connections = 0  # the link's connect count last seen
        self._connected_since: float | None = None  # monotonic
        self._cameras: dict[str, tuple[CameraStatus, datetime]] = {}
        self._queue_minute: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="central-feed", daemon=True)

    def topic(self, kind: str) -> str:
        return f"{self.base}/{kind}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(FEED_TICK_S):
            try:
                self.tick()
            except Exception:  # a locked or broken store must not end the feed for good
                log.exception("central feed tick failed; retrying")

    def tick(self) -> None:
        """Check PUBACKs, republish camera statuses after a (re)connect, send what is due."""
        now = self._clock()
        connected = self.link.connected.is_set()
        if connected and self.link.connections != self._connections:
            self._connections = self.link.connections
            self._connected_since = now
            self._republish_cameras()
        elif not connected:
            self._connected_since = None
        self._take_receipts()
        self.intervals.settle(now, self._connected_since)
        self.alerts.settle(now, self._connected_since)
        self._settle_queue(now)
        if not connected:
            return  # sent on reconnect from the cursors; paho would only pile copies up
        self._send_intervals(now, self._wall().timestamp())
        self._send_alerts(now)

    def _on_receipt(self, _topic: str, payload: bytes, retained: bool) -> None:
        """A receipt from the centre (paho's thread): queued for the next tick."""
        try:
            if retained:
                raise ValueError("retained (a receipt is for the moment it is sent)")
            receipt = parse_receipt(payload, self.site)
        except ValueError as exc:
            self._bad_receipts.warning("receipt", "ignoring a receipt from the centre: %s", exc)
            return
        self._receipts.put((receipt, self._clock()))

    def _take_receipts(self) -> None:
        while True:
            try:
                receipt, at = self._receipts.get_nowait()
            except queue.Empty:
                return
            self.intervals.receipted(receipt.intervals, at)
            self.alerts.receipted(receipt.alerts, at)
            if self.queue_minutes is not None:
                with self._lock:
                    self.queue_minutes.receipted(receipt.queue, at)

    # --- intervals ------------------------------------------------------------------------

    def _send_intervals(self, now: float, wall_s: float) -> None:
        cursor = self.intervals
        if cursor.value is None:  # first enable: from the current bucket on
            cursor.set(first_bucket(None, wall_s, self.size, self.catch_up_s))
        if cursor.in_flight >= MAX_IN_FLIGHT or self.store.condition.memory_only:
            return  # history on memory is copied to the file first (Store.recover)
        start = cursor.next
        assert start is not None
        if not cursor.in_flight:
            start = first_bucket(start, wall_s, self.size, self.catch_up_s)
        stop = min(last_closed_end(wall_s, self.size, self.interval_s),
                   start + MAX_PER_TICK * self.size)  # fmt: skip
        if stop <= start:
            return
        edges = np.arange(start, stop + 1, self.size, dtype=np.int64)
        payloads = interval_payloads(
            self.site, self.bucket, self.zones, self._read(edges), edges, iso_z(self._wall())
        )
        for payload, end in zip(payloads, edges[1:].tolist(), strict=True):
            if not self._send(cursor, "intervals", payload, int(end), now):
                return

    def _read(self, edges: Int64Array) -> list[Buckets]:
        """Every zone's buckets between `edges`, from a read-only connection of its own (WAL:
        the workers' writes go on meanwhile)."""
        path = Path(self.store.path).resolve()
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            first, last = int(edges[0]), int(edges[-1])
            return [aggregate(fetch_intervals(db, z.zone, first, last), edges) for z in self.zones]
        finally:
            db.close()

    # --- alerts ---------------------------------------------------------------------------

    def _send_alerts(self, now: float) -> None:
        cursor = self.alerts
        latest = self.store.alerts_version()
        if cursor.value is None or (not cursor.in_flight and cursor.value > latest):
            # First enable: from now on. A cursor past the store's versions: another store
            # (replaced or lost), whose alerts are all new to the feed.
            cursor.set(latest if cursor.value is None else 0)
        if cursor.in_flight >= MAX_IN_FLIGHT:
            return
        since = cursor.next
        assert since is not None
        for record in self.store.alerts_changed_since(since, limit=MAX_PER_TICK):
            state = build_state(
                record,
                self.names,
                self._count_now(record.zones),
                lifecycle(self.store.query, record.alert_id, self.names),
            )
            payload = {"v": VERSION, "site": self.site, "state": state.as_dict()}
            if not self._send(cursor, "alerts", payload, record.version, now):
                return

    def _send(
        self, cursor: _Cursor, kind: str, payload: dict[str, Any], key: int, now: float
    ) -> bool:
        info = self.link.publish(self.topic(kind), _dumps(payload), qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False  # not connected after all: sent again from the cursor on reconnect
        cursor.sent(key, info, now)
        return True

    # --- queue and cameras (hooks of edge/state_publisher.py) ----------------------------

    def on_queue(self, payload: str) -> None:
        """A queue snapshot as published retained; the first of each UTC minute is sent."""
        try:
            message = queue_payload(self.site, json.loads(payload))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("queue snapshot not understood; not sent to the centre")
            return
        with self._lock:
            if message["minute"] == self._queue_minute:
                return
            if self._hand_over("queue", message):
                self._queue_minute = message["minute"]
                if self.queue_minutes is not None:
                    key = int(_parse_utc(message["minute"]).timestamp())
                    self.queue_minutes.sent(key, message, self._clock())

    def _settle_queue(self, now: float) -> None:
        """Forget the receipted queue minutes; hand over again those receipts show lost."""
        if self.queue_minutes is None:
            return
        with self._lock:
            forgotten = self.queue_minutes.forgotten
            again = self.queue_minutes.settle()
            if again:
                log.warning("no receipt from the centre for %d queue minute(s) though it sent "
                            "receipts for %.0f s since: sending them again", len(again),
                            self.queue_minutes.outstanding.resend_after_s)  # fmt: skip
            for key, message in again:
                if self._hand_over("queue", message):
                    self.queue_minutes.sent(key, message, now)
            if forgotten:
                log.warning("%d queue minute(s) kept a day without a receipt from the centre "
                            "were forgotten", forgotten)  # fmt: skip
                self.queue_minutes.forgotten = 0

    def on_camera_status(self, camera_id: str, status: CameraStatus) -> None:
        """A camera's status on a board update (every frame): sent when it changed."""
        with self._lock:
            known = self._cameras.get(camera_id)
            if known is not None and known[0] is status:
                return
            at = self._wall()
            self._cameras[camera_id] = (status, at)
            self._hand_over("cameras", self._camera_payload(camera_id, status, at))

    def _republish_cameras(self) -> None:
        with self._lock:
            for camera_id, (status, at) in self._cameras.items():
                self._hand_over("cameras", self._camera_payload(camera_id, status, at))

    def _camera_payload(self, camera_id: str, status: CameraStatus, at: datetime) -> dict[str, Any]:
        return {"v": VERSION, "site": self.site, "camera": camera_id, "status": status.value,
                "at": iso_z(at)}  # fmt: skip

    def _hand_over(self, kind: str, payload: dict[str, Any]) -> bool:
        """To paho, which keeps a QoS 1 message through a broker outage (NO_CONN: queued)."""
        rc = self.link.publish(self.topic(kind), _dumps(payload), qos=1).rc
        return rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _nullable(values: np.ndarray[Any, np.dtype[np.float64]]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def _parse_utc(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(f"time without offset: {text!r}")
    return at.astimezone(timezone.utc)
