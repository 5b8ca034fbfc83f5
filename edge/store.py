"""The on-disk store: occupancy history and live state in SQLite (WAL).

WAL lets the API read while the pipeline writes, from another process, without blocking either.
One connection per Store, guarded by a lock, so camera threads can share it. Rows merge on
conflict: a bucket cut short by a restart is completed by the next run, not duplicated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from edge.queueing.tickets import TicketEvent
from edge.types import CameraStatus, ZoneReading

log = logging.getLogger("lobbywatch.store")

SCHEMA_VERSION = 6

#: After a failed write the store counts as failing until no write has failed for this long: on
#: a full disk some writes still fit (a live row overwritten in place, a WAL page reused) while
#: history, which needs new pages, does not, and health must not flap between the two.
RECOVERY_S = 30.0
#: Space the store keeps beside it (`<store>.reserve`) and gives up when a full disk would stop
#: it opening: SQLite needs its -wal and -shm files to open at all, and a clean stop deletes
#: them, so without this a restart on a full disk could not read its own store.
RESERVE_BYTES = 512 * 1024
#: A queue snapshot (queue_live) older than this is not the lobby now: the API answers
#: "unknown" and an acknowledgement takes no wait from it. The edge writes one at least every
#: 5 s while it runs.
QUEUE_LIVE_MAX_AGE_S = 60.0

# Changes to an existing store, applied in order when a device updates: schema version they
# bring the store to, and the columns they add (table, column, definition); a table the old
# store lacked is created whole by the schema, so its columns are only added where missing. Additive only (new tables, new columns with a
# default), so a rolled-back older lobbywatch still runs on a newer store.
_MIGRATIONS: tuple[tuple[int, tuple[tuple[str, str, str], ...]], ...] = (
    (2, (("camera_live", "inference_ms", "REAL NOT NULL DEFAULT 0"),)),
    (3, (("outbox", "expired_at", "TEXT"),)),
    (4, (("alerts", "version", "INTEGER NOT NULL DEFAULT 0"),)),
    (5, (("alerts", "details", "TEXT"),)),
    (6, ()),  # hand_counts (docs/ui.md 6): a new table, made whole by _SCHEMA
)
#: Rows a migration derives from what the old store holds, run once its columns are there (by
#: the version it brings the store to). Schema 5's passes: every diversion alert of an older
#: store was one pass, its acknowledgement and effect in the alert's own columns, so reports
#: cover the time before passes were kept.
_BACKFILLS: dict[int, str] = {
    5: """
INSERT OR IGNORE INTO passes (alert_id, number, asked_at, accepted_at, accepted_by, done_at,
    done_by, count_before, count_after, measured_at)
SELECT alert_id, 1, raised_at, acknowledged_at, acknowledged_by, pass_done_at, pass_done_by,
    count_at_ack, effect_count, effect_measured_at
FROM alerts WHERE kind = 'diversion'
""",
}
#: Indexes on columns that a migration may have only just added (so not in _SCHEMA, which runs
#: before the migrations).
_INDEXES = "CREATE INDEX IF NOT EXISTS alerts_version ON alerts (version);"

DELIVERIES_SCHEMA = """
-- Alert messages for the bank's own channels (WeCom, DingTalk, e-mail..., edge/alerts/delivery.py):
-- one row per alert event and channel, planned from the alert's record, retried while waiting,
-- given up once no longer useful. Sent at least once, not exactly once: a crash between the
-- send and its record sends it again after the restart, and the delivery id is the receivers'
-- key to drop the copy. Its own table, created where missing
-- by the delivery worker too, so that it needs no schema version.
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL UNIQUE,   -- <alert_id>:<event>[:<n>]@<channel>, idempotency key
    alert_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,                -- raised | escalated | accepted | pass_done | cleared
    number INTEGER NOT NULL DEFAULT 0,  -- the escalation's number
    title TEXT NOT NULL,
    body TEXT NOT NULL,                 -- the message, in the channel's language
    payload TEXT NOT NULL,              -- JSON, the signed webhook's body
    created_at TEXT NOT NULL,
    state TEXT NOT NULL,                -- waiting | rate_limited | sent | failed | expired
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TEXT,
    last_error TEXT,
    sent_at TEXT,
    merged INTEGER NOT NULL DEFAULT 1,  -- messages carried by the one it went out in
    done_at TEXT                        -- sent, failed or expired
);
CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries (alert_id);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, seq);
"""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row per zone per interval. mean/max/min are of the smoothed occupancy over the frames
-- processed in the interval (NULL when none); seen_fraction is the share of the interval during
-- which the camera was online, so 0.4 means "60% of this interval is unknown", not "empty".
CREATE TABLE IF NOT EXISTS zone_history (
    zone_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,      -- UTC unix seconds, a multiple of interval_s
    interval_s INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    mean REAL,
    max REAL,
    min REAL,
    seen_fraction REAL NOT NULL,
    PRIMARY KEY (zone_id, bucket_start)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS zone_history_time ON zone_history (bucket_start);
CREATE TABLE IF NOT EXISTS zone_live (
    zone_id TEXT PRIMARY KEY,
    camera_id TEXT NOT NULL,
    count REAL,                         -- NULL = unknown (camera not online)
    raw INTEGER,
    at TEXT NOT NULL,                   -- UTC ISO 8601
    camera_status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS camera_live (
    camera_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    fps REAL NOT NULL,
    inference_ms REAL NOT NULL DEFAULT 0,   -- detector time of the latest frame
    at TEXT NOT NULL
);
-- Alert lifecycle: one row per alert, times in UTC ISO 8601. The status shown to people is
-- derived (cleared > pass_done > acknowledged > open) so no column can disagree with the times.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- diversion | camera
    zones TEXT NOT NULL,                -- JSON list of zone ids
    threshold REAL,
    since TEXT NOT NULL,                -- when the condition began
    raised_at TEXT NOT NULL,
    count_at_raise REAL,
    message TEXT NOT NULL,
    escalations INTEGER NOT NULL DEFAULT 0,
    last_notified_at TEXT NOT NULL,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    count_at_ack REAL,
    pass_done_at TEXT,
    pass_done_by TEXT,
    effect_after_s REAL NOT NULL,
    effect_count REAL,                  -- waiting count effect_after_s after pass_done
    effect_measured_at TEXT,
    cleared_at TEXT,
    count_at_clear REAL,
    -- The site's alert version at this alert's latest change: every change of any alert takes
    -- the next number (MAX + 1, under the write lock, whichever process writes), so the newest
    -- version is the site's and "what changed since n" is one indexed query (docs/handheld.md).
    version INTEGER NOT NULL DEFAULT 0,
    details TEXT                        -- JSON: advice, figures, metric, value of the latest ask
);
CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_at);
-- Diversion passes asked of the manager: the raise is pass 1, each re-ask the next. The alert's
-- own ack and effect columns are those of its latest pass; these rows keep every one. "Before"
-- is measured when the pass is accepted, "after" effect_after_s after it is done; NULL: unknown.
CREATE TABLE IF NOT EXISTS passes (
    alert_id TEXT NOT NULL,
    number INTEGER NOT NULL,            -- 1 for the raise
    asked_at TEXT NOT NULL,
    accepted_at TEXT,
    accepted_by TEXT,
    done_at TEXT,
    done_by TEXT,
    count_before REAL,                  -- waiting count (the alert's zones) at the accept
    wait_before_s REAL,                 -- estimated wait then
    count_after REAL,
    wait_after_s REAL,
    kiosks_in_use_after REAL,
    kiosks_capacity INTEGER,
    measured_at TEXT,
    PRIMARY KEY (alert_id, number)
);
CREATE INDEX IF NOT EXISTS passes_asked ON passes (asked_at);
-- Ticket machine events (edge/queueing/tickets.py), from MQTT and the API alike; the edge reads
-- them in seq order, so both paths are one feed.
CREATE TABLE IF NOT EXISTS ticket_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                 -- issued | called | served | cancelled
    ticket TEXT NOT NULL,
    at TEXT NOT NULL,                   -- UTC ISO 8601, the machine's time
    counter TEXT,
    service TEXT,
    received_at TEXT NOT NULL           -- UTC, when the store took it
);
-- The latest queue snapshot (the JSON published on <prefix>/<site>/queue), for the API.
CREATE TABLE IF NOT EXISTS queue_live (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    payload TEXT NOT NULL,
    at TEXT NOT NULL                    -- UTC, when the snapshot was taken
);
-- Messages that must reach the broker. Written in the same transaction as the state change
-- that caused them, marked sent only on PUBACK, replayed after a restart.
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,    -- idempotency key, e.g. <alert_id>:raised
    alert_id TEXT,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    qos INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,                    -- not sent after this (the receiver would drop it)
    sent_at TEXT,
    expired_at TEXT                     -- given up: it expired before the broker took it
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent_at, seq);
-- Hand counts for calibration (docs/ui.md 6): the heads an admin clicked on a snapshot and what
-- the detector found in that same frame, for `lobbywatch calibrate --from-store`. Never the
-- image: it stays in the service's memory.
CREATE TABLE IF NOT EXISTS hand_counts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id TEXT NOT NULL,
    at TEXT NOT NULL,                   -- UTC, when the frame was captured
    seq INTEGER NOT NULL,               -- the frame's number in the service (X-Lobbywatch-Seq)
    width INTEGER NOT NULL,             -- frame size, pixels
    height INTEGER NOT NULL,
    heads TEXT NOT NULL,                -- JSON [[x, y], ...], normalized 0-1
    boxes TEXT NOT NULL,                -- JSON [{xyxy (px), anchor (0-1), score, zone}]: the kept ones
    detected TEXT NOT NULL,             -- JSON {zone: n}: boxes counted per zone, uncalibrated
    zones_key TEXT NOT NULL,            -- the zones and masks they were counted with (a digest)
    saved_by TEXT NOT NULL,             -- the admin's key id
    saved_at TEXT NOT NULL              -- UTC
);
CREATE INDEX IF NOT EXISTS hand_counts_camera ON hand_counts (camera_id, id);
"""
    + DELIVERIES_SCHEMA
)

