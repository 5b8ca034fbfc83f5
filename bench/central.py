#!/usr/bin/env python3
"""The head office on this machine (issue #16): how fast one ingestion node stores the
branches' feed, and how long a closed interval takes to be queryable centrally.

Everything real: a 3-node NATS 2.9 cluster (JetStream R3, MQTT), PostgreSQL, and the CLI's
own `lobbywatch central ingest` in subprocesses. CPU is read from /proc per part of the centre:
the three NATS nodes, PostgreSQL (postmaster and backends) and the ingesters. Two phases:

1. Capacity. A backlog of the feed of --branches simulated branches (central/simulate.py: the
   device's message mix, per branch and hour 4 interval buckets, 60 queue minutes and an
   alert's 4 states every --alert-every hours) is published into the stream while no
   ingestion runs; then --instances ingestion processes start (separate processes sharing the
   durable consumer, as on several hosts) and the time to store it all gives the sustained
   rate (messages and rows per second), with each part's CPU.
2. Delay. With one ingester running, --bridged branches each behind their own Mosquitto
   bridge (deploy/mosquitto's template) publish an interval bucket every --every seconds, as
   their devices would when a bucket closes (`closed_at` is the publish time); a poller reads
   the rows of the buckets still awaited every 20 ms: delay = row visible - closed_at, p50/p99.
   The centre's CPU is measured idle (--idle-s, bridges connected) and under this load: the
   difference per message is the live cost of a message taken in through MQTT and stored.

Projection (branches one centre serves with half this machine kept free), two ways: from the
drain rate (what the ingestion can store) and from the live cost (which also counts the
broker's MQTT intake and the R3 replication, all three nodes being on this one machine: the
bound that holds). Today's per-branch rate is the mix above.

    python bench/central.py [--branches 200] [--hours 8] [--instances 1,2] [--bridged 50]
                            [--every 1.0] [--seconds 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.capacity import cpu_seconds, process_tree, rss_mib  # noqa: E402
from central.simulate import Branch, encode, iso, site_id, topic  # noqa: E402
from central.store import CentralStore  # noqa: E402
from tests.central.nats_cluster import NatsCluster, start_cluster  # noqa: E402
from tests.central.postgres import Postgres, find_binary  # noqa: E402
from tests.central.test_central_e2e import render_bridge  # noqa: E402
from tests.mqtt_broker import Broker  # noqa: E402

UTC = timezone.utc
DAY = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
ROW_TABLES = ("occupancy_intervals", "queue_waits", "alert_events", "alerts")


def per_branch_hour(alert_every_h: float) -> float:
    """Messages a branch sends in an hour: 4 buckets, 60 queue minutes, alerts' 4 states."""
    return 4 + 60 + 4 / alert_every_h


def backlog(branches: int, hours: int, alert_every_h: float) -> list[tuple[str, bytes]]:
    messages = []
    for i in range(branches):
        b = Branch(site_id(i), size=8 + i % 25, seed=i)
        for h in range(hours):
            start = DAY + timedelta(hours=h)
            for q in range(4):
                messages.append(("intervals", b, b.interval(start + timedelta(minutes=15 * q))))
            for m in range(60):
                messages.append(("queue", b, b.queue(start + timedelta(minutes=m))))
            if h % max(1, round(alert_every_h)) == 0:
                for state in b.alert_states(start + timedelta(minutes=7), number=h):
                    messages.append(("alerts", b, state))
    return [(f"lobbywatch.{b.site}.history.{kind}", encode(m)) for kind, b, m in messages]


async def publish_backlog(cluster: NatsCluster, messages: list[tuple[str, bytes]]) -> None:
    nc = await nats.connect(servers=cluster.urls)
    js = nc.jetstream(timeout=10)
    pending = []
    for subject, payload in messages:
        pending.append(js.publish(subject, payload))
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()


def write_config(workdir: Path, dsn: str, cluster: NatsCluster, stream: str) -> Path:
    path = workdir / f"central-{stream}.yaml"
    path.write_text(
        f"database: {{dsn: '{dsn}'}}\n"
        f"broker: {{servers: {json.dumps(cluster.urls)}, stream: {stream}, consumer: bench}}\n"
        "ingest: {batch: 500, status_interval_s: 5}\n"
    )
    return path


def postgres_pids(pg: Postgres) -> list[int]:
    """The postmaster and its children (the backends, the writers)."""
    return process_tree(int((pg.data / "postmaster.pid").read_text().split()[0]))


