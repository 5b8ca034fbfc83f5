"""`lobbywatch handheld` as a real process: says whether it is connected to the broker, and why
not, and works on alerts, not messages.

Before, a closed port, a wrong host, a refused login or a port where something other than MQTT
listens all looked the same: "waiting for alerts", forever. Each case runs the real command
against a real socket (a closed port, a name that does not resolve, a real Mosquitto refusing
the password, a server that is no broker) and reads its output as a user would. Then a real
device side (the service's notifier, on a real Mosquitto) raises an alert before the handheld
starts, and the handheld is used as a lobby manager would.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
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

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()


Start = Callable[..., Terminal]


@pytest.fixture
def handheld(tmp_path: Path) -> Iterator[Start]:
    started: list[Terminal] = []

    def start(host: str, port: int, password: str = PASSWORD, text: str = CONFIG) -> Terminal:
        config = tmp_path / "site.yaml"
        config.write_text(text.format(db=tmp_path / "lw.db", host=host, port=port))
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


class NotABroker:
    """A TCP server that is no MQTT broker: it answers like a web server and hangs up, or says
    nothing at all (what a wrong port often is: the API, a WebSocket or TLS listener)."""

    def __init__(self, silent: bool) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.silent = silent
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.silent:
                self.held.append(conn)
                continue
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize(
    "case",
    ["closed-port", "unknown-host", "wrong-password", "web-server-port", "silent-port"],
    ids=lambda case: case,
)
def test_the_handheld_says_it_is_not_connected_and_why(
    handheld: Start,
    tmp_path: Path,
    case: str,
) -> None:
    broker: Broker | None = None
    other: NotABroker | None = None
    wait = 5.0
    if case == "closed-port":
        terminal, reason = handheld("127.0.0.1", free_port()), "connection refused"
    elif case == "unknown-host":
        terminal, reason = handheld("no-such-broker.invalid", 8883), "DNS lookup"
    elif case == "web-server-port":
        other = NotABroker(silent=False)
        terminal, reason = handheld("127.0.0.1", other.port), "without an MQTT answer"
    elif case == "silent-port":
        other = NotABroker(silent=True)
        terminal, reason = handheld("127.0.0.1", other.port), "no MQTT answer"
        wait = 10.0  # paho gives up on the CONNACK after keepalive_s (5 s)
    else:
        broker = password_broker(tmp_path / "broker").start()
        terminal = handheld("127.0.0.1", broker.port, password="a-wrong-password")
        reason = "refused the login"
    try:
        terminal.expect("connecting to", timeout=30)  # a cold start imports a lot
        line = terminal.expect("NOT CONNECTED", timeout=wait)
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
        if other is not None:
            other.close()


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


SHOP = """\
site: {{id: branch-9, timezone: Asia/Shanghai}}
cameras:
  - id: lobby
    source: rtsp://127.0.0.1:9/none
    zones: [{{id: waiting, name: Waiting area, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}]
storage: {{path: "{db}"}}
mqtt: {{host: "{host}", port: {port}, keepalive_s: 5, reconnect_min_s: 1, reconnect_max_s: 1}}
alerts:
  camera_offline: {{enabled: false}}
  rules:
    - {{id: waiting-full, name: Waiting area full, zones: [waiting], raise_at: 10, clear_at: 5,
        raise_after_s: 0, clear_after_s: 0, cooldown_s: 0}}
"""


def test_a_late_handheld_shows_the_open_alert_and_acks_it_by_its_number(
    handheld: Start, tmp_path: Path, broker: Broker
) -> None:
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from edge.board import BoardUpdate, OccupancyBoard
    from edge.config import parse_config
    from edge.notifier import Notifier
    from edge.store import Store
    from edge.types import CameraStatus, ZoneReading
    from tests.waiting import wait_for

    config = parse_config(
        SHOP.format(db=tmp_path / "lw.db", host="127.0.0.1", port=broker.port),
        base_dir=tmp_path, environ={},
    )  # fmt: skip
    store = Store(config.storage.path, site_id="branch-9")
    board = OccupancyBoard({"lobby": ["waiting"]})
    device = Notifier(config, store, board)
    device.start()

    def feed(count: float) -> None:
        at = datetime.now(timezone.utc)
        reading = ZoneReading("waiting", "lobby", count, None, at, CameraStatus.ONLINE)
        board.update(BoardUpdate("lobby", CameraStatus.ONLINE, (reading,), frame=True))

    try:
        wait_for(lambda: device.link is not None and device.link.connected.is_set())
        feed(14)
        (alert,) = wait_for(lambda: store.open_alerts(), what="raised")
        local = alert.raised_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H:%M")
        time.sleep(0.5)
        terminal = handheld("127.0.0.1", broker.port, text=SHOP)  # after the raise
        terminal.expect("times in Asia/Shanghai", timeout=30)
        line = terminal.expect("#1 ALERT", timeout=10)  # from the retained state
        assert f"#1 ALERT {local} Waiting area full (14 people in Waiting area)" in line
        terminal.send("a 1")
        terminal.expect("#1 accepted by you at ")
        terminal.send("a 1")
        terminal.expect("#1 already accepted by manager at ")
        terminal.send("d 1")
        terminal.expect("#1 pass done by you at ")
        terminal.send("d 1")
        terminal.expect("#1 already marked pass done by manager at ")
        record = store.alert(alert.alert_id)
        assert record is not None and record.pass_done_by == "manager"
        terminal.send("l")
        assert "pass done by manager" in terminal.expect("#1 ALERT")
        feed(2)
        terminal.expect("#1 cleared at")
        terminal.send("a 1")
        terminal.expect("#1 cleared at")
        terminal.send("l")
        terminal.expect("no open alerts")
        assert not [line for line in terminal.seen if line.startswith("#1 accepted by manager")]
        terminal.send("a 7")
        terminal.expect("no alert #7")
    finally:
        device.stop(drain_s=0.5)
        store.close()
