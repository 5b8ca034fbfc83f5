"""A real `lobbywatch run` in a subprocess, and a plain MQTT client that watches a site."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

#: The device's camera in these tests and benchmarks: replayed frames (`{source}`, a format
#: field) at 4 frames per second, looped, so the real detector counts without a camera. A piece
#: of a config template (braces doubled); the zones follow it, indented by six spaces.
HALL_ON_FRAMES = """\
cameras:
  - id: hall
    source: "{source}"
    source_fps: 4
    fps: 4
    loop: true
    zones:
"""


class Device:
    """`lobbywatch run` in a subprocess; its output goes to service.log beside the config."""

    def __init__(self, config_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config_path.parent / "service.log"

    def start(self) -> Device:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config_path)],
                stdout=log, stderr=log, env={**os.environ, **self.env},
            )  # fmt: skip
        return self

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(20)
        self.proc = None
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Watcher:
    """A plain MQTT client that records every message under the site."""

    def __init__(self, port: int, site: str) -> None:
        self.site = site
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(f"lobbywatch/{site}/#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def all(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == f"lobbywatch/{self.site}/{suffix}"]

    def last(self, suffix: str) -> bytes | None:
        found = self.all(suffix)
        return found[-1] if found else None

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