class CentreCpu:
    """CPU seconds the centre used between two points: the NATS nodes, PostgreSQL and the
    ingesters (not the publisher nor the branches' Mosquittos), as a share of one core."""

    def __init__(
        self,
        cluster: NatsCluster,
        pg: Postgres,
        ingesters: list[int],
        exclude: frozenset[int] | set[int] = frozenset(),
    ) -> None:
        self.cluster, self.pg, self.ingesters, self.exclude = cluster, pg, ingesters, exclude
        self.t0 = time.monotonic()
        self.start = self._sample()

    def _sample(self) -> dict[str, dict[int, float]]:
        nats_pids = [n.proc.pid for n in self.cluster.nodes if n.proc]
        return {
            part: {pid: cpu_seconds(pid) or 0.0 for pid in pids}  # 0: gone
            for part, pids in (
                ("nats", nats_pids),
                ("postgres", [p for p in postgres_pids(self.pg) if p not in self.exclude]),
                ("ingest", self.ingesters),
            )
        }  # fmt: skip

    def percent(self) -> dict[str, int]:
        """Per part, in % of one core since the start (a process born since counts from 0)."""
        wall, end = time.monotonic() - self.t0, self._sample()
        return {
            f"{part}_cpu_percent": round(
                100 * sum(cpu - self.start[part].get(pid, 0.0) for pid, cpu in pids.items()) / wall
            )
            for part, pids in end.items()
        }


