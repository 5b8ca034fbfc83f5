"""deploy/grafana/lobbywatch.json: a dashboard Grafana 10/11 imports as it is, with the
Prometheus data source chosen at import (no uid of ours baked in), and whose every query names
only metrics the API's /metrics really serves."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.runtime.device_state import StateFile, state_path
from edge.runtime.histogram import ALERT_LATENCY_BOUNDS, DETECTOR_SECONDS_BOUNDS, Histogram
from tests.test_api_support import (
    T0,
    Clock,
    auth,
    client_for,
    insert_alert,
    site_config,
    write_live,
)

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "lobbywatch.json"
NOW = T0 + timedelta(hours=10)
METRIC = re.compile(r"\blobbywatch_[a-z_]+\b")
#: What the issue asks the dashboard to show, as the metric each needs.
WANTED = {
    "lobbywatch_zone_occupancy",  # people per zone
    "lobbywatch_camera_status",
    "lobbywatch_camera_fps",
    "lobbywatch_camera_target_fps",
    "lobbywatch_camera_dropped_share",
    "lobbywatch_camera_detector_share",
    "lobbywatch_detector_seconds_bucket",  # p50 / p95
    "lobbywatch_alert_latency_seconds_bucket",  # p95
    "lobbywatch_alerts_raised_total",
    "lobbywatch_broker_connected",
    "lobbywatch_outbox_backlog",
    "lobbywatch_store_writable",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def queried(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["query"]["query"]


def data_sources(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from data_sources(value)
    elif isinstance(node, list):
        for value in node:
            yield from data_sources(value)


def test_the_dashboard_is_of_a_schema_grafana_10_and_11_read(dashboard):
    assert 37 <= dashboard["schemaVersion"] <= 41  # 10.0 wrote 37-38, 10.4 and 11.x 39-41
    assert dashboard["title"] == "lobbywatch" and dashboard["uid"]
    assert dashboard.get("id") is None  # an id is the exporting server's; import makes its own
    assert isinstance(dashboard["time"]["from"], str) and dashboard["refresh"]


def test_the_prometheus_data_source_is_a_variable_and_no_uid_is_baked_in(dashboard):
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    uses = list(data_sources(dashboard))
    assert uses, "no panel names its data source"
    for use in uses:
        assert use == {"type": "prometheus", "uid": f"${{{variable['name']}}}"}, use
    assert "__inputs" not in dashboard  # nothing to fill in at import beyond the variable


def test_every_panel_has_a_place_on_the_grid_and_the_queries_it_draws(dashboard):
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) and grid[k] >= 0 for k in ("x", "y", "w", "h"))
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert " / " in panel["title"], f"{panel['title']!r}: titles are English / 中文"
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "state-timeline", "table"}
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert target["expr"].count("{") == target["expr"].count("}"), target["expr"]


def test_the_dashboard_shows_what_the_issue_asks(dashboard):
    names = {name for _, expr in queried(dashboard) for name in METRIC.findall(expr)}
    assert not WANTED - names, WANTED - names
    quantiles = [expr for _, expr in queried(dashboard) if "histogram_quantile" in expr]
    assert any("0.5," in e and "detector_seconds" in e for e in quantiles)
    assert any("0.95," in e and "detector_seconds" in e for e in quantiles)
    assert any("0.95," in e and "alert_latency_seconds" in e for e in quantiles)


def served_names(tmp_path: Path) -> set[str]:
    """Sample names /metrics serves from a real store and a running pipeline's state file that
    has every section (broker, outbox, camera rates, histograms)."""
    config = site_config(tmp_path)
    client = client_for(config, Clock(NOW))
    store = client.app.state.lobbywatch.store.store()
    write_live(store, NOW, {"waiting": 3.0, "queue": 1.0})
    insert_alert(store, "a1", NOW)
    detector, latency = Histogram(DETECTOR_SECONDS_BOUNDS), Histogram(ALERT_LATENCY_BOUNDS)
    detector.observe(0.04)
    latency.observe(0.012)
    snapshot = {
        "pid": 1, "at": NOW.isoformat(), "running": True,
        "store": {"writable": True, "unsaved_history_rows": 0, "unsaved_alert_writes": 0},
        "broker": {"state": "connected"}, "outbox": {"backlog": 0, "expired": 0},
        "cameras": {"lobby": {"status": "online", "fps": 2.0, "target_fps": 2.0,
                              "dropped_share": 0.0, "detector_share": 0.5, "overloaded": False}},
        "histograms": {"detector_seconds": {"lobby": detector.counts().as_json()},
                       "alert_latency_seconds": latency.counts().as_json()},
    }  # fmt: skip
    state = StateFile(state_path(config.storage.path))
    try:
        assert state.write(snapshot)
        text = client.get("/metrics", headers=auth("viewer")).text
    finally:
        state.close()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_every_metric_a_query_names_is_one_the_api_serves(dashboard, tmp_path):
    served = served_names(tmp_path)
    for where, expr in queried(dashboard):
        for name in METRIC.findall(expr):
            assert name in served, f"{where}: {name} is not in /metrics"
