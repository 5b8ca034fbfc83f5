"""`/docs`: Swagger UI from this device's own files (api/routes/docs.py), no CDN, no key."""

from __future__ import annotations

import re
import sys
from pathlib import Path, PurePosixPath

import pytest
from fastapi.testclient import TestClient

from api.routes.docs import ASSETS, PAGE_DIR, swagger_dir
from tests.test_api_support import T0, Clock, client_for, site_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(tmp_path) -> TestClient:
    return client_for(site_config(tmp_path), Clock(T0))


def test_the_page_needs_no_key_as_the_openapi_document_and_keeps_to_this_device(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'",
                      "connect-src 'self'", "frame-ancestors 'none'"):  # fmt: skip
        assert directive in policy
    assert client.get("/openapi.json").status_code == 200
    assert 'data-openapi-url="/openapi.json"' in response.text


def test_every_script_and_style_the_page_loads_is_served_here(client):
    page = client.get("/docs").text
    urls = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert urls and all(u.startswith("/docs/") or u == "data:," for u in urls), urls
    for url in urls:
        if url.startswith("/"):
            assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_each_asset_is_served_with_its_type_and_cached_by_etag(client, name):
    response = client.get(f"/docs/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == ASSETS[name][1]
    assert response.headers["x-content-type-options"] == "nosniff"
    folder = swagger_dir() if ASSETS[name][0] == "swagger" else PAGE_DIR
    assert folder is not None
    assert response.content == (folder / name).read_bytes()
    again = client.get(f"/docs/{name}", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_swagger_ui_is_a_build_that_reads_openapi_3_1(client):
    bundle = client.get("/docs/swagger-ui-bundle.js").content
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    # Swagger UI 4 refuses a 3.1 document ("does not specify a valid version field")
    assert re.search(rb'"5\.\d+\.\d+"', bundle)


def test_the_page_asks_no_outside_validator(client):
    script = client.get("/docs/docs.js").text
    assert "validatorUrl: null" in script
    assert "http://" not in script and "https://" not in script


@pytest.mark.parametrize(
    "path",
    ["/docs/favicon.png", "/docs/redoc.standalone.js", "/docs/..%2Fdocs.py",
     "/docs/index.html", "/docs/oauth2-redirect", "/redoc"],
)  # fmt: skip
def test_nothing_but_the_listed_files_is_served(client, path):
    assert client.get(path).status_code == 404


def test_the_header_opens_in_the_sites_language(tmp_path):
    config = site_config(tmp_path)
    config = config.model_copy(
        update={"alerts": config.alerts.model_copy(update={"language": "zh-CN"})}
    )
    page = client_for(config, Clock(T0)).get("/docs").text
    assert 'data-site-language="zh-CN"' in page
    script = (PAGE_DIR / "docs.js").read_text(encoding="utf-8")
    assert '"zh-CN": {' in script and "lobbywatch API 参考" in script


def test_the_docs_routes_are_not_operations_in_the_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/docs")]


def test_every_page_file_is_in_the_package_data():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["api"]
    on_disk = sorted(p.name for p in PAGE_DIR.iterdir() if p.is_file())
    assert on_disk == sorted(["index.html", "docs.js", "docs.css"])
    for name in on_disk:
        relative = PurePosixPath("web/docs", name)
        assert any(
            len(relative.parts) == len(PurePosixPath(p).parts) and relative.match(p)
            for p in patterns
        ), name
    dependencies = " ".join(pyproject["project"]["dependencies"])
    assert "fastapi-offline" in dependencies