def start_ingesters(config: Path, processes: int) -> list[subprocess.Popen[bytes]]:
    """`processes` separate `lobbywatch central ingest` (one Python each: they scale past the
    GIL, as instances on several hosts would), sharing the durable consumer."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "central", "ingest", "--config", str(config)],
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)


def wait_stream(cluster: NatsCluster, stream: str, timeout: float = 60) -> None:
    async def exists() -> bool:
        nc = await nats.connect(servers=cluster.urls)
        try:
            await nc.jetstream(timeout=2).stream_info(stream)
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout
    while not asyncio.run(exists()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {stream} not made by the ingestion")
        time.sleep(0.2)


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0


def capacity(
    cluster: NatsCluster, pg: Postgres, workdir: Path, args: argparse.Namespace, instances: int
) -> dict[str, Any]:
    stream = f"LOBBYWATCH_CAP{instances}"
    cluster.drop_streams()  # an earlier run's stream takes the same subjects: JetStream refuses two
    dsn = fresh_database(pg, f"cap{instances}")
    config = write_config(workdir, dsn, cluster, stream)
    # The ingestion makes the stream and its consumer; stopped, it leaves the backlog waiting.
    procs = start_ingesters(config, 1)
    wait_stream(cluster, stream)
    stop_all(procs)
    messages = backlog(args.branches, args.hours, args.alert_every)
    t0 = time.monotonic()
    asyncio.run(publish_backlog(cluster, messages))
    publish_s = time.monotonic() - t0
    intervals = sum(1 for s, _ in messages if s.endswith(".intervals")) * 3
    procs = start_ingesters(config, instances)
    start, cpu = time.monotonic(), CentreCpu(cluster, pg, [p.pid for p in procs])
    while count(dsn, "occupancy_intervals") < intervals or count(dsn, "queue_waits") < sum(
        1 for s, _ in messages if s.endswith(".queue")
    ):
        if time.monotonic() - start > 900:
            raise TimeoutError("the backlog was not stored within 15 minutes")
        time.sleep(0.2)
    took = time.monotonic() - start
    centre = cpu.percent()
    stop_all(procs)
    rate = len(messages) / took
    return {
        "instances": instances,
        "messages": len(messages),
        "publish_s": round(publish_s, 1),
        "store_s": round(took, 1),
        "messages_per_s": round(rate),
        "rows_per_s": round(sum(count(dsn, t) for t in ROW_TABLES) / took),
        **centre,
    }


def fresh_database(pg: Postgres, name: str) -> str:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg.dsn(name)
    CentralStore(dsn).migrate()
    return dsn


def delay(
    cluster: NatsCluster, pg: Postgres, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    stream = "LOBBYWATCH_DELAY"
    cluster.drop_streams()
    dsn = fresh_database(pg, "delay")
    procs = start_ingesters(write_config(workdir, dsn, cluster, stream), 1)
    wait_stream(cluster, stream)
    rss0 = sum(rss_mib(n.proc.pid) for n in cluster.nodes if n.proc)
    render = render_bridge()
    brokers, clients = [], []
    for i in range(args.bridged):
        site = site_id(i)
        bridge = render.render(site=site, addresses=[f"127.0.0.1:{p}" for p in cluster.mqtt_ports],
                               password="bench", cert_dir="/nonexistent", tls=False)  # fmt: skip
        broker = Broker(workdir / "branches" / site, extra=bridge).start()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{i}")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        brokers.append(broker)
        clients.append((Branch(site, seed=i), client))
    time.sleep(3)  # the bridges connect
    rss1 = sum(rss_mib(n.proc.pid) for n in cluster.nodes if n.proc)
    idle = CentreCpu(cluster, pg, [p.pid for p in procs])
    time.sleep(args.idle_s)  # the cluster's and the bridges' own traffic: heartbeats, Raft
    idle_percent = sum(idle.percent().values())
    closed: dict[tuple[str, datetime], float] = {}
    seen: dict[tuple[str, datetime], float] = {}
    unseen: Counter[datetime] = Counter()  # per bucket, rows published and not yet seen
    lock, stop, ready = threading.Lock(), threading.Event(), threading.Event()
    poller_pid: set[int] = set()

    def poll() -> None:
        # Only the buckets still awaited, so the poller's own load stays small and flat; its
        # backend is left out of the centre's CPU.
        with psycopg.connect(dsn, autocommit=True) as conn:
            poller_pid.add(conn.info.backend_pid)
            ready.set()
            while not stop.is_set():
                with lock:
                    low = min((b for b, n in unseen.items() if n > 0), default=None)
                if low is not None:
                    rows = conn.execute(
                        "SELECT site, start_at FROM occupancy_intervals"
                        " WHERE zone = 'waiting' AND start_at >= %s",
                        (low,),
                    ).fetchall()
                    now = time.time()
                    with lock:
                        for key in rows:
                            if key in closed and key not in seen:
                                seen[key] = now
                                unseen[key[1]] -= 1
                time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    ready.wait(10)
    cpu, t0 = CentreCpu(cluster, pg, [p.pid for p in procs], poller_pid), time.monotonic()
    bucket = DAY
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        tick = time.monotonic()
        for branch, client in clients:
            message = branch.interval(bucket)
            now = time.time()
            message["closed_at"] = iso(datetime.fromtimestamp(now, UTC))
            with lock:
                closed[(branch.site, bucket)] = now
                unseen[bucket] += 1
            client.publish(topic(branch.site, "intervals"), encode(message), qos=1)
        bucket += timedelta(minutes=15)
        time.sleep(max(0.0, args.every - (time.monotonic() - tick)))
    deadline = time.monotonic() + 30
    while len(closed) > len(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    centre = cpu.percent()
    wall = time.monotonic() - t0
    stop.set()
    poller.join(5)
    stop_all(procs)
    for _, client in clients:
        client.loop_stop()
        client.disconnect()
    for broker in brokers:
        broker.stop()
    delays = sorted(1000 * (seen[k] - closed[k]) for k in closed if k in seen)
    q = (
        statistics.quantiles(delays, n=100, method="inclusive")
        if len(delays) >= 2
        else [float("nan")] * 99
    )
    return {
        "bridged_branches": args.bridged,
        "messages": len(closed),
        "lost": len(set(closed) - set(seen)),
        "rate_per_s": round(len(closed) / args.seconds, 1),
        "delay_ms_p50": round(statistics.median(delays)),
        "delay_ms_p99": round(q[98]),
        "delay_ms_max": round(delays[-1]),
        **centre,
        "centre_idle_cpu_percent": round(idle_percent),
        # The whole centre's CPU for each message it took in through MQTT and stored, over idle.
        "centre_cpu_ms_per_message": round(
            10 * max(0.0, sum(centre.values()) - idle_percent) * wall / len(closed), 3
        ),
        "nats_rss_mib_per_bridge": round((rss1 - rss0) / max(1, args.bridged), 2),
    }


def projection(
    capacity: list[dict[str, Any]], live: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Branches one centre on this machine serves with half of it kept free, two ways: the best
    backlog drain (what the ingestion stores), and the live cost of a message taken in through
    MQTT and stored (which also counts the broker's side: the realistic bound)."""
    per_branch_s = per_branch_hour(args.alert_every) / 3600
    drain = max((c["messages_per_s"] for c in capacity), default=0)
    half = 1000 * (os.cpu_count() or 1) / 2 - 10 * live["centre_idle_cpu_percent"]  # ms/s
    live_rate = half / max(live["centre_cpu_ms_per_message"], 1e-3)
    return {
        "per_branch_messages_per_hour": per_branch_hour(args.alert_every),
        "drain_branches_at_half": int(drain / 2 / per_branch_s),
        "live_messages_per_s_at_half_cpu": round(live_rate),
        "live_branches_at_half_cpu": int(live_rate / per_branch_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--branches", type=int, default=200)
    parser.add_argument("--hours", type=int, default=8, help="Simulated hours of backlog")
    parser.add_argument("--alert-every", type=float, default=4.0, help="Hours between alerts")
    parser.add_argument(
        "--instances", default="1,2", help="Ingestion processes per capacity run, e.g. 1,2"
    )
    parser.add_argument("--bridged", type=int, default=50)
    parser.add_argument("--every", type=float, default=1.0, help="Seconds between buckets")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--idle-s", type=float, default=10, help="Idle CPU measured this long")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    assert initdb and pg_ctl, "PostgreSQL is not installed"
    with tempfile.TemporaryDirectory(prefix="bench-central-") as tmp:
        workdir = Path(tmp)
        cluster = start_cluster(workdir / "nats")
        pg = Postgres(initdb, pg_ctl).start()
        try:
            results: dict[str, Any] = {"capacity": [], "delay": None}
            for n in [int(x) for x in args.instances.split(",") if x]:
                results["capacity"].append(capacity(cluster, pg, workdir, args, n))
                print(json.dumps(results["capacity"][-1]), flush=True)
            if args.bridged:
                results["delay"] = delay(cluster, pg, workdir, args)
                print(json.dumps(results["delay"]), flush=True)
                results["projection"] = projection(results["capacity"], results["delay"], args)
                print(json.dumps(results["projection"]), flush=True)
        finally:
            pg.close()
            cluster.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