#: The next site alert version, for the row an INSERT or UPDATE writes (see the alerts table).
_NEXT_VERSION = "(SELECT COALESCE(MAX(version), 0) + 1 FROM alerts)"

ALERT_STATUS_SQL = """CASE
    WHEN cleared_at IS NOT NULL THEN 'cleared'
    WHEN pass_done_at IS NOT NULL THEN 'pass_done'
    WHEN acknowledged_at IS NOT NULL THEN 'acknowledged'
    ELSE 'open' END"""

_MERGE_HISTORY = """
INSERT INTO zone_history
    (zone_id, camera_id, bucket_start, interval_s, samples, mean, max, min, seen_fraction)
VALUES (:zone_id, :camera_id, :bucket_start, :interval_s, :samples, :mean, :max, :min, :seen_fraction)
ON CONFLICT (zone_id, bucket_start) DO UPDATE SET
    mean = CASE
        WHEN samples + excluded.samples = 0 THEN NULL
        ELSE (COALESCE(mean, 0) * samples + COALESCE(excluded.mean, 0) * excluded.samples)
             / (samples + excluded.samples) END,
    max = CASE WHEN max IS NULL THEN excluded.max
               WHEN excluded.max IS NULL THEN max ELSE MAX(max, excluded.max) END,
    min = CASE WHEN min IS NULL THEN excluded.min
               WHEN excluded.min IS NULL THEN min ELSE MIN(min, excluded.min) END,
    samples = samples + excluded.samples,
    seen_fraction = MIN(1.0, seen_fraction + excluded.seen_fraction)
"""


@dataclass(frozen=True)
class HistoryRow:
    zone_id: str
    camera_id: str
    bucket_start: int
    interval_s: int
    samples: int
    mean: float | None
    max: float | None
    min: float | None
    seen_fraction: float


@dataclass(frozen=True)
class AlertRecord:
    """One alert's lifecycle as stored; times are UTC-aware datetimes."""

    alert_id: str
    rule: str
    kind: str
    zones: tuple[str, ...]
    threshold: float | None
    since: datetime
    raised_at: datetime
    count_at_raise: float | None
    message: str
    escalations: int
    last_notified_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    count_at_ack: float | None
    pass_done_at: datetime | None
    pass_done_by: str | None
    effect_after_s: float
    effect_count: float | None
    effect_measured_at: datetime | None
    cleared_at: datetime | None
    count_at_clear: float | None
    status: str
    version: int = 0  # the site's alert version at its latest change (0: before versions)
    details: str | None = None  # JSON text: the advice, figures, metric and value of the latest ask
    passes: int = 0  # passes asked (a diversion's raise is the first; read from the passes table)

    @property
    def seconds_to_ack(self) -> float | None:
        if self.acknowledged_at is None:
            return None
        return (self.acknowledged_at - self.raised_at).total_seconds()

    @property
    def effect_due_at(self) -> datetime | None:
        if self.pass_done_at is None:
            return None
        return self.pass_done_at + timedelta(seconds=self.effect_after_s)


@dataclass(frozen=True)
class PassRecord:
    """One diversion pass asked of the manager (a row of `passes`); times UTC-aware, figures
    None where unknown. Before: at the accept; after: the alert's effect_after_s after done."""

    alert_id: str
    number: int
    asked_at: datetime
    accepted_at: datetime | None
    accepted_by: str | None
    done_at: datetime | None
    done_by: str | None
    count_before: float | None
    wait_before_s: float | None
    count_after: float | None
    wait_after_s: float | None
    kiosks_in_use_after: float | None
    kiosks_capacity: int | None
    measured_at: datetime | None


AckOutcome = Literal["accepted", "pass_done", "already", "cleared"]


def _whole(value: object) -> object:
    # JSON's 2.0 is the integer 2 (JSON Schema counts it as one, and so do clients that write
    # every number as a float); 1.5, true and "2" stay what they are and are refused.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: The pass an ack is for, in the bodies that carry one (an MQTT ack, the API's ack bodies):
#: a whole number from 1 (apply_ack's `number`).
# (The validator last: it then runs first, and the JSON schema keeps its "minimum".)
PassNumber = Annotated[int, Field(ge=1, strict=True), BeforeValidator(_whole)]


