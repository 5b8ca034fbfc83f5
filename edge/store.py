"""The on-disk store: occupancy history and live state in SQLite (WAL).

WAL lets the API read while the pipeline writes, from another process, without blocking either.
One connection per Store, guarded by a lock, so camera threads can share it. Rows merge on
conflict: a bucket cut short by a restart is completed by the next run, not duplicated.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge.types import CameraStatus, ZoneReading

SCHEMA_VERSION = 1

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
    at TEXT NOT NULL
);
"""

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
class CameraLive:
    camera_id: str
    status: CameraStatus
    fps: float
    at: datetime


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
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
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
                "INSERT OR REPLACE INTO camera_live (camera_id, status, fps, at) VALUES (?, ?, ?, ?)",
                (camera.camera_id, camera.status.value, camera.fps, _iso(camera.at)),
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
            )
            for row in rows
        ]


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()
