"""The central store: every branch's intervals, alert lifecycle and camera health in PostgreSQL.

docs/central.md, "Central store". Tables are partitioned by month on their time column
(declarative PARTITION BY RANGE), so retention drops whole partitions instead of deleting rows
one by one. Ingestion is idempotent: each row carries its natural key and is inserted with
ON CONFLICT DO NOTHING, so a message delivered twice (QoS 1, a bridge replaying its queue, an
ingestion instance retrying a batch) is stored once. That also makes retrying a batch after a
lost connection safe, which the store does once by itself.

All timestamps are timezone-aware and stored as timestamptz; rows read back are in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar, get_args

import psycopg
from psycopg.types.json import Jsonb

from edge.config import LINE_ROLES, ZoneRole

T = TypeVar("T")

AlertStatus = Literal["raised", "escalated", "accepted", "pass_done", "cleared"]
# An alert's lifecycle in order (edge/alerts/state.py: escalated only while raised and not yet
# accepted; cleared is last). The latest-state table only ever moves forward along it.
STATUS_RANK: dict[str, int] = {s: i for i, s in enumerate(get_args(AlertStatus))}
CameraHealthStatus = Literal["online", "stale", "offline"]
ZONE_ROLES: frozenset[str] = frozenset(get_args(ZoneRole))

# Partitioned tables and the column each is partitioned on.
PARTITIONED: dict[str, str] = {
    "occupancy_intervals": "start_at",
    "alert_events": "at",
    "camera_health": "at",
    "queue_waits": "minute",
}

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE occupancy_intervals (
            site text NOT NULL,
            camera text NOT NULL,
            zone text NOT NULL,
            role text NOT NULL,
            start_at timestamptz NOT NULL,
            end_at timestamptz NOT NULL,
            mean double precision,
            max double precision,
            p90 double precision,
            frames integer NOT NULL,
            seen_s double precision NOT NULL,
            received_at timestamptz NOT NULL,
            PRIMARY KEY (site, zone, start_at)
        ) PARTITION BY RANGE (start_at);
        -- one branch over a period; all branches' waiting zones over a period
        CREATE INDEX occupancy_intervals_site_start ON occupancy_intervals (site, start_at);
        CREATE INDEX occupancy_intervals_start_role ON occupancy_intervals (start_at, role);

        CREATE TABLE alert_events (
            site text NOT NULL,
            alert_id text NOT NULL,
            kind text NOT NULL,
            rule text NOT NULL,
            zone_ids text[] NOT NULL,
            status text NOT NULL,
            at timestamptz NOT NULL,
            "by" text,
            details jsonb NOT NULL,
            received_at timestamptz NOT NULL,
            PRIMARY KEY (site, alert_id, status, at)
        ) PARTITION BY RANGE (at);
        CREATE INDEX alert_events_site_at ON alert_events (site, at);
        CREATE INDEX alert_events_at ON alert_events (at);

        -- latest state per alert: small, not partitioned, upserted forward only
        CREATE TABLE alerts (
            site text NOT NULL,
            alert_id text NOT NULL,
            kind text NOT NULL,
            rule text NOT NULL,
            zone_ids text[] NOT NULL,
            status text NOT NULL,
            status_rank smallint NOT NULL,
            at timestamptz NOT NULL,
            "by" text,
            details jsonb NOT NULL,
            received_at timestamptz NOT NULL,
            PRIMARY KEY (site, alert_id)
        );
        CREATE INDEX alerts_site_at ON alerts (site, at);

        CREATE TABLE camera_health (
            site text NOT NULL,
            camera text NOT NULL,
            status text NOT NULL,
            at timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            PRIMARY KEY (site, camera, at)
        ) PARTITION BY RANGE (at);
        CREATE INDEX camera_health_at ON camera_health (at);
        """,
    ),
    (
        2,
        """
        -- one row per branch: when it was last heard from, what its availability said
        CREATE TABLE sites (
            site text PRIMARY KEY,
            last_seen_at timestamptz NOT NULL,
            availability text,
            availability_at timestamptz
        );

        -- the queue's wait, the first report of each minute
        CREATE TABLE queue_waits (
            site text NOT NULL,
            minute timestamptz NOT NULL,
            wait_minutes double precision,
            low_minutes double precision,
            high_minutes double precision,
            confidence text,
            method text,
            line_count double precision,
            received_at timestamptz NOT NULL,
            PRIMARY KEY (site, minute)
        ) PARTITION BY RANGE (minute);
        CREATE INDEX queue_waits_minute ON queue_waits (minute);
        """,
    ),
)

