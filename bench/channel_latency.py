#!/usr/bin/env python3
"""Channel latency: from the frame that completes a rule's condition to a webhook's receipt.

Runs the device's alert path in-process (occupancy board -> rule engine -> SQLite -> delivery
worker -> sender process -> signed POST) with MQTT off, against a local HTTP receiver that
checks the signature as a bank's would, and times N raise/clear cycles with one clock
(time.perf_counter): t0 when the camera worker hands the frame's counts to the board, t1 when
the receiver has read the request. The channel is sent raised only, and allowed 60 a minute;
cycles are paced at --gap seconds so that the rate limit never holds one back.

    python bench/channel_latency.py [--alerts 50] [--gap 1.1]
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.alert_path import SITE, feed, free_port, summary  # noqa: E402
from edge.alerts.channels import verify_webhook  # noqa: E402
from edge.board import OccupancyBoard  # noqa: E402
from edge.config import parse_config  # noqa: E402
from edge.notifier import Notifier  # noqa: E402
from edge.store import Store  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
CONFIG = (
    SITE
    + """\
mqtt: {{enabled: false}}
alerts:
  rules:
    - {{id: full, zones: [waiting], raise_at: 10, clear_at: 5, raise_after_s: 0, clear_after_s: 0,
        cooldown_s: 0, escalate_after_s: null}}
  channels:
    - {{id: hook, kind: webhook, url_env: BENCH_HOOK, secret_env: BENCH_SECRET, events: [raised],
        max_per_minute: 60}}
"""
)


def receiver(port: int, received: dict[str, float], arrived: threading.Event) -> Any:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            at = time.perf_counter()
            problem = verify_webhook(SECRET, dict(self.headers.items()), body, time.time())
            self.send_response(401 if problem else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if problem is None:
                received[json.loads(body)["alert_id"]] = at
                arrived.set()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--gap", type=float, default=1.1, help="seconds between raises")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # each raise logs a warning; keep the output short
    work = Path(tempfile.mkdtemp())
    port = free_port()
    received: dict[str, float] = {}
    arrived = threading.Event()
    server = receiver(port, received, arrived)
    os.environ["BENCH_HOOK"] = f"http://127.0.0.1:{port}/hook"
    os.environ["BENCH_SECRET"] = SECRET
    config = parse_config(CONFIG.format(db=work / "lw.db"), environ={})
    store = Store(config.storage.path)
    board = OccupancyBoard({"cam": ["waiting"]})
    notifier = Notifier(config, store, board)
    notifier.start()
    latencies = []
    try:
        feed(board, 2.0)
        time.sleep(1.0)  # the delivery worker starts its sender process
        for i in range(args.alerts + 1):
            arrived.clear()
            before = set(received)
            t0 = time.perf_counter()
            feed(board, 20.0)
            if not arrived.wait(10):
                raise SystemExit("an alert did not reach the webhook within 10 s")
            (new,) = set(received) - before
            if i:  # the first one warms up
                latencies.append((received[new] - t0) * 1000)
            feed(board, 2.0)
            time.sleep(args.gap)
    finally:
        notifier.stop()
        server.shutdown()
        store.close()
    print(summary(latencies))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
