"""The head office's deployment files on real processes (deploy/central, deploy/mosquitto).

A 3-node NATS cluster started from deploy/central/nats/nats-server.conf.template (rendered by
render-node, users by sites-to-users: authorization on, TLS off), a branch's Mosquitto with the
bridge that render-bridge writes, and the ingestion's user creating the stream and reading it
through its durable consumer, as `lobbywatch central ingest` does. Checked: what a branch
publishes under history/ arrives on lobbywatch.<site>.history.<kind>, what it publishes
elsewhere stays in the branch, its account cannot write under another site or log in with a
wrong password or over plain NATS; the renderers refuse bad input; central.yaml.example loads.

"Did not arrive" is checked without waiting: a marker published after the message on the same
ordered path (one MQTT connection, one stream) arrives, and the stream holds only the marker.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
import ipaddress
import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import nats
import paho.mqtt.client as mqtt
import pytest
import yaml
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from central.config import load_central_config
from tests.central.nats_cluster import NATS_SERVER, NatsCluster, NatsNode
from tests.mqtt_broker import Broker

REPO = Path(__file__).resolve().parents[2]
RENDER_BRIDGE = REPO / "deploy" / "mosquitto" / "render-bridge"
RENDER_NODE = REPO / "deploy" / "central" / "nats" / "render-node"
SITES_TO_USERS = REPO / "deploy" / "central" / "nats" / "sites-to-users"

SITE, OTHER = "branch-1", "branch-2"
PASSWORDS = {SITE: "branch-1-password", OTHER: "branch-2-password"}
INGEST_PASSWORD = "ingest-password-1"
ROUTE_PASSWORD = "route-password-1"
STREAM, CONSUMER = "LOBBYWATCH", "central-ingest"
TOKEN = re.compile(r"@@[A-Z_]+@@")
BRIDGE_STATE = f"$SYS/broker/connection/lobbywatch-bridge-{SITE}/state"


def load_script(path: Path) -> ModuleType:
    """An executable script without .py, imported as a module (its functions tested directly)."""
    name = path.name.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


render_bridge = load_script(RENDER_BRIDGE)
render_node = load_script(RENDER_NODE)
sites_to_users = load_script(SITES_TO_USERS)


# --- the centre, from the templates ------------------------------------------------------


@dataclass
class TemplateNode(NatsNode):
    """A cluster node whose config is deploy/central's template, not the test cluster's."""

    users: str = ""
    cert_dir: Path | None = None  # TLS for clients and MQTT with the certificates there

    def write_conf(self, peers: list[NatsNode]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        text = render_node.render(
            self.name,
            [f"127.0.0.1:{p.cluster_port}" for p in peers if p is not self],
            ROUTE_PASSWORD,
            host="127.0.0.1",
            client_port=self.client_port,
            cluster_port=self.cluster_port,
            mqtt_port=self.mqtt_port,
            http=f"127.0.0.1:{self.http_port}",
            store_dir=str(self.store_dir),
            max_file_store="256MB",
            cert_dir=str(self.cert_dir or "/nonexistent"),
            tls=self.cert_dir is not None,
        )
        # The log to a file, as the cluster fixture's nodes (Debian's unit logs to journald).
        self.conf.write_text(text + f'log_file: "{self.log}"\n')
        (self.workdir / "lobbywatch-users.conf").write_text(self.users)


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with running_centre(tmp_path_factory.mktemp("centre")) as cluster:
        yield cluster


@contextmanager
def running_centre(
    workdir: Path, cert_dir: Path | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[NatsCluster]:
    """The 3-node cluster from the template, with its users and the ingestion's stream."""
    users = sites_to_users.render_users(PASSWORDS, INGEST_PASSWORD, STREAM, CONSUMER)
    nodes: list[NatsNode] = [
        TemplateNode(f"n{i + 1}", workdir / f"n{i + 1}", users=users, cert_dir=cert_dir)
        for i in range(3)
    ]
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    for node in nodes:
        node.write_conf(nodes)
    cluster = NatsCluster(nodes)
    try:
        for node in nodes:
            node.start()
        cluster.wait_ready()
        asyncio.run(create_stream(cluster.urls, tls))
        yield cluster
    finally:
        cluster.stop()


