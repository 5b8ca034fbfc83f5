"""Browser logins with an API key: a session cookie (docs/ui.md 1).

POST exchanges a key for the `lobbywatch_session` cookie (the key itself is never stored in
the browser); every route then takes the cookie as that key, with its role (api/deps.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AuthError, Principal, Role
from api.deps import (
    AUTH_RESPONSES,
    Context,
    client_of,
    cross_site,
    expired_cookie,
    refuse_plain_http,
    require,
    set_credential_cookie,
)
from api.handhelds import APP_HEADER
from api.schemas import Problem
from api.sessions import SESSION_COOKIE

router = APIRouter(prefix="/v1/session", tags=["session"])


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=512, description="An API key (api.keys)")


class SessionOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="The key's id, or the paired handheld's name")
    role: Role
    expires_at: datetime | None = Field(
        description="When the session ends (UTC); null when the caller is not a session (a "
        "bearer key or a paired phone's cookie)"
    )
    site_id: str
    site_name: str
    timezone: str = Field(description="IANA time zone of the branch: times are shown in it")
    language: Literal["en", "zh-CN"] = Field(description="The site's language (alerts.language)")


def _out(context: Context, principal: Principal, expires_at: datetime | None) -> SessionOut:
    config = context.config
    return SessionOut(
        id=principal.key_id,
        role=principal.role,
        expires_at=expires_at,
        site_id=config.site.id,
        site_name=config.site.name,
        timezone=config.site.timezone,
        language=config.alerts.language,
    )


AppHeader = Annotated[
    Literal["1"],
    Header(
        alias=APP_HEADER,
        description="1: sent by the site's own page, which another site's page cannot (a login "
        "forged to put a browser in someone else's session)",
    ),
]


@router.post(
    "",
    summary="Log a browser in with an API key: sets the session cookie",
    description=f"Checked as a bearer key is (a wrong key counts as a failed authentication). "
    f"Sets `{SESSION_COOKIE}` (HttpOnly, Secure, SameSite=Strict, Path=/): a random token held "
    "in the API's memory only, for api.session_ttl_s from now (absolute; a restart of the API "
    "logs everyone out). Refused over plain http except on localhost, where a browser would "
    "not keep the cookie.",
    response_model=SessionOut,
    responses={
        400: {"model": Problem, "description": "The body is not JSON"},
        401: {"model": Problem, "description": "Wrong key"},
        403: {"model": Problem, "description": "Not over https, or a cross-site request"},
        429: AUTH_RESPONSES[429],
        503: {"model": Problem, "description": "No key configured"},
    },
)
def login(
    request: Request, response: Response, context: Context, body: LoginIn, _app: AppHeader
) -> SessionOut:
    refuse_plain_http(request, "logging in")
    refused = cross_site(request)
    if refused is not None:
        raise HTTPException(403, refused)
    try:
        principal = context.auth.authenticate(
            body.key, client_of(request), "viewer", keys_only=True
        )
    except AuthError as exc:
        raise HTTPException(exc.status, exc.detail, headers=exc.headers) from None
    session = context.sessions.open(principal)
    set_credential_cookie(response, SESSION_COOKIE, session.token, round(context.sessions.ttl_s))
    return _out(context, principal, session.expires_at)


@router.get(
    "",
    summary="Who is logged in: the key's id, its role, when the session ends",
    description="401 without a live session (or another credential); the pages ask at start.",
    response_model=SessionOut,
    responses=AUTH_RESPONSES,
)
def who(
    request: Request,
    context: Context,
    principal: Annotated[Principal, Depends(require("viewer"))],
) -> SessionOut:
    token, _, by_session = request.state.lobbywatch_credential
    session = context.sessions.lookup(token) if by_session else None
    return _out(context, principal, session.expires_at if session is not None else None)


@router.delete(
    "",
    status_code=204,
    summary="Log out: the session is forgotten and its cookie expired",
    description="Answers 204 whether or not there was a session (logging out twice is fine).",
    responses={403: {"model": Problem, "description": "A cross-site request"}},
)
def logout(request: Request, context: Context, _app: AppHeader) -> Response:
    refused = cross_site(request)
    if refused is not None:
        raise HTTPException(403, refused)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        context.sessions.close(token)
    return Response(
        status_code=204,
        headers={"Set-Cookie": expired_cookie(SESSION_COOKIE), "Cache-Control": "no-store"},
    )
