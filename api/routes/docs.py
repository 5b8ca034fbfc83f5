"""The API's interactive documentation from bundled assets, no CDN (docs/ui.md 4).

`/docs` is Swagger UI reading `/openapi.json`, its scripts and styles served from this device:
Swagger UI's own build from the `fastapi-offline` package (pure Python, MIT, Swagger UI 5, which
reads the OpenAPI 3.1 document FastAPI writes), and the page around it from api/web/docs/.
Like the OpenAPI document, the page needs no key: it holds no data, and every call tried from
it needs one (Authorize). Only the files listed are served, with a Content-Security-Policy that
lets the page load from and talk to nothing but this device.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import Context

router = APIRouter(include_in_schema=False)

PAGE_DIR = Path(__file__).resolve().parent.parent / "web" / "docs"
#: The distribution whose static/ folder holds Swagger UI's build (pyproject's dependencies).
SWAGGER_PACKAGE = "fastapi_offline"
ASSETS_URL = "/docs"

#: asset name -> (where it lives: "page" or "swagger", media type)
ASSETS = {
    "swagger-ui-bundle.js": ("swagger", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger", "text/css; charset=utf-8"),
    "docs.js": ("page", "text/javascript; charset=utf-8"),
    "docs.css": ("page", "text/css; charset=utf-8"),
}

SECURITY_HEADERS = {
    # img-src data: for the icons inside swagger-ui.css; connect-src 'self' for /openapi.json
    # and the calls tried from the page.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def swagger_dir() -> Path | None:
    """Swagger UI's files as installed, found without importing the package."""
    spec = importlib.util.find_spec(SWAGGER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@lru_cache(maxsize=len(ASSETS) + 1)
def _read(name: str) -> tuple[bytes, str]:
    """An asset's bytes and ETag, read once (1.5 MB of Swagger UI, unchanged until reinstalled)."""
    where, _ = ASSETS.get(name, ("page", ""))
    folder = swagger_dir() if where == "swagger" else PAGE_DIR
    if folder is None:
        raise HTTPException(
            404, f"Swagger UI is not installed ({SWAGGER_PACKAGE} missing): pip install lobbywatch"
        )
    try:
        data = (folder / name).read_bytes()
    except OSError as exc:  # an install without its package data
        raise HTTPException(404, f"the docs' {name} is not installed ({exc.strerror})") from None
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@router.get("/docs")
def docs_page(context: Context, request: Request) -> Response:
    page, _ = _read("index.html")
    # The site's language for the header, and the document this app serves.
    page = page.replace(
        b'data-site-language="en"',
        f'data-site-language="{context.config.alerts.language}"'.encode(),
    ).replace(
        b'data-openapi-url="/openapi.json"',
        f'data-openapi-url="{request.app.openapi_url}"'.encode(),
    )
    return Response(page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/docs/")
def docs_slash() -> RedirectResponse:
    return RedirectResponse("/docs", status_code=308)


@router.get(ASSETS_URL + "/{name}")
def docs_asset(name: str, request: Request) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, f"no {ASSETS_URL}/{name}")
    data, etag = _read(name)
    headers = {**SECURITY_HEADERS, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=ASSETS[name][1], headers=headers)
