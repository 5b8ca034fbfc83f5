"""`lobbywatch handheld pair | list | revoke` as IT runs them: a QR code and a code that the
API takes, a list that says where each phone stands, and a revoke that logs the phone out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.handhelds import APP_HEADER
from edge.cli import app
from edge.config import load_config
from edge.tools.handhelds import qr_text

CONFIG = """\
site: {{id: branch-7, timezone: Asia/Shanghai}}
cameras:
  - id: lobby
    source: rtsp://127.0.0.1/lobby
    zones:
      - {{id: waiting, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}
storage: {{path: "{db}"}}
mqtt: {{enabled: false}}
api:
  port: 8443
  {extra}
  keys: [{{id: supervisor, role: viewer, sha256: {sha}}}]
"""


def write_config(
    tmp_path: Path, extra: str = "public_url: https://lobby-7.bank.local:8443"
) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "lw.db", extra=extra, sha="a" * 64))
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_pair_prints_a_qr_code_and_a_code_the_api_exchanges_once(tmp_path):
    config = write_config(tmp_path)
    code, out, err = run("handheld", "pair", "--name", "mgr-1", "--config", str(config))
    assert code == 0, err
    assert "▄" in out or "▀" in out  # the QR code, in block characters
    (typed,) = re.findall(r"^\s+([0-9A-Z]{4}-[0-9A-Z]{4})$", out, re.M)
    assert f"https://lobby-7.bank.local:8443/app/pair#{typed}" not in out  # only in the QR code
    assert "https://lobby-7.bank.local:8443/app/pair" in out
    assert "until" in out and "revoke mgr-1" in out
    assert "warning" not in err

    client = TestClient(create_app(load_config(config)), base_url="https://lobby-7.bank.local")
    pair = {"json": {"code": typed}, "headers": {APP_HEADER: "1"}}
    assert client.post("/v1/handhelds/pair", **pair).json()["id"] == "mgr-1"
    assert client.post("/v1/handhelds/pair", **pair).status_code == 401

    code, out, _ = run("handheld", "list", "--config", str(config))
    assert code == 0 and re.search(r"^mgr-1\s+paired\s", out, re.M)


def test_the_qr_code_holds_the_pairing_url(tmp_path):
    config = write_config(tmp_path)
    png = tmp_path / "qr.png"
    code, out, err = run(
        "handheld", "pair", "--name", "mgr-1", "--config", str(config), "--png", str(png)
    )
    assert code == 0, err
    assert png.read_bytes().startswith(b"\x89PNG")
    (typed,) = re.findall(r"^\s+([0-9A-Z]{4}-[0-9A-Z]{4})$", out, re.M)
    assert qr_text(f"https://lobby-7.bank.local:8443/app/pair#{typed}") in out


def test_list_and_revoke(tmp_path):
    config = write_config(tmp_path)
    assert run("handheld", "list", "--config", str(config))[1].startswith("no handhelds")
    run("handheld", "pair", "--name", "mgr-1", "--config", str(config))
    code, out, _ = run("handheld", "list", "--config", str(config))
    assert re.search(r"^mgr-1\s+code valid until \d\d:\d\d\s", out, re.M)
    code, out, _ = run("handheld", "revoke", "mgr-1", "--config", str(config))
    assert code == 0 and "revoked" in out
    code, out, _ = run("handheld", "list", "--config", str(config))
    assert re.search(r"^mgr-1\s+revoked \d{4}-\d\d-\d\d \d\d:\d\d", out, re.M)
    code, _, err = run("handheld", "revoke", "mgr-1", "--config", str(config))
    assert code == 1 and "no paired handheld" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--name", "supervisor"), "is an API key's id"),
        (("--name", "two words"), "letters, digits"),
    ],
)
def test_pair_refuses_names_that_would_make_acks_ambiguous_or_unreadable(tmp_path, args, message):
    code, _, err = run("handheld", "pair", "--config", str(write_config(tmp_path)), *args)
    assert code == 1 and message in err


def test_pairing_a_paired_name_again_needs_replace(tmp_path):
    config = write_config(tmp_path)
    code, out, _ = run("handheld", "pair", "--name", "mgr-1", "--config", str(config))
    (typed,) = re.findall(r"^\s+([0-9A-Z]{4}-[0-9A-Z]{4})$", out, re.M)
    client = TestClient(create_app(load_config(config)), base_url="https://lobby-7.bank.local")
    client.post("/v1/handhelds/pair", json={"code": typed}, headers={APP_HEADER: "1"})
    code, _, err = run("handheld", "pair", "--name", "mgr-1", "--config", str(config))
    assert code == 1 and "--replace" in err
    code, _, _ = run("handheld", "pair", "--name", "mgr-1", "--replace", "--config", str(config))
    assert code == 0
    assert client.get("/v1/handhelds/me").status_code == 401  # the old phone is logged out


def test_without_https_pair_says_the_phone_app_needs_it(tmp_path):
    config = write_config(tmp_path, extra="public_url: http://10.0.0.7:8080")
    code, out, err = run("handheld", "pair", "--name", "mgr-1", "--config", str(config))
    assert code == 0 and "http://10.0.0.7:8080/app/pair" in out
    assert "needs https" in err and "api.tls" in err


def test_the_default_address_is_this_machines_name_with_https_when_tls_is_set(tmp_path):
    import socket

    (tmp_path / "c.pem").write_text("x")
    extra = f'tls: {{cert_file: "{tmp_path}/c.pem", key_file: "{tmp_path}/c.pem"}}'
    config = write_config(tmp_path, extra=extra)
    code, out, _ = run("handheld", "pair", "--name", "mgr-1", "--config", str(config))
    assert code == 0 and f"https://{socket.getfqdn()}:8443/app/pair" in out