# Serialises migrations and partition creation between ingestion instances (any constant key).
_DDL_LOCK = 0x10BB_1602


def utc(name: str, value: datetime) -> datetime:
    """`value` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(timezone.utc)


def _require_text(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


@dataclass(frozen=True)
class IntervalRow:
    """One zone's closed occupancy interval at one branch. mean/max/p90: people (None when no
    frame was processed); frames: processed frames; seen_s: seconds the camera was online."""

    site: str
    camera: str
    zone: str
    role: str
    start_at: datetime
    end_at: datetime
    mean: float | None
    max: float | None
    p90: float | None
    frames: int
    seen_s: float

    def __post_init__(self) -> None:
        for name in ("site", "camera", "zone"):
            _require_text(name, getattr(self, name))
        if self.role not in ZONE_ROLES:
            raise ValueError(f"role must be one of {sorted(ZONE_ROLES)}, got {self.role!r}")
        object.__setattr__(self, "start_at", utc("start_at", self.start_at))
        object.__setattr__(self, "end_at", utc("end_at", self.end_at))
        if self.end_at <= self.start_at:
            raise ValueError(f"end_at {self.end_at} must be after start_at {self.start_at}")
        if self.frames < 0 or self.seen_s < 0:
            raise ValueError(f"frames and seen_s must be >= 0, got {self.frames}, {self.seen_s}")


@dataclass(frozen=True)
class AlertEventRow:
    """One step of an alert's lifecycle at one branch (by: who acted, None for the device)."""

    site: str
    alert_id: str
    kind: str
    rule: str
    zone_ids: tuple[str, ...]
    status: AlertStatus
    at: datetime
    by: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("site", "alert_id", "kind", "rule"):
            _require_text(name, getattr(self, name))
        if self.status not in STATUS_RANK:
            raise ValueError(f"status must be one of {list(STATUS_RANK)}, got {self.status!r}")
        object.__setattr__(self, "zone_ids", tuple(self.zone_ids))
        object.__setattr__(self, "at", utc("at", self.at))


@dataclass(frozen=True)
class CameraHealthRow:
    """A camera's health as its device reported it at `at`."""

    site: str
    camera: str
    status: CameraHealthStatus
    at: datetime

    def __post_init__(self) -> None:
        _require_text("site", self.site)
        _require_text("camera", self.camera)
        if self.status not in get_args(CameraHealthStatus):
            raise ValueError(
                f"status must be one of {get_args(CameraHealthStatus)}, got {self.status!r}"
            )
        object.__setattr__(self, "at", utc("at", self.at))


@dataclass(frozen=True)
class QueueWaitRow:
    """A branch's estimated wait as its queue monitor had it in one minute (None: unknown)."""

    site: str
    minute: datetime
    wait_minutes: float | None
    low_minutes: float | None
    high_minutes: float | None
    confidence: str | None
    method: str | None
    line_count: float | None

    def __post_init__(self) -> None:
        _require_text("site", self.site)
        minute = utc("minute", self.minute)
        object.__setattr__(self, "minute", minute.replace(second=0, microsecond=0))


@dataclass(frozen=True)
class SiteSeen:
    """A branch was heard from at `at`; `availability` when the message said it (its
    `<site>/availability`: online, offline, stopped)."""

    site: str
    at: datetime
    availability: str | None = None

    def __post_init__(self) -> None:
        _require_text("site", self.site)
        object.__setattr__(self, "at", utc("at", self.at))


@dataclass
class Batch:
    """What one batch of broker messages holds, stored in one transaction."""

    intervals: list[IntervalRow] = field(default_factory=list)
    alert_events: list[AlertEventRow] = field(default_factory=list)
    camera_health: list[CameraHealthRow] = field(default_factory=list)
    queue_waits: list[QueueWaitRow] = field(default_factory=list)
    sites: list[SiteSeen] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.intervals)
            + len(self.alert_events)
            + len(self.camera_health)
            + len(self.queue_waits)
            + len(self.sites)
        )


@dataclass(frozen=True)
class BatchResult:
    """Rows that were new, per table (a redelivered message adds none)."""

    intervals: int = 0
    alert_events: int = 0
    camera_health: int = 0
    queue_waits: int = 0