@asynccontextmanager
async def as_ingest(
    servers: list[str], tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    nc = await nats.connect(
        servers=servers, user="ingest", password=INGEST_PASSWORD, connect_timeout=2, tls=tls
    )
    try:
        yield nc, nc.jetstream(timeout=5)
    finally:
        await nc.close()


async def create_stream(servers: list[str], tls: ssl.SSLContext | None = None) -> None:
    """What the first ingestion instance does: the stream, R3, on every branch's subjects."""
    async with as_ingest(servers, tls) as (_, js):
        await js.add_stream(
            StreamConfig(
                name=STREAM,
                subjects=["lobbywatch.>"],
                num_replicas=3,
                storage=StorageType.FILE,
                max_age=7 * 86400,
                duplicate_window=120,
            )
        )


def drain(
    cluster: NatsCluster, count: int, tls: ssl.SSLContext | None = None
) -> list[tuple[str, bytes]]:
    """The next `count` messages of the stream through the ingestion's durable consumer (each
    acked), then what the stream holds in all: `(subject, data)` pairs and the total."""

    async def scenario() -> list[tuple[str, bytes]]:
        async with as_ingest(cluster.urls, tls) as (_, js):
            sub = await js.pull_subscribe(
                "lobbywatch.>",
                CONSUMER,
                stream=STREAM,
                config=ConsumerConfig(
                    durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=30
                ),
            )
            got: list[tuple[str, bytes]] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while len(got) < count and loop.time() < deadline:
                try:
                    for msg in await sub.fetch(count - len(got), timeout=1):
                        await msg.ack_sync()
                        got.append((msg.subject, msg.data))
                except asyncio.TimeoutError:
                    continue
            return got

    return asyncio.run(scenario())


def stream_total(cluster: NatsCluster) -> int:
    async def scenario() -> int:
        async with as_ingest(cluster.urls) as (_, js):
            return (await js.stream_info(STREAM)).state.messages

    return asyncio.run(scenario())


# --- MQTT clients ---------------------------------------------------------------------------


class Mqtt:
    """A paho MQTT 3.1.1 client: connect, publish QoS 1 and wait for the PUBACK."""

    def __init__(self, port: int, username: str | None, password: str | None, cid: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack = threading.Event()
        self.reason: ReasonCode | None = None
        self.client.on_connect = self._on_connect
        self.port = port

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self.reason = reason
        self.connack.set()

    def connect(self) -> ReasonCode:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connack.wait(10), "no CONNACK"
        assert self.reason is not None
        return self.reason

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_bridge_up(broker: Broker) -> None:
    """Until the bridge is connected (its local notification topic says 1). Mosquitto sends a
    bridge the retained messages of its topics on every connect: a retained availability
    published before would reach the centre twice (harmless, the centre keeps the latest)."""
    up = threading.Event()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher", protocol=mqtt.MQTTv311)
    watcher.on_connect = lambda c, *_: c.subscribe(BRIDGE_STATE, qos=1)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.payload == b"1":
            up.set()

    watcher.on_message = on_message
    watcher.connect("127.0.0.1", broker.port)
    watcher.loop_start()
    try:
        assert up.wait(20), "the bridge did not connect to the centre"
    finally:
        watcher.disconnect()
        watcher.loop_stop()


@pytest.fixture(scope="module")
def branch(centre: NatsCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_branch(centre, tmp_path_factory.mktemp("branch")) as broker:
        yield broker


@contextmanager
def running_branch(
    centre: NatsCluster, workdir: Path, cert_dir: Path | None = None
) -> Iterator[Broker]:
    """The branch's Mosquitto with the rendered bridge to every node, home node first."""
    conf = render_bridge.render(
        SITE,
        # localhost: the name the test's server certificate has
        [f"localhost:{port}" for port in centre.mqtt_ports],
        PASSWORDS[SITE],
        str(cert_dir or "/etc/mosquitto/lobbywatch/certs"),
        tls=cert_dir is not None,
    )
    broker = Broker(workdir, extra=conf).start()
    try:
        wait_bridge_up(broker)
        yield broker
    finally:
        broker.stop()


def test_history_goes_to_the_centre_and_nothing_else_does(
    centre: NatsCluster, branch: Broker
) -> None:
    device = Mqtt(branch.port, None, None, "lobbywatch-branch-1")
    assert not device.connect().is_failure
    try:
        # Live counts stay in the branch; the bridge forwards in order, so once the history
        # message behind it arrives, the live one would have arrived first.
        device.publish(f"lobbywatch/{SITE}/zone/z1/occupancy", b'{"count": 3}')
        device.publish(f"lobbywatch/{SITE}/history/intervals", b'{"v": 1, "n": 1}')
        device.publish(f"lobbywatch/{SITE}/availability", b"online", retain=True)
    finally:
        device.close()
    got = drain(centre, 2)
    assert got == [
        (f"lobbywatch.{SITE}.history.intervals", b'{"v": 1, "n": 1}'),
        (f"lobbywatch.{SITE}.availability", b"online"),
    ]
    assert stream_total(centre) == 2


def test_a_branch_account_cannot_write_under_another_site(centre: NatsCluster) -> None:
    before = stream_total(centre)
    site = Mqtt(centre.mqtt_ports[1], SITE, PASSWORDS[SITE], "intruder")
    assert not site.connect().is_failure
    try:
        # NATS acks the forbidden message (and logs a publish violation) but stores nothing.
        site.publish(f"lobbywatch/{OTHER}/history/intervals", b"forged")
        site.publish(f"lobbywatch/{SITE}/history/intervals", b"marker")
    finally:
        site.close()
    assert drain(centre, 1) == [(f"lobbywatch.{SITE}.history.intervals", b"marker")]
    assert stream_total(centre) == before + 1


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (SITE, "wrong-password-1"),
        (SITE, PASSWORDS[OTHER]),
        ("nobody", "whatever-123"),
        (None, None),
    ],
)
def test_a_wrong_password_does_not_connect(
    centre: NatsCluster, username: str | None, password: str | None
) -> None:
    client = Mqtt(centre.mqtt_ports[0], username, password, "guess")
    try:
        reason = client.connect()
    finally:
        client.close()
    assert reason.is_failure and reason.getName() == "Not authorized"


def test_a_branch_account_is_mqtt_only_and_ingest_is_nats_only(centre: NatsCluster) -> None:
    async def nats_login(user: str, password: str) -> None:
        nc = await nats.connect(
            servers=centre.urls[:1],
            user=user,
            password=password,
            allow_reconnect=False,
            connect_timeout=2,
            max_reconnect_attempts=0,
        )
        await nc.close()

    with pytest.raises(NatsError, match="Authorization Violation"):
        asyncio.run(nats_login(SITE, PASSWORDS[SITE]))
    asyncio.run(nats_login("ingest", INGEST_PASSWORD))  # the same door lets ingest in
    client = Mqtt(centre.mqtt_ports[0], "ingest", INGEST_PASSWORD, "ingest-over-mqtt")
    try:
        assert client.connect().is_failure
    finally:
        client.close()


# --- the renderers refuse what would not work ---------------------------------------------


GOOD = {"site": SITE, "addresses": ["n1.hq:8883"], "password": "pw-123456789", "cert_dir": "/c"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"site": "branch 1"}, "not valid"),
        ({"site": "-branch"}, "not valid"),
        ({"site": "b" * 65}, "not valid"),
        ({"site": "branch.1"}, "has a '.'"),
        ({"addresses": ["n1.hq"]}, "not host:port"),
        ({"addresses": ["n1.hq:"]}, "not host:port"),
        ({"addresses": ["[::1]:8883"]}, "not host:port"),
        ({"addresses": ["n1.hq:70000"]}, "1-65535"),
        ({"addresses": []}, "at least one"),
        ({"addresses": ["n1.hq:8883", "n1.hq:8883"]}, "twice"),
        ({"password": ""}, "empty"),
        ({"password": "two words"}, "spaces"),
        ({"cert_dir": "relative/dir"}, "absolute"),
        ({"prefix": "bank/lobbywatch"}, "one level"),
        ({"prefix": "bank.1"}, "one level"),
        ({"prefix": ""}, "one level"),
    ],
)
def test_render_bridge_refuses_bad_input(change: dict[str, object], message: str) -> None:
    args = {**GOOD, **change}
    with pytest.raises(render_bridge.BridgeError, match=message):
        render_bridge.render(tls=True, **args)


