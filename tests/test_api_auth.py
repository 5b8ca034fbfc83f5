"""Who may do what: keys, roles, failed-attempt limits, CORS; and no secret in any log line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import FailureLimiter, hash_key
from api.clients import ClientAddress
from api.server import uvicorn_options
from edge.config import ConfigError, parse_config
from tests.test_api_support import (
    KEYS,
    T0,
    Clock,
    Monotonic,
    auth,
    client_for,
    insert_alert,
    served,
    site_config,
)

READ_ROUTES = [
    "/v1/zones",
    "/v1/occupancy",
    "/v1/occupancy/history",
    "/v1/reports/busiest-hours",
    "/v1/forecast",
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


def test_the_api_serves_no_images_but_the_admins_snapshot(client):
    """The one image route is the snapshot (docs/ui.md 3: admin, off unless enabled; the
    routes' answers with it off are walked in tests/test_snapshots.py)."""
    schema = client.get("/openapi.json").json()
    media = {
        (media_type, name if media_type.startswith("image/") else None)
        for name, path in schema["paths"].items()
        for operation in path.values()
        for response in operation.get("responses", {}).values()
        for media_type in response.get("content", {})
    }
    plain = {"application/json", "text/csv", "text/plain", "text/event-stream"}
    snapshot = ("image/jpeg", "/v1/cameras/{camera_id}/snapshot.jpg")
    assert media <= {(m, None) for m in plain} | {snapshot}


# --- Who the client is: X-Forwarded-For only from trusted proxies (issue 10) ---------------


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded_for", "client"),
    [
        ([], "127.0.0.1", ["6.6.6.6"], "127.0.0.1"),  # no proxy configured: the header is a claim
        ([], "10.0.0.9", [], "10.0.0.9"),
        (["127.0.0.1"], "10.0.0.9", ["6.6.6.6"], "10.0.0.9"),  # not from the proxy
        (["127.0.0.1"], "127.0.0.1", ["10.1.2.3"], "10.1.2.3"),
        (["127.0.0.1"], "127.0.0.1", [], "127.0.0.1"),
        (["127.0.0.1"], "127.0.0.1", [" , "], "127.0.0.1"),
        # the client wrote the left part; the proxy appended the address it saw
        (["127.0.0.1"], "127.0.0.1", ["6.6.6.6, 10.1.2.3"], "10.1.2.3"),
        (["127.0.0.1"], "127.0.0.1", ["6.6.6.6", "10.1.2.3"], "10.1.2.3"),
        (["127.0.0.1", "10.0.0.0/8"], "127.0.0.1", ["6.6.6.6, 10.1.2.3"], "6.6.6.6"),
        (["127.0.0.1", "10.0.0.0/8"], "127.0.0.1", ["10.1.2.3"], "10.1.2.3"),  # only proxies
        (["127.0.0.1"], "127.0.0.1", ["10.1.2.3:5678"], "10.1.2.3"),  # a port is not a client
        (["::1"], "::1", ["[2001:db8::7]:443"], "2001:db8::7"),
        (["::1"], "::1", ["2001:db8::7"], "2001:db8::7"),
        (["127.0.0.1"], "testclient", ["6.6.6.6"], "testclient"),
        (["127.0.0.1"], None, ["6.6.6.6"], "unknown"),
    ],
)
def test_the_client_is_the_peer_unless_a_trusted_proxy_forwards_it(
    trusted, peer, forwarded_for, client
):
    assert ClientAddress(trusted).of(peer, forwarded_for) == client


@pytest.mark.parametrize(
    ("proxies", "proxy_headers", "allowed"),
    [([], False, []), (["127.0.0.1", "10.0.0.0/8"], True, ["127.0.0.1", "10.0.0.0/8"])],
)
def test_uvicorn_reads_forwarded_headers_only_from_the_configured_proxies(
    tmp_path, proxies, proxy_headers, allowed
):
    options = uvicorn_options(site_config(tmp_path, proxies=proxies), None, None)
    assert (options["proxy_headers"], options["forwarded_allow_ips"]) == (proxy_headers, allowed)


def test_a_trusted_proxy_must_be_an_address_or_a_network(tmp_path):
    with pytest.raises(ConfigError, match="not an IP address or CIDR"):
        site_config(tmp_path, proxies=["proxy.lan"])