@dataclass(frozen=True)
class Retention:
    """Days kept per table (docs/central.md: `central.retention_days`)."""

    intervals_days: int = 400
    alert_events_days: int = 730
    health_days: int = 90

    def __post_init__(self) -> None:
        for name in ("intervals_days", "alert_events_days", "health_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"retention {name} must be >= 1 day, got {getattr(self, name)}")

    def days(self, table: str) -> int:
        return {
            "occupancy_intervals": self.intervals_days,
            "alert_events": self.alert_events_days,
            "camera_health": self.health_days,
            "queue_waits": self.intervals_days,
        }[table]


@dataclass(frozen=True)
class BranchWaiting:
    """A branch's mean number of people waiting (summed over its line zones) over a period."""

    site: str
    mean_waiting: float
    intervals: int


def _columns(
    row: IntervalRow | CameraHealthRow | QueueWaitRow, received: datetime
) -> tuple[Any, ...]:
    """A row's fields in their declared order (its table's column order), then received_at."""
    return (*vars(row).values(), received)


def month_start(at: datetime) -> datetime:
    at = utc("at", at)
    return datetime(at.year, at.month, 1, tzinfo=timezone.utc)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=timezone.utc)


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


class CentralStore:
    """The store on one PostgreSQL database. One connection, opened on first use and opened
    again (the operation retried once) when the server went away: ingest batches are
    idempotent, so a batch whose commit was lost is safely written again."""

    def __init__(self, dsn: str, clock: Callable[[], datetime] | None = None) -> None:
        self.dsn = dsn
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._conn: psycopg.Connection[Any] | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> CentralStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
            self._conn.execute("SET TIME ZONE 'UTC'")
        return self._conn

    def _transaction(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        for attempt in (1, 2):
            conn = self._connection()
            try:
                with conn.transaction():
                    return work(conn)
            except psycopg.OperationalError:
                if attempt == 2 or not conn.broken:
                    raise
                self.close()  # the server restarted or the link dropped: reconnect and retry
        raise AssertionError("unreachable")

    # -- schema -----------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Bring the schema to the latest version; returns the versions applied (none when
        already current), so running it on every start is harmless."""

        def work(conn: psycopg.Connection[Any]) -> list[int]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
            )
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            current = int(row[0]) if row else 0
            applied = []
            for version, sql in MIGRATIONS:
                if version > current:
                    conn.execute(sql)
                    conn.execute(
                        "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                        (version, self._clock()),
                    )
                    applied.append(version)
            return applied

        return self._transaction(work)

    def schema_version(self) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            if conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,):
                return 0
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            return int(row[0]) if row else 0

        return self._transaction(work)

    def ensure_partitions(self, now: datetime) -> list[str]:
        """Create this month's and next month's partitions of every table where missing, so
        rows arriving around a month's turn always have a home; returns the ones created."""
        this = month_start(now)
        return self._transaction(
            lambda conn: self._ensure_months(conn, {this, next_month(this)}, set(PARTITIONED))
        )

    def _ensure_months(
        self, conn: psycopg.Connection[Any], months: set[datetime], tables: set[str]
    ) -> list[str]:
        wanted = [(t, m) for t in sorted(tables) for m in sorted(months)]
        names = [partition_name(t, m) for t, m in wanted]
        have = {
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'", (names,)
            )
        }
        if not have.issuperset(names):
            self._require_schema(conn)
            # Several ingestion instances may meet a new month at once.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        created = []
        for (table, month), name in zip(wanted, names, strict=True):
            if name in have:
                continue
            status = conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table}"
                f" FOR VALUES FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}')"
            ).statusmessage
            if status == "CREATE TABLE":
                created.append(name)
        return created

    @staticmethod
    def _require_schema(conn: psycopg.Connection[Any]) -> None:
        if conn.execute("SELECT to_regclass('occupancy_intervals')").fetchone() == (None,):
            raise RuntimeError(
                "the central store has no schema yet: run CentralStore.migrate() first"
            )

    def partitions(self, table: str) -> list[str]:
        """The partitions `table` has now, oldest first."""
        if table not in PARTITIONED:
            raise ValueError(f"{table!r} is not a partitioned table: one of {sorted(PARTITIONED)}")
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = %s::regclass ORDER BY c.relname",
                (table,),
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    # -- ingest -----------------------------------------------------------------------------

    def ingest(self, batch: Batch) -> BatchResult:
        """Store everything of one batch in one transaction (all or nothing, so the messages
        behind it can be acked together); returns how many rows were new per table."""
        received = self._clock()

        def work(conn: psycopg.Connection[Any]) -> BatchResult:
            result = BatchResult(
                intervals=self._write_rows(conn, "occupancy_intervals", batch.intervals, received),
                alert_events=self._write_alert_events(conn, batch.alert_events, received),
                camera_health=self._write_rows(
                    conn, "camera_health", batch.camera_health, received
                ),
                queue_waits=self._write_rows(conn, "queue_waits", batch.queue_waits, received),
            )
            self._write_sites(conn, batch.sites)
            return result

        return self._transaction(work)

    def ingest_intervals(self, rows: Iterable[IntervalRow]) -> int:
        """Store a batch in one transaction; returns how many rows were new."""
        return self.ingest(Batch(intervals=list(rows))).intervals

    def ingest_alert_events(self, rows: Iterable[AlertEventRow]) -> int:
        """Store a batch of lifecycle events and move each alert's latest state forward (never
        back: an 'accepted' arriving after 'cleared' is kept as history only). Returns how many
        events were new."""
        return self.ingest(Batch(alert_events=list(rows))).alert_events

    def ingest_camera_health(self, rows: Iterable[CameraHealthRow]) -> int:
        """Store a batch of health reports; returns how many were new."""
        return self.ingest(Batch(camera_health=list(rows))).camera_health

    def _write_alert_events(
        self, conn: psycopg.Connection[Any], batch: list[AlertEventRow], received: datetime
    ) -> int:
        events = [
            (
                r.site,
                r.alert_id,
                r.kind,
                r.rule,
                list(r.zone_ids),
                r.status,
                r.at,
                r.by,
                Jsonb(r.details),
                received,
            )
            for r in batch
        ]
        new = self._insert(
            conn,
            "alert_events",
            [r.at for r in batch],
            'INSERT INTO alert_events (site, alert_id, kind, rule, zone_ids, status, at, "by",'
            " details, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            events,
        )
        states = [
            (*e[:6], STATUS_RANK[r.status], *e[6:]) for e, r in zip(events, batch, strict=True)
        ]
        if states:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO alerts AS a (site, alert_id, kind, rule, zone_ids, status,"
                    ' status_rank, at, "by", details, received_at)'
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (site, alert_id) DO UPDATE SET kind = excluded.kind,"
                    " rule = excluded.rule, zone_ids = excluded.zone_ids, status = excluded.status,"
                    ' status_rank = excluded.status_rank, at = excluded.at, "by" = excluded."by",'
                    " details = excluded.details, received_at = excluded.received_at"
                    # the same step again with a later version (an effect measured after
                    # the pass) carries news: the device's version orders it
                    " WHERE (excluded.status_rank, excluded.at, coalesce((excluded.details"
                    " ->> 'version')::bigint, 0)) > (a.status_rank, a.at,"
                    " coalesce((a.details ->> 'version')::bigint, 0))",
                    states,
                )
        return new

    def _write_rows(
        self,
        conn: psycopg.Connection[Any],
        table: str,
        batch: list[IntervalRow] | list[CameraHealthRow] | list[QueueWaitRow],
        received: datetime,
    ) -> int:
        """Insert rows whose fields are their table's columns in order (then received_at),
        each once: a row already there (its natural key) is left as it is."""
        if not batch:
            return 0
        names = [*vars(batch[0]), "received_at"]
        sql = (
            f"INSERT INTO {table} ({', '.join(names)})"
            f" VALUES ({', '.join(['%s'] * len(names))}) ON CONFLICT DO NOTHING"
        )
        times = [getattr(r, PARTITIONED[table]) for r in batch]
        return self._insert(conn, table, times, sql, [_columns(r, received) for r in batch])

    @staticmethod
    def _write_sites(conn: psycopg.Connection[Any], seen: list[SiteSeen]) -> None:
        """One upsert per site: the latest time heard, and the latest availability said."""
        latest: dict[str, tuple[datetime, str | None, datetime | None]] = {}
        for s in seen:
            at, availability, availability_at = latest.get(s.site, (s.at, None, None))
            if s.availability is not None and (availability_at is None or s.at >= availability_at):
                availability, availability_at = s.availability, s.at
            latest[s.site] = (max(at, s.at), availability, availability_at)
        if not latest:
            return
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sites AS s (site, last_seen_at, availability, availability_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (site) DO UPDATE SET"
                " last_seen_at = greatest(s.last_seen_at, excluded.last_seen_at),"
                " availability = CASE WHEN excluded.availability_at IS NOT NULL AND"
                " (s.availability_at IS NULL OR excluded.availability_at >= s.availability_at)"
                " THEN excluded.availability ELSE s.availability END,"
                " availability_at = CASE WHEN excluded.availability_at IS NOT NULL AND"
                " (s.availability_at IS NULL OR excluded.availability_at >= s.availability_at)"
                " THEN excluded.availability_at ELSE s.availability_at END",
                [(site, *values) for site, values in sorted(latest.items())],
            )

    def _insert(
        self,
        conn: psycopg.Connection[Any],
        table: str,
        times: list[datetime],
        sql: str,
        params: list[tuple[Any, ...]],
    ) -> int:
        if not params:
            return 0
        # A late row (a branch back after an outage) may belong to a month not yet created.
        self._ensure_months(conn, {month_start(t) for t in times}, {table})
        with conn.cursor() as cur:
            cur.executemany(sql, params)
            return max(cur.rowcount, 0)

    # -- retention --------------------------------------------------------------------------

    def purge(self, now: datetime, retention: Retention | None = None) -> list[str]:
        """Drop every partition whose whole month is older than its table's retention; returns
        the dropped partitions. The alerts' latest state goes with the alert events' retention."""
        retention = retention or Retention()
        now = utc("now", now)

        def work(conn: psycopg.Connection[Any]) -> list[str]:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            dropped = []
            for table in sorted(PARTITIONED):
                cutoff = now.timestamp() - retention.days(table) * 86400
                pattern = re.compile(rf"^{table}_p(\d{{4}})(\d{{2}})$")
                children = conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = %s::regclass",
                    (table,),
                ).fetchall()
                for (name,) in children:
                    match = pattern.match(name)
                    if match is None:
                        continue  # not ours (made by hand): left alone
                    month = datetime(int(match[1]), int(match[2]), 1, tzinfo=timezone.utc)
                    if next_month(month).timestamp() <= cutoff:
                        conn.execute(f"DROP TABLE {name}")
                        dropped.append(name)
            conn.execute(
                "DELETE FROM alerts WHERE at < to_timestamp(%s)",
                (now.timestamp() - retention.alert_events_days * 86400,),
            )
            return sorted(dropped)

        return self._transaction(work)

    # -- queries ----------------------------------------------------------------------------

    def site_intervals(self, site: str, start: datetime, end: datetime) -> list[IntervalRow]:
        """One branch's intervals starting in [start, end), in time then zone order."""
        start, end = utc("start", start), utc("end", end)
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT site, camera, zone, role, start_at, end_at, mean, max, p90, frames, seen_s"
                " FROM occupancy_intervals WHERE site = %s AND start_at >= %s AND start_at < %s"
                " ORDER BY start_at, zone",
                (site, start, end),
            ).fetchall()
        )
        return [IntervalRow(*row) for row in rows]

    def rank_branches_by_waiting(
        self,
        start: datetime,
        end: datetime,
        roles: Sequence[str] = LINE_ROLES,
        limit: int = 100,
    ) -> list[BranchWaiting]:
        """Branches by their mean waiting count over [start, end), most crowded first: per
        interval the branch's line zones are summed (two queues are one branch's wait), then
        averaged over the intervals that had a count."""
        start, end = utc("start", start), utc("end", end)
        rows = self._transaction(
            lambda conn: conn.execute(
                "WITH per_interval AS (SELECT site, start_at, sum(mean) AS waiting"
                " FROM occupancy_intervals WHERE start_at >= %s AND start_at < %s"
                " AND role = ANY(%s) AND mean IS NOT NULL GROUP BY site, start_at)"
                " SELECT site, avg(waiting), count(*) FROM per_interval GROUP BY site"
                " ORDER BY avg(waiting) DESC, site LIMIT %s",
                (start, end, list(roles), limit),
            ).fetchall()
        )
        return [BranchWaiting(str(s), float(m), int(n)) for s, m, n in rows]

    def alert_state(self, site: str, alert_id: str) -> AlertStatus | None:
        """The latest status recorded for one alert, None when unknown."""
        row = self._transaction(
            lambda conn: conn.execute(
                "SELECT status FROM alerts WHERE site = %s AND alert_id = %s", (site, alert_id)
            ).fetchone()
        )
        return None if row is None else row[0]

    # -- head-office reports (central/api, docs/central.md "Head-office API") ---------------
    # Read-only queries of the head-office API. `sites`: the branches the caller may see (None:
    # every branch); ranges are [start, end), aware datetimes, bounded by the API.

    def site_ids(self) -> list[str]:
        """Every branch the store has heard from."""
        rows = self._transaction(
            lambda conn: conn.execute("SELECT site FROM sites ORDER BY site").fetchall()
        )
        return [str(r[0]) for r in rows]

    def sites_seen(self, sites: frozenset[str] | None = None) -> list[SiteState]:
        """Each branch's last message and availability, in site order."""
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT site, last_seen_at, availability, availability_at FROM sites"
                " WHERE (%s::text[] IS NULL OR site = ANY(%s)) ORDER BY site",
                _scope(sites) * 2,
            ).fetchall()
        )
        return [SiteState(*row) for row in rows]

    def site_zones(self, site: str, start: datetime, end: datetime) -> list[str]:
        """The zones a branch sent intervals for in [start, end), in id order."""
        start, end = utc("start", start), utc("end", end)
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT DISTINCT zone FROM occupancy_intervals"
                " WHERE site = %s AND start_at >= %s AND start_at < %s ORDER BY zone",
                (site, start, end),
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    def zones_known(self, site: str, zones: Sequence[str]) -> list[str]:
        """Those of `zones` the branch ever sent an interval for (one primary-key probe each)."""
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT z FROM unnest(%s::text[]) AS z WHERE EXISTS (SELECT 1 FROM"
                " occupancy_intervals o WHERE o.site = %s AND o.zone = z)",
                (list(zones), site),
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    def site_history(
        self, site: str, zones: Sequence[str], start: datetime, end: datetime
    ) -> list[HistoryBucket]:
        """A branch's zones in 15-minute buckets over [start, end), zone then time order.

        The device sends 15m buckets (docs/central.md "Device feed"), one row each, taken as
        they are; a device set to 1m buckets is folded into 15 minutes here: mean weighted by
        frames, the highest max and p90 (p90 then an upper bound: the minutes' samples are not
        kept), seen seconds and frames summed."""
        start, end = utc("start", start), utc("end", end)
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT zone, date_bin('15 minutes', start_at, TIMESTAMPTZ '2000-01-01Z') AS b,"
                " CASE WHEN count(*) = 1 THEN min(mean) ELSE sum(mean * frames)"
                " / nullif(sum(frames) FILTER (WHERE mean IS NOT NULL), 0) END,"
                " max(max), max(p90), sum(seen_s), sum(frames)"
                " FROM occupancy_intervals WHERE site = %s AND zone = ANY(%s)"
                " AND start_at >= %s AND start_at < %s GROUP BY zone, b ORDER BY zone, b",
                (site, list(zones), start, end),
            ).fetchall()
        )
        return [HistoryBucket(str(z), b, m, x, p, float(s), int(f)) for z, b, m, x, p, s, f in rows]

    def site_alerts(self, site: str, start: datetime, end: datetime) -> list[AlertState]:
        """The latest state of each alert a branch raised in [start, end), oldest raise first
        (as the device's /v1/alerts)."""
        start, end = utc("start", start), utc("end", end)
        rows = self._transaction(
            lambda conn: conn.execute(
                'SELECT a.site, a.alert_id, a.kind, a.rule, a.zone_ids, a.status, a.at, a."by",'
                " a.details, r.raised_at FROM alerts a JOIN (SELECT site, alert_id,"
                " min(at) AS raised_at FROM alert_events WHERE site = %s AND status = 'raised'"
                " AND at >= %s AND at < %s GROUP BY site, alert_id) r USING (site, alert_id)"
                " ORDER BY r.raised_at, a.alert_id",
                (site, start, end),
            ).fetchall()
        )
        return [
            AlertState(s, i, k, r, tuple(z), st, at, by, dict(d), raised)
            for s, i, k, r, z, st, at, by, d, raised in rows
        ]

    def report_waiting(
        self, start: datetime, end: datetime, sites: frozenset[str] | None = None
    ) -> list[BranchWaiting]:
        """rank_branches_by_waiting for the caller's branches, all of them."""
        start, end = utc("start", start), utc("end", end)
        rows = self._transaction(
            lambda conn: conn.execute(
                "WITH per_interval AS (SELECT site, start_at, sum(mean) AS waiting"
                " FROM occupancy_intervals WHERE start_at >= %s AND start_at < %s"
                " AND role = ANY(%s) AND mean IS NOT NULL"
                " AND (%s::text[] IS NULL OR site = ANY(%s)) GROUP BY site, start_at)"
                " SELECT site, avg(waiting), count(*) FROM per_interval GROUP BY site"
                " ORDER BY avg(waiting) DESC, site",
                (start, end, list(LINE_ROLES), *_scope(sites) * 2),
            ).fetchall()
        )
        return [BranchWaiting(str(s), float(m), int(n)) for s, m, n in rows]

    def report_wait_minutes(
        self, start: datetime, end: datetime, sites: frozenset[str] | None = None
    ) -> list[BranchWaitMinutes]:
        """Branches by their mean estimated wait over the minutes of [start, end) that had one
        (an unknown wait is left out, never read as 0), longest first."""
        start, end = utc("start", start), utc("end", end)
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT site, avg(wait_minutes), max(wait_minutes), count(*) FROM queue_waits"
                " WHERE minute >= %s AND minute < %s AND wait_minutes IS NOT NULL"
                " AND (%s::text[] IS NULL OR site = ANY(%s))"
                " GROUP BY site ORDER BY avg(wait_minutes) DESC, site",
                (start, end, *_scope(sites) * 2),
            ).fetchall()
        )
        return [BranchWaitMinutes(str(s), float(m), float(x), int(n)) for s, m, x, n in rows]

    def report_above_threshold(
        self,
        start: datetime,
        end: datetime,
        now: datetime,
        sites: frozenset[str] | None = None,
    ) -> list[BranchOpenTime]:
        """Per branch, the seconds of [start, end) during which at least one diversion alert
        was open (its `since`, when the count first reached the threshold, to its clear; one
        still open counts up to `now`), overlapping alerts counted once; most first."""
        start, end, now = utc("start", start), utc("end", end), utc("now", now)
        # A cleared alert's latest change is its clear, so one cleared before `start` is left
        # out by the (site, at) index; open ones are few.
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT site, details->>'since', details->>'raised_at', details->>'cleared_at',"
                " status, at FROM alerts WHERE kind = 'diversion'"
                " AND (%s::text[] IS NULL OR site = ANY(%s))"
                " AND (at >= %s OR status <> 'cleared')",
                (*_scope(sites) * 2, start),
            ).fetchall()
        )
        spans: dict[str, list[tuple[datetime, datetime]]] = {}
        for site, since, raised_at, cleared_at, status, at in rows:
            opened = _state_time(since) or _state_time(raised_at)
            if opened is None:
                continue  # a state without its times: nothing to measure
            closed = (_state_time(cleared_at) or at) if status == "cleared" else now
            spans.setdefault(str(site), []).append((opened, closed))
        result = [
            BranchOpenTime(site, open_seconds(s, start, end), len(s)) for site, s in spans.items()
        ]
        result = [r for r in result if r.open_s > 0]
        return sorted(result, key=lambda r: (-r.open_s, r.site))

    def report_ack_times(
        self, start: datetime, end: datetime, sites: frozenset[str] | None = None
    ) -> list[BranchAckTimes]:
        """Per branch, the diversion alerts raised in [start, end), how many were accepted and
        the seconds from raise to accept (p50, p90 by percentile_cont); slowest p90 first."""
        start, end = utc("start", start), utc("end", end)
        rows = self._transaction(
            lambda conn: conn.execute(
                "WITH raised AS (SELECT r.site, min(r.at) AS raised_at, (SELECT min(a.at)"
                " FROM alert_events a WHERE a.site = r.site AND a.alert_id = r.alert_id"
                " AND a.status = 'accepted') AS accepted_at FROM alert_events r"
                " WHERE r.status = 'raised' AND r.kind = 'diversion' AND r.at >= %s AND r.at < %s"
                " AND (%s::text[] IS NULL OR r.site = ANY(%s)) GROUP BY r.site, r.alert_id),"
                " waits AS (SELECT site, accepted_at,"
                " extract(epoch FROM accepted_at - raised_at)::float8 AS s FROM raised)"
                " SELECT site, count(*), count(accepted_at),"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY s),"
                " percentile_cont(0.9) WITHIN GROUP (ORDER BY s)"
                " FROM waits GROUP BY site ORDER BY 5 DESC NULLS LAST, site",
                (start, end, *_scope(sites) * 2),
            ).fetchall()
        )
        return [
            BranchAckTimes(str(s), int(n), int(a), _float(p50), _float(p90))
            for s, n, a, p50, p90 in rows
        ]

    def report_passes(
        self, start: datetime, end: datetime, sites: frozenset[str] | None = None
    ) -> list[BranchPasses]:
        """Per branch, the passes reported done in [start, end) and their measured effect
        (the alert's latest state's `effect`: people at the pass and after it), most first."""
        start, end = utc("start", start), utc("end", end)
        rows = self._transaction(
            lambda conn: conn.execute(
                "SELECT a.site, a.details->'effect' FROM (SELECT DISTINCT site, alert_id"
                " FROM alert_events WHERE status = 'pass_done' AND at >= %s AND at < %s"
                " AND (%s::text[] IS NULL OR site = ANY(%s))) p"
                " JOIN alerts a USING (site, alert_id)",
                (start, end, *_scope(sites) * 2),
            ).fetchall()
        )
        effects: dict[str, list[tuple[float, float] | None]] = {}
        for site, effect in rows:
            effects.setdefault(str(site), []).append(_effect(effect))
        result = [BranchPasses.of(site, e) for site, e in effects.items()]
        return sorted(result, key=lambda r: (-r.passes, r.site))