def test_render_bridge_with_tls_checks_the_centre_and_without_it_has_none() -> None:
    with_tls = render_bridge.render(tls=True, **GOOD)
    lab = render_bridge.render(tls=False, **GOOD)
    assert "bridge_cafile /c/central-ca.crt" in with_tls.splitlines()
    assert "bridge_cafile" not in lab and not TOKEN.search(with_tls + lab)
    assert "bridge_insecure true" not in with_tls
    assert f"topic lobbywatch/{SITE}/history/# out 1" in lab.splitlines()


def test_render_bridge_and_sites_to_users_take_another_topic_prefix() -> None:
    lines = render_bridge.render(tls=False, prefix="bank1", **GOOD).splitlines()
    for line in (f"topic bank1/{SITE}/history/# out 1", f"topic bank1/{SITE}/availability out 1",
                 f"topic bank1/{SITE}/central/receipts in 0"):  # fmt: skip
        assert line in lines
    assert not any("lobbywatch/" in line for line in lines if line.startswith("topic"))
    users = sites_to_users.render_users(PASSWORDS, INGEST_PASSWORD, STREAM, CONSUMER, "bank1")
    assert f'publish: {{allow: ["bank1.{SITE}.>"]}}' in users
    assert f'subscribe: {{allow: ["bank1.{SITE}.central.receipts"]}}' in users
    assert '"bank1.*.central.receipts"' in users and "lobbywatch." not in users
    with pytest.raises(sites_to_users.UsersError, match="topic prefix"):
        sites_to_users.render_users(PASSWORDS, INGEST_PASSWORD, STREAM, CONSUMER, "bank.1")


