"""The login and dashboard pages as served (docs/ui.md 1, 2): who gets the page, who is sent to
/login, which files are served and with what headers. The pages in a browser:
tests/test_dashboard_browser.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.handhelds import APP_HEADER
from api.routes.pages import COMMON, PAGES
from tests.test_api_support import KEYS, T0, Clock, Monotonic, client_for, site_config


@pytest.fixture
def monotonic():
    return Monotonic()


@pytest.fixture
def browser(tmp_path, monotonic):
    app = client_for(site_config(tmp_path), Clock(T0), monotonic).app
    return TestClient(app, base_url="https://device.branch.example", follow_redirects=False)


def log_in(browser: TestClient, role: str = "viewer") -> None:
    response = browser.post("/v1/session", json={"key": KEYS[role]}, headers={APP_HEADER: "1"})
    assert response.status_code == 200, response.text


def test_the_dashboard_sends_a_browser_that_has_not_logged_in_to_the_login_page(browser):
    response = browser.get("/dashboard")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/dashboard"
    login = browser.get("/login")
    assert login.status_code == 200 and 'id="login-form"' in login.text


def test_a_logged_in_viewer_gets_the_dashboard_with_the_apps_strict_headers(browser):
    log_in(browser)
    response = browser.get("/dashboard")
    assert response.status_code == 200 and 'src="/dashboard/dashboard.js"' in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "http" not in response.text.replace('"http://www.w3.org', "")  # nothing from elsewhere


def test_an_expired_session_is_sent_to_log_in_again_and_its_cookie_cleared(browser, monotonic):
    log_in(browser)
    monotonic.now += 8 * 3600
    response = browser.get("/dashboard")
    assert response.status_code == 303
    assert "lobbywatch_session=;" in response.headers["set-cookie"]


def test_past_the_failure_limit_the_page_says_so_instead_of_a_blank_screen(tmp_path):
    app = client_for(site_config(tmp_path, limit=1), Clock(T0)).app
    browser = TestClient(app, base_url="https://device", follow_redirects=False)
    browser.cookies.set("lobbywatch_session", "guessed")
    assert browser.get("/dashboard").status_code == 303
    refused = browser.get("/dashboard")
    assert refused.status_code == 429 and "try again" in refused.text and "请" in refused.text


@pytest.mark.parametrize("page", [*sorted(PAGES), "common"])
def test_every_asset_a_page_lists_is_shipped_and_served_with_its_type(browser, page):
    for name in (COMMON if page == "common" else PAGES[page]).assets:
        response = browser.get(f"/{page}/{name}")
        assert response.status_code == 200, name
        assert response.headers["x-content-type-options"] == "nosniff"
        kind = "javascript" if name.endswith(".js") else "css"
        assert kind in response.headers["content-type"]


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/index.html",
        "/dashboard/..%2Fapp%2Fapp.js",
        "/login/secret.py",
        "/dashboard/x",
        "/common/index.html",
        "/common/..%2Fdashboard%2Fi18n.js",
    ],
)
def test_nothing_but_the_listed_assets_is_served(browser, path):
    assert browser.get(path).status_code == 404


def test_the_page_opens_in_the_sites_language(tmp_path):
    config = site_config(tmp_path)
    alerts = config.alerts.model_copy(update={"language": "zh-CN"})
    app = client_for(config.model_copy(update={"alerts": alerts}), Clock(T0)).app
    page = TestClient(app, base_url="https://device").get("/login")
    assert 'data-site-language="zh-CN"' in page.text