# -- head-office reports: results and helpers (central/api) ----------------------------------


def _scope(sites: frozenset[str] | None) -> tuple[list[str] | None]:
    """The `%s::text[] IS NULL OR site = ANY(%s)` parameter: None for every branch."""
    return (None if sites is None else sorted(sites),)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _state_time(value: str | None) -> datetime | None:
    """A time of the device's alert state (ISO 8601 with an offset, or Z); None when absent
    or not one (a malformed state must not fail a whole report)."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return at.astimezone(timezone.utc) if at.tzinfo is not None else None


def _effect(effect: Any) -> tuple[float, float] | None:
    """(count_at_pass, count_after) of a state's `effect`, None until both are measured."""
    if not isinstance(effect, dict):
        return None
    before, after = effect.get("count_at_pass"), effect.get("count_after")
    if bool in (type(before), type(after)):
        return None
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        return float(before), float(after)
    return None


def open_seconds(
    spans: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime
) -> float:
    """Seconds of [start, end) covered by at least one of `spans` ([opened, closed)): the
    spans clipped to the range, overlaps counted once."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in spans if a < end and b > start)
    total, reach = 0.0, start
    for a, b in clipped:
        a = max(a, reach)
        if b > a:
            total += (b - a).total_seconds()
            reach = b
    return total


@dataclass(frozen=True)
class SiteState:
    """A branch as the store last heard it: when, and what its availability topic said."""

    site: str
    last_seen_at: datetime
    availability: str | None
    availability_at: datetime | None


@dataclass(frozen=True)
class HistoryBucket:
    """One zone's 15-minute bucket: people (mean, max, p90; None when no frame was counted),
    seconds the camera was seen and frames counted."""

    zone: str
    start_at: datetime
    mean: float | None
    max: float | None
    p90: float | None
    seen_s: float
    frames: int


@dataclass(frozen=True)
class AlertState:
    """An alert's latest state (details: the device's alert state) and when it was raised."""

    site: str
    alert_id: str
    kind: str
    rule: str
    zone_ids: tuple[str, ...]
    status: str
    at: datetime
    by: str | None
    details: dict[str, Any]
    raised_at: datetime


@dataclass(frozen=True)
class BranchWaitMinutes:
    """A branch's estimated wait over the minutes that had one: mean and highest minutes."""

    site: str
    mean_wait_minutes: float
    max_wait_minutes: float
    minutes: int