def test_render_bridge_script_writes_a_private_file(tmp_path: Path) -> None:
    out = tmp_path / "conf.d" / "lobbywatch_bridge.conf"
    env = {**os.environ, "CENTRAL_PW": "pw-123456789"}
    args = [sys.executable, str(RENDER_BRIDGE), "--site", SITE, "--central", "n1:8883"]
    done = subprocess.run(
        [*args, "--central", "n2:8883", "--password-env", "CENTRAL_PW", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert "address n1:8883 n2:8883" in out.read_text().splitlines()
    refused = subprocess.run(
        [*args, "--password-env", "NOT_SET_ANYWHERE", "--out", str(tmp_path / "x")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2 and "NOT_SET_ANYWHERE is not set" in refused.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name\nbranch-1\n", "'site' column"),
        ("site\nbranch.1\n", "not valid"),
        ("site\nbranch-1\nbranch-1\n", "twice"),
        ("site\ningest\n", "ingestion"),
        ("site,region\n", "no site"),
    ],
)
def test_sites_to_users_refuses_a_bad_sites_list(text: str, message: str) -> None:
    with pytest.raises(sites_to_users.UsersError, match=message):
        sites_to_users.read_sites(text)


def test_sites_to_users_generates_missing_passwords_and_keeps_existing(tmp_path: Path) -> None:
    sites = tmp_path / "sites.csv"
    sites.write_text("# branches\nsite,region\nbranch-1,north\nbranch-2,south\n")
    passwords = tmp_path / "passwords"
    passwords.mkdir()
    (passwords / "branch-1").write_text("kept-password-1\n")
    out = tmp_path / "lobbywatch-users.conf"
    command = [
        sys.executable,
        str(SITES_TO_USERS),
        "--sites",
        str(sites),
        "--password-dir",
        str(passwords),
        "--ingest-password-env",
        "INGEST_PW",
        "--out",
        str(out),
    ]
    env = {**os.environ, "INGEST_PW": INGEST_PASSWORD}
    missing = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "branch-2" in missing.stderr and not out.exists()
    done = subprocess.run(
        [*command, "--generate"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    generated = (passwords / "branch-2").read_text().strip()
    assert len(generated) >= 32 and stat.S_IMODE((passwords / "branch-2").stat().st_mode) == 0o600
    users = out.read_text()
    assert '"kept-password-1"' in users and f'"{generated}"' in users
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"routes": []}, "needs routes"),
        ({"routes": ["n2"]}, "not host:port"),
        ({"route_password": "short"}, "route password"),
        ({"route_password": "has@an-at-sign"}, "route password"),
        ({"name": "n.1"}, "node name"),
    ],
)
def test_render_node_refuses_bad_input(change: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "name": "n1",
        "routes": ["n2:6222"],
        "route_password": ROUTE_PASSWORD,
    }
    args.update(change)
    with pytest.raises(render_node.NodeError, match=message):
        render_node.render(**args)


