"""The phone web app's files as the API serves them (api/routes/webapp.py): every file the
page needs, nothing else under the package, a policy that keeps the page to this device, an
installable manifest whose icons exist at their sizes, and the package data that ships it."""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path, PurePosixPath

import pytest
from fastapi.testclient import TestClient

from api.routes.webapp import APP_DIR, FILES
from tests.test_api_support import T0, Clock, client_for, site_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(tmp_path) -> TestClient:
    return client_for(site_config(tmp_path), Clock(T0))


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_file_is_served_with_its_type_and_no_key(client, name):
    response = client.get(f"/app/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == FILES[name].split(";")[0]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (APP_DIR / name).read_bytes()


@pytest.mark.parametrize("path", ["/app/", "/app/pair"])
def test_the_page_opens_in_the_sites_language_under_a_strict_policy(tmp_path, path):
    config = site_config(tmp_path).model_copy(deep=True)
    config = config.model_copy(
        update={"alerts": config.alerts.model_copy(update={"language": "zh-CN"})}
    )
    response = client_for(config, Clock(T0)).get(path)
    assert response.status_code == 200
    assert 'data-site-language="zh-CN"' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path", ["/app/../auth.py", "/app/%2e%2e/auth.py", "/app/web/app/app.js", "/app/x.js"]
)
def test_nothing_but_the_apps_files_is_served(client, path):
    assert client.get(path).status_code == 404


def test_app_without_slash_goes_to_the_app(client):
    response = client.get("/app", follow_redirects=False)
    assert response.status_code == 308 and response.headers["location"] == "/app/"


def test_the_app_loads_nothing_from_outside_the_device():
    for name in FILES:
        if name.endswith((".html", ".js", ".css", ".webmanifest", ".svg")):
            text = (APP_DIR / name).read_text(encoding="utf-8")
            outside = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)
            assert outside in ([], ["http://www.w3.org"]), (name, outside)  # the SVG namespace


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_manifest_is_installable_and_its_icons_exist_at_their_sizes():
    manifest = json.loads((APP_DIR / "manifest.webmanifest").read_text(encoding="utf-8"))
    assert manifest["start_url"] == "/app/" and manifest["scope"] == "/app/"
    assert manifest["display"] == "standalone" and manifest["name"] and manifest["short_name"]
    sizes = set()
    for icon in manifest["icons"]:
        name = icon["src"].removeprefix("/app/")
        assert name in FILES, name
        if icon["type"] == "image/png":
            width, height = _png_size(APP_DIR / name)
            assert icon["sizes"] == f"{width}x{height}"
            sizes.add((width, icon.get("purpose", "any")))
    assert {(192, "any"), (512, "any"), (512, "maskable")} <= sizes  # what Chrome asks for


def test_every_file_the_app_needs_is_in_the_package_data():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["api"]

    def shipped(relative: PurePosixPath) -> bool:  # setuptools' glob: * stays in its folder
        return any(
            len(relative.parts) == len(PurePosixPath(p).parts) and relative.match(p)
            for p in patterns
        )

    for name in FILES:
        assert shipped(PurePosixPath("web/app", name)), name
    on_disk = {str(p.relative_to(APP_DIR)) for p in APP_DIR.rglob("*") if p.is_file()}
    assert on_disk == set(FILES)  # nothing shipped that is not served, nothing served missing
