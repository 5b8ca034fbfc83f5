"""Hostile config files: each is refused with one line naming the path and line, never a
traceback or a hang (issue 10, item 4). The same attacks, and more, are in tests/fuzz/config/."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.config import MAX_CONFIG_BYTES, ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]

VALID = """\
site: {id: branch-1}
cameras:
  - id: lobby
    source: rtsp://10.0.0.5/stream1
    zones:
      - {id: waiting, role: waiting, polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]}
"""

# Nine lines of nine aliases each: 9**9 (387 million) strings once expanded.
LAUGHS = (REPO / "tests" / "fuzz" / "config" / "billion_laughs.yaml").read_text()


def errors_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="t.yaml", base_dir=Path("/srv"), environ=environ or {})
    return [str(issue) for issue in info.value.issues]


ATTACKS = [
    ("recursive alias", "site: &a [*a]\n", "site.0 (line 1): alias *a refers to itself (a cycle)"),
    (
        "billion laughs",
        LAUGHS,
        "f.0 (line 7): more than 100000 values once aliases are expanded",
    ),
    (
        "50 000-deep list",
        "site: " + "[" * 50_000 + "]" * 50_000 + "\n",
        "site.0.0.0.0.0.0.0... (64 levels) (line 1): nested deeper than 64 levels",
    ),
    (
        "50 000-deep map",
        "site: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n",
        "site.a.a.a.a.a.a.a... (64 levels) (line 1): nested deeper than 64 levels",
    ),
    (
        "duplicate key",
        "site: {id: a}\n" + VALID,
        "site (line 2): duplicate key (first on line 1; YAML keys must be unique)",
    ),
    (
        "RTSP port 99999",
        VALID.replace("10.0.0.5/", "10.0.0.5:99999/"),
        "cameras.0.source (line 4): bad stream address 'rtsp://10.0.0.5:99999/stream1': "
        "Port out of range 0-65535",
    ),
    (
        "boolean for a port",
        VALID + "mqtt: {port: true}\n",
        "mqtt.port (line 7): must be a number, not true/false",
    ),
    (
        "boolean in a polygon",
        VALID.replace("[0.9, 0.1]", "[true, 0.1]"),
        "cameras.0.zones.0.polygon (line 6): must be a number, not true/false",
    ),
    (
        "cooldown 1e999 (infinite)",
        VALID + "alerts:\n  rules:\n    - {id: r, zones: [waiting], raise_at: 5, clear_at: 2,"
        ' cooldown_s: "1e999"}\n',
        "alerts.rules.0.cooldown_s (line 9): Input should be a finite number",
    ),
    (
        "NaN threshold",
        VALID + "alerts:\n  rules:\n    - {id: r, zones: [waiting], raise_at: .nan, clear_at: 2}\n",
        "alerts.rules.0.raise_at (line 9): Input should be a finite number",
    ),
    (
        "NUL in a path",
        VALID + 'storage: {path: "a\\0b.db"}\n',
        "storage.path (line 7): contains a NUL character",
    ),
    (
        "impossible date",
        VALID + "alerts: {schedule: {holidays: [2026-02-30]}}\n",
        "(top level): not valid YAML: day is out of range for month",
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_each_attack_is_refused_with_its_path_and_line_quickly(case, text, expected):
    started = time.monotonic()
    errors = errors_of(text)
    assert time.monotonic() - started < 5
    assert expected in errors, errors


def test_ints_still_count_as_floats_and_substituted_strings_as_numbers():
    text = VALID.replace("source:", "fps: ${FPS}\n    source:") + "mqtt: {port: '${PORT}'}\n"
    config = parse_config(text, environ={"FPS": "3", "PORT": "8883"})
    assert config.cameras[0].fps == 3.0 and config.mqtt.port == 8883


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", "mqtt.port (from environment LOBBYWATCH_MQTT__PORT): must be a number"),
        (".inf", "mqtt.port (from environment LOBBYWATCH_MQTT__PORT): Input should be a finite"),
        ("2026-02-30", "mqtt.port (from environment LOBBYWATCH_MQTT__PORT): Input should be a"),
        ("&a [*a]", "mqtt.port (from environment LOBBYWATCH_MQTT__PORT): Input should be a"),
    ],
)
def test_hostile_environment_values_are_refused_naming_the_variable(value, expected):
    errors = errors_of(VALID, {"LOBBYWATCH_MQTT__PORT": value})
    assert any(expected in e for e in errors), errors


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "site.yaml"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("case", "make", "expected"),
    [
        (
            "binary file",
            lambda tmp: write(tmp, b"site:\n  id: \xff\xfe\x00\x80\n"),
            "(top level) (line 2): not UTF-8 text (byte 0xff at offset 12)",
        ),
        (
            "file over 1 MiB",
            lambda tmp: write(tmp, VALID.encode() + b"#" * MAX_CONFIG_BYTES),
            "(top level): larger than 1024 KiB: not a site config",
        ),
        ("a device", lambda tmp: Path("/dev/zero"), "(top level): not a regular file"),
        ("a directory", lambda tmp: tmp, "(top level): not a regular file"),
        (
            "a FIFO (would block on open)",
            lambda tmp: (os.mkfifo(tmp / "fifo.yaml"), tmp / "fifo.yaml")[1],
            "(top level): not a regular file",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_what_is_not_a_config_file_is_refused_before_reading(tmp_path, case, make, expected):
    with pytest.raises(ConfigError) as info:
        load_config(make(tmp_path), environ={})
    assert any(expected in str(i) for i in info.value.issues), info.value.issues


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "mqtt: {password_file: /dev/zero}\n",
            "mqtt.password_file (line 7): /dev/zero is not a regular file",
        ),
        (
            "mqtt: {tls: {enabled: true, ca_file: /dev/null}}\n",
            "mqtt.tls.ca_file (line 7): /dev/null is not a regular file",
        ),
    ],
)
def test_validate_config_refuses_a_device_as_a_file_in_one_line(tmp_path, extra, expected):
    path = write(tmp_path, (VALID + extra).encode())
    result = CliRunner().invoke(app, ["validate-config", str(path)])
    assert result.exit_code == 1
    assert any(line.strip() == f"- {expected}" for line in result.output.splitlines()) or (
        expected in result.output
    ), result.output
    assert "Traceback" not in result.output


def test_validate_config_and_run_give_one_error_line_in_a_real_process(tmp_path):
    """The real console script, as an installer runs it: exit 1, no traceback, in time."""
    path = write(tmp_path, b"site: &a [*a]\n")
    for command in (["validate-config", str(path)], ["run", "--config", str(path)]):
        result = subprocess.run(
            [sys.executable, "-m", "edge.cli", *command],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=REPO,
        )
        assert result.returncode == 1, result
        assert result.stderr.splitlines() == [
            f"{path}: 1 error(s) in configuration",
            "  - site.0 (line 1): alias *a refers to itself (a cycle)",
        ]