def test_render_node_with_tls_has_it_for_clients_and_mqtt() -> None:
    text = render_node.render("n1", ["n2:6222", "n3:6222"], ROUTE_PASSWORD)
    assert text.count('cert_file: "/etc/nats-server/certs/server.crt"') == 2
    assert "stream_replicas: 3" in text and not TOKEN.search(text)
    lab = render_node.render("n1", ["n2:6222"], ROUTE_PASSWORD, tls=False)
    assert "cert_file" not in lab and "stream_replicas: 3" in lab


def test_central_yaml_example_loads() -> None:
    config = load_central_config(
        REPO / "deploy" / "central" / "central.yaml.example",
        {
            "LOBBYWATCH_CENTRAL_DSN": "postgresql://lobbywatch@db/lobbywatch",
            "LOBBYWATCH_NATS_PASSWORD": INGEST_PASSWORD,
            "LOBBYWATCH_CENTRAL_KEY_HQ": "hq-key",
        },
    )
    assert config.broker.user == "ingest" and config.broker.password == INGEST_PASSWORD
    assert (config.broker.stream, config.broker.consumer) == (STREAM, CONSUMER)
    assert config.sites_of(["north"]) == frozenset({"branch-1", "branch-2"})


# --- units and containers -------------------------------------------------------------------

CENTRAL = REPO / "deploy" / "central"
UNITS = ["lobbywatch-central-ingest@.service", "lobbywatch-central-api.service"]


def staged_unit(tmp_path: Path, unit: str) -> Path:
    """The unit with /opt/lobbywatch/current pointing at this checkout's lobbywatch; a template
    unit as its instance @1 (systemd-analyze checks instances, not templates)."""
    prefix = tmp_path / "opt" / "lobbywatch" / "current" / "bin"
    prefix.mkdir(parents=True, exist_ok=True)
    if not (prefix / "lobbywatch").exists():
        (prefix / "lobbywatch").symlink_to(Path(sys.executable).parent / "lobbywatch")
    text = (CENTRAL / "systemd" / unit).read_text()
    path = tmp_path / unit.replace("@.", "@1.")
    path.write_text(text.replace("/opt/lobbywatch/current", str(prefix.parent)))
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", UNITS)
def test_units_pass_systemd_analyze_verify_and_security(tmp_path: Path, unit: str) -> None:
    path = staged_unit(tmp_path, unit)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    # verify only warns about unknown keys and bad values: any output is a finding.
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if "--offline" in security.stderr and "unrecognized" in security.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis")
    assert security.returncode == 0, security.stdout[-2000:]


