"""Who may read the head office: keys, roles, regions, failed-attempt limits, no secret in the
logs (as tests/test_api_auth.py for the device, whose Authenticator the head office reuses)."""

from __future__ import annotations

import hmac
import logging

import pytest
from fastapi.testclient import TestClient

from api import auth as device_auth
from api.auth import hash_key
from central.api.server import uvicorn_options
from central.config import CentralConfig
from tests.central.central_api_support import (
    KEYS,
    Monotonic,
    auth,
    central_config,
    client_for,
    seeded_dsn,
)
from tests.central.postgres import postgres_server

__all__ = ["postgres_server", "seeded_dsn"]  # fixtures, imported for pytest

ROUTES = [
    "/v1/sites",
    "/v1/sites/b-north-1/occupancy/history",
    "/v1/sites/b-north-1/alerts",
    "/v1/reports/branches/waiting",
    "/v1/reports/branches/above-threshold",
    "/v1/reports/alerts/ack-times",
    "/v1/reports/passes",
    "/v1/reports/devices/offline",
]
SOUTH_ROUTES = [r.replace("b-north-1", "b-south-1") for r in ROUTES]


@pytest.fixture(scope="module")
def client(seeded_dsn: str) -> TestClient:
    return client_for(seeded_dsn, failed_auth_limit=10_000)  # the table sends wrong keys


CASES = [
    # (route, headers, status)
    *[(r, {}, 401) for r in ROUTES],
    *[(r, {"Authorization": "Bearer not-a-key"}, 401) for r in ROUTES],
    *[(r, {"Authorization": f"Basic {KEYS['hq']}"}, 401) for r in ROUTES[:2]],
    *[(r, {"Authorization": f"Bearer {hash_key(KEYS['hq'])}"}, 401) for r in ROUTES[:2]],
    # every role reads (viewer < manager < admin), each within its regions
    *[(r, auth(key), 200) for r in ROUTES for key in ("hq", "north", "both")],
    *[(r, auth(key), 200) for r in SOUTH_ROUTES for key in ("hq", "south", "both")],
    *[(r, auth("south"), 404) for r in ROUTES if "/sites/" in r],
    *[(r, auth("north"), 404) for r in SOUTH_ROUTES if "/sites/" in r],
]


@pytest.mark.parametrize(("route", "headers", "status"), CASES)
def test_every_route_but_health_needs_a_key_and_sees_only_its_regions(
    client, route, headers, status
):
    response = client.get(route, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("path", ["/v1/health", "/openapi.json"])
def test_health_and_the_schema_need_no_key(client, path):
    assert client.get(path).status_code == 200


def test_without_any_key_configured_nothing_is_open_and_the_answer_says_how_to_add_one(
    seeded_dsn,
):
    client = client_for(seeded_dsn, central_config(keys=False))
    for path in ROUTES:
        response = client.get(path, headers=auth("hq"))
        assert response.status_code == 503
        assert "api.keys" in response.json()["detail"]
    assert client.get("/v1/health").status_code == 200


def test_a_key_from_the_environment_is_hashed_at_start_and_works(seeded_dsn):
    config = CentralConfig.model_validate(
        {
            "database": {"dsn": "unused"},
            "broker": {"servers": ["nats://127.0.0.1:4222"]},
            "api": {
                "keys": [
                    {"id": "ops", "role": "viewer", "env": "LW_OPS_KEY"},
                    {"id": "gone", "role": "admin", "env": "LW_UNSET"},
                ]
            },
        }
    )
    client = client_for(seeded_dsn, config, environ={"LW_OPS_KEY": "from-env"})
    assert client.get("/v1/sites", headers={"Authorization": "Bearer from-env"}).status_code == 200
    assert client.get("/v1/sites", headers={"Authorization": "Bearer "}).status_code == 401


def test_failed_attempts_are_limited_per_address_with_retry_after(seeded_dsn):
    monotonic = Monotonic()
    client = client_for(seeded_dsn, monotonic=monotonic, failed_auth_limit=3)
    wrong = {"Authorization": "Bearer guess"}
    assert [client.get("/v1/sites", headers=wrong).status_code for _ in range(3)] == [401] * 3
    blocked = client.get("/v1/sites", headers=auth("hq"))  # even the right key, for now
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    other = TestClient(client.app, client=("10.9.8.7", 5000))
    assert other.get("/v1/sites", headers=auth("hq")).status_code == 200
    monotonic.now += 61
    assert client.get("/v1/sites", headers=auth("hq")).status_code == 200


def test_a_forwarded_address_does_not_get_a_guesser_past_the_limit(seeded_dsn):
    client = client_for(seeded_dsn, failed_auth_limit=3)
    got = [
        client.get("/v1/sites", headers={"Authorization": f"Bearer g{i}",
                                         "X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(6)
    ]  # fmt: skip
    assert got == [401] * 3 + [429] * 3


def test_a_missing_header_is_not_counted_as_a_guess(seeded_dsn):
    client = client_for(seeded_dsn, failed_auth_limit=2)
    assert [client.get("/v1/sites").status_code for _ in range(5)] == [401] * 5
    assert client.get("/v1/sites", headers=auth("north")).status_code == 200


def test_a_key_is_compared_with_every_configured_key_whichever_matches(client, monkeypatch):
    """The device's constant-time match: no early exit, so timing says nothing of the keys."""
    calls = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return compare(a, b)

    monkeypatch.setattr(device_auth.hmac, "compare_digest", counting)
    for key in ("hq", "both"):  # the first and the last configured
        calls.clear()
        assert client.get("/v1/sites", headers=auth(key)).status_code == 200
        assert len(calls) == len(KEYS)


def test_no_key_reaches_the_logs(seeded_dsn, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(seeded_dsn)
    client.get("/v1/sites", headers={"Authorization": "Bearer wrong-secret-123"})
    client.get("/v1/sites", headers=auth("hq"))
    assert "failed authentication from testclient" in caplog.text
    for secret in ["wrong-secret-123", *KEYS.values(), hash_key(KEYS["hq"])]:
        assert secret not in caplog.text


def test_uvicorn_never_believes_forwarded_headers_and_serves_https_with_a_certificate(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    plain = uvicorn_options(central_config())
    assert (plain["proxy_headers"], plain["forwarded_allow_ips"], plain["port"]) == (
        False,
        [],
        8090,
    )
    assert "ssl_certfile" not in plain
    config = central_config().model_copy(
        update={"api": central_config().api.model_copy(
            update={"tls": central_config().api.tls.model_copy(
                update={"cert_file": cert, "key_file": key})})}
    )  # fmt: skip
    options = uvicorn_options(config)
    assert (options["ssl_certfile"], options["ssl_keyfile"]) == (str(cert), str(key))
