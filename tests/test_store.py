"""History in SQLite: interval statistics, survival across restarts, retention, live state."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest

from edge.history import HistoryRecorder
from edge.store import SCHEMA_VERSION, CameraLive, HistoryRow, Store
from edge.types import CameraStatus, ZoneReading
from tests.alerts.support import raise_alert

T0 = 1_790_000_000  # a multiple of 10: the start of an interval


def test_recorder_closes_an_interval_with_mean_max_min_samples_and_coverage():
    rec = HistoryRecorder("cam", ["a", "b"], interval_s=10)
    assert rec.observe(T0 + 0, {"a": 2.0, "b": None}, seen_s=0.0) == []
    assert rec.observe(T0 + 4, {"a": 4.0, "b": 1.0}, seen_s=4.0) == []
    assert rec.observe(T0 + 6, None, seen_s=0.0) == []  # camera offline for 2 s: not seen
    rows = rec.observe(T0 + 10, {"a": 9.0, "b": 9.0}, seen_s=4.0)
    by_zone = {r.zone_id: r for r in rows}
    assert by_zone["a"] == HistoryRow("a", "cam", T0, 10, 2, 3.0, 4.0, 2.0, 0.4)
    assert by_zone["b"].samples == 1 and by_zone["b"].mean == 1.0
    # the tick that closed the interval opened the next one
    assert [r.bucket_start for r in rec.flush()] == [T0 + 10, T0 + 10]


def test_an_interval_with_no_frames_is_recorded_as_unknown_not_zero():
    rec = HistoryRecorder("cam", ["a"], interval_s=10)
    rec.observe(T0 + 1, None, seen_s=0.0)
    (row,) = rec.flush()
    assert row.samples == 0 and row.mean is None and row.max is None and row.seen_fraction == 0.0


def test_history_survives_a_restart_and_a_cut_interval_is_merged(tmp_path):
    path = tmp_path / "lw.db"
    store = Store(path, site_id="branch-1")
    rec = HistoryRecorder("cam", ["a"], interval_s=10)
    rec.observe(T0 + 1, {"a": 10.0}, seen_s=1.0)
    rec.observe(T0 + 3, {"a": 20.0}, seen_s=2.0)
    store.write_history(rec.flush())  # shutdown in the middle of the interval
    store.close()

    store = Store(path, site_id="branch-1")  # the service comes back in the same interval
    rec = HistoryRecorder("cam", ["a"], interval_s=10)
    rec.observe(T0 + 7, {"a": 30.0}, seen_s=0.0)
    rec.observe(T0 + 9, {"a": 40.0}, seen_s=2.0)
    store.write_history(rec.flush())
    (row,) = store.history("a")
    assert row.samples == 4
    assert row.mean == pytest.approx(25.0)
    assert (row.min, row.max) == (10.0, 40.0)
    assert row.seen_fraction == pytest.approx(0.5)
    store.close()

    # and the file is a WAL database another process (the API) can read
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM zone_history").fetchone()[0] == 1


def test_a_store_refuses_another_sites_history(tmp_path):
    Store(tmp_path / "lw.db", site_id="branch-1").close()
    with pytest.raises(ValueError, match="belongs to site 'branch-1'"):
        Store(tmp_path / "lw.db", site_id="branch-2")


def test_retention_deletes_only_old_rows(tmp_path):
    store = Store(tmp_path / "lw.db")
    now = datetime.fromtimestamp(T0, timezone.utc)
    old = int((now - timedelta(days=31)).timestamp())
    store.write_history(
        [HistoryRow("a", "cam", b, 10, 1, 1.0, 1.0, 1.0, 1.0) for b in (old, old + 10, T0)]
    )
    assert store.purge_before(now - timedelta(days=30)) == 2
    assert [r.bucket_start for r in store.history()] == [T0]


def test_live_state_keeps_unknown_as_null(tmp_path):
    store = Store(tmp_path / "lw.db")
    at = datetime.fromtimestamp(T0, timezone.utc)
    store.write_live(
        [ZoneReading("a", "cam", None, None, at, CameraStatus.OFFLINE)],
        CameraLive("cam", CameraStatus.OFFLINE, 0.0, at),
    )
    (reading,) = store.live()
    assert reading.count is None and not reading.known
    assert reading.camera_status is CameraStatus.OFFLINE
    assert store.cameras()[0].status is CameraStatus.OFFLINE


# The store as lobbywatch 0.1 (schema 1) created it: camera_live without inference_ms.
SCHEMA_1_CAMERA_LIVE = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1'), ('site_id', 'b1');
CREATE TABLE camera_live (
    camera_id TEXT PRIMARY KEY, status TEXT NOT NULL, fps REAL NOT NULL, at TEXT NOT NULL
);
INSERT INTO camera_live VALUES ('lobby', 'online', 2.0, '2026-11-01T09:00:00+00:00');
"""


