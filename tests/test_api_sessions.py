"""Browser logins with an API key (docs/ui.md 1): the session cookie, its expiry, its limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.auth import Principal
from api.handhelds import APP_HEADER
from api.sessions import SESSION_COOKIE, Sessions
from tests.test_api_auth import ACK, READ_ROUTES, call
from tests.test_api_support import KEYS, T0, Clock, Monotonic, client_for, insert_alert, site_config

APP = {APP_HEADER: "1"}
TTL_S = 8 * 3600  # api.session_ttl_s's default


@pytest.fixture
def monotonic():
    return Monotonic()


@pytest.fixture
def app(tmp_path, monotonic):
    app = client_for(site_config(tmp_path), Clock(T0), monotonic).app
    insert_alert(app.state.lobbywatch.store.store(), "a1", T0)
    return app


def browser(app) -> TestClient:
    """A browser of its own (its own cookie jar) on the device's https address."""
    return TestClient(app, base_url="https://device.branch.example")


def login(client: TestClient, role: str = "viewer"):
    response = client.post("/v1/session", json={"key": KEYS[role]}, headers=APP)
    assert response.status_code == 200, response.text
    return response


def test_a_login_sets_a_strict_session_cookie_holding_a_token_not_the_key(app):
    client = browser(app)
    response = login(client, "manager")
    body = response.json()
    assert (body["id"], body["role"]) == ("manager-1", "manager")
    assert body["expires_at"].startswith((T0 + timedelta(seconds=TTL_S)).isoformat()[:19])
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/", f"Max-Age={TTL_S}"):
        assert attribute.lower() in cookie.lower()
    token = cookie.split(";")[0].split("=", 1)[1]
    assert KEYS["manager"] not in cookie and token not in response.text
    assert response.headers["cache-control"] == "no-store"
    assert client.get("/v1/session").json()["id"] == "manager-1"


SESSION_CASES = [
    # (role logged in, route, status): the session acts with its key's role
    *[("viewer", r, 200) for r in READ_ROUTES],
    ("viewer", ACK, 403),
    ("manager", ACK, 200),
    ("admin", ACK, 200),
]


@pytest.mark.parametrize(("role", "route", "status"), SESSION_CASES)
def test_every_route_takes_the_session_as_its_key_with_its_role(app, role, route, status):
    client = browser(app)
    login(client, role)
    response = call(client, route, APP)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("route", [*READ_ROUTES, ACK, "/v1/session"])
def test_every_route_still_refuses_a_browser_that_has_not_logged_in(app, route):
    response = call(browser(app), route, APP)
    assert response.status_code == 401, response.text


def test_a_state_change_riding_on_the_session_needs_the_app_header_and_our_origin(app):
    client = browser(app)
    login(client, "manager")
    forged = client.post("/v1/alerts/a1/ack", json={"status": "accepted"})
    assert forged.status_code == 403 and APP_HEADER in forged.json()["detail"]
    other = client.post(
        "/v1/alerts/a1/ack", json={"status": "accepted"},
        headers={**APP, "Origin": "https://evil.example"},
    )  # fmt: skip
    assert other.status_code == 403 and "evil.example" in other.json()["detail"]
    own = client.post(
        "/v1/alerts/a1/ack", json={"status": "accepted"},
        headers={**APP, "Origin": "https://device.branch.example"},
    )  # fmt: skip
    assert own.status_code == 200, own.text


def test_a_session_expires_at_its_absolute_ttl_whatever_is_done_with_it(app, monotonic):
    client = browser(app)
    login(client)
    monotonic.now += TTL_S - 1
    assert client.get("/v1/zones").status_code == 200  # being used does not extend it
    monotonic.now += 1
    expired = client.get("/v1/zones")
    assert expired.status_code == 401 and "log in again" in expired.json()["detail"]
    cleared = expired.headers["set-cookie"]
    assert cleared.startswith(f"{SESSION_COOKIE}=;") and "max-age=0" in cleared.lower()
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/v1/session").status_code == 401


def test_logout_forgets_the_session_even_for_a_copy_of_the_cookie(app):
    client = browser(app)
    token = login(client).headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert client.delete("/v1/session").status_code == 422  # no app header: refused
    response = client.delete("/v1/session", headers=APP)
    assert response.status_code == 204
    assert "max-age=0" in response.headers["set-cookie"].lower()
    copy = browser(app)
    copy.cookies.set(SESSION_COOKIE, token)
    assert copy.get("/v1/zones").status_code == 401
    assert client.delete("/v1/session", headers=APP).status_code == 204  # twice is fine


def test_a_wrong_key_or_a_guessed_session_counts_against_the_failure_limit(tmp_path):
    app = client_for(site_config(tmp_path, limit=3), Clock(T0)).app
    client = browser(app)
    assert client.post("/v1/session", json={"key": "wrong"}, headers=APP).status_code == 401
    guesser = browser(app)
    guesser.cookies.set(SESSION_COOKIE, "guessed-token")
    assert guesser.get("/v1/zones").status_code == 401
    assert client.post("/v1/session", json={"key": "wrong"}, headers=APP).status_code == 401
    refused = client.post("/v1/session", json={"key": KEYS["viewer"]}, headers=APP)
    assert refused.status_code == 429 and "Retry-After" in refused.headers


def test_logging_in_needs_https_except_on_localhost_and_the_app_header(app):
    plain = TestClient(app, base_url="http://10.0.0.5:8080")
    refused = plain.post("/v1/session", json={"key": KEYS["viewer"]}, headers=APP)
    assert refused.status_code == 403 and "api.tls" in refused.json()["detail"]
    local = TestClient(app, base_url="http://127.0.0.1:8080")
    assert local.post("/v1/session", json={"key": KEYS["viewer"]}).status_code == 422
    assert local.post("/v1/session", json={"key": KEYS["viewer"]}, headers=APP).status_code == 200
    forged = browser(app).post(
        "/v1/session", json={"key": KEYS["viewer"]},
        headers={**APP, "Origin": "https://evil.example"},
    )  # fmt: skip
    assert forged.status_code == 403


def test_a_bearer_key_still_wins_over_the_cookie(app):
    client = browser(app)
    login(client, "viewer")
    manager = {"Authorization": f"Bearer {KEYS['manager']}"}
    response = call(client, ACK, manager)
    assert response.status_code == 200, response.text
    assert client.get("/v1/session", headers=manager).json()["expires_at"] is None


def test_sessions_are_forgotten_oldest_first_past_their_bound():
    monotonic = Monotonic()
    sessions = Sessions(60, Clock(T0), monotonic, max_sessions=2)
    first, second, third = (sessions.open(Principal(f"k{i}", "viewer")) for i in range(3))
    assert sessions.lookup(first.token) is None
    assert sessions.lookup(second.token) == second and sessions.lookup(third.token) == third
    assert len(sessions) == 2
    assert first.token not in repr(first)  # a token never reaches a log line through repr


def test_a_ttl_must_be_positive():
    with pytest.raises(ValueError, match="ttl_s"):
        Sessions(0, Clock(T0), Monotonic())