def test_past_the_global_budget_every_address_is_refused_but_one_that_used_a_right_key():
    clock = Monotonic()
    limiter = FailureLimiter(10, clock)
    assert limiter.global_limit == 100  # a typo or ten never reaches it
    limiter.record_success("10.0.0.1")
    for i in range(100):
        assert limiter.retry_after(f"6.6.{i // 256}.{i % 256}") is None
        limiter.record_failure(f"6.6.{i // 256}.{i % 256}")
    assert limiter.retry_after("10.9.9.9") == 60  # never failed, still refused
    assert limiter.retry_after("10.0.0.1") is None  # the dashboard that was working
    clock.now += 30
    assert limiter.retry_after("10.9.9.9") == 30
    clock.now += 31
    assert limiter.retry_after("10.9.9.9") is None
    clock.now += FailureLimiter.KNOWN_S
    for i in range(100):
        limiter.record_failure(f"7.7.{i // 256}.{i % 256}")
    assert limiter.retry_after("10.0.0.1") is not None  # known only for KNOWN_S


def test_a_higher_per_address_limit_raises_the_global_budget_with_it():
    assert FailureLimiter(50, Monotonic()).global_limit == 500


def test_the_app_itself_ignores_forwarded_addresses_from_an_untrusted_peer(tmp_path):
    """Whatever the server in front does with the header (TestClient does nothing)."""
    app = create_app(site_config(tmp_path), monotonic=Monotonic(), rollup_every_s=None)
    client = TestClient(app, client=("127.0.0.1", 5000))
    assert statuses(client, guesses(20, rotating)) == [401] * 10 + [429] * 10


# --- The attack, on a real uvicorn server on loopback ---------------------------------------


def statuses(client: httpx.Client | TestClient, headers: Iterable[dict[str, str]]) -> list[int]:
    return [client.get("/v1/zones", headers=h).status_code for h in headers]


def guesses(n: int, forwarded: Callable[[int], str]) -> Iterator[dict[str, str]]:
    for i in range(n):
        yield {"Authorization": f"Bearer guess-{i}", "X-Forwarded-For": forwarded(i)}


def rotating(i: int) -> str:
    return f"198.51.{i // 256}.{i % 256}"


def test_a_new_forwarded_address_per_guess_does_not_get_past_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # uvicorn's own default must not matter
    with served(site_config(tmp_path)) as base, httpx.Client(base_url=base) as client:
        got = statuses(client, guesses(600, rotating))
        assert got == [401] * 10 + [429] * 590  # counted by the socket's address
        refused = client.get("/v1/zones", headers={**auth("viewer"), "X-Forwarded-For": "9.9.9.9"})
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        other = httpx.HTTPTransport(local_address="127.0.0.2")  # another peer: not locked out
        with httpx.Client(base_url=base, transport=other) as elsewhere:
            assert elsewhere.get("/v1/zones", headers=auth("viewer")).status_code == 200


def test_behind_a_trusted_proxy_addresses_are_the_forwarded_ones_and_the_global_limit_holds(
    tmp_path,
):
    config = site_config(tmp_path, proxies=["127.0.0.1"])
    with served(config) as base, httpx.Client(base_url=base) as client:
        dashboard = {**auth("viewer"), "X-Forwarded-For": "10.0.0.50"}
        assert client.get("/v1/zones", headers=dashboard).status_code == 200
        # per forwarded address: one address locked out, the next one not
        assert statuses(client, guesses(11, lambda i: "10.0.0.66")) == [401] * 10 + [429]
        assert statuses(client, guesses(1, lambda i: "10.0.0.67")) == [401]
        # 600 guesses from as many forwarded addresses: the global budget of 100 a minute
        got = statuses(client, guesses(600, rotating))
        assert got == [401] * 89 + [429] * 511  # 11 of the 100 were spent above
        fresh = {**auth("viewer"), "X-Forwarded-For": "10.0.0.99"}
        refused = client.get("/v1/zones", headers=fresh)
        assert refused.status_code == 429 and "Retry-After" in refused.headers
        assert client.get("/v1/zones", headers=dashboard).status_code == 200
