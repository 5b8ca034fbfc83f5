"""https for the API (the phone web app needs it) and the address phones open: api.tls and
api.public_url as the config takes them, uvicorn's settings, and validate-config's check that
the certificate's files are there."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.server import uvicorn_options
from edge.config import ConfigError, parse_config
from edge.tools.preflight import check_runnable

SITE = """\
site: {{id: branch-1}}
cameras:
  - id: lobby
    source: rtsp://127.0.0.1/lobby
    zones: [{{id: waiting, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}]
mqtt: {{enabled: false}}
api: {api}
"""


def config(api: str):
    return parse_config(SITE.format(api=api), environ={})


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://branch-042.bank.local:8443", "https://branch-042.bank.local:8443"),
        ("https://10.20.0.2/", "https://10.20.0.2"),
        ("http://localhost:8080", "http://localhost:8080"),
    ],
)
def test_public_url_is_scheme_host_and_port(url, kept):
    assert config(f"{{public_url: '{url}'}}").api.public_url == kept


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("branch-042.bank.local", "must look like https://host"),
        ("ftp://branch-042", "must look like https://host"),
        ("https://branch-042/app/", "no path or query"),
        ("https://branch-042?x=1", "no path or query"),
        ("https://branch-042:99999", "bad port"),
    ],
)
def test_a_public_url_that_is_not_an_address_is_refused_at_its_line(url, message):
    with pytest.raises(ConfigError) as error:
        config(f"{{public_url: '{url}'}}")
    assert message in str(error.value) and "api.public_url" in str(error.value)


def test_a_certificate_needs_its_key():
    with pytest.raises(ConfigError, match="cert_file and key_file go together"):
        config("{tls: {cert_file: /etc/lobbywatch/tls/device.crt}}")


def test_uvicorn_serves_https_with_the_devices_certificate_only_when_configured():
    plain = uvicorn_options(config("{}"), None, None)
    assert "ssl_certfile" not in plain and "ssl_keyfile" not in plain
    tls = config("{tls: {cert_file: /tls/device.crt, key_file: /tls/device.key}}")
    options = uvicorn_options(tls, None, None)
    assert options["ssl_certfile"] == "/tls/device.crt"
    assert options["ssl_keyfile"] == "/tls/device.key"
    assert tls.api.tls.enabled and not config("{}").api.tls.enabled


def test_validate_config_names_a_missing_certificate_file(tmp_path: Path):
    (tmp_path / "device.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    cfg = config(f"{{tls: {{cert_file: {tmp_path}/device.crt, key_file: {tmp_path}/nope.key}}}}")
    problems = [str(p) for p in check_runnable(cfg, environ={})]
    assert any("api.tls.key_file" in p and "nope.key" in p for p in problems), problems
    assert not any("api.tls.cert_file" in p for p in problems), problems