def test_a_store_from_an_older_version_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1_CAMERA_LIVE)
    store = Store(path, site_id="b1")
    at = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    store.write_live([], CameraLive("lobby", CameraStatus.ONLINE, 2.0, at, inference_ms=80.0))
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT inference_ms FROM camera_live").fetchall() == [(80.0,)]
    store.close()
    Store(path, site_id="b1").close()  # opening again changes nothing


def test_a_newer_store_is_used_as_it_is_after_a_rollback(tmp_path, caplog):
    path = tmp_path / "new.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    store = Store(path)
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION + 1)
    assert "newer than this lobbywatch" in caplog.text
    store.close()


def test_recover_gives_what_the_copy_changed_versions_above_the_file_in_the_memorys_order(
    tmp_path,
):
    at = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
    blocked = tmp_path / "data"
    blocked.write_text("")  # a file where the store's folder belongs: the store cannot open
    store = Store(blocked / "lw.db", site_id="b1", memory_fallback=True)
    assert store.condition.memory_only
    raise_alert(store, "m1", at)  # 1 on memory
    raise_alert(store, "m2", at)  # 2
    store.clear_alert("m1", at, 0.0, [])  # 3: m1 changed last
    with store.transaction() as db:  # a delivery of an alert the file holds (a2)
        db.execute(
            "INSERT INTO deliveries (delivery_id, alert_id, channel, event, title, body, payload,"
            " created_at, state) VALUES ('a2:raised@mail', 'a2', 'mail', 'raised', 't', 'b',"
            " '{}', ?, 'waiting')",
            (at.isoformat(),),
        )  # fmt: skip
    blocked.unlink()
    with Store(blocked / "lw.db", site_id="b1") as file:
        for alert_id in ("a1", "a2", "a3", "a4"):
            raise_alert(file, alert_id, at)
        file.clear_alert("a1", at, 0.0, [])
        assert file.alerts_version() == 5

    assert store.recover() and store.generation == 1
    changed = store.alerts_changed_since(5)
    assert [(a.alert_id, a.version) for a in changed] == [("a2", 6), ("m2", 7), ("m1", 8)]
    versions = {a.alert_id: a.version for a in store.alerts()}
    assert (versions["a1"], versions["a3"]) == (5, 3)  # rows the copy left alone keep theirs
    store.close()


def test_a_store_opens_while_another_connection_is_still_creating_the_file(tmp_path):
    """SQLite refuses the switch to WAL at once while another connection writes a store in
    rollback mode (no busy wait): the store tries again until that write is done."""
    path = tmp_path / "lw.db"
    creator = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    creator.execute("CREATE TABLE early (x)")
    creator.execute("BEGIN IMMEDIATE")
    creator.execute("INSERT INTO early VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sqlite3.connect(path, timeout=5).execute("PRAGMA journal_mode=WAL")  # SQLite alone
    done = threading.Timer(0.5, lambda: creator.execute("COMMIT"))
    done.start()
    try:
        store = Store(path, site_id="branch-1")
        assert store.query("PRAGMA journal_mode")[0][0] == "wal"
        store.close()
    finally:
        done.join()
        creator.close()
