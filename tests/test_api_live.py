"""Zones, occupancy now, alerts and acknowledgements, health and metrics, over a real store."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from api.schemas import AlertsOut, HealthOut, OccupancyOut, ZonesOut
from edge.types import CameraStatus
from tests.test_api_support import (
    T0,
    Clock,
    auth,
    client_for,
    insert_alert,
    site_config,
    write_live,
)


@pytest.fixture
def clock():
    return Clock(T0 + timedelta(hours=10))


@pytest.fixture
def client(tmp_path, clock):
    return client_for(site_config(tmp_path), clock)


def store_of(client):
    return client.app.state.lobbywatch.store.store()


def occupancy(client) -> OccupancyOut:
    response = client.get("/v1/occupancy", headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return OccupancyOut.model_validate(response.json())


def test_zones_list_camera_role_and_name(client):
    got = ZonesOut.model_validate(client.get("/v1/zones", headers=auth("viewer")).json())
    assert got.timezone == "Europe/Berlin"
    assert [(z.id, z.role, z.camera_id, z.name) for z in got.zones] == [
        ("waiting", "waiting", "lobby", "Waiting area"),
        ("queue", "queue", "lobby", "Queue"),
        ("entrance", "entrance", "door", ""),
    ]


def test_occupancy_reports_counts_when_fresh_and_unknown_before_any_report(client, clock):
    write_live(store_of(client), clock.now - timedelta(seconds=2), {"waiting": 7.0, "queue": 0.0})
    got = {z.zone_id: z for z in occupancy(client).zones}
    assert (got["waiting"].count, got["waiting"].stale, got["waiting"].camera_status) == (
        7.0,
        False,
        "online",
    )
    assert got["queue"].count == 0.0  # known empty is 0
    door = got["entrance"]  # the door camera never reported
    assert (door.count, door.stale, door.camera_status, door.measured_at) == (
        None,
        True,
        "unknown",
        None,
    )


def test_a_report_older_than_offline_after_s_is_stale_and_its_count_unknown(client, clock):
    write_live(store_of(client), clock.now, {"waiting": 7.0, "queue": 1.0})
    clock.now += timedelta(seconds=31)  # offline_after_s is 30 by default
    got = occupancy(client)
    waiting = got.zones[0]
    assert (waiting.count, waiting.stale, waiting.camera_status) == (None, True, "unknown")
    assert waiting.measured_at is not None
    assert got.by_role["waiting"] is None


def test_a_camera_down_makes_its_zones_unknown_not_zero(client, clock):
    store = store_of(client)
    write_live(store, clock.now, {"waiting": None, "queue": None}, status=CameraStatus.OFFLINE)
    got = occupancy(client).zones[0]
    assert (got.count, got.stale, got.camera_status) == (None, False, "offline")


def test_totals_by_role_sum_known_zones(client, clock):
    store = store_of(client)
    write_live(store, clock.now, {"waiting": 5.0, "queue": 2.0})
    write_live(store, clock.now, {"entrance": 1.0}, camera_id="door")
    assert occupancy(client).by_role == {"waiting": 5.0, "queue": 2.0, "entrance": 1.0}


# --- alerts ------------------------------------------------------------------------------


def alerts(client, **params) -> AlertsOut:
    response = client.get("/v1/alerts", params=params, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return AlertsOut.model_validate(response.json())


def test_alert_lifecycle_shows_time_to_ack_and_the_effect_of_the_pass(client, clock):
    store = store_of(client)
    raised = clock.now - timedelta(minutes=30)
    insert_alert(store, "a1", raised)
    write_live(store, clock.now, {"waiting": 12.0, "queue": 0.0})
    clock.now = raised + timedelta(seconds=90)
    ack = client.post("/v1/alerts/a1/ack", json={"status": "accepted"}, headers=auth("manager"))
    assert ack.status_code == 200, ack.text
    assert ack.json()["acknowledged_by"] == "manager-1"  # the key's id, never the key
    done = client.post("/v1/alerts/a1/ack", json={"status": "pass_done"}, headers=auth("admin"))
    assert done.json()["status"] == "pass_done"
    store.record_effect("a1", 4.0, clock.now + timedelta(minutes=10))
    got = alerts(client, start=(raised - timedelta(hours=1)).isoformat())
    alert = got.alerts[0]
    assert (alert.seconds_to_ack, alert.count_at_ack, alert.effect_count, alert.effect) == (
        90.0,
        12.0,
        4.0,
        8.0,
    )
    assert alert.pass_done_by == "admin-1"
    assert (got.summary.raised, got.summary.acknowledged, got.summary.passes_done) == (1, 1, 1)
    assert (got.summary.median_seconds_to_ack, got.summary.mean_effect) == (90.0, 8.0)


def test_acknowledging_twice_keeps_the_first(client, clock):
    insert_alert(store_of(client), "a1", clock.now - timedelta(minutes=5))
    first = client.post("/v1/alerts/a1/ack", json={"status": "accepted"}, headers=auth("manager"))
    clock.now += timedelta(minutes=1)
    again = client.post("/v1/alerts/a1/ack", json={"status": "accepted"}, headers=auth("admin"))
    assert again.json()["acknowledged_at"] == first.json()["acknowledged_at"]
    assert again.json()["acknowledged_by"] == "manager-1"


@pytest.mark.parametrize(
    ("alert_id", "body", "status"),
    [
        ("nope", {"status": "accepted"}, 404),
        ("a1", {"status": "cleared"}, 422),
        ("a1", {}, 422),
        ("a1", {"status": "accepted", "by": "someone-else"}, 422),
    ],
)
def test_ack_refuses_unknown_alerts_and_bad_bodies(client, clock, alert_id, body, status):
    insert_alert(store_of(client), "a1", clock.now)
    response = client.post(f"/v1/alerts/{alert_id}/ack", json=body, headers=auth("manager"))
    assert response.status_code == status


def test_alerts_filter_by_status_and_range(client, clock):
    store = store_of(client)
    insert_alert(store, "old", clock.now - timedelta(days=40))
    insert_alert(store, "open", clock.now - timedelta(hours=2))
    insert_alert(store, "acked", clock.now - timedelta(hours=1))
    store.record_ack("acked", "handheld-1", "accepted", clock.now)
    assert [a.alert_id for a in alerts(client).alerts] == ["open", "acked"]  # last 30 days
    assert [a.alert_id for a in alerts(client, status="open").alerts] == ["open"]
    since = (clock.now - timedelta(days=60)).isoformat()
    assert len(alerts(client, start=since).alerts) == 3


def test_alerts_export_as_csv(client, clock):
    insert_alert(store_of(client), "a1", clock.now - timedelta(hours=1))
    response = client.get("/v1/alerts", params={"format": "csv"}, headers=auth("viewer"))
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0]["alert_id"] == "a1" and rows[0]["acknowledged_at"] == ""
    raised = (clock.now - timedelta(hours=1)).astimezone(ZoneInfo("Europe/Berlin"))
    assert rows[0]["raised_at"] == raised.strftime("%Y-%m-%d %H:%M:%S")  # the site's time
    assert rows[0]["zones"] == "waiting"


# --- health and metrics ------------------------------------------------------------------


def health(client) -> tuple[int, HealthOut]:
    response = client.get("/v1/health")
    return response.status_code, HealthOut.model_validate(response.json())


def test_health_is_ready_with_a_camera_online_and_says_which_are_not(client, clock):
    store = store_of(client)
    write_live(store, clock.now, {"waiting": 3.0, "queue": 0.0})
    store.set_meta("mqtt_connected", "1")
    store.set_meta("mqtt_connected_at", clock.now.isoformat())
    status, got = health(client)
    assert status == 200 and got.ready and got.status == "degraded"  # the door camera is unknown
    assert got.store_readable.ok and got.store_writable.ok and got.disk.ok
    assert (got.broker.state, got.broker.since) == ("connected", clock.now)
    assert {c.camera_id: c.status for c in got.cameras} == {"lobby": "online", "door": "unknown"}
    write_live(store, clock.now, {"entrance": 0.0}, camera_id="door")
    assert health(client)[1].status == "ok"


def test_health_is_not_ready_without_a_camera_online(client, clock):
    status, got = health(client)
    assert status == 503 and not got.ready and got.status == "fail"
    assert got.broker.state == "unknown"  # nothing recorded: not "disconnected"
    write_live(store_of(client), clock.now, {"waiting": 3.0}, status=CameraStatus.OFFLINE)
    assert health(client)[0] == 503


def test_a_broker_state_left_by_a_stopped_pipeline_is_unknown(client, clock):
    store = store_of(client)
    write_live(store, clock.now, {"waiting": 3.0})
    store.set_meta("mqtt_connected", "1")
    clock.now += timedelta(minutes=5)
    assert health(client)[1].broker.state == "unknown"


def test_broker_disabled_in_config_is_reported_as_such(tmp_path, clock):
    client = client_for(site_config(tmp_path, mqtt=False), clock)
    assert health(client)[1].broker.state == "disabled"


def test_health_fails_when_the_store_cannot_be_opened(tmp_path, clock):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = site_config(tmp_path)
    client = client_for(config, clock, store_path=blocker / "lw.db", use_rollup=False)
    status, got = health(client)
    assert status == 503 and not got.store_readable.ok and not got.store_writable.ok
    response = client.get("/v1/occupancy", headers=auth("viewer"))
    assert response.status_code == 503 and "cannot open the store" in response.json()["detail"]


def test_metrics_expose_cameras_zones_and_alerts_for_prometheus(client, clock):
    store = store_of(client)
    write_live(store, clock.now, {"waiting": 6.0, "queue": None}, fps=1.9, inference_ms=75.0)
    insert_alert(store, "a1", clock.now)
    response = client.get("/metrics", headers=auth("viewer"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'lobbywatch_camera_fps{camera="lobby"} 1.9' in text
    assert 'lobbywatch_camera_inference_seconds{camera="lobby"} 0.075' in text
    assert 'lobbywatch_camera_status{camera="lobby",status="online"} 1.0' in text
    assert 'lobbywatch_camera_status{camera="door",status="unknown"} 1.0' in text
    assert 'lobbywatch_zone_occupancy{camera="lobby",role="waiting",zone="waiting"} 6.0' in text
    assert 'zone="queue"} ' not in text.split("lobbywatch_zone_occupancy_known")[0]  # unknown
    assert 'lobbywatch_zone_occupancy_known{camera="lobby",role="queue",zone="queue"} 0.0' in text
    assert 'lobbywatch_alerts{kind="diversion",status="open"} 1.0' in text
    assert "lobbywatch_api_failed_auth_total 0.0" in text


class _FullDisk:
    """The store's connection on a full disk: reads work, every write fails as SQLite fails."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> _FullDisk:
        self._db.__enter__()
        return self

    def __exit__(self, *exc: object) -> bool | None:
        return self._db.__exit__(*exc)

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


@pytest.mark.parametrize("action", ["ack", "accept", "pass-done"])
def test_a_store_that_refuses_writes_answers_503_not_500(client, clock, monkeypatch, action):
    store = store_of(client)
    insert_alert(store, "a1", clock.now)
    monkeypatch.setattr(store, "_db", _FullDisk(store._db))
    response = client.post(
        f"/v1/alerts/a1/{action}", json={"status": "accepted"}, headers=auth("admin")
    )
    assert response.status_code == 503
    assert "disk is full" in response.json()["detail"]
    assert response.headers["Retry-After"] == "30"
