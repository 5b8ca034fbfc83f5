"""`/docs` in a real browser (Debian's Chromium): Swagger UI lists the API's operations, and
every request the page makes goes to this device (the browser's own network log says so).

The API runs as its own process over https, as deploy/systemd runs it. The screenshot is kept
(docs/img/api-docs.png with LOBBYWATCH_SCREENSHOTS=docs/img).
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from api.auth import hash_key
from tests.handheld_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    ApiProcess,
    make_tls,
    require_chromium,
    screenshot_dir,
)
from tests.mqtt_broker import free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.browser

SITE = """\
site: {{id: docs-site, timezone: Asia/Shanghai}}
cameras:
  - id: lobby
    source: rtsp://127.0.0.1/none
    zones: [{{id: waiting, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}]
storage: {{path: "{db}"}}
mqtt: {{enabled: false}}
alerts: {{language: en}}
api:
  host: 127.0.0.1
  port: {port}
  tls: {{cert_file: "{cert}", key_file: "{key}"}}
  keys: [{{id: it, role: admin, sha256: "{sha}"}}]
"""


@pytest.fixture
def api(tmp_path):
    require_chromium()
    tls = make_tls(tmp_path / "tls")
    port = free_port()
    config = tmp_path / "site.yaml"
    config.write_text(
        SITE.format(
            db=tmp_path / "lw.db", port=port, cert=tls.cert, key=tls.key, sha=hash_key("k" * 32)
        )
    )
    process = ApiProcess(config, f"https://127.0.0.1:{port}", tls.ca).start()
    yield process, tls
    process.stop()


def test_the_docs_page_lists_every_operation_and_asks_nothing_of_another_host(api, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    process, tls = api
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--ignore-certificate-errors-spki-list={tls.spki_sha256}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(f"{process.url}/docs")
        context = ssl.create_default_context(cafile=str(tls.ca))
        document = httpx.get(f"{process.url}/openapi.json", verify=context, timeout=10).json()
        operations = sum(len(path) for path in document["paths"].values())

        def shown() -> int:
            return int(driver.execute_script("return document.querySelectorAll('.opblock').length"))

        wait_for(lambda: shown() == operations, 30, f"Swagger UI listing {operations} operations")
        listed = driver.execute_script(
            "return [...document.querySelectorAll('.opblock-summary-path')]"
            ".map(e => e.dataset.path || e.textContent)"
        )
        assert "/v1/zones" in listed and "/v1/alerts/{alert_id}/ack" in listed
        assert driver.execute_script("return document.title") == "lobbywatch API reference"

        requested = [
            message["params"]["request"]["url"]
            for entry in driver.get_log("performance")
            if (message := json.loads(entry["message"])["message"])["method"]
            == "Network.requestWillBeSent"
        ]
        own = urlsplit(process.url).netloc
        elsewhere = [
            u for u in requested if not u.startswith("data:") and urlsplit(u).netloc != own
        ]
        assert elsewhere == []
        assert {
            f"{process.url}/docs/swagger-ui-bundle.js",
            f"{process.url}/openapi.json",
        } <= set(requested)
        # no script, style or connection refused by the page's policy, no script error
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []

        shots = screenshot_dir(tmp_path / "shots")
        shots.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(shots) / "api-docs.png"))
    finally:
        driver.quit()
