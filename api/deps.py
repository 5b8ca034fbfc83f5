"""What every route needs: the app's context and the caller's identity (FastAPI dependencies).

Annotations here are evaluated by FastAPI at import time, from this module's globals: every type
used in a dependency's signature must be importable at module level (not under TYPE_CHECKING).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from api.auth import Authenticator, AuthError, Principal, Role
from api.clients import ClientAddress
from api.db import StoreAccess
from api.frames_client import SnapshotViews
from api.handhelds import APP_HEADER, COOKIE_NAME
from api.rollup import Rollup
from api.schemas import Problem
from api.sessions import SESSION_COOKIE, Sessions
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
    # Browser logins (api/sessions.py), made here from the config and the failure limiter's
    # monotonic clock, so an app built without them still has them.
    sessions: Sessions = field(init=False)
    # Admins' looks at a camera's frame (api/routes/cameras.py), for the views metric.
    snapshot_views: SnapshotViews = field(default_factory=SnapshotViews)

    def __post_init__(self) -> None:
        sessions = Sessions(self.config.api.session_ttl_s, self.clock, self.auth.limiter.monotonic)
        object.__setattr__(self, "sessions", sessions)


def get_context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.lobbywatch)


Context = Annotated[ApiContext, Depends(get_context)]

bearer = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer <key>`. Roles: viewer (read), "
    "manager (may acknowledge alerts), admin (everything).",
)


def client_of(request: Request) -> str:
    """The address failed authentications are counted under (see api/clients.py)."""
    return get_context(request).clients.of(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
    )


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that admits callers whose key has at least `role`: a bearer key or token,
    a browser session's cookie (api/sessions.py, the key's role), or the phone web app's
    cookie (a paired handheld's token only, see api/handhelds.py), in that order."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        context = get_context(request)
        client = client_of(request)
        token = credentials.credentials if credentials is not None else None
        cookie = None
        if token is None:
            cookie = next((c for c in (SESSION_COOKIE, COOKIE_NAME) if c in request.cookies), None)
        if cookie is not None:
            token = request.cookies[cookie]
            refused = cross_site(request)
            if refused is not None:
                raise HTTPException(403, refused)
        try:
            if cookie == SESSION_COOKIE:
                session = context.sessions.lookup(token) if token else None
                found = session.principal if session is not None else None
                principal = context.auth.admit_session(found, client, role)
            else:
                principal = context.auth.authenticate(
                    token, client, role, handheld_only=cookie == COOKIE_NAME
                )
        except AuthError as exc:
            headers = dict(exc.headers)
            if cookie is not None and exc.status == 401:  # expired, revoked: the browser forgets
                headers["Set-Cookie"] = expired_cookie(cookie)
            raise HTTPException(exc.status, exc.detail, headers=headers) from None
        request.state.lobbywatch_credential = (token, principal, cookie == SESSION_COOKIE)
        return principal

    return dependency


def still_admitted(request: Request) -> Callable[[], bool]:
    """For a response that lasts (the alert stream): whether the credential the request was
    admitted with still stands; a phone revoked meanwhile does not, nor a session that expired
    or logged out. Blocking (it may read the store): call it from a thread."""
    context = get_context(request)
    token, principal, session = request.state.lobbywatch_credential
    if session:
        return lambda: context.sessions.lookup(token) is not None
    return lambda: context.auth.still_valid(principal, token)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_site(request: Request) -> str | None:
    """Why a request that changes something, riding on a cookie (the handheld's or a browser
    session's), is refused as possibly forged by another site's page; None when it is the
    site's own page. It must carry APP_HEADER,
    and an Origin, when the browser sends one, naming this host: the one in the request, or
    `api.public_url`'s (a TLS proxy in front may rewrite the Host header)."""
    if request.method in SAFE_METHODS:
        return None
    if request.headers.get(APP_HEADER) != "1":
        return f"refused: a request with the app's cookie must send {APP_HEADER}: 1"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    ours = {request.headers.get("host")}
    public_url = get_context(request).config.api.public_url
    if public_url is not None:
        ours.add(urlsplit(public_url).netloc)
    if urlsplit(origin).netloc not in ours:
        return f"refused: a request from {origin} may not use this site's cookies"
    return None


def expired_cookie(name: str = COOKIE_NAME) -> str:
    """A Set-Cookie value that makes the browser drop cookie `name`."""
    return f"{name}=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Strict"


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


#: Hosts a browser treats as secure over plain http: it keeps a Secure cookie from them.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def refuse_plain_http(request: Request, doing: str) -> None:
    """403 for `doing` (a login, a pairing) over plain http but on localhost: the browser would
    not keep the Secure cookie it sets."""
    if request.url.scheme != "https" and request.url.hostname not in LOOPBACK_HOSTS:
        raise HTTPException(
            403,
            f"{doing} needs https (a browser keeps the credential's cookie only from an https "
            "page): set api.tls in the device's config, or api.trusted_proxies for a TLS proxy",
        )


def set_credential_cookie(response: Response, name: str, token: str, max_age_s: int) -> None:
    """A browser credential: HttpOnly, Secure, SameSite=Strict, for the whole site; the answer
    that carries it is never cached."""
    response.set_cookie(
        name, token, max_age=max_age_s, path="/", secure=True, httponly=True, samesite="strict"
    )
    response.headers["Cache-Control"] = "no-store"
