"""Schemathesis against the app's own OpenAPI document: generated requests (valid and not) to
every operation, with an admin key, never get a 5xx, and every answer matches the schema
(status code, content type, headers and body)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_api_support import (
    T0,
    Clock,
    auth,
    client_for,
    insert_alert,
    site_config,
    write_history,
    write_live,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(tmp_path):
    clock = Clock(T0 + timedelta(days=1))
    client = client_for(site_config(tmp_path), clock)
    store = client.app.state.lobbywatch.store.store()
    write_history(store, "waiting", T0, [float(i % 9) for i in range(2000)] + [None] * 100)
    write_live(store, clock.now, {"waiting": 4.0, "queue": None})
    insert_alert(store, "a1", T0 + timedelta(hours=3))
    client.app.state.lobbywatch.rollup.refresh(clock.now)
    return schemathesis.openapi.from_asgi("/openapi.json", client.app)


# One test per operation, listed here so that a failure names it; the last test makes sure the
# list keeps up with the schema. (schemathesis.pytest.from_fixture would find them itself, but
# it does not run under pytest 9.)
OPERATIONS = [
    # (method, path, takes input: worth sending forbidden values too)
    ("GET", "/v1/zones", False),
    ("GET", "/v1/occupancy", False),
    ("GET", "/v1/occupancy/history", True),
    ("GET", "/v1/reports/busiest-hours", True),
    ("GET", "/v1/alerts", True),
    ("POST", "/v1/alerts/{alert_id}/ack", True),
    ("GET", "/v1/health", False),
    ("GET", "/v1/health/live", False),
    ("GET", "/metrics", False),
]
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
    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,  # the same examples on every run: a CI failure reproduces locally
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=auth("admin"), checks=CHECKS)

    check()


def test_every_operation_in_the_schema_is_fuzzed(api_schema):
    found = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert found == {(method, path) for method, path, _ in OPERATIONS}
