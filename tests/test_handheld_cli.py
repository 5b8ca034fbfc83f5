"""`lobbywatch handheld` as a real process says whether it is connected to the broker, and why not.

Before, a closed port, a wrong host or a refused login all looked the same: "waiting for alerts",
forever. Each case runs the real command against a real socket (a closed port, a name that does
not resolve, a real Mosquitto refusing the password) and reads its output as a user would.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.mqtt_broker import Broker, free_port

CONFIG = """\
site: {{id: branch-9}}
cameras:
  - id: lobby
    source: rtsp://127.0.0.1:9/none
    zones: [{{id: waiting, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}]
storage: {{path: "{db}"}}
mqtt: {{host: "{host}", port: {port}, keepalive_s: 5, reconnect_min_s: 1, reconnect_max_s: 1}}
"""
USER, PASSWORD = "anna@branch-9", "the-right-password"


@dataclass
class Terminal:
    """The handheld command's stdout, line by line, as it prints them."""

    process: subprocess.Popen[str]
    lines: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)
    seen: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s; output: {self.seen}")


Start = Callable[..., Terminal]


@pytest.fixture
def handheld(tmp_path: Path) -> Iterator[Start]:
    started: list[Terminal] = []

    def start(host: str, port: int, password: str = PASSWORD) -> Terminal:
        config = tmp_path / "site.yaml"
        config.write_text(CONFIG.format(db=tmp_path / "lw.db", host=host, port=port))
        process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "handheld", "-c", str(config), "--username", USER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "LOBBYWATCH_HANDHELD_PASSWORD": password},
        )
        terminal = Terminal(process)
        threading.Thread(target=terminal.read, daemon=True).start()
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        assert terminal.process.stdin is not None
        try:
            terminal.process.stdin.write("q\n")
            terminal.process.stdin.flush()
            terminal.process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            terminal.process.kill()
            terminal.process.wait()


def password_broker(workdir: Path, port: int | None = None) -> Broker:
    passwd = workdir / "passwd"
    workdir.mkdir(parents=True, exist_ok=True)
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwd), USER, PASSWORD], check=True, timeout=30
    )
    return Broker(workdir, port=port, extra=f"password_file {passwd}\n")


@pytest.mark.parametrize(
    "case", ["closed-port", "unknown-host", "wrong-password"], ids=lambda case: case
)
def test_the_handheld_says_it_is_not_connected_and_why(
    handheld: Start,
    tmp_path: Path,
    case: str,
) -> None:
    broker: Broker | None = None
    if case == "closed-port":
        terminal, reason = handheld("127.0.0.1", free_port()), "connection refused"
    elif case == "unknown-host":
        terminal, reason = handheld("no-such-broker.invalid", 8883), "DNS lookup"
    else:
        broker = password_broker(tmp_path / "broker").start()
        terminal = handheld("127.0.0.1", broker.port, password="a-wrong-password")
        reason = "refused the login"
    try:
        terminal.expect("connecting to", timeout=30)  # a cold start imports a lot
        line = terminal.expect("NOT CONNECTED", timeout=5)
        assert reason in line and "retrying" in line, line
        assert not [s for s in terminal.seen if "waiting for alerts" in s]
        # Retries do not repeat the line every second, and the process is still there.
        time.sleep(2.5)
        assert terminal.process.poll() is None
        with pytest.raises(AssertionError):
            terminal.expect("NOT CONNECTED", timeout=0.5)
    finally:
        if broker is not None:
            broker.stop()


def test_the_handheld_says_when_it_connects_after_all(
    handheld: Start,
    tmp_path: Path,
) -> None:
    port = free_port()
    terminal = handheld("127.0.0.1", port)
    terminal.expect("connecting to", timeout=30)
    assert "connection refused" in terminal.expect("NOT CONNECTED")
    broker = password_broker(tmp_path / "broker", port=port).start()
    try:
        terminal.expect("connected to the broker at 127.0.0.1", timeout=10)
        assert terminal.seen[-1].endswith("waiting for alerts")
        broker.stop()  # and says so when the broker goes away
        assert "lost the broker connection" in terminal.expect("NOT CONNECTED", timeout=10)
    finally:
        broker.stop()
