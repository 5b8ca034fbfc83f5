"""Paired phones: pairing codes, tokens, revocation (edge/storage/handhelds.py), and how the
API takes them: the pairing exchange, the app's cookie with its defences, bearer tokens, the
failure limit, and acks recorded under the handheld's name."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.handhelds import APP_HEADER, COOKIE_NAME
from edge.storage.handhelds import (
    CODE_ALPHABET,
    CODE_LENGTH,
    CODE_TTL_S,
    HandheldError,
    HandheldRegistry,
    normalize_code,
)
from edge.store import Store
from tests.test_api_support import T0, Clock, Monotonic, auth, client_for, insert_alert, site_config

APP = {APP_HEADER: "1"}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def registry(tmp_path, clock):
    with Store(tmp_path / "lw.db", site_id="branch-1"):
        pass
    with HandheldRegistry(tmp_path / "lw.db", clock) as registry:
        yield registry


# ---- the registry ----------------------------------------------------------------------------


def test_a_code_gives_one_token_once_and_the_token_names_the_handheld(registry):
    pairing = registry.pair("mgr-1")
    assert len(pairing.code) == CODE_LENGTH and set(pairing.code) <= set(CODE_ALPHABET)
    name, token = registry.redeem(pairing.display_code.lower())
    assert name == "mgr-1" and len(token) >= 40
    assert registry.lookup(token) == "mgr-1"
    assert registry.redeem(pairing.code) is None  # single use
    assert registry.lookup("not-a-token") is None


@pytest.mark.parametrize(
    ("typed", "normalized"),
    [
        ("ABCD-EFGH", "ABCDEFGH"),
        (" abcd efgh ", "ABCDEFGH"),
        ("O1IL-2345", "01112345"),  # O reads as 0, I and L as 1
        ("ABCD-EFG", None),  # too short
        ("ABCD-EFGU", None),  # U is not in the alphabet
        ("", None),
    ],
)
def test_typed_codes_are_read_forgivingly_but_never_guessed_at(typed, normalized):
    assert normalize_code(typed) == normalized


def test_a_code_expires_after_ten_minutes(registry, clock):
    pairing = registry.pair("mgr-1")
    clock.now = T0 + timedelta(seconds=CODE_TTL_S)
    assert registry.redeem(pairing.code) is None
    assert registry.waiting_code("mgr-1") is None


def test_only_the_newest_code_of_a_name_works(registry):
    first = registry.pair("mgr-1")
    second = registry.pair("mgr-1")
    assert registry.redeem(first.code) is None
    assert registry.redeem(second.code) is not None


def test_a_paired_name_is_kept_unless_replaced_and_replacing_logs_the_old_phone_out(registry):
    _, old = registry.redeem(registry.pair("mgr-1").code)
    with pytest.raises(HandheldError, match="already paired"):
        registry.pair("mgr-1")
    _, new = registry.redeem(registry.pair("mgr-1", replace=True).code)
    assert registry.lookup(old) is None and registry.lookup(new) == "mgr-1"


def test_revoking_refuses_the_token_and_an_unused_code_and_a_revoked_name_pairs_again(registry):
    _, token = registry.redeem(registry.pair("mgr-1").code)
    waiting = registry.pair("mgr-2")
    assert registry.revoke("mgr-1") and registry.revoke("mgr-2")
    assert registry.lookup(token) is None
    assert registry.redeem(waiting.code) is None
    assert not registry.revoke("mgr-1")  # already revoked
    assert not registry.revoke("nobody")
    (one, two) = registry.handhelds()
    assert one.revoked_at == T0 and not one.active and one.paired and not two.paired
    registry.pair("mgr-1")  # no --replace needed for a revoked name


@pytest.mark.parametrize("name", ["", "a b", "-lead", "x" * 65, "mgr/1", "名字"])
def test_names_are_ids(registry, name):
    with pytest.raises(HandheldError, match="letters, digits"):
        registry.pair(name)


def test_only_hashes_are_stored(registry, tmp_path):
    pairing = registry.pair("mgr-1")
    _, token = registry.redeem(registry.pair("mgr-2").code)
    dump = "\n".join(sqlite3.connect(tmp_path / "lw.db").iterdump())
    assert pairing.code not in dump and token not in dump
    assert "mgr-1" in dump


def test_last_seen_is_written_at_most_once_a_minute(registry, clock):
    _, token = registry.redeem(registry.pair("mgr-1").code)
    clock.now = T0 + timedelta(seconds=30)
    registry.lookup(token)
    assert registry.handhelds()[0].last_seen_at == T0  # the exchange itself
    clock.now = T0 + timedelta(seconds=61)
    registry.lookup(token)
    assert registry.handhelds()[0].last_seen_at == clock.now


# ---- through the API -------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path, clock):
    config = site_config(tmp_path)
    app = client_for(config, clock, Monotonic()).app
    client = TestClient(app, base_url="https://device.branch.example")
    insert_alert(app.state.lobbywatch.store.store(), "a1", T0)
    return client


def _code(client: TestClient, name: str = "mgr-1") -> str:
    path = client.app.state.lobbywatch.store.path
    with HandheldRegistry(path, lambda: T0) as registry:
        return registry.pair(name).code


def _pair(client: TestClient, name: str = "mgr-1") -> None:
    response = client.post("/v1/handhelds/pair", json={"code": _code(client, name)}, headers=APP)
    assert response.status_code == 200, response.text


def test_pairing_sets_a_strict_cookie_that_identifies_the_phone_as_a_manager(api):
    response = api.post("/v1/handhelds/pair", json={"code": _code(api)}, headers=APP)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "mgr-1" and response.json()["role"] == "manager"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower()
    token = cookie.split(";")[0].split("=", 1)[1]
    assert token not in response.text  # only in the cookie
    me = api.get("/v1/handhelds/me")
    assert me.status_code == 200 and me.json()["handheld"] is True
    assert me.json()["language"] == "en" and me.json()["timezone"] == "Europe/Berlin"
    # The same token works as a bearer key for a client that is not a browser.
    bearer = TestClient(api.app).get("/v1/alerts", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200


def test_an_ack_through_the_cookie_records_the_handhelds_name(api):
    _pair(api)
    response = api.post("/v1/alerts/a1/ack", json={"status": "accepted"}, headers=APP)
    assert response.status_code == 200, response.text
    assert response.json()["acknowledged_by"] == "mgr-1"


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "must send X-Lobbywatch-App"),
        ({APP_HEADER: "yes"}, "must send X-Lobbywatch-App"),
        ({**APP, "Origin": "https://evil.example"}, "may not use"),
        ({**APP, "Origin": "null"}, "may not use"),
    ],
)
def test_a_post_riding_on_the_cookie_must_come_from_the_app_itself(api, headers, why):
    _pair(api)
    response = api.post("/v1/alerts/a1/ack", json={"status": "accepted"}, headers=headers)
    assert response.status_code == 403 and why in response.json()["detail"]
    same = api.post(
        "/v1/alerts/a1/ack",
        json={"status": "accepted"},
        headers={**APP, "Origin": "https://device.branch.example"},
    )
    assert same.status_code == 200


def test_the_cookie_carries_a_handhelds_token_only_never_a_key(api):
    api.cookies.set(COOKIE_NAME, "manager-key-0123456789abcdef")
    assert api.get("/v1/alerts").status_code == 401


def test_a_bearer_key_still_works_beside_a_cookie_and_needs_no_app_header(api):
    _pair(api)
    response = api.post("/v1/alerts/a1/ack", json={"status": "accepted"}, headers=auth("manager"))
    assert response.status_code == 200 and response.json()["acknowledged_by"] == "manager-1"


def test_a_revoked_phone_is_refused_at_its_next_request_and_told_to_forget_its_cookie(api):
    _pair(api)
    assert api.get("/v1/handhelds/me").status_code == 200
    with HandheldRegistry(api.app.state.lobbywatch.store.path) as registry:
        assert registry.revoke("mgr-1")
    response = api.get("/v1/handhelds/me")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert "Max-Age=0" in response.headers["set-cookie"]


def test_wrong_codes_count_against_the_failure_limit(api):
    for _ in range(10):
        response = api.post("/v1/handhelds/pair", json={"code": "AAAA-AAAA"}, headers=APP)
        assert response.status_code == 401
    code = _code(api)
    response = api.post("/v1/handhelds/pair", json={"code": code}, headers=APP)
    assert response.status_code == 429 and "Retry-After" in response.headers


def test_pairing_needs_the_app_header_and_https_except_on_localhost(api):
    code = _code(api)
    assert api.post("/v1/handhelds/pair", json={"code": code}).status_code == 422
    plain = TestClient(api.app, base_url="http://10.0.0.5:8080")
    refused = plain.post("/v1/handhelds/pair", json={"code": code}, headers=APP)
    assert refused.status_code == 403 and "api.tls" in refused.json()["detail"]
    local = TestClient(api.app, base_url="http://localhost:8080")
    assert local.post("/v1/handhelds/pair", json={"code": code}, headers=APP).status_code == 200


def test_a_paired_phone_gets_in_on_a_site_without_keys_while_everyone_else_gets_503(tmp_path):
    config = site_config(tmp_path, keys=False)
    client = TestClient(client_for(config, Clock(T0)).app, base_url="https://device")
    assert client.get("/v1/alerts").status_code == 503
    _pair(client)
    assert client.get("/v1/alerts").status_code == 200
    other = TestClient(client.app, base_url="https://device")
    assert other.get("/v1/alerts", headers={"Authorization": "Bearer x"}).status_code == 503


def test_behind_a_proxy_that_rewrites_host_the_public_urls_origin_is_the_apps(tmp_path, clock):
    # nginx in front: the phone's page comes from https://lobby.branch.example, the API sees
    # "Host: 127.0.0.1:8443". The app's own POSTs must pass; another site's still may not.
    config = site_config(tmp_path)
    config = config.model_copy(
        update={"api": config.api.model_copy(update={"public_url": "https://lobby.branch.example"})}
    )
    app = client_for(config, clock, Monotonic()).app
    client = TestClient(app, base_url="https://127.0.0.1:8443")
    insert_alert(app.state.lobbywatch.store.store(), "a1", T0)
    _pair(client)
    ack = {"json": {"status": "accepted"}}
    own = client.post(
        "/v1/alerts/a1/ack", headers={**APP, "Origin": "https://lobby.branch.example"}, **ack
    )
    assert own.status_code == 200, own.text
    evil = client.post(
        "/v1/alerts/a1/ack", headers={**APP, "Origin": "https://evil.example"}, **ack
    )
    assert evil.status_code == 403
