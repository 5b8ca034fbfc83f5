#!/usr/bin/env python3
"""Alert latency: from the frame that completes a rule's condition to the subscriber's receipt.

Starts a real Mosquitto on a free loopback port, runs the device's alert path in-process
(occupancy board -> rule engine -> SQLite outbox -> MQTT link) and a separate paho subscriber,
and times N raise/clear cycles with one clock (time.perf_counter): t0 when the camera worker
hands the frame's counts to the board, t1 when the subscriber's on_message runs.

    python bench/alert_latency.py [--alerts 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.alert_path import SITE, feed, free_port, summary  # noqa: E402
from edge.board import OccupancyBoard  # noqa: E402
from edge.config import parse_config  # noqa: E402
from edge.notifier import Notifier  # noqa: E402
from edge.store import Store  # noqa: E402

CONFIG = (
    SITE
    + """\
mqtt: {{host: 127.0.0.1, port: {port}}}
alerts:
  rules:
    - {{id: full, zones: [waiting], raise_at: 10, clear_at: 5, raise_after_s: 0, clear_after_s: 0,
        cooldown_s: 0, escalate_after_s: null}}
"""
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # each raise logs a warning; keep the output short
    work = Path(tempfile.mkdtemp())
    port = free_port()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([mosquitto, "-p", str(port)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    received: dict[str, float] = {}
    arrived = threading.Event()

    def on_message(_c, _u, msg) -> None:  # type: ignore[no-untyped-def]
        payload = json.loads(msg.payload)
        received[payload["message_id"]] = time.perf_counter()
        arrived.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("lobbywatch/bench/alerts", qos=1)
    sub.loop_start()

    config = parse_config(CONFIG.format(db=work / "lw.db", port=port), environ={})
    store = Store(config.storage.path)
    board = OccupancyBoard({"cam": ["waiting"]})
    notifier = Notifier(config, store, board)
    notifier.start()
    assert notifier.link is not None
    notifier.link.connected.wait(10)
    time.sleep(0.5)
    latencies = []
    try:
        for _ in range(args.alerts):
            for count in (20.0, 2.0):  # raise, then clear
                arrived.clear()
                before = set(received)
                t0 = time.perf_counter()
                feed(board, count)
                if not arrived.wait(5):
                    raise SystemExit("an alert did not arrive within 5 s")
                (new,) = set(received) - before
                if new.endswith(":raised"):
                    latencies.append((received[new] - t0) * 1000)
    finally:
        notifier.stop()
        sub.loop_stop()
        broker.terminate()
    print(summary(latencies))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
