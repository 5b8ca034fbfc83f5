"""Backfill from a device's own API (central/backfill.py): the real device API under uvicorn on
loopback, with a real SQLite store behind it, into a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from central.backfill import BackfillError, backfill, http_fetch
from central.store import CentralStore
from edge.store import Store
from tests.central.postgres import postgres_dsn, postgres_server
from tests.test_api_support import KEYS, T0, served, site_config, write_history

__all__ = ["postgres_dsn", "postgres_server"]  # fixtures, imported for pytest

START = T0 + timedelta(hours=10)


@pytest.fixture
def device(tmp_path: Path):
    config = site_config(tmp_path)
    store = Store(config.storage.path, site_id=config.site.id)
    # 10:00-10:15: the waiting area counted 3 people for 5 minutes, then its camera was off;
    # the queue and the entrance were never recorded (unknown, never 0).
    write_history(store, "waiting", START, [3.0] * 30 + [None] * 60)
    store.close()
    with served(config) as url:
        yield url


def test_a_gap_is_filled_with_the_devices_buckets_once(device: str, postgres_dsn: str) -> None:
    central = CentralStore(postgres_dsn)
    central.migrate()
    fetch = http_fetch(device, KEYS["viewer"])
    result = backfill(central, "branch-1", fetch, START, START + timedelta(minutes=30))
    assert (result.buckets, result.new_rows) == (2, 6)  # 2 buckets x 3 zones
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT zone, role, camera, start_at, mean, max, frames, seen_s FROM"
            " occupancy_intervals ORDER BY start_at, zone"
        ).fetchall()
    first = {r[0]: r[1:] for r in rows if r[3] == START}
    assert first["waiting"] == ("waiting", "lobby", START, 3.0, 4.0, 600, 300.0)
    assert first["queue"] == ("queue", "lobby", START, None, None, 0, 0.0)
    assert first["entrance"] == ("entrance", "door", START, None, None, 0, 0.0)
    # Again: the same keys, nothing new.
    assert backfill(central, "branch-1", fetch, START, START + timedelta(minutes=30)).new_rows == 0


def test_a_wrong_key_or_another_site_is_refused(device: str, postgres_dsn: str) -> None:
    central = CentralStore(postgres_dsn)
    central.migrate()
    span = (START, START + timedelta(minutes=15))
    with pytest.raises(BackfillError, match="401"):
        backfill(central, "branch-1", http_fetch(device, "not-a-key"), *span)
    with pytest.raises(BackfillError, match="is site 'branch-1', not 'branch-2'"):
        backfill(central, "branch-2", http_fetch(device, KEYS["viewer"]), *span)
