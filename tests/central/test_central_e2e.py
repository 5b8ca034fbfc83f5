"""Head office end to end (issue 16): 50 simulated branches, each publishing the device feed
into its own Mosquitto, which bridges it (deploy/mosquitto's template, rendered by
render-bridge) to a real 3-node NATS cluster; two ingestion instances share one durable
consumer and store into a real PostgreSQL. On the way a broker node is killed and restarted,
PostgreSQL is restarted, and one branch is cut off for a simulated hour while it goes on
publishing. At the end every interval, alert step and queue minute is in the store exactly
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.machinery
import importlib.util
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.config import CentralConfig
from central.ingest import Ingestor
from central.simulate import ZONES, Branch, encode, site_id, topic
from central.store import CentralStore
from edge.integrations.central import Outstanding, QueueMinutes
from tests.central.nats_cluster import NatsCluster, nats_cluster
from tests.central.postgres import Postgres, postgres_dsn, postgres_server
from tests.central.tcp_proxy import TcpProxy
from tests.mqtt_broker import Broker
from tests.waiting import wait_for

__all__ = ["nats_cluster", "postgres_dsn", "postgres_server"]  # fixtures, imported for pytest

REPO = Path(__file__).resolve().parents[2]
UTC = timezone.utc
BRANCHES = 50
DAY = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
BUCKETS_PER_HOUR = 4
#: The device's resend_after_s, shortened for the test.
RESEND_AFTER_S = 3.0


def render_bridge() -> ModuleType:
    path = REPO / "deploy" / "mosquitto" / "render-bridge"
    loader = importlib.machinery.SourceFileLoader("render_bridge", str(path))
    spec = importlib.util.spec_from_loader("render_bridge", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class Site:
    """One branch: its Mosquitto with the bridge, and the device's feed as the device sends
    it: every interval and alert message outstanding (edge's Outstanding) until the centre's
    receipt for it comes back through the bridge, and sent again from the cursor when the
    centre has answered for a while without it; queue minutes kept (edge's QueueMinutes) until
    theirs come, those without one sent again."""

    def __init__(self, index: int, workdir: Path, central_ports: list[int], render: Any) -> None:
        self.branch = Branch(site_id(index), size=8 + index % 25, seed=index)
        self.proxy: TcpProxy | None = None
        if index == 0:  # the branch whose line is cut: it reaches the centre through a proxy
            self.proxy = TcpProxy(central_ports).start()
            central_ports = [self.proxy.port]
        bridge = render.render(
            site=self.branch.site,
            addresses=[f"127.0.0.1:{p}" for p in central_ports],
            password="not-checked-by-the-test-cluster",
            cert_dir="/nonexistent",
            tls=False,
        )
        # A test cadence: reconnect within a second or two, not the product's 20 s backoff.
        bridge = bridge.replace("restart_timeout 1 20", "restart_timeout 1 2")
        self.broker = Broker(workdir / self.branch.site, extra=bridge).start()
        self.lock = threading.Lock()
        self.feeds = {kind: Feed(kind) for kind in ("intervals", "alerts")}
        self.minutes_kept = QueueMinutes(RESEND_AFTER_S)
        self.sent_minutes: set[datetime] = set()
        self.resent = 0
        self.minutes = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{index}")
        self.client.on_connect = lambda c, *_: c.subscribe(self.receipts_topic, qos=0)
        self.client.on_message = self._on_receipt
        self.client.connect("127.0.0.1", self.broker.port)
        self.client.loop_start()
        self.sent_intervals: set[tuple[str, datetime]] = set()
        self.sent_steps = 0

    @property
    def receipts_topic(self) -> str:
        return f"lobbywatch/{self.branch.site}/central/receipts"

    def publish_hour(self, hour: int) -> None:
        """One simulated hour of the device feed: 4 buckets, 1 alert's life, 6 queue minutes."""
        start = DAY + timedelta(hours=hour)
        infos = []
        for q in range(BUCKETS_PER_HOUR):
            bucket = start + timedelta(minutes=15 * q)
            message = self.branch.interval(bucket)
            key = int((bucket + timedelta(minutes=15)).timestamp())
            infos.append(self._send("intervals", key, message))
            self.sent_intervals.update((zone, bucket) for zone, _, _ in ZONES)
        for state in self.branch.alert_states(start + timedelta(minutes=5), number=hour):
            infos.append(self._send("alerts", state["state"]["version"], state))
            self.sent_steps += 1
        for m in range(0, 60, 10):
            minute = start + timedelta(minutes=m)
            message = self.branch.queue(minute)
            with self.lock:
                assert self.minutes_kept.sent(int(minute.timestamp()), message, time.monotonic())
                infos.append(self._publish("queue", message))
            self.sent_minutes.add(minute)
        for info in infos:  # the local broker has them all (PUBACK): the bridge's job now
            info.wait_for_publish(10)

    def _send(self, kind: str, key: int, message: dict[str, Any]) -> mqtt.MQTTMessageInfo:
        with self.lock:
            feed = self.feeds[kind]
            feed.messages[key] = message
            feed.outstanding.sent(key, time.monotonic())
            return self._publish(kind, message)

    def _publish(self, kind: str, message: dict[str, Any]) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic(self.branch.site, kind), encode(message), qos=1)

    def _on_receipt(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        receipt = json.loads(msg.payload)
        with self.lock:
            for kind, feed in self.feeds.items():
                feed.outstanding.receipted(receipt[kind], time.monotonic())
            self.minutes_kept.receipted(receipt["queue"], time.monotonic())

    def heartbeat(self) -> None:
        """The queue's minute, which a device sends every minute whatever else happens: its
        receipts are what tell the feed the centre is answering (here on a day of its own)."""
        self.minutes += 1
        minute = DAY - timedelta(days=1) + timedelta(minutes=self.minutes)
        self._publish("queue", self.branch.queue(minute))

    def tick(self) -> None:
        """The feed's tick: move the cursors, send again from them what was lost."""
        with self.lock:
            for kind, feed in self.feeds.items():
                settled = feed.outstanding.settle()
                if settled.cursor is not None:
                    feed.cursor = settled.cursor
                if settled.lost is None:
                    continue
                for key in sorted(k for k in feed.messages if k > feed.cursor):
                    feed.outstanding.sent(key, time.monotonic())
                    self._publish(kind, feed.messages[key])
                    self.resent += 1
            for key, message in self.minutes_kept.settle():
                self.minutes_kept.sent(key, message, time.monotonic())
                self._publish("queue", message)
                self.resent += 1

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.broker.stop()
        if self.proxy is not None:
            self.proxy.stop()


class Feed:
    """One kind's messages as the device's store would give them again, and its window."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.messages: dict[int, dict[str, Any]] = {}
        self.outstanding = Outstanding(RESEND_AFTER_S)
        self.cursor = 0


class Ticker:
    """Ticks every branch's feed twice a second, as the device's feed thread does, and sends
    each branch's queue minute."""

    def __init__(self, sites: list[Site]) -> None:
        self.sites = sites
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.5):
            ticks += 1
            for site in self.sites:
                site.tick()
                if ticks % 4 == 0:  # a queue minute every 2 s: the device's every minute
                    site.heartbeat()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Centre:
    """Two ingestion instances on one event loop in a thread, as two processes would share
    the durable consumer."""

    def __init__(self, config: CentralConfig) -> None:
        self.stores = [CentralStore(config.database.dsn) for _ in range(2)]
        self.ingestors = [
            Ingestor(config, s, name=f"ingest-{i}") for i, s in enumerate(self.stores)
        ]
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        async def main() -> None:
            await asyncio.gather(*(i.run(self._stop) for i in self.ingestors))

        self._loop.run_until_complete(main())

    def consuming(self) -> bool:
        return all(i.consuming for i in self.ingestors)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        for s in self.stores:
            s.close()


def rows_per_site(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT site, count(*) FROM occupancy_intervals GROUP BY site")
        return {str(site): int(n) for site, n in rows.fetchall()}


def count(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def sites(tmp_path: Path, nats_cluster: NatsCluster) -> Iterator[list[Site]]:
    nats_cluster.drop_streams()
    render = render_bridge()
    made: list[Site] = []
    try:
        for i in range(BRANCHES):
            made.append(Site(i, tmp_path / "branches", nats_cluster.mqtt_ports, render))
        yield made
    finally:
        for site in made:
            with contextlib.suppress(Exception):
                site.close()


def test_every_interval_alert_and_queue_minute_arrives_exactly_once(
    nats_cluster: NatsCluster,
    postgres_server: Postgres,
    postgres_dsn: str,
    sites: list[Site],
) -> None:
    config = CentralConfig.model_validate(
        {
            "database": {"dsn": postgres_dsn},
            "broker": {
                "servers": nats_cluster.urls,
                "stream": "LOBBYWATCH_E2E",
                "consumer": "e2e-ingest",
            },
            "ingest": {"batch": 200, "ack_wait_s": 5},
        }
    )
    centre = Centre(config)
    # The stream must be there before the branches publish: NATS takes an MQTT message that
    # no stream captures and drops it (the ingestion creates the stream on its first start).
    wait_for(lambda: centre.consuming(), 30, "the ingestion consuming")
    cut = sites[0]
    assert cut.proxy is not None
    stored = "SELECT count(*) FROM occupancy_intervals"

    def expected_intervals() -> int:
        return sum(len(s.sent_intervals) for s in sites)

    def arrived(what: str, timeout: float = 90.0) -> None:
        try:
            wait_for(lambda: count(postgres_dsn, stored) == expected_intervals(), timeout, what)
        except AssertionError:
            have = count(postgres_dsn, stored)
            stats = [i.stats for i in centre.ingestors]
            message = f"{what}: {have} of {expected_intervals()} stored; {stats}"
            raise AssertionError(message) from None

    ticker = Ticker(sites)
    try:
        for s in sites:  # hour 0: all well
            s.publish_hour(0)
        arrived("hour 0 stored")

        # Hour 1: the node leading the stream is lost. Until another is elected (seconds)
        # NATS acks the bridges' publishes and drops them: the receipts that come for later
        # messages show the device what to send again.
        leader = nats_cluster.stream_leader(config.broker.stream)
        nats_cluster.kill(leader)
        for s in sites:
            s.publish_hour(1)
        # Back in the cluster; what it missed it catches up on while the test goes on (the
        # stored-exactly-once checks below are what count).
        nats_cluster.restart(leader, timeout=120, current=False)

        # Hour 2: one branch's line is dead, and the centre's database restarts meanwhile.
        cut.proxy.cut()
        postgres_server.restart()
        for s in sites:
            s.publish_hour(2)

        def others_complete() -> bool:
            have = rows_per_site(postgres_dsn)
            return all(have.get(s.branch.site) == len(s.sent_intervals) for s in sites[1:])

        try:
            wait_for(others_complete, 120, "every other branch's hours 0-2")
        except AssertionError:
            have = rows_per_site(postgres_dsn)
            short = {
                s.branch.site: (have.get(s.branch.site), len(s.sent_intervals), s.resent,
                                {k: f.outstanding.waiting[:3] for k, f in s.feeds.items()})
                for s in sites[1:] if have.get(s.branch.site) != len(s.sent_intervals)
            }  # fmt: skip
            raise AssertionError(f"short: {short}; {[i.stats for i in centre.ingestors]}") from None
        assert rows_per_site(postgres_dsn)[cut.branch.site] <= 2 * len(ZONES) * BUCKETS_PER_HOUR

        # Hour 3: the line is back; its queue goes out, then what receipts show was lost.
        cut.proxy.mend()
        for s in sites:
            s.publish_hour(3)
        arrived("all four hours of every branch", timeout=120)
        hourly = "SELECT count(*) FROM queue_waits WHERE minute >= %s"
        wait_for(lambda: count(postgres_dsn, hourly, (DAY,)) == BRANCHES * 4 * 6, 60,
                 "every queue minute of the four hours")  # fmt: skip
    finally:
        ticker.close()
        centre.close()

    # Exactly once: every key present (the counts match what was sent) and none twice (the
    # natural keys), with the values the branch sent.
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT site, zone, start_at, mean FROM occupancy_intervals ORDER BY site"
        ).fetchall()
        steps = conn.execute(
            "SELECT site, count(*), count(DISTINCT alert_id) FROM alert_events GROUP BY site"
        ).fetchall()
        latest = conn.execute("SELECT DISTINCT status FROM alerts").fetchall()
        minutes = conn.execute(
            "SELECT site, minute FROM queue_waits WHERE minute >= %s", (DAY,)
        ).fetchall()
    by_site: dict[str, set[tuple[str, datetime]]] = {}
    for site, zone, start, _ in rows:
        by_site.setdefault(site, set()).add((zone, start))
    assert len(rows) == expected_intervals()
    for s in sites:
        assert by_site[s.branch.site] == s.sent_intervals
    sent = {s.branch.site: s.branch.interval(DAY + timedelta(hours=2)) for s in sites}
    resent = sum(s.resent for s in sites)
    print(f"messages sent again on the receipts' evidence: {resent}")
    means = {
        (site, zone): mean for site, zone, start, mean in rows if start == DAY + timedelta(hours=2)
    }
    for site, message in sent.items():
        for z in message["zones"]:
            assert means[(site, z["zone"])] == pytest.approx(z["mean"])
    assert sorted(steps) == sorted((s.branch.site, s.sent_steps, 4) for s in sites)
    assert latest == [("cleared",)]
    # Every queue minute too, those published while the stream had no leader included: kept
    # until their receipts came, sent again when receipts showed them lost.
    assert sorted(minutes) == sorted(
        (s.branch.site, minute) for s in sites for minute in s.sent_minutes
    )
    assert len(minutes) == BRANCHES * 4 * 6
    assert count(postgres_dsn, "SELECT count(*) FROM sites") == BRANCHES
    stats = [i.stats for i in centre.ingestors]
    assert sum(s.rejected for s in stats) == 0
    assert all(s.messages > 0 for s in stats), "both instances took a share of the work"
