"""Paired phones: exchanging a pairing code for the phone's cookie, and who the caller is.

The code comes from `lobbywatch handheld pair` (edge/storage/handhelds.py); this is the only
place a handheld's token leaves the device, once, in a Set-Cookie the browser keeps HttpOnly.
A client that is not a browser reads the token from that header and sends it as a bearer key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AuthError, Role
from api.deps import (
    AUTH_RESPONSES,
    Context,
    Viewer,
    client_of,
    refuse_plain_http,
    set_credential_cookie,
)
from api.handhelds import APP_HEADER, COOKIE_MAX_AGE_S, COOKIE_NAME
from api.schemas import Problem

router = APIRouter(prefix="/v1/handhelds", tags=["handhelds"])


class PairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=1,
        max_length=32,
        description="The code `lobbywatch handheld pair` printed (XXXX-XXXX; case, spaces and "
        "dashes do not matter)",
    )


class WhoOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="The handheld's name or the key's id: what acks record")
    role: Role
    handheld: bool = Field(description="A paired phone (true) or a configured API key")
    site_id: str
    site_name: str
    timezone: str = Field(description="IANA time zone of the branch: times are shown in it")
    language: Literal["en", "zh-CN"] = Field(description="The site's language (alerts.language)")


def _who(context: Context, key_id: str, role: Role, handheld: bool) -> WhoOut:
    config = context.config
    return WhoOut(
        id=key_id,
        role=role,
        handheld=handheld,
        site_id=config.site.id,
        site_name=config.site.name,
        timezone=config.site.timezone,
        language=config.alerts.language,
    )


@router.post(
    "/pair",
    summary="Exchange a pairing code for this phone's credential (a cookie)",
    description="Single use, within 10 minutes of `lobbywatch handheld pair`. Sets the "
    f"phone's token as the `{COOKIE_NAME}` cookie (HttpOnly, Secure, SameSite=Strict); "
    "refused over plain http except on localhost, where a browser would not keep it. A wrong "
    "or expired code counts as a failed authentication.",
    response_model=WhoOut,
    responses={
        400: {"model": Problem, "description": "The body is not JSON"},
        401: {"model": Problem, "description": "Unknown, used or expired code"},
        403: {"model": Problem, "description": "Not over https: the cookie would be lost"},
        429: AUTH_RESPONSES[429],
        503: {"model": Problem, "description": "The store is unavailable"},
    },
)
def pair(
    request: Request,
    response: Response,
    context: Context,
    body: PairIn,
    _app: Annotated[
        Literal["1"],
        Header(
            alias=APP_HEADER,
            description="1: sent by the app, which a page of another site cannot (a pairing "
            "forged to log a phone in as someone else)",
        ),
    ],
) -> WhoOut:
    refuse_plain_http(request, "pairing")
    try:
        principal, token = context.auth.pair(body.code, client_of(request))
    except AuthError as exc:
        raise HTTPException(exc.status, exc.detail, headers=exc.headers) from None
    set_credential_cookie(response, COOKIE_NAME, token, COOKIE_MAX_AGE_S)
    return _who(context, principal.key_id, principal.role, principal.handheld)


@router.get(
    "/me",
    summary="Who the caller is: a paired handheld or a key, its role, the site's settings",
    description="The phone app asks at start and every few seconds: a revoked handheld gets "
    "401 here as on every route, and the app shows it is logged out.",
    response_model=WhoOut,
    responses=AUTH_RESPONSES,
)
def me(context: Context, principal: Viewer) -> WhoOut:
    return _who(context, principal.key_id, principal.role, principal.handheld)
