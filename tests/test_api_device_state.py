"""Health and metrics from the running pipeline's state file: what only the pipeline knows."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from edge.runtime.device_state import SIZE, StateFile, read_state, state_path
from tests.test_api_support import T0, Clock, auth, client_for, site_config, write_live

NOW = T0 + timedelta(hours=10)


def snapshot(*, running: bool = True, at=NOW, pid: int | None = None) -> dict:
    return {
        "pid": pid or os.getpid(),
        "at": at.isoformat(),
        "running": running,
        "store": {"writable": False, "since": (NOW - timedelta(minutes=3)).isoformat(),
                  "error": "database or disk is full", "failed_writes": 40, "memory_only": False,
                  "unsaved_history_rows": 18, "dropped_history_rows": 0, "unsaved_alert_writes": 2},
        "broker": {"state": "disconnected", "since": NOW.isoformat(), "reason": "connection refused",
                   "attempts": 7},
        "outbox": {"backlog": 3, "expired": 0},
        "api": {"state": "failed", "since": NOW.isoformat(), "restarts": 5, "last_exit_code": 3,
                "last_error": "[Errno 98] address already in use", "summary": "api: failed"},
        "cameras": {},
    }  # fmt: skip


@pytest.fixture
def setup(tmp_path):
    config = site_config(tmp_path)
    client = client_for(config, Clock(NOW))
    write_live(client.app.state.lobbywatch.store.store(), NOW, {"waiting": 3.0, "queue": 1.0})
    state = StateFile(state_path(config.storage.path))
    yield client, state
    state.close()


def test_health_says_the_store_is_failing_the_broker_down_and_the_api_child_failed(setup):
    client, state = setup
    assert state.write(snapshot())
    body = client.get("/v1/health").json()
    assert client.get("/v1/health").status_code == 503  # the store refuses writes: not ready
    assert body["status"] == "fail" and body["store_writable"]["ok"] is False
    assert "database or disk is full" in body["store_writable"]["detail"]
    assert "18 history rows and 2 alert writes kept in memory" in body["store_writable"]["detail"]
    assert body["broker"] == {"state": "disconnected", "since": body["broker"]["since"],
                              "reason": "connection refused", "attempts": 7}  # fmt: skip
    assert body["delivery"]["backlog"] == 3 and body["delivery"]["unsaved_alert_writes"] == 2
    assert body["pipeline_api"]["state"] == "failed"
    assert "address already in use" in body["pipeline_api"]["last_error"]

    metrics = client.get("/metrics", headers=auth("viewer")).text
    for line in (
        "lobbywatch_pipeline_running 1.0",
        "lobbywatch_store_writable 0.0",
        'lobbywatch_store_unsaved{kind="history_rows"} 18.0',
        'lobbywatch_store_unsaved{kind="alert_writes"} 2.0',
        "lobbywatch_broker_connected 0.0",
        "lobbywatch_outbox_backlog 3.0",
    ):
        assert line in metrics, line


@pytest.mark.parametrize(
    "stale",
    [
        {"running": False},  # the pipeline stopped and said so
        {"at": NOW - timedelta(seconds=30)},  # it stopped writing
    ],
)
def test_a_snapshot_of_a_pipeline_no_longer_running_says_nothing_about_now(setup, stale):
    client, state = setup
    assert state.write(snapshot(**stale))
    body = client.get("/v1/health").json()
    assert body["store_writable"]["ok"] is True  # the API's own write succeeds
    assert body["broker"]["state"] == "unknown" and body["delivery"]["backlog"] is None
    assert "lobbywatch_pipeline_running 0.0" in client.get("/metrics", headers=auth("viewer")).text


def test_the_state_file_is_written_in_place_in_a_preallocated_file(tmp_path):
    path = tmp_path / "lw.db.state"
    state = StateFile(path)
    assert path.stat().st_size == SIZE
    assert state.write({"pid": os.getpid(), "at": NOW.isoformat(), "running": True, "x": "é" * 10})
    assert state.write({"pid": os.getpid(), "at": NOW.isoformat(), "running": True})
    read = read_state(path, NOW)
    assert read is not None and read.current and "x" not in read.data
    assert path.stat().st_size == SIZE
    huge = {"pid": os.getpid(), "at": NOW.isoformat(), "running": True, "store": {},
            "cameras": {str(i): "x" * 100 for i in range(2000)}}  # fmt: skip
    assert state.write(huge)
    read = read_state(path, NOW)
    assert read is not None and read.data.get("truncated") is True
    state.close()
