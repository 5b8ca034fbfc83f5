"""deploy/: the install script (dry run, a real staging install, update and rollback), the
systemd units (systemd-analyze), the example config, the container files and the scripts."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
INSTALL = DEPLOY / "install.sh"
SCRIPTS = [INSTALL, DEPLOY / "mosquitto" / "broker.sh", DEPLOY / "gpu-check.sh"]
UNITS = ["lobbywatch.service", "lobbywatch-api.service"]
LOBBYWATCH = Path(sys.executable).parent / "lobbywatch"


def install(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- install.sh --dry-run -------------------------------------------------------------------

SYSTEM_PATHS = [
    Path("/opt/lobbywatch"),
    Path("/etc/lobbywatch"),
    Path("/var/lib/lobbywatch"),
    Path("/etc/mosquitto/lobbywatch"),
    Path("/etc/systemd/system/lobbywatch.service"),
]


@pytest.mark.parametrize("target", ["nuc", "jetson", "auto"])
def test_dry_run_prints_a_complete_plan_and_changes_nothing(target: str) -> None:
    before = {p: p.exists() for p in SYSTEM_PATHS}
    user_before = _user_exists("lobbywatch")
    result = install("--dry-run", "--target", target, "--site-id", "branch-042")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in (
        "preflight",
        "system packages",
        "service user",
        "directories",
        "lobbywatch ",
        "activate",
        "configuration",
        "broker",
        "systemd units",
        "old versions",
        "start",
        "dry run: nothing was changed",
    ):
        assert f"== {heading}" in out, f"missing step {heading!r}:\n{out}"
    assert "useradd --system" in out or "user lobbywatch exists" in out
    assert (
        re.search(r"python3 -m venv /opt/lobbywatch/\S+", out)
        or "installed: /opt/lobbywatch/" in out
    )
    assert (
        "mv -T /opt/lobbywatch/.current.new /opt/lobbywatch/current" in out or "current ->" in out
    )
    assert "broker.sh --no-reload --dry-run setup" in out
    assert "add-device branch-042 --generate /etc/lobbywatch/mqtt.password" in out
    assert "systemctl enable lobbywatch.service lobbywatch-api.service" in out
    if target == "jetson":
        assert "onnxruntime-gpu" in out and "jetson-ai-lab" in out
    if target == "nuc":
        assert "[openvino]" in out
    assert {p: p.exists() for p in SYSTEM_PATHS} == before
    assert _user_exists("lobbywatch") == user_before


def test_update_dry_run_plans_the_health_check() -> None:
    result = install("update", "--dry-run", "--target", "nuc")
    assert result.returncode == 0, result.stderr
    assert "== health check" in result.stdout and "lobbywatch doctor" in result.stdout


def test_unknown_options_are_refused() -> None:
    result = install("--frobnicate")
    assert result.returncode == 1 and "unknown option" in result.stderr


# --- a real install into a staging prefix -----------------------------------------------------


def test_real_install_into_a_staging_prefix_is_idempotent(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    first = install(
        "--no-system",
        "--prefix",
        str(prefix),
        "--version",
        "9.9.9-test",
        "--target",
        "nuc",
        timeout=600,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    current = prefix / "current"
    assert current.is_symlink() and os.readlink(current) == "9.9.9-test"
    assert (current / ".complete").exists()
    assert (current / "share" / "lobbywatch" / "deploy" / "install.sh").exists()
    help_text = subprocess.run(
        [str(current / "bin" / "lobbywatch"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "doctor" in help_text and "models" in help_text

    second = install(
        "--no-system", "--prefix", str(prefix), "--version", "9.9.9-test", "--target", "nuc"
    )
    assert second.returncode == 0, second.stderr
    assert "installed: " + str(prefix / "9.9.9-test") in second.stdout
    assert "python3 -m venv" not in second.stdout
    assert "current -> 9.9.9-test already" in second.stdout


# --- activate, update, rollback on prepared versions ---------------------------------------------


def fake_version(prefix: Path, version: str) -> None:
    bin_dir = prefix / version / "bin"
    bin_dir.mkdir(parents=True)
    stub = bin_dir / "lobbywatch"
    stub.write_text(f"#!/bin/sh\necho lobbywatch {version}\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    (prefix / version / ".complete").touch()


def links(prefix: Path) -> tuple[str | None, str | None]:
    def target(name: str) -> str | None:
        link = prefix / name
        return os.readlink(link) if link.is_symlink() else None

    return target("current"), target("previous")


def test_update_switches_atomically_and_rollback_goes_back(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    for version in ("1.0", "2.0", "3.0"):
        fake_version(prefix, version)
    common = ["--no-system", "--prefix", str(prefix)]

    assert install("activate", "1.0", *common).returncode == 0
    assert links(prefix) == ("1.0", None)

    ok = install("update", "--version", "2.0", "--health-cmd", "true", *common)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert links(prefix) == ("2.0", "1.0")
    assert "ln -sfn 2.0" in ok.stdout and "mv -T" in ok.stdout  # a new link renamed over

    back = install("rollback", *common)
    assert back.returncode == 0, back.stderr
    assert links(prefix) == ("1.0", "2.0")

    failed = install(
        "update", "--version", "3.0", "--health-cmd", "false", "--health-timeout", "0", *common
    )
    assert failed.returncode == 1
    assert "rolling back to 1.0" in failed.stderr
    assert links(prefix)[0] == "1.0"


def test_rollback_without_a_previous_version_is_refused(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    fake_version(prefix, "1.0")
    install("activate", "1.0", "--no-system", "--prefix", str(prefix))
    result = install("rollback", "--no-system", "--prefix", str(prefix))
    assert result.returncode == 1 and "no previous version" in result.stderr


def test_old_versions_are_pruned_but_current_and_previous_stay(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    for i, version in enumerate(("1.0", "2.0", "3.0", "4.0", "5.0")):
        fake_version(prefix, version)
        os.utime(prefix / version / ".complete", (1_000_000 + i, 1_000_000 + i))
    common = ["--no-system", "--prefix", str(prefix)]
    install("activate", "1.0", *common)
    result = install("update", "--version", "5.0", "--health-cmd", "true", "--keep", "1", *common)
    assert result.returncode == 0, result.stdout + result.stderr
    remaining = sorted(p.name for p in prefix.iterdir() if not p.is_symlink())
    assert remaining == ["1.0", "5.0"]
    assert links(prefix) == ("5.0", "1.0")


# --- systemd units ----------------------------------------------------------------------------


def staged_units(tmp_path: Path) -> list[Path]:
    """The units with /opt/lobbywatch/current pointing at this checkout's lobbywatch."""
    prefix = tmp_path / "opt" / "lobbywatch" / "current" / "bin"
    prefix.mkdir(parents=True)
    (prefix / "lobbywatch").symlink_to(LOBBYWATCH)
    staged = []
    for unit in UNITS:
        text = (DEPLOY / "systemd" / unit).read_text()
        path = tmp_path / unit
        path.write_text(text.replace("/opt/lobbywatch/current", str(prefix.parent)))
        staged.append(path)
    return staged


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (apt-get install systemd)",
)
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = staged_units(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # verify only warns about unknown keys and bad values: any output is a finding.
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", UNITS)
def test_units_are_hardened(tmp_path: Path, unit: str) -> None:
    path = next(p for p in staged_units(tmp_path) if p.name == unit)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=30", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis")
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize("unit", UNITS)
def test_units_declare_restart_limits_user_and_hardening(unit: str) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    for line in (
        "User=lobbywatch",
        "Restart=on-failure",
        "StartLimitBurst=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StateDirectory=lobbywatch",
    ):
        assert line in text, f"{unit} lacks {line}"
    if unit == "lobbywatch.service":
        assert "Type=notify" in text and "WatchdogSec=" in text