@dataclass(frozen=True)
class AckResult:
    """What an acknowledgement did: `accepted` or `pass_done` when this one was recorded,
    `already` when an earlier one of the same kind (or a pass done, for an accept) was, or it
    was sent for a pass other than the alert's latest (nothing recorded), and
    `cleared` when the alert had cleared before it (nothing recorded; a pass done on an alert
    accepted before it cleared is recorded all the same). `record` is the alert
    as it stands after it, read in the same transaction."""

    outcome: AckOutcome
    record: AlertRecord


@dataclass(frozen=True)
class OutboxMessage:
    """A message waiting for the broker's acknowledgement (seq is None before it is stored)."""

    message_id: str
    topic: str
    payload: str
    qos: int
    created_at: datetime
    expires_at: datetime | None = None
    alert_id: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class CameraLive:
    camera_id: str
    status: CameraStatus
    fps: float
    at: datetime
    inference_ms: float = 0.0


def _schema_version(db: sqlite3.Connection) -> int | None:
    """The store's schema version; None for a new file. Stores from before the version was
    checked (no meta table yet, or one that says 1) are version 1."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
        return None if tables[0] == 0 else 1
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row is not None else 1


@dataclass(frozen=True)
class StoredBox:
    """One box the detector found and the scene kept, as a hand count keeps it. xyxy: pixels
    of the frame; anchor: the feet, normalized; zone: where it counted, None for none (in an
    ignore mask or outside every zone)."""

    xyxy: tuple[float, float, float, float]
    anchor: tuple[float, float]
    score: float
    zone: str | None

    def to_json(self) -> dict[str, object]:
        return {"xyxy": list(self.xyxy), "anchor": list(self.anchor), "score": self.score,
                "zone": self.zone}  # fmt: skip

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> StoredBox:
        x1, y1, x2, y2 = (float(v) for v in value["xyxy"])
        ax, ay = (float(v) for v in value["anchor"])
        zone = value.get("zone")
        score = float(value["score"])
        return cls((x1, y1, x2, y2), (ax, ay), score, None if zone is None else str(zone))


@dataclass(frozen=True)
class HandCount:
    """One frame counted by hand on /debug (a row of `hand_counts`, docs/ui.md 6): the heads
    clicked (normalized) and what the detector found in that frame, the image left out.

    detected: the boxes counted in each zone, before any calibration and without the people
    the presence hold keeps through a miss (the frames record has boxes, not the hold).
    zones_key: which zones and masks `detected` was counted with (edge/calibration.zones_key),
    so a fit after the zones changed counts the boxes again. id: 0 until stored."""

    camera_id: str
    at: datetime
    seq: int
    width: int
    height: int
    heads: tuple[tuple[float, float], ...]
    boxes: tuple[StoredBox, ...]
    detected: dict[str, int]
    zones_key: str
    saved_by: str
    saved_at: datetime
    id: int = 0


@dataclass(frozen=True)
class StoreCondition:
    """Whether the store takes writes, as its writes found. `since` (UTC) is when the current
    trouble began; `memory_only` means the file could not even be opened and the service runs
    on an in-memory copy until it can (see Store.recover)."""

    writable: bool
    since: datetime | None = None
    error: str | None = None
    failed_writes: int = 0
    memory_only: bool = False


class StoreWriteError(Exception):
    """A write the store could not make: disk full, I/O error, read-only file, lock held too
    long. The store stays usable for reads; callers keep what they meant to write and retry."""


#: Seconds a connection waits for another's lock (also for the switch to WAL, below).
LOCK_TIMEOUT_S = 10.0


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, timeout=LOCK_TIMEOUT_S)
    db.row_factory = sqlite3.Row
    _wal(db)
    # NORMAL in WAL mode loses at most the last transactions on power loss, never corrupts.
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _wal(db: sqlite3.Connection, timeout_s: float = LOCK_TIMEOUT_S) -> None:
    """WAL mode. While another connection (the service, another process) is writing a store
    still in rollback mode, as when it is creating it, SQLite refuses the switch at once with
    "database is locked", without waiting out the busy timeout: try again until it is done."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _prepare(db: sqlite3.Connection, path: Path, site_id: str | None) -> None:
    """Create or migrate the schema and check the site. Writes nothing to a store that is
    already current, so a device restarted on a full disk can still open its store."""
    with db:
        found = _schema_version(db)
        if found is None or found < SCHEMA_VERSION:
            db.executescript(_SCHEMA)
            if found is None:  # a new store: _SCHEMA is the current one
                found = SCHEMA_VERSION
            for version, columns in _MIGRATIONS:
                if found < version:
                    for table, column, definition in columns:
                        have = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
                        if column not in have:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                    if version in _BACKFILLS:
                        db.execute(_BACKFILLS[version])
                    found = version
            db.execute(_INDEXES)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(found),),
            )
        elif found > SCHEMA_VERSION:
            log.warning(
                "store %s has schema version %d, newer than this lobbywatch's %d "
                "(a rollback?): running on it, its changes are additive",
                path, found, SCHEMA_VERSION,
            )  # fmt: skip
        if site_id is not None:
            _check_site(db, path, site_id)


def _check_site(db: sqlite3.Connection, path: Path, site_id: str) -> None:
    # One store per site: mixing two branches' history would corrupt every report.
    row = db.execute("SELECT value FROM meta WHERE key = 'site_id'").fetchone()
    if row is None:
        db.execute("INSERT INTO meta (key, value) VALUES ('site_id', ?)", (site_id,))
    elif row["value"] != site_id:
        raise ValueError(
            f"store {path} belongs to site {row['value']!r}, not {site_id!r}: "
            "use another storage.path per site"
        )


#: SQLite's primary result codes for trouble with the medium, not with a statement: busy,
#: locked, read-only, I/O error, corrupt, full, cannot open, not a database.
_MEDIUM_CODES = frozenset({5, 6, 8, 10, 11, 13, 14, 26})
_MEDIUM_TEXTS = ("locked", "busy", "readonly", "disk i/o", "malformed", "full", "unable to open",
                 "not a database")  # fmt: skip


