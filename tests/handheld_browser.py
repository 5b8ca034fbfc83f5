"""Phones in a real browser for the web app's tests and benchmark (this module holds no tests).

Debian's Chromium through Debian's chromium-driver (Selenium never downloads a browser or a
driver here), headless, as a 360x640 touch phone. The device side is real: the API as its own
process over https with a test certificate (as the systemd unit runs it), `lobbywatch run` on
replayed frames, and the phones paired with `lobbywatch handheld pair` itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import re
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.mqtt_broker import free_port
from tests.processes import Device
from tests.waiting import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: A phone: 360x640 CSS pixels, twice as many device pixels (the screenshots' size), touch.
PHONE = {"deviceMetrics": {"width": 360, "height": 640, "pixelRatio": 2.0, "touch": True}}


def require_chromium() -> None:
    """Skip, saying what to install, where Chromium or its driver is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(
            f"Chromium not installed ({', '.join(missing)} missing): "
            "apt-get install chromium chromium-driver (make system-deps does)"
        )
    pytest.importorskip("selenium", reason="selenium is in the dev extra: pip install -e '.[dev]'")


@dataclass(frozen=True)
class Tls:
    """A test CA's certificate for 127.0.0.1 and localhost, and the pin Chromium accepts it by."""

    cert: Path
    key: Path
    ca: Path
    spki_sha256: str  # base64, for --ignore-certificate-errors-spki-list


def make_tls(directory: Path) -> Tls:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from tests.certificates import certificate, name, write_key

    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("lobbywatch test CA")
    ca = certificate("lobbywatch test CA", ca_key, ca_name, ca_key, ca=True, extensions=[])
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    server_auth = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    cert = certificate(
        "localhost", key, ca.subject, ca_key, ca=False, extensions=[san, server_auth]
    )
    paths = Tls(directory / "device.crt", directory / "device.key", directory / "ca.crt", "")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    write_key(key, paths.key)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Tls(
        paths.cert, paths.key, paths.ca, base64.b64encode(hashlib.sha256(spki).digest()).decode()
    )


class ApiProcess:
    """`python -m api --config FILE` (the API alone, as deploy/systemd runs it)."""

    def __init__(self, config: Path, url: str, ca: Path) -> None:
        self.config, self.url, self.ca = config, url, ca
        self.log = config.parent / "api.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ApiProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api", "--config", str(self.config)],
                stdout=log, stderr=log,
            )  # fmt: skip
        wait_for(self.answers, 30, "the API answering over https")
        return self

    def answers(self) -> bool:
        try:
            context = ssl.create_default_context(cafile=str(self.ca))
            return httpx.get(f"{self.url}/v1/health/live", verify=context, timeout=1).is_success
        except httpx.TransportError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
            self.proc = None


def start_site(
    template: str, directory: Path, source: str, sha: str
) -> tuple[Path, Tls, ApiProcess, Device]:
    """The site of `template` (fields source, db, port, cert, key, sha) as directory/site.yaml,
    with a fresh test certificate and a free port; its API started, its device made but not
    started. The caller stops both."""
    tls = make_tls(directory / "tls")
    port = free_port()
    config = directory / "site.yaml"
    config.write_text(
        template.format(
            source=source, db=directory / "lw.db", port=port, cert=tls.cert, key=tls.key, sha=sha
        )
    )
    api = ApiProcess(config, f"https://127.0.0.1:{port}", tls.ca).start()
    return config, tls, api, Device(config)


def pair_code(config: Path, name: str) -> str:
    """Pair a phone as IT does: `lobbywatch handheld pair`; the code it prints."""
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "handheld", "pair", "--name", name, "-c", str(config)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    (code,) = re.findall(r"^\s+([0-9A-Z]{4}-[0-9A-Z]{4})$", out, re.M)
    return code


def revoke(config: Path, name: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "edge.cli", "handheld", "revoke", name, "-c", str(config)],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip


def raised_at(db: Path) -> dict[str, float]:
    """Each alert's raise time as the service stored it (UTC, microseconds), epoch seconds."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT alert_id, raised_at FROM alerts").fetchall()
    return {alert_id: dt.datetime.fromisoformat(at).timestamp() for alert_id, at in rows}


class Phone:
    """One phone: its own browser profile, so its own cookie (credential)."""

    def __init__(self, base_url: str, tls: Tls, *, name: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",  # root in CI containers
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--autoplay-policy=no-user-gesture-required",
            "--no-first-run",
            # The device's certificate, pinned: a phone that trusts the branch's CA sees the
            # same (and, unlike a blanket ignore, the service worker registers).
            f"--ignore-certificate-errors-spki-list={tls.spki_sha256}",
        ):
            options.add_argument(argument)
        options.add_experimental_option("mobileEmulation", PHONE)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.name = name
        self.base_url = base_url
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)

    def open(self, path: str) -> None:
        self.driver.get(f"{self.base_url}{path}")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def text(self, selector: str) -> str | None:
        """The visible text of the first element matching `selector`, None if none is shown."""
        return self.js(
            "const e = document.querySelector(arguments[0]);"
            "return e && !e.closest('[hidden]') ? e.textContent : null;",
            selector,
        )

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_for(predicate, timeout, f"{self.name}: {what}")

    def connection(self) -> str | None:
        return self.js("return document.documentElement.dataset.connection || null")

    def banner_shown(self) -> bool:
        return bool(self.js("return !document.getElementById('banner').hidden"))

    def seen(self) -> dict[str, float]:
        """alert id -> when this page first showed it (epoch seconds)."""
        return {k: v / 1000 for k, v in self.js("return window.lobbywatch.seen").items()}

    def alert_ids(self) -> list[str]:
        return list(
            self.js("return [...document.querySelectorAll('.alert')].map(e => e.dataset.alertId)")
        )

    def part(self, alert_id: str, role: str) -> str | None:
        return self.text(f'[data-alert-id="{alert_id}"] [data-role="{role}"]')

    def button(self, alert_id: str, role: str) -> dict[str, Any]:
        return dict(
            self.js(
                'const b = document.querySelector(`[data-alert-id="${arguments[0]}"] '
                '[data-role="${arguments[1]}"]`);'
                "return b && {text: b.textContent, disabled: b.disabled, hidden: b.hidden};",
                alert_id,
                role,
            )
            or {}
        )

    def tap(self, selector: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, selector).click()

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.js("window.scrollTo(0, 0)")
        self.driver.save_screenshot(str(path))
        return path

    def console(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser")]

    def quit(self) -> None:
        self.driver.quit()


def screenshot_dir(default: Path) -> Path:
    """Where the test writes the phones' screenshots: $LOBBYWATCH_SCREENSHOTS (docs/img to
    refresh the documentation's, with a CJK font installed: fonts-wqy-microhei), else default."""
    target = os.environ.get("LOBBYWATCH_SCREENSHOTS")
    return Path(target) if target else default


def wait_until(deadline_s: float) -> None:
    time.sleep(max(0.0, deadline_s - time.monotonic()))
