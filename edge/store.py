"""The on-disk store: occupancy history and live state in SQLite (WAL).

WAL lets the API read while the pipeline writes, from another process, without blocking either.
One connection per Store, guarded by a lock, so camera threads can share it. Rows merge on
conflict: a bucket cut short by a restart is completed by the next run, not duplicated.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge.types import CameraStatus, ZoneReading

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

# Changes to an existing store, applied in order when a device updates: schema version they
# bring the store to, and the statements. Additive only (new tables, new columns with a
# default), so a rolled-back older lobbywatch still runs on a newer store.
_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (2, ("ALTER TABLE camera_live ADD COLUMN inference_ms REAL NOT NULL DEFAULT 0",)),
)

_SCHEMA = """
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
    count_at_clear REAL
);
CREATE INDEX IF NOT EXISTS alerts_raised ON alerts (raised_at);
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
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent_at, seq);
"""

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


class Store:
    """SQLite store at `path` (created with its directory if missing)."""

    def __init__(self, path: Path | str, *, site_id: str | None = None) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode loses at most the last transactions on power loss, never corrupts.
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._tx() as db:
            found = _schema_version(db)
            db.executescript(_SCHEMA)
            if found is None:  # a new store: _SCHEMA is the current one
                found = SCHEMA_VERSION
            for version, statements in _MIGRATIONS:
                if found < version:
                    for statement in statements:
                        db.execute(statement)
                    found = version
            if found > SCHEMA_VERSION:
                log.warning(
                    "store %s has schema version %d, newer than this lobbywatch's %d "
                    "(a rollback?): running on it, its changes are additive",
                    self.path, found, SCHEMA_VERSION,
                )  # fmt: skip
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(max(found, SCHEMA_VERSION)),),
            )
            if site_id is not None:
                self._check_site(db, site_id)

    def _check_site(self, db: sqlite3.Connection, site_id: str) -> None:
        # One store per site: mixing two branches' history would corrupt every report.
        row = db.execute("SELECT value FROM meta WHERE key = 'site_id'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta (key, value) VALUES ('site_id', ?)", (site_id,))
        elif row["value"] != site_id:
            raise ValueError(
                f"store {self.path} belongs to site {row['value']!r}, not {site_id!r}: "
                "use another storage.path per site"
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

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
        """Delete history older than `cutoff`; returns the number of rows removed."""
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM zone_history WHERE bucket_start < ?", (int(cutoff.timestamp()),)
            )
            return cursor.rowcount

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
        """Store a new alert and the messages that announce it, in one transaction."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO alerts (alert_id, rule, kind, zones, threshold, since, raised_at,"
                " count_at_raise, message, escalations, last_notified_at, effect_after_s)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.alert_id, alert.rule, alert.kind, json.dumps(list(alert.zones)),
                    alert.threshold, _iso(alert.since), _iso(alert.raised_at),
                    alert.count_at_raise, alert.message, alert.escalations,
                    _iso(alert.last_notified_at), alert.effect_after_s,
                ),
            )  # fmt: skip
            self._enqueue(db, messages)

    def escalate_alert(self, alert_id: str, at: datetime, messages: list[OutboxMessage]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET escalations = escalations + 1, last_notified_at = ?"
                " WHERE alert_id = ?",
                (_iso(at), alert_id),
            )
            self._enqueue(db, messages)

    def clear_alert(
        self, alert_id: str, at: datetime, count: float | None, messages: list[OutboxMessage]
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET cleared_at = ?, count_at_clear = ?"
                " WHERE alert_id = ? AND cleared_at IS NULL",
                (_iso(at), count, alert_id),
            )
            self._enqueue(db, messages)

    def record_ack(self, alert_id: str, by: str, status: str, at: datetime) -> AlertRecord | None:
        """Apply a handheld's or a manager's acknowledgement; None for an unknown alert.

        Idempotent: the first "accepted" and the first "pass_done" win, repeats change nothing.
        A "pass_done" without an earlier "accepted" counts as both. The waiting count at the
        acknowledgement is read from the live table (the sum of the alert's zones; unknown if
        any zone is unknown), the same way whichever path the acknowledgement took.
        """
        if status not in ("accepted", "pass_done"):
            raise ValueError(f"ack status must be accepted or pass_done, got {status!r}")
        with self._tx() as db:
            row = db.execute("SELECT zones FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            if row is None:
                return None
            count = _live_sum(db, json.loads(row["zones"]))
            db.execute(
                "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?, count_at_ack = ?"
                " WHERE alert_id = ? AND acknowledged_at IS NULL",
                (_iso(at), by, count, alert_id),
            )
            if status == "pass_done":
                db.execute(
                    "UPDATE alerts SET pass_done_at = ?, pass_done_by = ?"
                    " WHERE alert_id = ? AND pass_done_at IS NULL",
                    (_iso(at), by, alert_id),
                )
        return self.alert(alert_id)

    def record_effect(self, alert_id: str, count: float | None, at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET effect_count = ?, effect_measured_at = ?"
                " WHERE alert_id = ? AND effect_measured_at IS NULL",
                (count, _iso(at), alert_id),
            )

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
        query = (
            f"SELECT *, {ALERT_STATUS_SQL} AS status FROM alerts WHERE {where} ORDER BY raised_at"
        )
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [_alert_from_row(row) for row in rows]

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

    def pending_messages(self, now: datetime, limit: int = 100) -> list[OutboxMessage]:
        """Unsent messages that have not expired, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM outbox WHERE sent_at IS NULL"
                " AND (expires_at IS NULL OR expires_at > ?) ORDER BY seq LIMIT ?",
                (_iso(now), limit),
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

    def mark_sent(self, seq: int, at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET sent_at = ? WHERE seq = ? AND sent_at IS NULL", (_iso(at), seq)
            )


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
    )


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()
