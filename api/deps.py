"""What every route needs: the app's context and the caller's identity (FastAPI dependencies).

Annotations here are evaluated by FastAPI at import time, from this module's globals: every type
used in a dependency's signature must be importable at module level (not under TYPE_CHECKING).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from api.auth import Authenticator, AuthError, Principal, Role
from api.clients import ClientAddress
from api.db import StoreAccess
from api.rollup import Rollup
from api.schemas import Problem
from edge.config import LobbyConfig


@dataclass(frozen=True)
class ApiContext:
    """Everything the routes share; one per app, kept on app.state."""

    config: LobbyConfig
    store: StoreAccess
    rollup: Rollup | None
    auth: Authenticator
    clients: ClientAddress  # who is asking, given the peer and X-Forwarded-For
    clock: Callable[[], datetime]  # UTC wall time, for records and staleness
    tz: ZoneInfo  # the site's time zone
    registry: CollectorRegistry


def get_context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.lobbywatch)


Context = Annotated[ApiContext, Depends(get_context)]

bearer = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer <key>`. Roles: viewer (read), "
    "manager (may acknowledge alerts), admin (everything).",
)


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that admits callers whose key has at least `role`."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        context = get_context(request)
        client = context.clients.of(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
        )
        token = credentials.credentials if credentials is not None else None
        try:
            return context.auth.authenticate(token, client, role)
        except AuthError as exc:
            raise HTTPException(exc.status, exc.detail, headers=exc.headers) from None

    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
Manager = Annotated[Principal, Depends(require("manager"))]

_WWW_AUTHENTICATE = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
_RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until a try may succeed"}
}

#: Answers every protected route may give besides its own.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong key", "headers": _WWW_AUTHENTICATE},
    403: {"model": Problem, "description": "The key's role may not do this"},
    429: {
        "model": Problem,
        "description": "Too many failed authentications, from this address or from everywhere",
        "headers": _RETRY_AFTER,
    },
    503: {"model": Problem, "description": "No key configured, or the store is unavailable"},
}


def invalid(location: str, name: str, message: str, value: object = None) -> RequestValidationError:
    """A 422 in FastAPI's usual shape, for checks the parameter types cannot express."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (location, name), "msg": message, "input": value}]
    )
