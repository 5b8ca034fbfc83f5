"""Schemathesis against the head-office API's own OpenAPI document, on a seeded real
PostgreSQL (as tests/test_api_schema.py for the device): generated requests, valid and not,
to every operation never get a 5xx, every answer matches the document, input it allows is
accepted and input it forbids refused."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.config import SchemathesisConfig

from tests.central.central_api_support import KEYS, auth, client_for, seeded_dsn
from tests.central.postgres import postgres_server

__all__ = ["postgres_server", "seeded_dsn"]  # fixtures, imported for pytest

#: Range rules over two parameters or the clock, which an OpenAPI schema cannot state.
RANGE_RULES = ("start must be before end", "is longer than the", "never sent zone")


def positive_data_accepted_but_for_range_rules(ctx: Any, response: Any, case: Any) -> None:
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
    ignored_auth,
]

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def api_schema(seeded_dsn: str) -> Any:
    client = client_for(seeded_dsn, failed_auth_limit=10_000)  # ignored_auth sends wrong keys
    config = SchemathesisConfig.from_dict(
        {"auth": {"openapi": {"HTTPBearer": {"bearer": KEYS["hq"]}}}}
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app, config=config)
    # The document takes any site id; here it names the seeded ones (and one of another
    # region's, a 404 for no key here), so generated requests reach real answers, not only 404s.
    for path in schema.raw_schema["paths"].values():
        for parameter in path.get("get", {}).get("parameters", []):
            if parameter["name"] == "site":
                parameter["schema"]["enum"] = SITES
    return schema


SITES = ["b-north-1", "b-north-2", "b-north-3", "b-south-1", "b-x"]


OPERATIONS = [
    # (method, path, takes input)
    ("GET", "/v1/health", False),
    ("GET", "/v1/sites", False),
    ("GET", "/v1/sites/{site}/occupancy/history", True),
    ("GET", "/v1/sites/{site}/alerts", True),
    ("GET", "/v1/reports/branches/waiting", True),
    ("GET", "/v1/reports/branches/above-threshold", True),
    ("GET", "/v1/reports/alerts/ack-times", True),
    ("GET", "/v1/reports/passes", True),
    ("GET", "/v1/reports/devices/offline", False),
]
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path, takes_input in OPERATIONS
    for mode in schemathesis.GenerationMode
    if takes_input or mode is schemathesis.GenerationMode.POSITIVE
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_no_server_error_and_every_answer_matches_the_schema(api_schema, method, path, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    check()


def test_every_operation_in_the_schema_is_fuzzed(api_schema):
    found = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert found == {(method, path) for method, path, _ in OPERATIONS}


FOUND = [
    # (route, query, status): times at the edges the schema allows
    ("/v1/reports/passes", {"end": "0001-01-01T00:00:00Z"}, 200),
    (
        "/v1/reports/branches/above-threshold",
        {"end": "9999-12-31T23:59:59-23:59", "start": "9999-01-01T00:00:00Z"},
        200,
    ),
    ("/v1/sites/b-north-1/occupancy/history", {"end": "0001-01-01T00:00:00Z"}, 200),
    ("/v1/sites/b-north-1/alerts", {"start": "9999-01-01T00:00:00Z"}, 422),
    ("/v1/sites/b-north-1/occupancy/history", {"zone": ""}, 422),
    ("/v1/reports/alerts/ack-times", {"end": "5"}, 422),
]


@pytest.mark.parametrize(("path", "params", "status"), FOUND)
def test_any_time_the_schema_allows_gets_an_answer_or_a_documented_refusal(
    api_schema, path, params, status
):
    response = TestClient(api_schema.app).get(path, params=params, headers=auth("hq"))
    assert response.status_code == status, response.text
    template = path.replace("b-north-1", "{site}")
    assert str(status) in api_schema.raw_schema["paths"][template]["get"]["responses"]
