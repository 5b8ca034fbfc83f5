#!/usr/bin/env python3
"""Latency of the history endpoint over a year of 1-minute data for 10 zones.

Builds a store the size a busy site reaches (10 zones x 1 year of 1-minute intervals, 5.3 million
`zone_history` rows, with a daily pattern and 1% of minutes offline) in a temporary directory,
then times GET /v1/occupancy/history through FastAPI's TestClient: the whole request path, key
check, query, JSON. Each bucket size over its range, with the rollup cache (as the API runs) and
without it (every answer computed from the stored intervals, as right after a first start).
Prints a Markdown table for BENCHMARKS.md. Not a test: run it, and record the numbers.

    python bench/api_history.py [--zones 10] [--days 365] [--repeats 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from api.app import create_app  # noqa: E402
from api.auth import hash_key  # noqa: E402
from edge.config import LobbyConfig, parse_config  # noqa: E402
from edge.store import Store  # noqa: E402

KEY = "bench-key"
INTERVAL_S = 60
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
#: (bucket, range, whether the rollup applies)
CASES = [
    ("1m", timedelta(days=1), False),
    ("1m", timedelta(days=7), False),
    ("15m", timedelta(days=30), True),
    ("1h", timedelta(days=30), True),
    ("1h", timedelta(days=365), True),
    ("1d", timedelta(days=365), True),
]


def site_config(db: Path, zones: int) -> LobbyConfig:
    zone_lines = "\n".join(
        f"      - {{id: z{i}, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}"
        for i in range(zones)
    )
    text = f"""
site: {{id: bench, timezone: Europe/Berlin}}
cameras:
  - id: cam
    source: rtsp://127.0.0.1/bench
    zones:
{zone_lines}
storage: {{path: "{db}", interval_s: {INTERVAL_S}, retention_days: 400}}
api: {{keys: [{{id: bench, role: viewer, sha256: {hash_key(KEY)}}}]}}
"""
    return parse_config(text, environ={})


def fill(db: Path, zones: int, days: int) -> float:
    """Write the history directly, one big transaction per zone; returns seconds taken."""
    Store(db, site_id="bench").close()  # the real schema
    began = time.perf_counter()
    rng = np.random.default_rng(7)
    n = days * 1440
    starts = int(START.timestamp()) + INTERVAL_S * np.arange(n, dtype=np.int64)
    hour = (starts // 3600 + 1) % 24  # local hour, near enough
    busy = np.where((hour >= 9) & (hour < 17), 1.0, 0.1)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # a benchmark fixture, not a device
    for z in range(zones):
        mean = np.round(busy * rng.gamma(2.0, 3.0 + z, n), 2)
        offline = rng.random(n) < 0.01
        samples = np.where(offline, 0, 120)
        rows = [
            (f"z{z}", "cam", int(s), INTERVAL_S, int(k), None if off else float(m),
             None if off else float(m) + 1.0, None if off else max(0.0, float(m) - 1.0),
             0.0 if off else 1.0)
            for s, k, m, off in zip(starts, samples, mean, offline, strict=True)
        ]  # fmt: skip
        with conn:
            conn.executemany("INSERT INTO zone_history VALUES (?,?,?,?,?,?,?,?,?)", rows)
    conn.close()
    return time.perf_counter() - began


def measure(
    client: TestClient, bucket: str, span: timedelta, repeats: int, days: int
) -> list[float]:
    """Milliseconds per request, each over a range at a different place in the year."""
    rng = np.random.default_rng(11)
    latest = max(0.0, (timedelta(days=days) - span).total_seconds())
    times = []
    for _ in range(repeats):
        start = START + timedelta(seconds=float(rng.uniform(0, latest)))
        params = {"bucket": bucket, "start": start.isoformat(), "end": (start + span).isoformat()}
        began = time.perf_counter()
        response = client.get(
            "/v1/occupancy/history", params=params, headers={"Authorization": f"Bearer {KEY}"}
        )
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.text
    return times


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zones", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the store in this directory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "bench.db"
        if not db.exists():
            seconds = fill(db, args.zones, args.days)
            rows = args.zones * args.days * 1440
            print(f"store: {rows:,} rows in {seconds:.1f} s ({db.stat().st_size / 2**20:.0f} MiB)")
        config = site_config(db, args.zones)
        now = START + timedelta(days=args.days)
        rollup_path = folder / "bench.api-rollup.db"
        rollup_path.unlink(missing_ok=True)
        cached = create_app(config, clock=lambda: now, rollup_path=rollup_path, rollup_every_s=None)
        began = time.perf_counter()
        cached.state.lobbywatch.rollup.refresh(now)
        print(f"rollup build: {time.perf_counter() - began:.1f} s (once, in the background)")
        raw = create_app(config, clock=lambda: now, use_rollup=False)
        clients = {"rollup": TestClient(cached), "raw": TestClient(raw)}

        print("\n| bucket | range | points per zone | p50 ms | p95 ms | p95 ms without rollup |")
        print("|---|---|---|---|---|---|")
        for bucket, span, rolled in CASES:
            if span > timedelta(days=args.days):
                continue
            size = {"1m": 60, "15m": 900, "1h": 3600, "1d": 86400}[bucket]
            points = int(span.total_seconds() // size)
            fast = measure(clients["rollup"], bucket, span, args.repeats, args.days)
            slow = (
                measure(clients["raw"], bucket, span, max(5, args.repeats // 5), args.days)
                if rolled
                else fast
            )
            print(
                f"| {bucket} | {span.days} d | {points} | {statistics.median(fast):.0f} |"
                f" {p95(fast):.0f} | {p95(slow):.0f} |"
            )


if __name__ == "__main__":
    main()
