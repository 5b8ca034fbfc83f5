"""The supervisor's and IT's pages: login, dashboard, zone editor (docs/ui.md 1, 2, 5).

Each page is a folder under api/web/ (shipped as package data), its HTML and its own plain JS
and CSS, served with the phone app's Content-Security-Policy (api/routes/webapp.py): nothing
but this device is loaded or talked to. A page that needs a role is checked here, with the
same credentials the API takes (a session cookie, a paired phone's cookie): a browser not
logged in is sent to /login?next=<page>, one whose role is too low gets a page that says so
(never a blank screen). The pages hold no data; they read it from the public API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from api.auth import Role
from api.deps import Context, require
from api.routes.webapp import SECURITY_HEADERS

router = APIRouter(include_in_schema=False)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


#: The app's policy, and images from blob: URLs: the editor fetches the snapshot with the
#: session cookie (so a 503 can be told apart from a picture) and shows it from memory.
BLOB_IMAGE_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"].replace(
        "img-src 'self'", "img-src 'self' blob:"
    ),
}


@dataclass(frozen=True)
class Page:
    """A page at /<name>: its folder under api/web/, the role it needs (None: anyone, the
    login page), its assets (only those are served) and the headers it and they go with."""

    name: str
    role: Role | None
    assets: tuple[str, ...]
    headers: Mapping[str, str] = field(default_factory=lambda: SECURITY_HEADERS)


PAGES = {
    page.name: page
    for page in (
        Page("login", None, ("login.js", "login.css")),
        Page("dashboard", "viewer", ("dashboard.js", "charts.js", "i18n.js", "dashboard.css")),
        Page("editor", "admin", ("editor.js", "i18n.js", "editor.css"), BLOB_IMAGE_HEADERS),
    )
}

#: What the pages share (their modules import it): served to anyone, as the login page is.
COMMON = Page("common", None, ("lang.js",))

#: Shown when a logged-in browser's role may not open a page, or logins are impossible.
REFUSED = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lobbywatch</title><link rel="stylesheet" href="/login/login.css"></head>
<body><main class="card refused" data-status="{status}">
<h1>{title_en}</h1><p>{detail}</p>
<h1 lang="zh-CN">{title_zh}</h1>
<p><a href="/dashboard">Dashboard / 看板</a> · <a href="/login">Log in again / 重新登录</a></p>
</main></body></html>
"""
TITLES = {
    403: ("Your key may not open this page", "您的密钥无权打开此页面"),
    429: ("Too many failed logins: try again in a minute", "登录失败次数过多：请一分钟后再试"),
    503: ("Logins are not possible yet", "暂时无法登录"),
}


def _file(page: str, name: str) -> bytes:
    try:
        return (WEB_DIR / page / name).read_bytes()
    except OSError as exc:  # an install without its package data
        raise HTTPException(404, f"the page's {name} is not installed ({exc.strerror})") from None


def _html(page: Page, context: Context) -> Response:
    # The site's language, so the page opens in it before it asks who is logged in.
    body = _file(page.name, "index.html").replace(
        b'data-site-language="en"',
        f'data-site-language="{context.config.alerts.language}"'.encode(),
    )
    return Response(body, media_type=MEDIA_TYPES[".html"], headers=dict(page.headers))


def _refused(status: int, detail: str) -> Response:
    title_en, title_zh = TITLES.get(status, TITLES[403])
    body = REFUSED.format(
        status=status, title_en=title_en, title_zh=title_zh, detail=escape(detail)
    )
    return Response(body, status, media_type=MEDIA_TYPES[".html"], headers=SECURITY_HEADERS)


def _open(request: Request, context: Context, page: Page) -> Response:
    if page.role is None:
        return _html(page, context)
    try:
        # The API's own check, credentials and failure limit alike (no bearer on a page load).
        require(page.role)(request, None)
    except HTTPException as exc:
        if exc.status_code == 401:
            back = RedirectResponse(f"/login?next=/{page.name}", status_code=303)
            cleared = (exc.headers or {}).get("Set-Cookie")
            if cleared:  # an expired session: the browser forgets it
                back.headers["Set-Cookie"] = cleared
            return back
        return _refused(exc.status_code, str(exc.detail))
    return _html(page, context)


@router.get("/login")
def login_page(request: Request, context: Context) -> Response:
    return _open(request, context, PAGES["login"])


@router.get("/dashboard")
def dashboard_page(request: Request, context: Context) -> Response:
    return _open(request, context, PAGES["dashboard"])


@router.get("/editor")
def editor_page(request: Request, context: Context) -> Response:
    return _open(request, context, PAGES["editor"])


def _asset(page: Page, name: str) -> Response:
    """A page's script or style: only the files its Page lists (no other path is read)."""
    if name not in page.assets:
        raise HTTPException(404, f"no /{page.name}/{name}")
    media = MEDIA_TYPES[Path(name).suffix]
    return Response(_file(page.name, name), media_type=media, headers=dict(page.headers))


# One route per page, not /{page}/{name}: that would shadow other routers' two-part paths.
@router.get("/login/{name}")
def login_asset(name: str) -> Response:
    return _asset(PAGES["login"], name)


@router.get("/dashboard/{name}")
def dashboard_asset(name: str) -> Response:
    return _asset(PAGES["dashboard"], name)


@router.get("/editor/{name}")
def editor_asset(name: str) -> Response:
    return _asset(PAGES["editor"], name)


@router.get("/common/{name}")
def common_asset(name: str) -> Response:
    return _asset(COMMON, name)
