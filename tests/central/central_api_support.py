"""A seeded central store and the head-office API over it, for the central API tests.

The numbers the tests check are worked out by hand in the comments of `seed`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.auth import hash_key
from central.api import create_app
from central.config import CentralConfig
from central.store import (
    AlertEventRow,
    Batch,
    CentralStore,
    IntervalRow,
    QueueWaitRow,
    SiteSeen,
)
from tests.central.postgres import Postgres

UTC = timezone.utc
NOW = datetime(2026, 5, 20, 9, 30, tzinfo=UTC)
H8 = datetime(2026, 5, 20, 8, 0, tzinfo=UTC)
CST = timezone(timedelta(hours=8))  # the branches' time zone: their alert states use it

KEYS = {
    "hq": "hq-admin-key-0123456789abcdef",  # admin, every region
    "north": "north-viewer-key-0123456789abcdef",  # viewer, north
    "south": "south-manager-key-0123456789abcdef",  # manager, south
    "both": "both-viewer-key-0123456789abcdef",  # viewer, north and south
}
REGIONS = {"north": ["b-north-1", "b-north-2", "b-north-3"], "south": ["b-south-1"]}


def central_config(keys: bool = True) -> CentralConfig:
    key_list: list[dict[str, Any]] = [
        {"id": "hq", "role": "admin", "sha256": hash_key(KEYS["hq"])},
        {"id": "north", "role": "viewer", "sha256": hash_key(KEYS["north"]), "regions": ["north"]},
        {"id": "south", "role": "manager", "sha256": hash_key(KEYS["south"]), "regions": ["south"]},
        {
            "id": "both",
            "role": "viewer",
            "sha256": hash_key(KEYS["both"]),
            "regions": ["north", "south"],
        },
    ]
    return CentralConfig.model_validate(
        {
            "database": {"dsn": "unused"},
            "broker": {"servers": ["nats://127.0.0.1:4222"]},
            "api": {"keys": key_list if keys else []},
            "regions": REGIONS,
            "offline_after_s": 900,
        }
    )


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[key]}"}


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Monotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def interval(
    site: str,
    zone: str,
    role: str,
    start: datetime,
    mean: float | None,
    seen_s: float = 900.0,
    minutes: int = 15,
) -> IntervalRow:
    return IntervalRow(
        site=site,
        camera="cam-1",
        zone=zone,
        role=role,
        start_at=start,
        end_at=start + timedelta(minutes=minutes),
        mean=mean,
        max=None if mean is None else mean + 1,
        p90=None if mean is None else mean + 0.5,
        frames=0 if mean is None else 450,
        seen_s=seen_s,
    )


def local(at: datetime) -> str:
    """A time as the device's alert state has it: the site's offset, to the second."""
    return at.astimezone(CST).isoformat()


def alert_steps(
    site: str,
    alert_id: str,
    *,
    since: datetime,
    raised: datetime,
    accepted: datetime | None = None,
    pass_done: datetime | None = None,
    cleared: datetime | None = None,
    effect: tuple[float, float] | None = None,
    kind: str = "diversion",
) -> list[AlertEventRow]:
    """One event per step, each carrying the state as of that step (as ingestion stores)."""
    steps: list[tuple[str, datetime, str | None]] = [("raised", raised, None)]
    if accepted is not None:
        steps.append(("accepted", accepted, "mgr-1"))
    if pass_done is not None:
        steps.append(("pass_done", pass_done, "mgr-1"))
    if cleared is not None:
        steps.append(("cleared", cleared, None))
    rows = []
    for i, (status, at, by) in enumerate(steps):
        done = {s for s, _, _ in steps[: i + 1]}
        state = {
            "alert_id": alert_id,
            "kind": kind,
            "status": status,
            "since": local(since),
            "raised_at": local(raised),
            "accepted_at": local(accepted) if accepted and "accepted" in done else None,
            "pass_done_at": local(pass_done) if pass_done and "pass_done" in done else None,
            "cleared_at": local(cleared) if cleared and "cleared" in done else None,
            "effect": None
            if effect is None or "cleared" not in done
            else {"count_at_pass": effect[0], "count_after": effect[1], "measured_at": None},
        }
        rows.append(
            AlertEventRow(
                site=site,
                alert_id=alert_id,
                kind=kind,
                rule="waiting-full" if kind == "diversion" else "camera-cam-1",
                zone_ids=("floor",),
                status=status,  # type: ignore[arg-type]
                at=at,
                by=by,
                details=state,
            )
        )
    return rows


def seed(store: CentralStore) -> None:
    """The fleet at NOW (09:30Z). Hand-worked answers:

    waiting (line zones summed per interval): b-north-1 08:00 queue 4 + floor 2 = 6, 08:15
    queue 2 (floor unknown, left out) = 2: mean 4.0 over 2 intervals (its counter zone, a
    service zone at 50, is not a line); b-south-1 10.0 over 1; b-north-2 1.0 over 1.
    wait minutes: b-south-1 12 (1 minute); b-north-1 5, 7 and one unknown: mean 6, max 7, 2.
    above threshold: b-north-1 A1 08:00-08:20 and A2 08:15-still open (to 09:30): union
    08:00-09:30 = 5400 s; b-south-1 A4 07:00-07:30 = 1800 s; b-north-2 A5 08:05-08:30 =
    1500 s; camera alert A3 not counted.
    ack times: b-north-1 raised 2 (A1 accepted after 120 s, A2 after 600 s): p50 360,
    p90 120 + 0.9 * 480 = 552; b-north-2 1 accepted after 60 s; b-south-1 raised 1, accepted 0.
    passes: b-north-1 1 done (A1, effect 8 -> 3: change -5); b-north-2 1 done (A5) unmeasured.
    offline: b-north-2 silent 2 h, b-south-1 availability offline, b-north-3 never heard.
    """
    m = timedelta(minutes=1)
    store.ingest(
        Batch(
            intervals=[
                interval("b-north-1", "queue", "queue", H8, 4.0),
                interval("b-north-1", "floor", "waiting", H8, 2.0),
                interval("b-north-1", "counter", "service", H8, 50.0),
                interval("b-north-1", "queue", "queue", H8 + 15 * m, 2.0, seen_s=450.0),
                interval("b-north-1", "floor", "waiting", H8 + 15 * m, None, seen_s=0.0),
                interval("b-north-2", "queue", "queue", H8, 1.0),
                interval("b-south-1", "queue", "queue", H8, 10.0),
            ],
            queue_waits=[
                QueueWaitRow("b-north-1", H8, 5.0, 3.0, 8.0, "medium", "departures", 4.0),
                QueueWaitRow("b-north-1", H8 + m, 7.0, 5.0, 9.0, "medium", "departures", 5.0),
                QueueWaitRow("b-north-1", H8 + 2 * m, None, None, None, None, None, None),
                QueueWaitRow("b-south-1", H8, 12.0, 10.0, 15.0, "low", "rate", 9.0),
            ],
            alert_events=[
                *alert_steps(
                    "b-north-1",
                    "A1",
                    since=H8,
                    raised=H8 + m,
                    accepted=H8 + 3 * m,
                    pass_done=H8 + 10 * m,
                    cleared=H8 + 20 * m,
                    effect=(8.0, 3.0),
                ),
                *alert_steps(
                    "b-north-1", "A2", since=H8 + 15 * m, raised=H8 + 16 * m, accepted=H8 + 26 * m
                ),
                *alert_steps("b-north-1", "A3", since=H8, raised=H8, kind="camera"),
                *alert_steps(
                    "b-south-1", "A4", since=H8 - 60 * m, raised=H8 - 60 * m, cleared=H8 - 30 * m
                ),
                *alert_steps(
                    "b-north-2",
                    "A5",
                    since=H8 + 5 * m,
                    raised=H8 + 6 * m,
                    accepted=H8 + 7 * m,
                    pass_done=H8 + 10 * m,
                    cleared=H8 + 30 * m,
                ),
            ],
            sites=[
                SiteSeen("b-north-1", NOW - m, "online"),
                SiteSeen("b-north-2", NOW - timedelta(hours=2), "online"),
                SiteSeen("b-south-1", NOW - m / 2, "offline"),
                SiteSeen("b-x", NOW - m),  # in no region: only every-region keys see it
            ],
        )
    )


@pytest.fixture(scope="module")
def seeded_dsn(postgres_server: Postgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this test module's own, migrated and seeded once."""
    name = "m_" + "".join(c if c.isalnum() else "_" for c in request.module.__name__)[-50:]
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = postgres_server.dsn(name)
    with CentralStore(dsn, clock=lambda: NOW) as store:
        store.migrate()
        store.ensure_partitions(NOW)
        seed(store)
    yield dsn
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def client_for(
    dsn: str,
    config: CentralConfig | None = None,
    clock: Clock | None = None,
    monotonic: Monotonic | None = None,
    **kwargs: Any,
) -> TestClient:
    store = CentralStore(dsn, clock=clock or Clock())
    app = create_app(
        config or central_config(),
        store,
        clock or Clock(),
        monotonic=monotonic or Monotonic(),
        **kwargs,
    )
    return TestClient(app)