@pytest.mark.parametrize("unit", UNITS)
def test_units_run_lobbywatch_central_with_secrets_from_a_file(unit: str) -> None:
    text = (CENTRAL / "systemd" / unit).read_text()
    command = "ingest" if "ingest" in unit else "api"
    assert (
        f"ExecStart=/opt/lobbywatch/current/bin/lobbywatch central {command} "
        "--config ${LOBBYWATCH_CENTRAL_CONFIG}" in text.splitlines()
    )
    for line in ("EnvironmentFile=/etc/lobbywatch/central.env", "User=lobbywatch",
                 "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict"):  # fmt: skip
        assert line in text.splitlines(), f"{unit} lacks {line}"
    # The example secrets file has every variable the example config uses.
    env = dict(
        line.split("=", 1)
        for line in (CENTRAL / "central.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    config = load_central_config(CENTRAL / "central.yaml.example", env)
    assert config.broker.password == env["LOBBYWATCH_NATS_PASSWORD"]


def test_compose_runs_three_nats_nodes_postgres_two_ingesters_and_the_api() -> None:
    compose = yaml.safe_load((CENTRAL / "compose.yaml").read_text())
    services = compose["services"]
    nats_nodes = [s for s in services.values() if s.get("image") == "nats:2.9"]
    assert len(nats_nodes) == 3
    assert len({tuple(s["volumes"]) for s in nats_nodes}) == 3  # each its own config and store
    assert services["postgres"]["image"].startswith("postgres:")
    ingest = [s for s in services.values() if s.get("command", [None])[:2] == ["central", "ingest"]]
    assert len(ingest) == 2 and services["api"]["command"][:2] == ["central", "api"]
    for service in [*ingest, services["api"]]:
        assert (REPO / service["build"]["dockerfile"]).is_file()
        assert service["build"]["context"] == "../.."
    dockerfile = (CENTRAL / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.M):
        assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    assert re.search(r"^USER lobbywatch$", dockerfile, re.M)


# --- the same over TLS, as a bank runs it -------------------------------------------------


def make_certs(directory: Path) -> Path:
    """A CA and a server certificate for localhost and 127.0.0.1, in the files the templates
    name: ca.crt, server.crt and server.key for NATS, central-ca.crt for the bridge."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from tests.certificates import certificate, name, write_key

    directory.mkdir(parents=True)
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = certificate("test head-office CA", ca_key, name("test head-office CA"), ca_key,
                     ca=True, extensions=[])  # fmt: skip
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    server = certificate("localhost", server_key, ca.subject, ca_key, ca=False,
                         extensions=[san, eku])  # fmt: skip
    pem = serialization.Encoding.PEM
    for file in ("ca.crt", "central-ca.crt"):
        (directory / file).write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    write_key(server_key, directory / "server.key")
    return directory


def test_over_tls_the_bridge_and_the_ingestion_check_the_centres_certificate(
    tmp_path: Path,
) -> None:
    pytest.importorskip("cryptography")
    certs = make_certs(tmp_path / "certs")
    tls = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    with (
        running_centre(tmp_path / "centre", certs, tls) as cluster,
        # Up once the bridge is connected: TLS to a node, its certificate checked.
        running_branch(cluster, tmp_path / "branch", certs) as broker,
    ):
        device = Mqtt(broker.port, None, None, "lobbywatch-branch-1")
        assert not device.connect().is_failure
        try:
            device.publish(f"lobbywatch/{SITE}/history/alerts", b'{"v": 1}')
        finally:
            device.close()
        assert drain(cluster, 1, tls) == [(f"lobbywatch.{SITE}.history.alerts", b'{"v": 1}')]


def test_receipts_come_back_to_the_branch_and_only_to_it(
    centre: NatsCluster, branch: Broker
) -> None:
    """The centre's receipts (central/ingest.py publishes them as the ingest user) reach the
    device through the bridge's `in` topic; a branch's account cannot read another's."""
    got: list[tuple[str, bytes]] = []
    subscribed, arrived = threading.Event(), threading.Event()
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="feed", protocol=mqtt.MQTTv311)
    device.on_connect = lambda c, *_: c.subscribe(f"lobbywatch/{SITE}/central/receipts", qos=0)
    device.on_subscribe = lambda *_: subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append((message.topic, message.payload))
        arrived.set()

    device.on_message = on_message
    device.connect("127.0.0.1", branch.port)
    device.loop_start()
    prying = Mqtt(centre.mqtt_ports[0], SITE, PASSWORDS[SITE], "prying")
    denied = threading.Event()
    prying.client.on_subscribe = lambda _c, _u, _m, codes, _p: (
        denied.set() if all(c.is_failure for c in codes) else None
    )
    try:
        assert subscribed.wait(10)
        assert not prying.connect().is_failure
        prying.client.subscribe(f"lobbywatch/{OTHER}/central/receipts", qos=0)
        assert denied.wait(10), "a branch may read another branch's receipts"

        async def send() -> None:
            async with as_ingest(centre.urls) as (nc, _):
                for _ in range(50):  # until the bridge's subscription has reached every node
                    await nc.publish(f"lobbywatch.{SITE}.central.receipts", b'{"v": 1}')
                    await nc.flush()
                    if arrived.is_set():
                        return
                    await asyncio.sleep(0.2)

        asyncio.run(send())
        assert arrived.is_set(), "no receipt reached the branch"
        assert got[0] == (f"lobbywatch/{SITE}/central/receipts", b'{"v": 1}')
    finally:
        prying.close()
        device.disconnect()
        device.loop_stop()
