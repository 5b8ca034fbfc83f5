"""`lobbywatch api`: key helpers, config errors, and the real server process (`python -m api`)."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest
import typer
from typer.testing import CliRunner

import api.server
from api.auth import hash_key
from api.cli import register
from tests.test_api_support import KEYS, api_process, auth

SITE = """\
site: {{id: cli-site}}
cameras:
  - id: cam
    source: rtsp://127.0.0.1/x
    zones: [{{id: z, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}]
storage: {{path: "{db}"}}
api:
  port: {port}
  keys: [{{id: boss, role: admin, sha256: {sha}}}]
"""


@pytest.fixture
def cli() -> typer.Typer:
    root = typer.Typer()
    register(root)
    return root


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(
        SITE.format(db=tmp_path / "lw.db", port=free_port(), sha=hash_key(KEYS["admin"]))
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_hash_key_prints_the_sha256_of_the_key_read_from_stdin(cli):
    result = CliRunner().invoke(cli, ["api", "hash-key"], input="s3cret\n")
    assert result.exit_code == 0
    assert result.output.strip() == hash_key("s3cret")


def test_hash_key_refuses_an_empty_key(cli):
    result = CliRunner().invoke(cli, ["api", "hash-key"], input="\n")
    assert result.exit_code == 1


def test_new_key_prints_a_random_key_and_the_config_line_for_it(cli):
    result = CliRunner().invoke(cli, ["api", "new-key", "--id", "front-desk", "--role", "manager"])
    assert result.exit_code == 0
    key = result.output.splitlines()[0].removeprefix("key: ")
    assert len(key) >= 40
    assert f"{{id: front-desk, role: manager, sha256: {hash_key(key)}}}" in result.output


def test_api_with_a_bad_config_says_what_is_wrong_and_exits_1(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: s}\ncameras: []\n")
    result = CliRunner().invoke(cli, ["api", "--config", str(bad)])
    assert result.exit_code == 1
    assert "cameras" in result.output


def test_api_serves_with_the_configs_address_unless_told_otherwise(cli, site, monkeypatch):
    calls = []
    monkeypatch.setattr(
        api.server,
        "serve",
        lambda cfg, host, port, config_path: calls.append((cfg, host, port, config_path)),
    )
    result = CliRunner().invoke(cli, ["api", "--config", str(site), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    config, host, port, path = calls[0]
    assert (config.site.id, host, port) == ("cli-site", "0.0.0.0", None)
    assert path == site  # the zone editor saves into the file it was started with


def test_lobbywatch_has_the_api_command_through_its_entry_point():
    from edge.cli import app

    result = CliRunner().invoke(app, ["api", "--help"])
    assert result.exit_code == 0
    assert "hash-key" in result.output


def test_python_m_api_serves_until_sigterm(site):
    port = int(site.read_text().split("port: ")[1].split()[0])
    base = f"http://127.0.0.1:{port}"
    server = api_process(site, base)
    try:
        assert httpx.get(f"{base}/v1/zones").status_code == 401
        zones = httpx.get(f"{base}/v1/zones", headers=auth("admin"))
        assert zones.status_code == 200 and zones.json()["zones"][0]["id"] == "z"
        assert "server" not in zones.headers  # no software banner
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=15)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status names it
    assert server.returncode in (0, -signal.SIGTERM), output.decode()
    assert "Application shutdown complete" in output.decode()
    assert KEYS["admin"] not in output.decode()  # access log lines carry no headers
