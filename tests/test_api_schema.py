"""Schemathesis against the app's own OpenAPI document, on a real store: generated requests
(valid and not) to every operation, and sequences that follow the document's links, never get
a 5xx; every answer matches the schema (status code, content type, headers and body); input the
schema allows is accepted and input it forbids is refused (every check schemathesis has)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import schemathesis
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)
from schemathesis.config import SchemathesisConfig

from edge.runtime.frames import serve_frames
from tests.test_api_support import (
    KEYS,
    T0,
    Clock,
    auth,
    client_for,
    insert_alert,
    site_config,
    write_history,
    write_live,
)
from tests.test_snapshots import boxes, frame, with_snapshots, zone_of

#: The range rules that involve two parameters (start before end; at most so many days per
#: bucket size) or the clock (ticket events of today only) cannot be written in an OpenAPI
#: schema; these are their 422 messages.
RANGE_RULES = ("start must be before end", "is longer than the", "today's events only")


def positive_data_accepted_but_for_range_rules(ctx: Any, response: Any, case: Any) -> None:
    """positive_data_acceptance, except that a schema-valid request may get the 422 of a
    two-parameter range rule, and then only that."""
    meta = case.meta
    if response.status_code == 422 and meta is not None and meta.generation.mode.is_positive:
        messages = [error["msg"] for error in response.json()["detail"]]
        assert all(any(rule in m for rule in RANGE_RULES) for m in messages), messages
        return
    positive_data_acceptance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_accepted_but_for_range_rules,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    use_after_free,
    ensure_resource_availability,
    ignored_auth,
]

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure reproduces locally
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture
def api_schema(tmp_path, request):
    clock = Clock(T0 + timedelta(days=1))
    # A failure limit no run reaches: ignored_auth sends wrong keys on purpose. Snapshots on,
    # with the frames server holding a frame, and the config in a file the geometry PUT edits:
    # the camera routes answer as on a running device, not with the 503 of a switched-off one.
    config = with_snapshots(site_config(tmp_path, limit=10_000))
    config_path = tmp_path / "site.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    holder, server = serve_frames(config)
    assert holder is not None and server is not None
    for camera in config.cameras:
        detections = boxes((0.4, 0.5), (0.9, 0.5))
        holder.offer(frame(camera.id), detections, zone_of(config, detections, camera.id))
    request.addfinalizer(server.stop)
    client = client_for(config, clock, config_path=config_path)
    store = client.app.state.lobbywatch.store.store()
    write_history(store, "waiting", T0, [float(i % 9) for i in range(2000)] + [None] * 100)
    write_live(store, clock.now, {"waiting": 4.0, "queue": None})
    insert_alert(store, "a1", T0 + timedelta(hours=3))
    client.app.state.lobbywatch.rollup.refresh(clock.now)
    # The key as the document's security scheme says (not as a header of every call), so that
    # schemathesis knows which requests it sent without one.
    config = SchemathesisConfig.from_dict(
        {"auth": {"openapi": {"HTTPBearer": {"bearer": KEYS["admin"]}}}}
    )
    return schemathesis.openapi.from_asgi("/openapi.json", client.app, config=config)


# One test per operation, listed here so that a failure names it; the last test makes sure the
# list keeps up with the schema. (schemathesis.pytest.from_fixture would find them itself, but
# it does not run under pytest 9.)
OPERATIONS = [
    # (method, path, takes input: worth sending forbidden values too)
    ("GET", "/v1/zones", False),
    ("GET", "/v1/occupancy", False),
    ("GET", "/v1/occupancy/history", True),
    ("GET", "/v1/reports/busiest-hours", True),
    ("GET", "/v1/forecast", True),
    ("GET", "/v1/queue", False),
    ("GET", "/v1/reports/passes", True),
    ("GET", "/v1/reports/daily", True),
    ("GET", "/v1/reports/usual-day", True),
    ("POST", "/v1/tickets/events", True),
    ("GET", "/v1/alerts", True),
    ("POST", "/v1/alerts/{alert_id}/ack", True),
    ("GET", "/v1/alerts/open", False),
    ("POST", "/v1/alerts/{alert_id}/accept", True),
    ("POST", "/v1/alerts/{alert_id}/pass-done", True),
    ("POST", "/v1/handhelds/pair", True),
    ("GET", "/v1/handhelds/me", False),
    ("POST", "/v1/session", True),
    ("GET", "/v1/session", False),
    ("DELETE", "/v1/session", True),
    ("GET", "/v1/cameras/{camera_id}/snapshot.jpg", False),
    ("GET", "/v1/cameras/{camera_id}/detections", True),
    ("GET", "/v1/cameras/{camera_id}/geometry", False),
    ("PUT", "/v1/cameras/{camera_id}/geometry", True),
    ("GET", "/v1/cameras/{camera_id}/hand-counts", False),
    ("POST", "/v1/cameras/{camera_id}/hand-counts", True),
    ("DELETE", "/v1/cameras/{camera_id}/hand-counts/{count_id}", True),
    ("GET", "/v1/health", False),
    ("GET", "/v1/health/live", False),
    ("GET", "/metrics", False),
]
#: Operations whose answer never ends (an event stream): a generated request would wait for its
#: end forever. tests/test_alert_state_api.py holds them to the document on a real server.
ENDLESS = [("GET", "/v1/alerts/stream")]
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path, takes_input in OPERATIONS
    for mode in schemathesis.GenerationMode
    if takes_input or mode is schemathesis.GenerationMode.POSITIVE
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_server_error_and_every_answer_matches_the_schema(api_schema, method, path, mode):
    """Positive: requests the schema allows. Negative: requests it forbids (which must be
    refused with a documented 4xx, never a 5xx)."""
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    check()


def test_sequences_that_follow_the_links_hold_the_same_checks(api_schema):
    """Stateful: list the alerts, then acknowledge the one listed (the document's link), and
    so on; every step is checked like a single request."""

    class Machine(without_endless(api_schema).as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Machine.run(settings=settings(SETTINGS, max_examples=25, stateful_step_count=6))


def without_endless(schema: Any) -> Any:
    for method, path in ENDLESS:
        schema = schema.exclude(method=method, path=path)
    return schema


def test_every_operation_in_the_schema_is_fuzzed(api_schema):
    found = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert found == {(method, path) for method, path, _ in OPERATIONS} | set(ENDLESS)
    kept = {
        (r.ok().method.upper(), r.ok().path)
        for r in without_endless(api_schema).get_all_operations()
    }
    assert kept == found - set(ENDLESS)


def test_the_document_lists_the_sites_zones_and_links_an_alert_to_its_ack(api_schema):
    schema = api_schema.raw_schema
    zone = next(
        p
        for p in schema["paths"]["/v1/occupancy/history"]["get"]["parameters"]
        if p["name"] == "zone"
    )
    assert zone["schema"]["anyOf"][0]["items"]["enum"] == ["waiting", "queue", "entrance"]
    links = schema["paths"]["/v1/alerts"]["get"]["responses"]["200"]["links"]
    assert links["AcknowledgeAlert"]["operationId"] == "acknowledge_alert"


FOUND = [
    # (route, query, status): what the attack on the API found (500 and 422 on valid input)
    ("/v1/alerts", {"end": "0001-01-01T00:00:00Z"}, 200),
    ("/v1/occupancy/history", {"end": "0001-01-01T00:00:00Z"}, 200),
    ("/v1/occupancy/history", {"end": "0001-01-01T00:00:00Z", "bucket": "1d"}, 200),
    ("/v1/reports/busiest-hours", {"end": "0001-01-01T00:00:00Z"}, 200),
    ("/v1/alerts", {"end": "9999-12-31T23:59:59-23:59", "start": "9999-01-01T00:00:00Z"}, 200),
    ("/v1/alerts", {"end": "2000-01-01T00:00:00Z"}, 200),
    ("/v1/reports/busiest-hours", {"start": "0001-01-01T00:00:00+23:59"}, 422),  # > 400 days
    ("/v1/alerts", {"start": "9999-01-01T00:00:00Z"}, 422),  # after now, the default end
    ("/v1/occupancy/history", {"zone": ""}, 422),  # and the schema lists the zones
    ("/v1/occupancy/history", {"end": "5"}, 422),  # not unix seconds: not a date-time
]


@pytest.mark.parametrize(("path", "params", "status"), FOUND)
def test_any_time_the_schema_allows_gets_an_answer_or_a_documented_refusal(
    api_schema, path, params, status
):
    response = TestClient(api_schema.app).get(path, params=params, headers=auth("admin"))
    assert response.status_code == status, response.text
    documented = api_schema.raw_schema["paths"][path]["get"]["responses"]
    assert str(status) in documented


def test_a_body_that_is_not_json_is_a_documented_400(api_schema):
    response = TestClient(api_schema.app).post(
        "/v1/alerts/a1/ack",
        content=b"\x19\xff",
        headers={**auth("manager"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "400" in api_schema.raw_schema["paths"]["/v1/alerts/{alert_id}/ack"]["post"]["responses"]
