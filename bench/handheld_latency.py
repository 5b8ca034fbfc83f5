#!/usr/bin/env python3
"""Phone web app: alert raised to visible on the phones' screens (issue #12's benchmark).

The real chain: `lobbywatch run` with the real detector on replayed frames that alternate a
crowded Mall scene and an empty one, so a rule (raise_at 5, no sustain, no cooldown) raises and
clears an alert every cycle; the API as its own process over https; two phones paired with
`lobbywatch handheld pair`, each a headless Chromium (Debian's) at 360x640. Latency = when a
phone's page first showed the alert on screen (its own clock, Date.now() in the frame after
the card was drawn) minus the raise time the service stored (same machine, same clock).

    python bench/handheld_latency.py [--alerts 50] [--phones 2] [--crowded 12] [--empty 8]

--crowded/--empty: frames of each kind per cycle, at 4 frames per second. Needs the Mall
frames ($LOBBYWATCH_DATA) and yolox_nano ($LOBBYWATCH_MODELS). Not a test: run it, record it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.handheld_browser import (  # noqa: E402
    CHROMIUM,
    Phone,
    pair_code,
    raised_at,
    start_site,
)
from tests.processes import HALL_ON_FRAMES  # noqa: E402

CONFIG = (
    """\
site: {{id: bench-12, name: Bench, timezone: Asia/Shanghai}}
detector: {{model: yolox_nano, confidence: 0.2, threads: 1, tiling: {{enabled: false}}, fusion: {{models: []}}}}
"""
    + HALL_ON_FRAMES
    + """\
      - {{id: waiting, name: Waiting area, role: waiting, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}
occupancy: {{window_s: 0, hold_frames: 0}}
storage: {{path: "{db}", interval_s: 5}}
mqtt: {{enabled: false}}
alerts:
  camera_offline: {{enabled: false}}
  rules:
    - {{id: full, name: Waiting area full, zones: [waiting], raise_at: 5, clear_at: 1,
        raise_after_s: 0, clear_after_s: 0, cooldown_s: 0, escalate_after_s: null}}
api:
  host: 127.0.0.1
  port: {port}
  public_url: https://127.0.0.1:{port}
  tls: {{cert_file: "{cert}", key_file: "{key}"}}
  keys: [{{id: bench, role: viewer, sha256: "{sha}"}}]
"""
)


def frames(data: Path, target: Path, crowded: int, empty: int) -> str:
    """One cycle: `crowded` Mall frames (25-35 people), then `empty` frames of no one."""
    target.mkdir(parents=True)
    for i in range(crowded):
        shutil.copy(data / "mall" / "frames" / f"seq_{i + 1:06d}.jpg", target / f"seq_{i:06d}.jpg")
    blank = np.full((480, 640, 3), 128, np.uint8)
    for i in range(crowded, crowded + empty):
        cv2.imwrite(str(target / f"seq_{i:06d}.jpg"), blank)
    return str(target / "seq_%06d.jpg")


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, int(np.ceil(q * len(ordered))) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--phones", type=int, default=2)
    parser.add_argument("--crowded", type=int, default=12)
    parser.add_argument("--empty", type=int, default=8)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("LOBBYWATCH_DATA", REPO.parent / "shared" / "data")),
    )
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit("Chromium not installed: apt-get install chromium chromium-driver")
    os.environ.setdefault("LOBBYWATCH_MODELS", str(REPO.parent / "shared" / "models"))

    work = Path(tempfile.mkdtemp(prefix="handheld-bench-"))
    source = frames(args.data, work / "frames", args.crowded, args.empty)
    config, tls, api, device = start_site(CONFIG, work, source, sha="c" * 64)
    phones: list[Phone] = []
    try:
        for n in range(args.phones):
            phone = Phone(api.url, tls, name=f"mgr-{n + 1}")
            phone.open(f"/app/pair#{pair_code(config, phone.name)}")
            phone.wait(lambda phone=phone: phone.connection() == "up", 30, "connected")
            phones.append(phone)
        device.start()
        started = time.monotonic()
        timeout = 120 + args.alerts * (args.crowded + args.empty) / 4 * 2

        def enough() -> bool:
            seen = [set(p.seen()) for p in phones]
            return len(set.intersection(*seen)) >= args.alerts

        while not enough():
            if time.monotonic() - started > timeout:
                sys.exit(f"fewer than {args.alerts} alerts seen within {timeout:.0f} s")
            time.sleep(1.0)
        raised = raised_at(config.parent / "lw.db")
        seen = [p.seen() for p in phones]
        ids = sorted(set.intersection(*(set(s) for s in seen)), key=raised.__getitem__)[
            : args.alerts
        ]
        latency = [s[i] - raised[i] for i in ids for s in seen]
    finally:
        for phone in phones:
            phone.quit()
        if device.proc is not None:
            device.signal(signal.SIGTERM)
        api.stop()
    result = {
        "alerts": len(ids),
        "phones": len(phones),
        "samples": len(latency),
        "p50_s": round(statistics.median(latency), 3),
        "p90_s": round(percentile(latency, 0.90), 3),
        "p99_s": round(percentile(latency, 0.99), 3),
        "max_s": round(max(latency), 3),
        "min_s": round(min(latency), 3),
    }
    print(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
