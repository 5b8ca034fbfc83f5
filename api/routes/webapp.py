"""The phone web app's files under /app/ (api/web/app/, shipped as package data).

No key is needed for the files themselves: they hold no data, and the page must load to show
"logged out" or to pair. Only the files listed are served (nothing else under the package by
a crafted path), with a Content-Security-Policy that lets the page load and talk to nothing
but this device, and `no-cache` so an updated device's app is picked up on the next load.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response

from api.deps import Context

router = APIRouter(include_in_schema=False)

APP_DIR = Path(__file__).resolve().parent.parent / "web" / "app"

#: file (relative to APP_DIR) -> media type
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "sw.js": "text/javascript; charset=utf-8",
    "manifest.webmanifest": "application/manifest+json",
    "icons/icon.svg": "image/svg+xml",
    "icons/icon-192.png": "image/png",
    "icons/icon-512.png": "image/png",
    "icons/icon-maskable-512.png": "image/png",
}
#: Paths the page itself handles (it reads the pairing code from the URL's #fragment, which
#: never reaches the server or a log).
PAGES = {"", "pair"}

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; manifest-src 'self'; worker-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> bytes:
    try:
        return (APP_DIR / name).read_bytes()
    except OSError as exc:  # an install without its package data
        raise HTTPException(404, f"the app's {name} is not installed ({exc.strerror})") from None


@router.get("/app")
def app_root() -> RedirectResponse:
    return RedirectResponse("/app/", status_code=308)


@router.get("/app/{name:path}")
def app_file(context: Context, name: str) -> Response:
    if name in PAGES:
        # The site's language, so the page opens in it before it knows who it is.
        page = _file("index.html").replace(
            b'data-site-language="en"',
            f'data-site-language="{context.config.alerts.language}"'.encode(),
        )
        return Response(page, media_type=FILES["index.html"], headers=SECURITY_HEADERS)
    if name not in FILES:
        raise HTTPException(404, f"no /app/{name}")
    headers = dict(SECURITY_HEADERS)
    if name == "sw.js":
        headers["Service-Worker-Allowed"] = "/app/"
    return Response(_file(name), media_type=FILES[name], headers=headers)
