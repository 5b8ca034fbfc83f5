"""Pre-aggregated 15m, 1h and 1d history buckets, kept by the API in a cache file of its own.

Why: a month of 1h buckets for 10 zones reads 2.6 million stored intervals at the default 10 s
interval, and an exact p90 needs every one of them; SQLite and numpy take seconds for that on a
2-core box. A bucket that has closed never changes again, so it is computed once, here, and a
query reads one row per bucket (7 200 for that month) plus the raw intervals of the few buckets
that are still open or not rolled up yet. Answers are identical either way: both paths use
`edge.storage.aggregate.aggregate` on the same intervals.

Why a separate file (`<store stem>.api-rollup.db` beside the store): the store's schema belongs to
the pipeline, and a long write there would hold the write lock the pipeline needs every interval.
The file is a cache: delete it and it is rebuilt, in the background, from the store.

A bucket is rolled up once it ended `FINAL_AFTER_S` (or two storage intervals and a minute, if
longer) ago: the pipeline writes an interval when it closes, and a restart merges into the
interval it was in, never into older ones. (A wall-clock step back on the device could write into
rolled-up buckets again; delete the file to rebuild it.)
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from api.buckets import Bucket, Int64Array, edges_between, floor_edge
from api.db import StoreAccess
from edge.storage.aggregate import Buckets, fetch_intervals
from edge.storage.aggregate import aggregate as aggregate_intervals

log = logging.getLogger("lobbywatch.api.rollup")

LEVELS: tuple[Bucket, ...] = ("15m", "1h", "1d")
FORMAT_VERSION = "1"
FINAL_AFTER_S = 300
#: Raw history read per step while catching up: about 9 000 intervals per zone at 10 s.
CHUNK: dict[Bucket, timedelta] = {
    "15m": timedelta(days=1),
    "1h": timedelta(days=7),
    "1d": timedelta(days=31),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollup (
    level TEXT NOT NULL,                -- 15m | 1h | 1d
    zone_id TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,      -- UTC unix seconds
    bucket_end INTEGER NOT NULL,
    intervals INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    mean REAL,
    max REAL,
    p90 REAL,
    seen_s REAL NOT NULL,
    PRIMARY KEY (level, zone_id, bucket_start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def default_path(store_path: Path) -> Path:
    return store_path.with_name(f"{store_path.stem}.api-rollup.db")


class Rollup:
    """The rollup file at `path` for the store behind `store`.

    identity: what the rolled-up buckets depend on (site, time zone of 1d buckets, zones); when it
    differs from what the file was built for, the file is emptied and rebuilt.
    """

    def __init__(
        self,
        path: Path,
        store: StoreAccess,
        *,
        tz: ZoneInfo,
        zone_ids: list[str],
        retention_days: int,
        interval_s: int,
    ) -> None:
        self.path = path
        self.store = store
        self.tz = tz
        self.zone_ids = list(zone_ids)
        self.retention = timedelta(days=retention_days)
        self.final_after_s = max(FINAL_AFTER_S, 2 * interval_s + 60)
        self._lock = threading.Lock()
        identity = json.dumps(
            {
                "format": FORMAT_VERSION,
                "site": store.site_id,
                "timezone": tz.key,
                "zones": sorted(zone_ids),
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            self._db.executescript(_SCHEMA)
            row = self._db.execute(
                "SELECT value FROM rollup_meta WHERE key = 'identity'"
            ).fetchone()
            if row is None or row[0] != identity:
                if row is not None:
                    log.info("rollup %s: site, time zone or zones changed; rebuilding", path)
                self._db.execute("DELETE FROM rollup")
                self._db.execute("DELETE FROM rollup_meta")
                self._db.execute(
                    "INSERT INTO rollup_meta (key, value) VALUES ('identity', ?)", (identity,)
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reads (any thread) --------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def done_until(db: sqlite3.Connection, level: Bucket) -> int | None:
        """Every `level` bucket ending at or before this time (UTC seconds) is rolled up."""
        row = db.execute(
            "SELECT value FROM rollup_meta WHERE key = ?", (f"done_until:{level}",)
        ).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def fill(
        db: sqlite3.Connection, level: Bucket, zone_id: str, edges: Int64Array, into: Buckets
    ) -> None:
        """Copy the rolled-up buckets that start at `edges[:-1]` into `into` (same length)."""
        rows = db.execute(
            "SELECT bucket_start, intervals, samples, mean, max, p90, seen_s FROM rollup"
            " WHERE level = ? AND zone_id = ? AND bucket_start >= ? AND bucket_start < ?",
            (level, zone_id, int(edges[0]), int(edges[-1])),
        ).fetchall()
        if not rows:
            return
        table = np.asarray(rows, dtype=np.float64)
        starts = table[:, 0].astype(np.int64)
        at = np.searchsorted(edges[:-1], starts)
        ok = (at < len(into)) & (edges[np.minimum(at, len(edges) - 1)] == starts)
        at, table = at[ok], table[ok]
        into.intervals[at] = table[:, 1].astype(np.int64)
        into.samples[at] = table[:, 2].astype(np.int64)
        into.mean[at] = table[:, 3]
        into.max[at] = table[:, 4]
        into.p90[at] = table[:, 5]
        into.seen_s[at] = table[:, 6]

    # --- writes (one refresher at a time) -----------------------------------------------

    def refresh(self, now: datetime, *, max_steps: int | None = None) -> bool:
        """Roll up buckets that closed since the last call; True when nothing is left to do.

        max_steps bounds the work of one call (one step is one CHUNK of one level), so a first
        build over a year of history can pause between steps and leave the CPU to the pipeline.
        """
        with self._lock:
            now_ts = int(now.timestamp())
            with self._db:
                cutoff = now_ts - int(self.retention.total_seconds())
                self._db.execute("DELETE FROM rollup WHERE bucket_end <= ?", (cutoff,))
            steps = 0
            for level in LEVELS:
                while max_steps is None or steps < max_steps:
                    if not self._step(level, now_ts):
                        break
                    steps += 1
                else:
                    return False
            return True

    def _step(self, level: Bucket, now_ts: int) -> bool:
        """Roll up one chunk of `level`; False when that level is up to date."""
        final_until = floor_edge(level, now_ts - self.final_after_s, self.tz)
        start = self.done_until(self._db, level)
        with self.store.read() as store_db:
            if start is None:
                first = store_db.execute("SELECT MIN(bucket_start) FROM zone_history").fetchone()[0]
                if first is None:
                    return False
                start = floor_edge(level, int(first), self.tz)
            stop = min(final_until, start + int(CHUNK[level].total_seconds()))
            edges = edges_between(level, start, stop, self.tz)
            if len(edges) < 2:
                return False
            rows = []
            for zone_id in self.zone_ids:
                intervals = fetch_intervals(store_db, zone_id, int(edges[0]), int(edges[-1]))
                buckets = aggregate_intervals(intervals, edges)
                rows.extend(_rows(level, zone_id, edges, buckets))
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO rollup (level, zone_id, bucket_start, bucket_end,"
                " intervals, samples, mean, max, p90, seen_s) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            self._db.execute(
                "INSERT OR REPLACE INTO rollup_meta (key, value) VALUES (?, ?)",
                (f"done_until:{level}", str(int(edges[-1]))),
            )
        return True


def _rows(
    level: Bucket, zone_id: str, edges: Int64Array, buckets: Buckets
) -> list[tuple[object, ...]]:
    return [
        (
            level,
            zone_id,
            int(edges[i]),
            int(edges[i + 1]),
            int(buckets.intervals[i]),
            int(buckets.samples[i]),
            _num(buckets.mean[i]),
            _num(buckets.max[i]),
            _num(buckets.p90[i]),
            float(buckets.seen_s[i]),
        )
        for i in np.flatnonzero(buckets.intervals > 0)
    ]


def _num(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


class RollupWorker:
    """Keeps the rollup current in a background thread: catches up step by step, resting as long
    as each step took (so a first build uses at most about half a core), then every `every_s`."""

    def __init__(
        self,
        rollup: Rollup,
        clock: Callable[[], datetime],
        every_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rollup = rollup
        self.clock = clock
        self.every_s = every_s
        self.monotonic = monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-rollup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set():
                    began = self.monotonic()
                    if self.rollup.refresh(self.clock(), max_steps=1):
                        break
                    self._stop.wait(min(1.0, self.monotonic() - began))
            except Exception:  # a failed refresh only slows queries down; try again later
                log.exception("rollup refresh failed")
            self._stop.wait(self.every_s)