def _is_write_failure(exc: sqlite3.Error) -> bool:
    """Disk full, I/O error, read-only, locked: the medium's fault, not a bug in a statement."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF in _MEDIUM_CODES
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and any(t in text for t in _MEDIUM_TEXTS)


#: Tables copied from the in-memory stand-in into the file once it can be opened, with the
#: statement that merges one row (history merges like a restart's; the rest keep what exists).
#: The alerts' versions are not kept: see _renumber_alerts.
_RECOVER = (
    ("zone_history", _MERGE_HISTORY),
    ("zone_live", None),
    ("camera_live", None),
    ("alerts", None),
    ("passes", None),
    ("outbox", None),
    ("deliveries", None),
    ("ticket_events", None),
    ("queue_live", None),
)
#: Tables whose copied rows change what an alert's state shows (its row, passes, deliveries).
_ALERT_TABLES = frozenset({"alerts", "passes", "deliveries"})


class Store:
    """SQLite store at `path` (created with its directory if missing).

    A store that cannot be written (a full disk) does not stop the service: writes raise
    StoreWriteError and are counted in `condition`, reads go on. With `memory_fallback` (the
    service's store), one that cannot even be opened runs on an in-memory stand-in, copied
    into the file by `recover` once it can be; without it (readers such as the API) that raises.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        site_id: str | None = None,
        memory_fallback: bool = False,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._site_id = site_id
        self._wall = wall_clock
        self._clock = clock
        self._lock = threading.Lock()
        self._condition = StoreCondition(writable=True)
        self._last_failure = -RECOVERY_S
        self._memory_only = False
        self._generation = 0
        self._reserve = (
            None if str(path) == ":memory:" else self.path.with_name(self.path.name + ".reserve")
        )
        try:
            if self._reserve is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open_file()
        except (OSError, sqlite3.Error) as exc:
            if isinstance(exc, sqlite3.Error) and not _is_write_failure(exc):
                raise
            if self._opened_current():
                self._failed(exc)  # a full disk under a current store: run on it, degraded
            elif not memory_fallback:
                raise
            else:
                log.error(
                    "store %s cannot be opened (%s): running on memory until it can; "
                    "history and alerts are copied into it then, nothing is kept across a restart",
                    self.path, exc,
                )  # fmt: skip
                self._db = _connect(":memory:")
                _prepare(self._db, self.path, site_id)
                self._memory_only = True
                self._failed(exc)

        self._keep_reserve()

    def _open_file(self) -> None:
        try:
            self._db = _connect(str(self.path))
            _prepare(self._db, self.path, self._site_id)
        except sqlite3.Error as exc:
            if not (_is_write_failure(exc) and self._release_reserve()):
                raise
            self._db = _connect(str(self.path))
            _prepare(self._db, self.path, self._site_id)
            self._failed(exc)  # it opened, but the disk is full all the same
            log.error("store %s opened on its reserve space: the disk is full", self.path)

    def _release_reserve(self) -> bool:
        if self._reserve is None or not self._reserve.exists():
            return False
        self._reserve.unlink()
        return True

    def _keep_reserve(self) -> None:
        """Set the reserve aside again where there is room (quietly: where there is none, the
        store's own writes already say so)."""
        if self._reserve is None or self._reserve.exists() or self._memory_only:
            return
        try:
            with self._reserve.open("wb") as f:
                os.posix_fallocate(f.fileno(), 0, RESERVE_BYTES)
        except OSError:
            self._reserve.unlink(missing_ok=True)

    def _opened_current(self) -> bool:
        """Whether the file store opened far enough to run on: connected, schema current."""
        try:
            found = _schema_version(self._db)
        except (AttributeError, sqlite3.Error):
            return False
        return found is not None and found >= SCHEMA_VERSION

    @property
    def generation(self) -> int:
        """Grows each time the store moves onto another database (the in-memory stand-in onto
        its file, in `recover`). What a reader kept from the one before (the open alerts, the
        alert version it had reached) does not hold there: it reads it all again."""
        with self._lock:
            return self._generation

    @property
    def condition(self) -> StoreCondition:
        with self._lock:
            self._settle()
            return self._condition

    def _failed(self, exc: BaseException) -> None:
        """Record a failed write (the caller holds the lock, or is __init__)."""
        self._last_failure = self._clock()
        previous = self._condition
        if previous.writable:
            log.error("store %s is not writable: %s", self.path, exc)
        self._condition = StoreCondition(
            writable=False,
            since=previous.since if not previous.writable else self._wall(),
            error=str(exc),
            failed_writes=previous.failed_writes + 1,
            memory_only=self._memory_only,
        )

    def _settle(self) -> None:
        """Writable again once no write failed for RECOVERY_S (and the file is open)."""
        if self._condition.writable or self._memory_only:
            return
        if self._clock() - self._last_failure >= RECOVERY_S:
            log.warning(
                "store %s is writable again (%d writes failed since %s)",
                self.path, self._condition.failed_writes, self._condition.since,
            )  # fmt: skip
            self._condition = StoreCondition(writable=True)
            self._keep_reserve()

    def recover(self) -> bool:
        """Open the file if the service is running on the in-memory stand-in and copy what was
        kept there into it; True once the store is on its file. Call now and then."""
        with self._lock:
            if not self._memory_only:
                return True
            try:
                db = _connect(str(self.path))
                _prepare(db, self.path, self._site_id)
                db.executescript(DELIVERIES_SCHEMA)  # a current store from before deliveries
                with db:
                    base = max(_alerts_version(db), _alerts_version(self._db))
                    landed: set[str] = set()
                    for table, merge in _RECOVER:
                        landed |= _copy_rows(self._db, db, table, merge)
                    _renumber_alerts(self._db, db, landed, base)
            except (OSError, sqlite3.Error) as exc:
                if isinstance(exc, sqlite3.Error) and not _is_write_failure(exc):
                    raise
                self._failed(exc)
                return False
            self._db.close()
            self._db = db
            self._memory_only = False
            self._generation += 1
            self._keep_reserve()
            log.warning("store %s opened: what was kept in memory is now in it", self.path)
            return True

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self._db:
                    yield self._db
            except sqlite3.Error as exc:
                if not _is_write_failure(exc):
                    raise
                self._failed(exc)
                raise StoreWriteError(f"store {self.path}: {exc}") from exc
            self._settle()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction for a module that keeps its own table here (the alert deliveries):
        under the store's lock, with its failures counted and raised as StoreWriteError."""
        with self._tx() as db:
            yield db

    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Rows of a read of such a table, under the store's lock."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- writes ---------------------------------------------------------------------------

    def write_history(self, rows: list[HistoryRow]) -> None:
        if not rows:
            return
        with self._tx() as db:
            db.executemany(_MERGE_HISTORY, [row.__dict__ for row in rows])

    def write_live(self, readings: list[ZoneReading], camera: CameraLive) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO zone_live (zone_id, camera_id, count, raw, at, camera_status)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.zone_id, r.camera_id, r.count, r.raw, _iso(r.at), r.camera_status.value)
                    for r in readings
                ],
            )
            db.execute(
                "INSERT OR REPLACE INTO camera_live (camera_id, status, fps, inference_ms, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    camera.camera_id,
                    camera.status.value,
                    camera.fps,
                    camera.inference_ms,
                    _iso(camera.at),
                ),
            )

    def purge_before(self, cutoff: datetime) -> int:
        """Delete history and ticket events older than `cutoff`; returns the number of rows
        removed. Ticket events feed only today's book (edge/queueing/tickets.py), and a ticket
        machine (or a manager's key POSTing 500 at a time) adds to them every day: kept
        forever they would fill the disk and be read again at every start."""
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM zone_history WHERE bucket_start < ?", (int(cutoff.timestamp()),)
            )
            tickets = db.execute("DELETE FROM ticket_events WHERE at < ?", (_iso(cutoff),))
            return cursor.rowcount + tickets.rowcount

    # --- reads ----------------------------------------------------------------------------

    def history(
        self, zone_id: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> list[HistoryRow]:
        query = "SELECT * FROM zone_history WHERE 1 = 1"
        params: list[object] = []
        if zone_id is not None:
            query += " AND zone_id = ?"
            params.append(zone_id)
        if start is not None:
            query += " AND bucket_start >= ?"
            params.append(int(start.timestamp()))
        if end is not None:
            query += " AND bucket_start < ?"
            params.append(int(end.timestamp()))
        with self._lock:
            rows = self._db.execute(query + " ORDER BY bucket_start, zone_id", params).fetchall()
        return [HistoryRow(**dict(row)) for row in rows]

    def live(self) -> list[ZoneReading]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM zone_live ORDER BY zone_id").fetchall()
        return [
            ZoneReading(
                zone_id=row["zone_id"],
                camera_id=row["camera_id"],
                count=row["count"],
                raw=row["raw"],
                at=datetime.fromisoformat(row["at"]),
                camera_status=CameraStatus(row["camera_status"]),
            )
            for row in rows
        ]

    def cameras(self) -> list[CameraLive]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM camera_live ORDER BY camera_id").fetchall()
        return [
            CameraLive(
                camera_id=row["camera_id"],
                status=CameraStatus(row["status"]),
                fps=row["fps"],
                at=datetime.fromisoformat(row["at"]),
                inference_ms=row["inference_ms"],
            )
            for row in rows
        ]

    # --- alerts and the outbox -------------------------------------------------------------

    def insert_alert(self, alert: AlertRecord, messages: list[OutboxMessage]) -> None:
        """Store a new alert and the messages that announce it, in one transaction; a
        diversion's raise is its pass 1 (asked when raised)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO alerts (alert_id, rule, kind, zones, threshold, since, raised_at,"
                " count_at_raise, message, escalations, last_notified_at, effect_after_s,"
                f" details, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {_NEXT_VERSION})",
                (
                    alert.alert_id, alert.rule, alert.kind, json.dumps(list(alert.zones)),
                    alert.threshold, _iso(alert.since), _iso(alert.raised_at),
                    alert.count_at_raise, alert.message, alert.escalations,
                    _iso(alert.last_notified_at), alert.effect_after_s, alert.details,
                ),
            )  # fmt: skip
            _ensure_first_pass(db, alert.alert_id)
            self._enqueue(db, messages)

    def reask_alert(
        self,
        alert_id: str,
        number: int,
        at: datetime,
        details: str | None,
        messages: list[OutboxMessage],
    ) -> bool:
        """Pass `number` asked: the alert's acknowledged_*, pass_done_*, count_at_ack, effect_*
        and escalations reset (it is open, not accepted, again), its details replaced (None: no
        figures for this ask, so none of the last one's are shown), a passes row inserted and
        the messages enqueued, in one transaction. False if the alert has cleared (nothing
        changes). A pass already asked (a replayed re-ask) changes nothing and answers True.
        A pass done whose effect was not measured yet (the re-ask came first: by default both
        come 600 s after the pass) is measured now, from the live tables, as record_effect
        would have: the reset would lose it otherwise."""
        with self._tx() as db:
            _ensure_first_pass(db, alert_id)
            asked = db.execute(
                "SELECT 1 FROM passes WHERE alert_id = ? AND number = ?", (alert_id, number)
            ).fetchone()
            if asked is not None:
                return True
            cursor = db.execute(
                "UPDATE alerts SET acknowledged_at = NULL, acknowledged_by = NULL,"
                " count_at_ack = NULL, pass_done_at = NULL, pass_done_by = NULL,"
                " effect_count = NULL, effect_measured_at = NULL, escalations = 0,"
                f" last_notified_at = ?, details = ?, version = {_NEXT_VERSION}"
                " WHERE alert_id = ? AND cleared_at IS NULL",
                (_iso(at), details, alert_id),
            )
            if cursor.rowcount == 0:
                return False
            _measure_at_reask(db, alert_id, at)
            db.execute(
                "INSERT INTO passes (alert_id, number, asked_at) VALUES (?, ?, ?)",
                (alert_id, number, _iso(at)),
            )
            self._enqueue(db, messages)
            return True

    def set_alert_details(self, alert_id: str, details: str) -> None:
        """The advice and figures of the alert's latest ask (JSON text), shown by the handheld
        and in alert JSON: a new version, so the state publishers send it again."""
        with self._tx() as db:
            db.execute(
                f"UPDATE alerts SET details = ?, version = {_NEXT_VERSION} WHERE alert_id = ?",
                (details, alert_id),
            )

    def escalate_alert(self, alert_id: str, at: datetime, messages: list[OutboxMessage]) -> bool:
        """Count an escalation and queue its messages, unless the alert was accepted or cleared
        meanwhile (an ack through the API, in another process, that the service has not seen
        yet): False then, and nothing is queued."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE alerts SET escalations = escalations + 1, last_notified_at = ?,"
                f" version = {_NEXT_VERSION}"
                " WHERE alert_id = ? AND acknowledged_at IS NULL AND cleared_at IS NULL",
                (_iso(at), alert_id),
            )
            if cursor.rowcount == 0:
                return False
            self._enqueue(db, messages)
            return True

    def clear_alert(
        self, alert_id: str, at: datetime, count: float | None, messages: list[OutboxMessage]
    ) -> None:
        with self._tx() as db:
            db.execute(
                f"UPDATE alerts SET cleared_at = ?, count_at_clear = ?, version = {_NEXT_VERSION}"
                " WHERE alert_id = ? AND cleared_at IS NULL",
                (_iso(at), count, alert_id),
            )
            self._enqueue(db, messages)

    def record_ack(
        self, alert_id: str, by: str, status: str, at: datetime, *, number: int | None = None
    ) -> AlertRecord | None:
        """apply_ack, answering only the alert as it stands after it (None: unknown alert)."""
        result = self.apply_ack(alert_id, by, status, at, number=number)
        return None if result is None else result.record

    def apply_ack(
        self,
        alert_id: str,
        by: str,
        status: str,
        at: datetime,
        *,
        wait_s: float | None = None,
        number: int | None = None,
    ) -> AckResult | None:
        """Apply a handheld's or a manager's acknowledgement; None for an unknown alert.

        Idempotent: the first "accepted" and the first "pass_done" win, repeats change nothing
        and answer "already" (two handhelds racing: the conditional update lets exactly one
        win, whichever process writes). A "pass_done" without an earlier "accepted" counts as
        both. A cleared alert takes no "accepted", and a "pass_done" only if it was accepted
        before it cleared (the pass may be what cleared it: its effect is measured all the
        same). The waiting count at the acknowledgement is read from the live table (the sum
        of the alert's zones; unknown if any zone is unknown), the same way whichever path the
        acknowledgement took; so is the wait where `wait_s` is not given (the queue snapshot,
        if at most QUEUE_LIVE_MAX_AGE_S old). Both land on the alert's latest pass too.

        `number` is the pass the ack was sent for (None: an older handheld, the latest pass).
        Any other pass changes nothing and answers "already": pass 1's "done" redelivered by
        the broker (QoS 1) or tapped twice just after pass 2 was asked would otherwise be taken
        as pass 2 accepted and done, and the re-ask would be lost. Checked in the transaction
        that would write, so a re-ask cannot come between the check and the update.
        """
        if status not in ("accepted", "pass_done"):
            raise ValueError(f"ack status must be accepted or pass_done, got {status!r}")
        with self._tx() as db:
            row = db.execute(
                "SELECT zones, cleared_at, effect_after_s FROM alerts WHERE alert_id = ?",
                (alert_id,),
            ).fetchone()
            if row is None:
                return None
            if number is not None and number != _latest_pass(db, alert_id):
                (record,) = _select_alerts(db, "alert_id = ?", [alert_id])
                return AckResult("already", record)
            count = _live_sum(db, json.loads(row["zones"]))
            cleared = _dt(row["cleared_at"])
            # A pass reported done long after the lobby cleared is no pass that cleared it: its
            # effect, measured effect_after_s later on a quiet lobby, would show the supervisor
            # a drop the pass did not make. Within effect_after_s of the clear it is taken.
            late = cleared is not None and at - cleared > timedelta(seconds=row["effect_after_s"])
            cursor = None  # a late one changes nothing: outcome "cleared"
            if status == "accepted" and not late:
                cursor = db.execute(
                    "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?, count_at_ack = ?,"
                    f" version = {_NEXT_VERSION}"
                    " WHERE alert_id = ? AND acknowledged_at IS NULL AND cleared_at IS NULL",
                    (_iso(at), by, count, alert_id),
                )
            elif not late:  # the right-hand sides read the row as it was before this update
                cursor = db.execute(
                    "UPDATE alerts SET pass_done_at = ?, pass_done_by = ?,"
                    " count_at_ack = CASE WHEN acknowledged_at IS NULL THEN ? ELSE count_at_ack END,"
                    " acknowledged_by = COALESCE(acknowledged_by, ?),"
                    " acknowledged_at = COALESCE(acknowledged_at, ?),"
                    f" version = {_NEXT_VERSION}"
                    " WHERE alert_id = ? AND pass_done_at IS NULL"
                    " AND (cleared_at IS NULL OR acknowledged_at IS NOT NULL)",
                    (_iso(at), by, count, by, _iso(at), alert_id),
                )
            changed = cursor is not None and cursor.rowcount > 0
            if changed:
                wait = wait_s if wait_s is not None else _live_wait(db, at)
                _ack_pass(db, alert_id, status, by, at, count, wait)
            (record,) = _select_alerts(db, "alert_id = ?", [alert_id])
        if changed:
            outcome: AckOutcome = "accepted" if status == "accepted" else "pass_done"
        else:
            outcome = "cleared" if record.cleared_at is not None else "already"
        return AckResult(outcome, record)

    def touch_alerts(self, alert_ids: Iterable[str]) -> None:
        """Give these alerts a new version: something shown in their state changed outside the
        row (a channel delivery), so the state publishers and streams send them again. Only
        open ones: a cleared alert's state was shown once and is gone from every handheld."""
        with self._tx() as db:
            for alert_id in sorted(set(alert_ids)):  # one new version each
                db.execute(
                    f"UPDATE alerts SET version = {_NEXT_VERSION}"
                    " WHERE alert_id = ? AND cleared_at IS NULL",
                    (alert_id,),
                )

    def record_effect(
        self,
        alert_id: str,
        count: float | None,
        at: datetime,
        *,
        wait_s: float | None = None,
        kiosks_in_use: float | None = None,
        kiosks_capacity: int | None = None,
    ) -> None:
        """The lobby effect_after_s after the pass was done: the waiting count on the alert,
        and with the wait (read from the queue snapshot where not given, as in apply_ack) and
        the kiosks' use on its latest pass done. Once: a repeat changes nothing."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE alerts SET effect_count = ?, effect_measured_at = ?,"
                f" version = {_NEXT_VERSION}"
                " WHERE alert_id = ? AND effect_measured_at IS NULL",
                (count, _iso(at), alert_id),
            )
            if cursor.rowcount == 0:
                return
            wait = wait_s if wait_s is not None else _live_wait(db, at)
            db.execute(
                "UPDATE passes SET count_after = ?, wait_after_s = ?, kiosks_in_use_after = ?,"
                " kiosks_capacity = ?, measured_at = ?"
                " WHERE alert_id = ? AND measured_at IS NULL AND done_at IS NOT NULL"
                " AND number = (SELECT MAX(number) FROM passes WHERE alert_id = ?)",
                (count, wait, kiosks_in_use, kiosks_capacity, _iso(at), alert_id, alert_id),
            )

    def passes(self, start: datetime, end: datetime) -> list[PassRecord]:
        """Passes asked in [start, end), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM passes WHERE asked_at >= ? AND asked_at < ?"
                " ORDER BY asked_at, alert_id, number",
                (_iso(start), _iso(end)),
            ).fetchall()
        return [_pass_from_row(row) for row in rows]

    # --- tickets and the queue snapshot ---------------------------------------------------

    def insert_tickets(self, events: Sequence[TicketEvent]) -> int:
        """Store ticket machine events in the order given (one transaction); rows written."""
        if not events:
            return 0
        received = _iso(self._wall())
        with self._tx() as db:
            db.executemany(
                "INSERT INTO ticket_events (kind, ticket, at, counter, service, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(e.kind, e.ticket, _iso(e.at), e.counter, e.service, received) for e in events],
            )
        return len(events)

    def tickets_after(self, row_id: int, limit: int = 1000) -> list[tuple[int, TicketEvent]]:
        """Ticket events stored after row `row_id` (0: from the first), in the order stored,
        at most `limit`; each with its row id, the reader's place for the next call."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM ticket_events WHERE seq > ? ORDER BY seq LIMIT ?", (row_id, limit)
            ).fetchall()
        return [
            (
                int(row["seq"]),
                TicketEvent(
                    kind=row["kind"],
                    ticket=row["ticket"],
                    at=datetime.fromisoformat(row["at"]),
                    counter=row["counter"],
                    service=row["service"],
                ),
            )
            for row in rows
        ]

    def write_queue(self, payload: str, at: datetime) -> None:
        """Replace the queue snapshot (JSON text) taken at `at`."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO queue_live (id, payload, at) VALUES (1, ?, ?)",
                (payload, _iso(at)),
            )

    def queue_live(self) -> tuple[str, datetime] | None:
        """The latest queue snapshot and when it was taken; None before the first."""
        with self._lock:
            row = self._db.execute("SELECT payload, at FROM queue_live WHERE id = 1").fetchone()
        return None if row is None else (str(row["payload"]), datetime.fromisoformat(row["at"]))

    # --- hand counts (docs/ui.md 6) ---------------------------------------------------------

    def add_hand_count(self, count: HandCount) -> int:
        """Keep one hand count; its id."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO hand_counts (camera_id, at, seq, width, height, heads, boxes,"
                " detected, zones_key, saved_by, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    count.camera_id, _iso(count.at), count.seq, count.width, count.height,
                    json.dumps([list(h) for h in count.heads]),
                    json.dumps([b.to_json() for b in count.boxes]),
                    json.dumps(count.detected), count.zones_key, count.saved_by,
                    _iso(count.saved_at),
                ),
            )  # fmt: skip
            return int(cursor.lastrowid or 0)

    def hand_counts(self, camera_id: str) -> list[HandCount]:
        """The camera's hand counts, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM hand_counts WHERE camera_id = ? ORDER BY id", (camera_id,)
            ).fetchall()
        return [_hand_count_from_row(row) for row in rows]

    def hand_count_total(self, camera_id: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM hand_counts WHERE camera_id = ?", (camera_id,)
            ).fetchone()
        return int(row[0])

    def delete_hand_count(self, camera_id: str, count_id: int) -> bool:
        """Drop hand count `count_id` of the camera; False when there is none."""
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM hand_counts WHERE camera_id = ? AND id = ?", (camera_id, count_id)
            )
            return cursor.rowcount > 0

    def alert(self, alert_id: str) -> AlertRecord | None:
        found = self._select_alerts("alert_id = ?", [alert_id])
        return found[0] if found else None

    def alerts(
        self,
        status: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        kind: str | None = None,
    ) -> list[AlertRecord]:
        """Alerts raised in [start, end), oldest first, optionally of one derived status."""
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if status is not None:
            where.append(f"({ALERT_STATUS_SQL}) = ?")
            params.append(status)
        if start is not None:
            where.append("raised_at >= ?")
            params.append(_iso(start))
        if end is not None:
            where.append("raised_at < ?")
            params.append(_iso(end))
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        return self._select_alerts(" AND ".join(where), params)

    def open_alerts(self) -> list[AlertRecord]:
        return self._select_alerts("cleared_at IS NULL", [])

    def alerts_version(self) -> int:
        """The site's alert version: that of the latest change of any alert (0: none yet).
        One lookup in an index: cheap enough to poll several times a second."""
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM alerts").fetchone()
        return int(row[0])

    def alerts_changed_since(self, version: int, limit: int | None = None) -> list[AlertRecord]:
        """Alerts whose latest change is newer than `version`, oldest change first (at most
        `limit` of them)."""
        query = "version > ? ORDER BY version"
        params: list[object] = [version]
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self._lock:
            return _select_alerts(self._db, query, params, order=False)

    def effects_due(self, now: datetime) -> list[AlertRecord]:
        """Alerts whose pass was reported done long enough ago to measure its effect."""
        due = [
            a
            for a in self._select_alerts(
                "pass_done_at IS NOT NULL AND effect_measured_at IS NULL", []
            )
            if a.effect_due_at is not None and a.effect_due_at <= now
        ]
        return due

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def _select_alerts(self, where: str, params: list[object]) -> list[AlertRecord]:
        with self._lock:
            return _select_alerts(self._db, where, params)

    def enqueue(self, messages: list[OutboxMessage]) -> None:
        with self._tx() as db:
            self._enqueue(db, messages)

    @staticmethod
    def _enqueue(db: sqlite3.Connection, messages: list[OutboxMessage]) -> None:
        # OR IGNORE: a message id already queued (a replayed decision) is not queued twice.
        db.executemany(
            "INSERT OR IGNORE INTO outbox"
            " (message_id, alert_id, topic, payload, qos, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    m.message_id, m.alert_id, m.topic, m.payload, m.qos, _iso(m.created_at),
                    _iso(m.expires_at) if m.expires_at else None,
                )
                for m in messages
            ],
        )  # fmt: skip

    def pending_messages(self, limit: int = 100) -> list[OutboxMessage]:
        """Messages neither acknowledged by the broker nor given up, oldest first. Whether one
        has expired is the publisher's call, on the monotonic clock (a wall-clock step must
        not drop alerts)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM outbox WHERE sent_at IS NULL AND expired_at IS NULL"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            OutboxMessage(
                message_id=row["message_id"],
                topic=row["topic"],
                payload=row["payload"],
                qos=row["qos"],
                created_at=datetime.fromisoformat(row["created_at"]),
                expires_at=_dt(row["expires_at"]),
                alert_id=row["alert_id"],
                seq=row["seq"],
            )
            for row in rows
        ]

    def unsent_count(self) -> int:
        """Messages waiting for the broker (the outbox backlog)."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND expired_at IS NULL"
            ).fetchone()
        return int(row[0])

    def mark_sent(self, message_id: str, at: datetime) -> bool:
        """Record the broker's PUBACK; False when the message is not in the store (yet)."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE outbox SET sent_at = COALESCE(sent_at, ?) WHERE message_id = ?",
                (_iso(at), message_id),
            )
            return cursor.rowcount > 0

    def mark_expired(self, message_id: str, at: datetime) -> bool:
        """Give a message up (it expired undelivered); False when it is not in the store."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE outbox SET expired_at = COALESCE(expired_at, ?)"
                " WHERE message_id = ? AND sent_at IS NULL",
                (_iso(at), message_id),
            )
            return cursor.rowcount > 0


