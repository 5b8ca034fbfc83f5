"""A real Mosquitto for tests: started on a free loopback port, stoppable and restartable."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, up: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not come {'up' if up else 'down'}")


class Broker:
    """Mosquitto with persistence (saved every second), so sessions survive a kill -9."""

    def __init__(self, workdir: Path, port: int | None = None, extra: str = "") -> None:
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "autosave_interval 1\n"
            f"log_dest file {workdir}/mosquitto.log\n"
            # Started as root, mosquitto drops to the `mosquitto` user, which cannot write the
            # test's directory: its persistence would silently not work.
            + ("user root\n" if os.geteuid() == 0 else "")
            + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.PIPE)
        wait_port(self.port)
        return self

    def wait_saved(self, after: float, timeout: float = 15.0) -> None:
        """Wait until the broker saved its state (sessions, subscriptions) later than `after`
        (a time.time() value): only then does a kill -9 keep them."""
        db = self.workdir / "mosquitto.db"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if db.exists() and db.stat().st_mtime > after:
                return
            time.sleep(0.1)
        raise TimeoutError("mosquitto did not save its state")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
            self.proc = None
        wait_port(self.port, up=False)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