@dataclass(frozen=True)
class BranchOpenTime:
    """Seconds a branch had a diversion alert open in a range, and how many alerts made it."""

    site: str
    open_s: float
    alerts: int


@dataclass(frozen=True)
class BranchAckTimes:
    """Diversion alerts a branch raised, how many were accepted, seconds raise -> accept."""

    site: str
    raised: int
    accepted: int
    p50_s: float | None
    p90_s: float | None

    @property
    def unaccepted(self) -> int:
        return self.raised - self.accepted


@dataclass(frozen=True)
class BranchPasses:
    """Passes a branch reported done and, of those measured, the mean people at the pass,
    after it, and the change (negative: the pass shortened the line)."""

    site: str
    passes: int
    measured: int
    mean_count_at_pass: float | None
    mean_count_after: float | None
    mean_change: float | None

    @classmethod
    def of(cls, site: str, effects: Sequence[tuple[float, float] | None]) -> BranchPasses:
        measured = [e for e in effects if e is not None]
        if not measured:
            return cls(site, len(effects), 0, None, None, None)
        before = sum(b for b, _ in measured) / len(measured)
        after = sum(a for _, a in measured) / len(measured)
        change = sum(a - b for b, a in measured) / len(measured)
        return cls(site, len(effects), len(measured), before, after, change)
