"""Who may do what: keys, roles, failed-attempt limits, CORS; and no secret in any log line."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import hash_key
from edge.config import parse_config
from tests.test_api_support import (
    KEYS,
    T0,
    Clock,
    Monotonic,
    auth,
    client_for,
    insert_alert,
    site_config,
)

READ_ROUTES = [
    "/v1/zones",
    "/v1/occupancy",
    "/v1/occupancy/history",
    "/v1/reports/busiest-hours",
    "/v1/alerts",
    "/metrics",
]
ACK = ("POST", "/v1/alerts/a1/ack")


@pytest.fixture
def client(tmp_path) -> TestClient:
    config = site_config(tmp_path)
    client = client_for(config, Clock(T0))
    insert_alert(client.app.state.lobbywatch.store.store(), "a1", T0)
    return client


def call(client: TestClient, route: tuple[str, str] | str, headers: dict[str, str] | None = None):
    method, path = route if isinstance(route, tuple) else ("GET", route)
    body = {"status": "accepted"} if method == "POST" else None
    return client.request(method, path, headers=headers or {}, json=body)


CASES = [
    # (route, headers, status)
    *[(r, {}, 401) for r in [*READ_ROUTES, ACK]],
    *[(r, {"Authorization": "Bearer not-a-key"}, 401) for r in [*READ_ROUTES, ACK]],
    *[(r, {"Authorization": f"Basic {KEYS['admin']}"}, 401) for r in READ_ROUTES[:1]],
    (ACK, auth("viewer"), 403),
    *[(r, auth(role), 200) for r in READ_ROUTES for role in ("viewer", "manager", "admin")],
    *[(ACK, auth(role), 200) for role in ("manager", "admin")],
]


@pytest.mark.parametrize(("route", "headers", "status"), CASES)
def test_every_route_but_health_needs_a_key_with_a_high_enough_role(client, route, headers, status):
    response = call(client, route, headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("path", ["/v1/health", "/v1/health/live", "/openapi.json"])
def test_health_and_the_schema_need_no_key(client, path):
    assert client.get(path).status_code in (200, 503)  # 503: not ready, still answered


def test_without_any_key_configured_nothing_is_open_and_the_answer_says_how_to_add_one(tmp_path):
    client = client_for(site_config(tmp_path, keys=False), Clock(T0))
    for path in READ_ROUTES:
        response = client.get(path, headers=auth("admin"))
        assert response.status_code == 503
        assert "lobbywatch api hash-key" in response.json()["detail"]
    assert client.get("/v1/health/live").status_code == 200


def test_a_key_from_the_environment_is_hashed_at_start_and_works(tmp_path):
    text = f"""
site: {{id: s}}
cameras: [{{id: c, source: "rtsp://h/x", zones: [{{id: z, role: waiting, polygon: [[0,0],[1,0],[1,1]]}}]}}]
storage: {{path: "{tmp_path / "lw.db"}"}}
api: {{keys: [{{id: dash, role: viewer, env: LW_DASH_KEY}}, {{id: gone, role: admin, env: LW_UNSET}}]}}
"""
    config = parse_config(text, environ={})
    app = create_app(config, environ={"LW_DASH_KEY": "from-env"}, rollup_every_s=None)
    client = TestClient(app)
    assert client.get("/v1/zones", headers={"Authorization": "Bearer from-env"}).status_code == 200
    assert client.get("/v1/zones", headers={"Authorization": "Bearer "}).status_code == 401


def test_failed_attempts_are_limited_per_address_with_retry_after(tmp_path):
    monotonic = Monotonic()
    config = site_config(tmp_path, limit=3)
    client = client_for(config, Clock(T0), monotonic)
    wrong = {"Authorization": "Bearer guess"}
    assert [client.get("/v1/zones", headers=wrong).status_code for _ in range(3)] == [401] * 3
    blocked = client.get("/v1/zones", headers=auth("viewer"))  # even the right key, for now
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    other = TestClient(client.app, client=("10.9.8.7", 5000))
    assert other.get("/v1/zones", headers=auth("viewer")).status_code == 200
    monotonic.now += 61
    assert client.get("/v1/zones", headers=auth("viewer")).status_code == 200


def test_a_missing_header_is_not_counted_as_a_guess(tmp_path):
    client = client_for(site_config(tmp_path, limit=2), Clock(T0))
    assert [client.get("/v1/zones").status_code for _ in range(5)] == [401] * 5
    assert client.get("/v1/zones", headers=auth("viewer")).status_code == 200


def test_no_key_reaches_the_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(site_config(tmp_path), Clock(T0))
    client.get("/v1/zones", headers={"Authorization": "Bearer wrong-secret-123"})
    client.get("/v1/zones", headers=auth("admin"))
    text = caplog.text
    assert "failed authentication from testclient" in text
    for secret in ["wrong-secret-123", *KEYS.values(), hash_key(KEYS["admin"])]:
        assert secret not in text


def test_cors_is_closed_unless_origins_are_configured(tmp_path):
    preflight = {
        "Origin": "https://dash.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    closed = client_for(site_config(tmp_path), Clock(T0))
    response = closed.options("/v1/zones", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    opened = client_for(site_config(tmp_path, cors=["https://dash.example"]), Clock(T0))
    response = opened.options("/v1/zones", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "https://dash.example"
    response = opened.options("/v1/zones", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_the_api_serves_no_images(client):
    schema = client.get("/openapi.json").json()
    media = {
        media_type
        for path in schema["paths"].values()
        for operation in path.values()
        for response in operation.get("responses", {}).values()
        for media_type in response.get("content", {})
    }
    assert media <= {"application/json", "text/csv", "text/plain"}
