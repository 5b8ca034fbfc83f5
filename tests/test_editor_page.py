"""The zone editor's page as served (docs/ui.md 5): only an admin gets it, a browser not logged
in is sent to /login, a viewer is told why; its files, their headers (the app's policy, with
blob: images for the snapshot) and the package data that ships them. The page in a browser:
tests/test_editor_browser.py."""

from __future__ import annotations

import re
import sys
from pathlib import Path, PurePosixPath

import pytest
from fastapi.testclient import TestClient

from api.handhelds import APP_HEADER
from api.routes.pages import PAGES, WEB_DIR
from edge.config import ZoneRole
from tests.test_api_support import KEYS, T0, Clock, Monotonic, client_for, site_config

REPO = Path(__file__).resolve().parent.parent
EDITOR = WEB_DIR / "editor"


@pytest.fixture
def browser(tmp_path):
    app = client_for(site_config(tmp_path), Clock(T0), Monotonic()).app
    return TestClient(app, base_url="https://device.branch.example", follow_redirects=False)


def log_in(browser: TestClient, role: str) -> None:
    response = browser.post("/v1/session", json={"key": KEYS[role]}, headers={APP_HEADER: "1"})
    assert response.status_code == 200, response.text


def test_a_browser_not_logged_in_is_sent_to_log_in_and_back_to_the_editor(browser):
    response = browser.get("/editor")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/editor"


@pytest.mark.parametrize("role", ["viewer", "manager"])
def test_a_key_below_admin_gets_a_page_saying_why_in_both_languages(browser, role):
    log_in(browser, role)
    response = browser.get("/editor")
    assert response.status_code == 403
    assert "may not open this page" in response.text and "无权" in response.text
    assert "editor.js" not in response.text


def test_an_admin_gets_the_editor_under_the_apps_policy_with_blob_images(browser):
    log_in(browser, "admin")
    response = browser.get("/editor")
    assert response.status_code == 200 and 'src="/editor/editor.js"' in response.text
    assert 'data-site-language="en"' in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "img-src 'self' blob:" in csp  # the snapshot, fetched with the cookie, from memory
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "http" not in response.text.replace('"http://www.w3.org', "")  # nothing from elsewhere


def test_the_other_pages_keep_their_policy_without_blob_images(browser):
    log_in(browser, "admin")
    for page in ("/dashboard", "/login"):
        assert "blob:" not in browser.get(page).headers["content-security-policy"]


def test_every_editor_asset_is_served_with_its_type_and_policy_and_nothing_else(browser):
    for name in PAGES["editor"].assets:
        response = browser.get(f"/editor/{name}")
        assert response.status_code == 200, name
        kind = "javascript" if name.endswith(".js") else "css"
        assert kind in response.headers["content-type"]
        assert "img-src 'self' blob:" in response.headers["content-security-policy"]
    for path in ("/editor/index.html", "/editor/..%2Fdebug%2Fdebug.js", "/editor/x.js"):
        assert browser.get(path).status_code == 404, path
    on_disk = {p.name for p in EDITOR.iterdir() if p.is_file()}
    assert on_disk == {"index.html", *PAGES["editor"].assets}  # nothing unserved, nothing missing


def test_the_editor_offers_exactly_the_configs_zone_roles():
    roles = re.search(r"export const ROLES = \[([^\]]*)\]", (EDITOR / "i18n.js").read_text())
    assert roles is not None
    offered = re.findall(r'"([a-z_]+)"', roles.group(1))
    assert offered == list(ZoneRole.__args__)
    text = (EDITOR / "i18n.js").read_text()
    for role in offered:  # each has its words in both languages
        assert len(re.findall(rf"\b{role}: \"", text)) == 2, role


def test_the_editors_files_are_in_the_package_data():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["api"]
    for name in ("index.html", *PAGES["editor"].assets):
        relative = PurePosixPath("web/editor", name)
        assert any(
            len(relative.parts) == len(PurePosixPath(p).parts) and relative.match(p)
            for p in patterns
        ), name