def test_watchdog_sec_exceeds_the_pipelines_feeding_limits() -> None:
    from edge import service

    text = (DEPLOY / "systemd" / "lobbywatch.service").read_text()
    watchdog_s = int(re.search(r"^WatchdogSec=(\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    assert watchdog_s > max(service.HEARTBEAT_MAX_S, service.FRAMES_MAX_S)


# --- the example config -----------------------------------------------------------------------


def test_example_config_validates_with_the_example_environment(tmp_path: Path) -> None:
    config = tmp_path / "lobbywatch.yaml"
    config.write_text(
        (DEPLOY / "lobbywatch.example.yaml").read_text().replace("@@SITE_ID@@", "branch-042")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOBBYWATCH_")}
    for line in (DEPLOY / "lobbywatch.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = value
    result = subprocess.run(
        # --schema-only: the models, password file and CA live on the device, not here
        [str(LOBBYWATCH), "validate-config", "--schema-only", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "site branch-042" in result.stdout

    from edge.config import load_config

    cfg = load_config(config, environ=env)
    assert cfg.mqtt.username == cfg.site.id  # the broker ACL convention
    assert cfg.mqtt.tls.enabled and cfg.mqtt.port == 8883
    assert cfg.api.keys and all(k.env for k in cfg.api.keys)  # keys from the environment
    assert "CHANGE-ME" not in config.read_text()  # secrets are not in the config file


# --- container files --------------------------------------------------------------------------


def test_compose_runs_lobbywatch_with_the_broker() -> None:
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    for name, dockerfile in (
        ("lobbywatch-nuc", "Dockerfile.x86"),
        ("lobbywatch-jetson", "Dockerfile.jetson"),
    ):
        service = services[name]
        assert service["build"]["dockerfile"] == f"deploy/docker/{dockerfile}"
        assert (
            DEPLOY / "docker" / service["build"]["context"] / service["build"]["dockerfile"]
        ).is_file()
        assert service["depends_on"] == ["mosquitto"]
        assert service["environment"]["LOBBYWATCH_MQTT__HOST"] == "mosquitto"
    assert services["lobbywatch-jetson"]["runtime"] == "nvidia"
    mounts = services["mosquitto"]["volumes"]
    assert "./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in mounts
    assert (DEPLOY / "docker" / "mosquitto.conf").is_file()


@pytest.mark.parametrize("dockerfile", ["Dockerfile.x86", "Dockerfile.jetson"])
def test_dockerfiles_copy_what_exists_and_run_unprivileged(dockerfile: str) -> None:
    text = (DEPLOY / "docker" / dockerfile).read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / source).exists(), f"{dockerfile} copies missing {source}"
    assert re.search(r"^USER lobbywatch$", text, re.M)
    assert 'lobbywatch", "run"' not in text  # CMD is run via the entrypoint
    if dockerfile == "Dockerfile.jetson":
        assert "TensorrtExecutionProvider" in text and "l4t-jetpack" in text
    else:
        assert "[openvino]" in text


# --- scripts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_are_executable(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
