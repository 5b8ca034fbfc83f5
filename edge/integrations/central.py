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
alert version), advanced only on the broker's PUBACK, so a restart or a local broker outage sends
what was missed (intervals at most `central.catch_up_days` back). Queue minutes and camera
statuses are handed to paho, which keeps them through a broker outage but not a restart: the
minute wait and a camera's status are the branch's present, and the next ones follow anyway.

The work runs in its own thread: reading a day of history after an outage must never hold up
the notifier's alert loop. Imports edge's config, store, link and alert state; nothing of api/.
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
from collections.abc import Callable, Sequence
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
#: Unacknowledged messages at most; no more are sent until PUBACKs come back.
MAX_IN_FLIGHT = 200
#: Connected this long without the PUBACK of the oldest message: send again from the cursor
#: (the centre stores a copy once).
RESEND_AFTER_S = 60.0
BUCKET_SECONDS = {"1m": 60, "15m": 900}
#: `meta` keys of the two cursors: UTC seconds of the end of the last acknowledged bucket, and
#: the alert version of the last acknowledged alert state.
INTERVALS_CURSOR = "central_intervals_until"
ALERTS_CURSOR = "central_alerts_version"


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


@dataclass(frozen=True)
class _Flight:
    """A message handed to paho: its cursor value once acknowledged, and when it was sent."""

    key: int
    info: MQTTMessageInfo
    sent_at: float  # monotonic


class _Cursor:
    """A cursor kept in the store's meta table, advanced on PUBACK in sending order."""

    def __init__(self, store: Store, key: str) -> None:
        self.store = store
        self.key = key
        stored = store.get_meta(key)
        self.value: int | None = None if stored is None else int(stored)
        self.flights: deque[_Flight] = deque()

    def set(self, value: int) -> None:
        self.value = value
        # A failed write keeps it in memory; the next acknowledgement writes it (the store's
        # condition says why it failed).
        with contextlib.suppress(StoreWriteError):
            self.store.set_meta(self.key, str(value))

    @property
    def next(self) -> int | None:
        """Where sending goes on: after the last message in flight, else after the cursor."""
        return self.flights[-1].key if self.flights else self.value

    def settle(self, now: float, connected_since: float | None) -> None:
        """Advance over the messages acknowledged in order; forget what is in flight (so it is
        sent again) when paho lost a message or the oldest went unacknowledged too long."""
        acked = None
        while self.flights:
            flight = self.flights[0]
            try:
                published = flight.info.is_published()
            except (RuntimeError, ValueError):  # paho did not take it (not connected, full)
                self.flights.clear()
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
                self.flights.clear()
            break
        if acked is not None:
            self.set(acked)


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
        self.intervals = _Cursor(store, INTERVALS_CURSOR)
        self.alerts = _Cursor(store, ALERTS_CURSOR)
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
        self.intervals.settle(now, self._connected_since)
        self.alerts.settle(now, self._connected_since)
        if not connected:
            return  # sent on reconnect from the cursors; paho would only pile copies up
        self._send_intervals(now, self._wall().timestamp())
        self._send_alerts(now)

    # --- intervals ------------------------------------------------------------------------

    def _send_intervals(self, now: float, wall_s: float) -> None:
        cursor = self.intervals
        if cursor.value is None:  # first enable: from the current bucket on
            cursor.set(first_bucket(None, wall_s, self.size, self.catch_up_s))
        if len(cursor.flights) >= MAX_IN_FLIGHT or self.store.condition.memory_only:
            return  # history on memory is copied to the file first (Store.recover)
        start = cursor.next
        assert start is not None
        if not cursor.flights:
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
        if cursor.value is None or (not cursor.flights and cursor.value > latest):
            # First enable: from now on. A cursor past the store's versions: another store
            # (replaced or lost), whose alerts are all new to the feed.
            cursor.set(latest if cursor.value is None else 0)
        if len(cursor.flights) >= MAX_IN_FLIGHT:
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
        cursor.flights.append(_Flight(key, info, now))
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