def probe_write(path: Path, key: str, at: datetime) -> str | None:
    """None when the store at `path` takes a real write (row `key` in meta); otherwise why not.

    For a process that does not hold the store (the API, doctor): only a committed write tells,
    since a full disk lets a transaction begin and refuses only what needs space. A lock held
    past the timeout means the store is busy (the pipeline writing), not failing.
    """
    try:
        db = sqlite3.connect(str(path), timeout=1.0, isolation_level=None)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, _iso(at)))
        db.execute("COMMIT")
        return None
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return None
        return f"store is not writable: {exc}"
    finally:
        db.close()


def _copy_rows(
    src: sqlite3.Connection, dst: sqlite3.Connection, table: str, merge: str | None
) -> set[str]:
    """Copy `table` from the stand-in into the file; answers the alerts whose shown state the
    rows that landed changed (for the alerts and their deliveries; the other tables, none)."""
    rows = src.execute(f"SELECT * FROM {table}").fetchall()
    if not rows:
        return set()
    columns = [c for c in rows[0].keys() if c != "seq"]  # noqa: SIM118 (a Row iterates values)
    if merge is None:
        conflict = "OR REPLACE" if table.endswith("_live") else "OR IGNORE"
        merge = (
            f"INSERT {conflict} INTO {table} ({', '.join(columns)})"
            f" VALUES ({', '.join(':' + c for c in columns)})"
        )
    values = [{c: row[c] for c in columns} for row in rows]
    if table not in _ALERT_TABLES:
        dst.executemany(merge, values)
        return set()
    # One statement per row, to tell a row that landed from one the file already held (an
    # outage's alerts and deliveries are few).
    return {str(v["alert_id"]) for v in values if dst.execute(merge, v).rowcount > 0}


