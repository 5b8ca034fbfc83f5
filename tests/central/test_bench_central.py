"""bench/central.py: the head-office benchmark runs end to end on a tiny load, and its
projection is the arithmetic BENCHMARKS.md states.

The bench once hung (each phase's stream took the same subjects and JetStream refused the
second): the short real run keeps that from coming back unseen.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.central import per_branch_hour, projection
from tests.central.nats_cluster import NATS_SERVER
from tests.central.postgres import find_binary

ROOT = Path(__file__).resolve().parents[2]


def test_projection_is_half_the_machine_over_the_live_cost_per_branch() -> None:
    args = argparse.Namespace(alert_every=4.0)
    live = {"centre_cpu_ms_per_message": 3.0, "centre_idle_cpu_percent": 5}
    got = projection([{"messages_per_s": 2000}, {"messages_per_s": 4000}], live, args)
    cores = os.cpu_count() or 1
    # Half the machine in CPU-ms a second, less the idle centre's 5% of a core (50 ms/s).
    live_rate = (1000 * cores / 2 - 50) / 3.0
    assert per_branch_hour(4.0) == 65.0  # 4 buckets + 60 queue minutes + 4 alert states / 4 h
    assert got["per_branch_messages_per_hour"] == 65.0
    assert got["drain_branches_at_half"] == int(4000 / 2 / (65 / 3600))  # the best drain
    assert got["live_messages_per_s_at_half_cpu"] == round(live_rate)
    assert got["live_branches_at_half_cpu"] == int(live_rate / (65 / 3600))


def test_a_tiny_run_stores_everything_and_reports_every_figure(tmp_path: Path) -> None:
    if not Path(NATS_SERVER).exists() or not find_binary("pg_ctl"):
        pytest.skip("nats-server or PostgreSQL is not installed (make system-deps)")
    out = tmp_path / "central.json"
    subprocess.run(
        [sys.executable, "bench/central.py", "--branches", "3", "--hours", "1",
         "--instances", "1,2", "--bridged", "2", "--every", "0.5", "--seconds", "2",
         "--idle-s", "1", "--json", str(out)],
        cwd=ROOT, check=True, timeout=300, env={**os.environ, "LOBBYWATCH_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    result = json.loads(out.read_text())
    capacity = result["capacity"]
    assert [c["instances"] for c in capacity] == [1, 2]
    for c in capacity:
        # 3 branches x 1 h: 4 buckets, 60 queue minutes and one alert's 4 states each.
        assert c["messages"] == 3 * (4 + 60 + 4)
        assert c["messages_per_s"] > 0 and c["ingest_cpu_percent"] > 0
        assert {"nats_cpu_percent", "postgres_cpu_percent"} <= c.keys()
    delay = result["delay"]
    assert delay["messages"] == 2 * 4 and delay["lost"] == 0  # 2 branches, a bucket every 0.5 s
    assert 0 < delay["delay_ms_p50"] <= delay["delay_ms_p99"] <= delay["delay_ms_max"]
    assert result["projection"]["live_branches_at_half_cpu"] > 0
