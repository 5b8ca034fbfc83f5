"""A real 3-node NATS cluster for the central tests (docs/central.md, "Topology").

Debian's `nats-server` (2.9), each node with JetStream (its store in the test's tmp dir), the
cluster routes and the clients on free loopback ports, an MQTT listener on every node (the
device bridges connect to any of them) and the monitoring port polled for readiness: the
fixture yields only once the JetStream meta group has a leader that every node knows, so a
test's first stream create does not race the cluster's own election.

A node can be killed (SIGKILL, as a crashed machine) and restarted on the same ports and the
same store directory, so it comes back with what it had and catches up from its peers.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.mqtt_broker import free_port, wait_port
from tests.waiting import wait_for

NATS_SERVER = shutil.which("nats-server") or "/usr/bin/nats-server"
CLUSTER_NAME = "lobbywatch-central"
SIZE = 3


@dataclass
class NatsNode:
    """One server of the cluster: its ports, its files and, while it runs, its process."""

    name: str
    workdir: Path
    client_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def store_dir(self) -> Path:
        return self.workdir / "jetstream"

    @property
    def conf(self) -> Path:
        return self.workdir / "nats.conf"

    @property
    def log(self) -> Path:
        return self.workdir / "nats.log"

    def write_conf(self, peers: list[NatsNode]) -> None:
        routes = ", ".join(
            f'"nats-route://127.0.0.1:{p.cluster_port}"' for p in peers if p is not self
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        # MQTT needs a server_name and JetStream; its own state streams are replicated on the
        # cluster like ours. Small JetStream limits: the tests store a few messages.
        self.conf.write_text(
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.client_port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f'log_file: "{self.log}"\n'
            "jetstream {\n"
            f'  store_dir: "{self.store_dir}"\n'
            "  max_memory_store: 64MB\n"
            "  max_file_store: 256MB\n"
            "}\n"
            "cluster {\n"
            f"  name: {CLUSTER_NAME}\n"
            f"  listen: 127.0.0.1:{self.cluster_port}\n"
            f"  routes: [{routes}]\n"
            "}\n"
            "mqtt {\n"
            f"  listen: 127.0.0.1:{self.mqtt_port}\n"
            "  stream_replicas: 3\n"
            "}\n"
        )

    def start(self) -> None:
        # What the server says before its log file is open (a bad config) goes to stderr.
        with (self.workdir / "stderr.log").open("ab") as err:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=err
            )
        try:
            wait_port(self.client_port)
            wait_port(self.http_port)
        except TimeoutError:
            raise AssertionError(f"{self.name} did not start: {self.tail_log()}") from None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None
        wait_port(self.client_port, up=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, path: str) -> dict[str, Any] | None:
        """The monitoring endpoint's JSON, or None while the node does not answer (or answers
        an error status, as /healthz does until JetStream is current)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=1) as r:
                body: dict[str, Any] = json.loads(r.read())
                return body
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def meta_leader(self) -> str | None:
        jsz = self.monitor("/jsz")
        meta = (jsz or {}).get("meta_cluster") or {}
        leader = meta.get("leader")
        return str(leader) if leader else None

    def healthy(self, server_only: bool = False) -> bool:
        """/healthz says ok only once the node's JetStream is current with the cluster: every
        stream and consumer, or with `server_only` JetStream itself (running, in the meta
        group), not each stream and consumer."""
        health = self.monitor("/healthz?js-server-only=true" if server_only else "/healthz")
        return health is not None and health.get("status") == "ok"

    def tail_log(self) -> str:
        text = ""
        for path in (self.workdir / "stderr.log", self.log):
            if path.exists():
                text += path.read_text(errors="replace")[-2000:]
        return text or "(no log)"


@dataclass
class NatsCluster:
    """The running cluster a test talks to: `urls`, `mqtt_ports`, `kill(i)`, `restart(i)`."""

    nodes: list[NatsNode]

    @property
    def urls(self) -> list[str]:
        """Client URLs of every node, killed or not (a NATS client fails over between them)."""
        return [n.url for n in self.nodes]

    @property
    def mqtt_ports(self) -> list[int]:
        return [n.mqtt_port for n in self.nodes]

    def kill(self, index: int) -> None:
        """SIGKILL node `index`, as a lost machine; the others must carry on."""
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 20.0, current: bool = True) -> None:
        """Start node `index` again on its ports and its store dir; wait until it is current
        (`current` False: back in the cluster, its streams and consumers maybe still catching
        up: NATS 2.9 can take minutes over its MQTT consumers after a SIGKILL)."""
        node = self.nodes[index]
        if node.running:
            node.kill()
        node.start()
        self.wait_ready(timeout, server_only=not current)

    def wait_ready(self, timeout: float = 20.0, server_only: bool = False) -> None:
        """Every running node names the same JetStream meta leader, and says it is healthy."""

        def ready() -> bool:
            running = [n for n in self.nodes if n.running]
            leaders = {n.meta_leader() for n in running}
            return (
                len(leaders) == 1
                and None not in leaders
                and all(n.healthy(server_only) for n in running)
            )

        try:
            wait_for(ready, timeout, "a JetStream meta leader known to every running node")
        except AssertionError:
            logs = "\n".join(f"--- {n.name}\n{n.tail_log()}" for n in self.nodes)
            raise AssertionError(f"NATS cluster not ready within {timeout} s\n{logs}") from None

    def stream_leader(self, stream: str) -> int:
        """The index of the node leading `stream` now."""
        import asyncio

        import nats

        async def leader() -> str | None:
            nc = await nats.connect(servers=self.urls, connect_timeout=2)
            try:
                info = await nc.jetstream(timeout=5).stream_info(stream)
                return info.cluster.leader if info.cluster else None
            finally:
                await nc.close()

        name = asyncio.run(leader())
        if name is None:
            raise AssertionError(f"stream {stream} has no leader now")
        return [n.name for n in self.nodes].index(name)

    def drop_streams(self) -> None:
        """Delete every stream a test made (their subjects may overlap, which JetStream
        refuses): a test that makes its own calls this first, and names its stream anew
        (nats-server 2.9 restarting a node that held a deleted stream of the same name finds a
        "duplicate assignment" and never reports the new one current)."""
        import asyncio

        import nats

        async def drop() -> None:
            nc = await nats.connect(servers=self.urls, connect_timeout=2)
            try:
                js = nc.jetstream(timeout=5)
                for info in await js.streams_info():
                    name = info.config.name or ""
                    if name.startswith("LOBBYWATCH"):
                        await js.delete_stream(name)
            finally:
                await nc.close()

        asyncio.run(drop())

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.proc.terminate()
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(10)
                node.proc = None


def start_cluster(workdir: Path, size: int = SIZE) -> NatsCluster:
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    nodes = [NatsNode(f"n{i + 1}", workdir / f"n{i + 1}") for i in range(size)]
    for node in nodes:
        node.write_conf(nodes)
    cluster = NatsCluster(nodes)
    try:
        for node in nodes:
            node.start()
        cluster.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """One cluster for the session (starting one takes a second or two); a test that kills a
    node restarts it before it ends, so the next test finds all three."""
    cluster = start_cluster(tmp_path_factory.mktemp("nats"))
    yield cluster
    cluster.stop()