def _renumber_alerts(
    src: sqlite3.Connection, dst: sqlite3.Connection, landed: set[str], base: int
) -> None:
    """Give the alerts that the copy changed new versions above `base`, in the order of their
    versions on the stand-in. Those are numbered from 1 there: kept as they were, they would
    sit below the file's MAX, the site version would not grow and "changed since n" (the API's
    streams and replays, the device's retained states) would never return them. `base` is the
    higher of the file's and the stand-in's versions before the copy, so that a state a
    handheld took from the stand-in during the outage is older than every one after it too
    (a handheld drops a state older than the one it holds)."""
    on_memory = {
        row["alert_id"]: row["version"]
        for row in src.execute("SELECT alert_id, version FROM alerts").fetchall()
    }
    ordered = sorted(landed, key=lambda a: (on_memory.get(a, 0), a))
    dst.executemany(
        "UPDATE alerts SET version = ? WHERE alert_id = ?",
        [(base + n, alert_id) for n, alert_id in enumerate(ordered, start=1)],
    )


def _alerts_version(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(MAX(version), 0) FROM alerts").fetchone()[0])


def _select_alerts(
    db: sqlite3.Connection, where: str, params: list[object], *, order: bool = True
) -> list[AlertRecord]:
    """Alerts matching `where`, oldest raised first unless `where` orders them itself (the
    caller holds the store's lock, or is inside its transaction)."""
    query = (
        f"SELECT *, {ALERT_STATUS_SQL} AS status,"
        " (SELECT COUNT(*) FROM passes p WHERE p.alert_id = alerts.alert_id) AS passes"
        f" FROM alerts WHERE {where}"
    )
    if order:
        query += " ORDER BY raised_at"
    return [_alert_from_row(row) for row in db.execute(query, params).fetchall()]


def _live_sum(db: sqlite3.Connection, zones: list[str]) -> float | None:
    marks = ",".join("?" * len(zones))
    rows = db.execute(f"SELECT count FROM zone_live WHERE zone_id IN ({marks})", zones).fetchall()
    if len(rows) != len(zones) or any(row["count"] is None for row in rows):
        return None
    return float(sum(row["count"] for row in rows))


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _alert_from_row(row: sqlite3.Row) -> AlertRecord:
    return AlertRecord(
        alert_id=row["alert_id"],
        rule=row["rule"],
        kind=row["kind"],
        zones=tuple(json.loads(row["zones"])),
        threshold=row["threshold"],
        since=datetime.fromisoformat(row["since"]),
        raised_at=datetime.fromisoformat(row["raised_at"]),
        count_at_raise=row["count_at_raise"],
        message=row["message"],
        escalations=row["escalations"],
        last_notified_at=datetime.fromisoformat(row["last_notified_at"]),
        acknowledged_at=_dt(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
        count_at_ack=row["count_at_ack"],
        pass_done_at=_dt(row["pass_done_at"]),
        pass_done_by=row["pass_done_by"],
        effect_after_s=row["effect_after_s"],
        effect_count=row["effect_count"],
        effect_measured_at=_dt(row["effect_measured_at"]),
        cleared_at=_dt(row["cleared_at"]),
        count_at_clear=row["count_at_clear"],
        status=row["status"],
        version=row["version"],
        details=row["details"],
        passes=row["passes"],
    )


def _hand_count_from_row(row: sqlite3.Row) -> HandCount:
    return HandCount(
        camera_id=row["camera_id"],
        at=datetime.fromisoformat(row["at"]),
        seq=int(row["seq"]),
        width=int(row["width"]),
        height=int(row["height"]),
        heads=tuple((float(x), float(y)) for x, y in json.loads(row["heads"])),
        boxes=tuple(StoredBox.from_json(b) for b in json.loads(row["boxes"])),
        detected={str(z): int(n) for z, n in json.loads(row["detected"]).items()},
        zones_key=row["zones_key"],
        saved_by=row["saved_by"],
        saved_at=datetime.fromisoformat(row["saved_at"]),
        id=int(row["id"]),
    )


def _pass_from_row(row: sqlite3.Row) -> PassRecord:
    return PassRecord(
        alert_id=row["alert_id"],
        number=row["number"],
        asked_at=datetime.fromisoformat(row["asked_at"]),
        accepted_at=_dt(row["accepted_at"]),
        accepted_by=row["accepted_by"],
        done_at=_dt(row["done_at"]),
        done_by=row["done_by"],
        count_before=row["count_before"],
        wait_before_s=row["wait_before_s"],
        count_after=row["count_after"],
        wait_after_s=row["wait_after_s"],
        kiosks_in_use_after=row["kiosks_in_use_after"],
        kiosks_capacity=row["kiosks_capacity"],
        measured_at=_dt(row["measured_at"]),
    )


def _latest_pass(db: sqlite3.Connection, alert_id: str) -> int:
    """The number of the alert's latest pass; 1 where it has no passes rows (a camera alert,
    or a diversion raised by an older lobbywatch: its raise is its pass 1)."""
    row = db.execute(
        "SELECT COALESCE(MAX(number), 1) FROM passes WHERE alert_id = ?", (alert_id,)
    ).fetchone()
    return int(row[0])


def _ensure_first_pass(db: sqlite3.Connection, alert_id: str) -> None:
    """A diversion alert's pass 1, where it has none: its raise (an older lobbywatch, run
    after a rollback, raises without passes rows)."""
    db.execute(
        "INSERT INTO passes (alert_id, number, asked_at)"
        " SELECT alert_id, 1, raised_at FROM alerts WHERE alert_id = ? AND kind = 'diversion'"
        " AND NOT EXISTS (SELECT 1 FROM passes WHERE alert_id = ?)",
        (alert_id, alert_id),
    )


def _ack_pass(
    db: sqlite3.Connection,
    alert_id: str,
    status: str,
    by: str,
    at: datetime,
    count: float | None,
    wait_s: float | None,
) -> None:
    """Put an acknowledgement the alert took on its latest pass (a pass done without an
    accept is both, its "before" figures taken then)."""
    _ensure_first_pass(db, alert_id)
    latest = "number = (SELECT MAX(number) FROM passes WHERE alert_id = :alert)"
    values = {"alert": alert_id, "by": by, "at": _iso(at), "count": count, "wait": wait_s}
    if status == "accepted":
        db.execute(
            "UPDATE passes SET accepted_at = :at, accepted_by = :by, count_before = :count,"
            f" wait_before_s = :wait WHERE alert_id = :alert AND accepted_at IS NULL AND {latest}",
            values,
        )
        return
    db.execute(  # the right-hand sides read the row as it was before this update
        "UPDATE passes SET done_at = :at, done_by = :by,"
        " count_before = CASE WHEN accepted_at IS NULL THEN :count ELSE count_before END,"
        " wait_before_s = CASE WHEN accepted_at IS NULL THEN :wait ELSE wait_before_s END,"
        " accepted_by = COALESCE(accepted_by, :by), accepted_at = COALESCE(accepted_at, :at)"
        f" WHERE alert_id = :alert AND done_at IS NULL AND {latest}",
        values,
    )


def _measure_at_reask(db: sqlite3.Connection, alert_id: str, at: datetime) -> None:
    """The latest pass's "after" figures, if it was done and not measured: the live count of
    the alert's zones and the snapshot's wait (no kiosk figures: the snapshot's are the
    monitor's to read)."""
    row = db.execute("SELECT zones FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
    count = _live_sum(db, json.loads(row["zones"]))
    db.execute(
        "UPDATE passes SET count_after = ?, wait_after_s = ?, measured_at = ?"
        " WHERE alert_id = ? AND done_at IS NOT NULL AND measured_at IS NULL"
        " AND number = (SELECT MAX(number) FROM passes WHERE alert_id = ?)",
        (count, _live_wait(db, at), _iso(at), alert_id, alert_id),
    )


def _live_wait(db: sqlite3.Connection, at: datetime) -> float | None:
    """The estimated wait (seconds) in the queue snapshot, if it was taken at most
    QUEUE_LIVE_MAX_AGE_S from `at`; None where there is none, it is older or it says unknown."""
    row = db.execute("SELECT payload, at FROM queue_live WHERE id = 1").fetchone()
    if row is None:
        return None
    age = abs((at - datetime.fromisoformat(row["at"])).total_seconds())
    if age > QUEUE_LIVE_MAX_AGE_S:
        return None
    try:
        minutes = json.loads(row["payload"])["wait"]["minutes"]
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
        return None
    if not math.isfinite(minutes) or minutes < 0:  # NaN, Infinity (JSON allows them): no wait
        return None
    return float(minutes) * 60.0


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()
