"""The broker configuration from deploy/mosquitto on a real Mosquitto.

deploy/mosquitto/broker.sh renders the configuration and the ACL and adds the users into
tmp_path, exactly as it does into /etc/mosquitto on a device; the test makes its own CA, server
and client certificates (cryptography), starts mosquitto on free loopback ports and checks with
MQTT v5 clients (paho): TLS only, nobody anonymous, wrong passwords refused, and the ACL: a device
writes only under its own site, a handheld reads alerts and writes only acks.
"""

from __future__ import annotations

import getpass
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

paho = pytest.importorskip("paho.mqtt.client")
x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from tests.certificates import certificate, name, write_key  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BROKER_SH = REPO / "deploy" / "mosquitto" / "broker.sh"
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None or shutil.which("mosquitto_passwd") is None,
    reason="mosquitto is not installed (apt-get install mosquitto; `make test` does it)",
)

SITE_A, SITE_B = "branch-042", "branch-043"
HANDHELD_PASSWORD = "handheld-password-1"
# A second handheld account of site A: the attacker of the client-id takeover tests.
MANAGER, MANAGER_PASSWORD = f"mgr-1@{SITE_A}", "manager-password-1"
# The client ids edge/mqtt.py and edge/handheld.py choose.
DEVICE_CLIENT_ID = f"lobbywatch-{SITE_A}"
HANDHELD_CLIENT_ID = f"handheld-{SITE_A}-anna"
MONITOR_PASSWORD = "monitor-password-12"


# --- a test PKI ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing of this broker's


def make_pki(directory: Path) -> Pki:
    """CA, a server certificate for localhost/127.0.0.1, a client certificate, another CA."""
    directory.mkdir(parents=True, exist_ok=True)

    def write_cert(cert: Any, name: str) -> Path:
        path = directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate(
        "lobbywatch test CA", ca_key, name("lobbywatch test CA"), ca_key, ca=True, extensions=[]
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    server_cert = certificate(
        "localhost",
        server_key,
        ca_cert.subject,
        ca_key,
        ca=False,
        extensions=[san, x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = certificate(
        SITE_A,
        client_key,
        ca_cert.subject,
        ca_key,
        ca=False,
        extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])],
    )
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = certificate(
        "someone else", other_key, name("someone else"), other_key, ca=True, extensions=[]
    )
    write_key(server_key, directory / "server.key")
    write_key(client_key, directory / "client.key")
    return Pki(
        ca=write_cert(ca_cert, "ca.crt"),
        server_cert=write_cert(server_cert, "server.crt"),
        server_key=directory / "server.key",
        client_cert=write_cert(client_cert, "client.crt"),
        client_key=directory / "client.key",
        other_ca=write_cert(other_ca, "other-ca.crt"),
    )


# --- a broker configured by deploy/mosquitto/broker.sh --------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_sh(auth_dir: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [
            "bash",
            str(BROKER_SH),
            "--dir",
            str(auth_dir),
            "--conf",
            str(auth_dir / "conf.d" / "lobbywatch.conf"),
            "--no-reload",
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@dataclass
class Broker:
    auth_dir: Path
    tls_port: int
    ws_port: int
    pki: Pki
    device_passwords: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self) -> None:
        conf = self.auth_dir / "mosquitto.conf"
        self.log = self.auth_dir / "mosquitto.log"
        # What Debian's /etc/mosquitto/mosquitto.conf does, plus a log the test can show.
        conf.write_text(
            f"user {getpass.getuser()}\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "persistence false\n"
            f"include_dir {self.auth_dir / 'conf.d'}\n"
        )
        self.process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}\n{self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.ws_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def configure_broker(tmp: Path, *, require_certificate: bool = False) -> Broker:
    auth = tmp / "mosquitto"
    tls_port, ws_port = free_port(), free_port()
    setup = [
        "setup",
        "--tls-port",
        str(tls_port),
        "--ws-port",
        str(ws_port),
        "--listen",
        "127.0.0.1",
    ]
    if require_certificate:
        setup.append("--require-certificate")
    broker_sh(auth, *setup)
    pki = make_pki(tmp / "pki")
    certs = auth / "certs"
    shutil.copy(pki.ca, certs / "ca.crt")
    shutil.copy(pki.server_cert, certs / "server.crt")
    shutil.copy(pki.server_key, certs / "server.key")
    passwords = {}
    for site in (SITE_A, SITE_B):
        password_file = tmp / f"{site}.password"
        broker_sh(auth, "add-device", site, "--generate", str(password_file))
        passwords[site] = password_file.read_text().strip()
        assert password_file.stat().st_mode & 0o077 == 0o040  # group-readable, nothing for others
    broker_sh(auth, "add-handheld", "anna", "--site", SITE_A, stdin=HANDHELD_PASSWORD + "\n")
    broker_sh(auth, "add-handheld", "mgr-1", "--site", SITE_A, stdin=MANAGER_PASSWORD + "\n")
    broker_sh(auth, "add-monitor", "it", "--all-sites", stdin=MONITOR_PASSWORD + "\n")
    return Broker(auth, tls_port, ws_port, pki, passwords)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = configure_broker(tmp_path_factory.mktemp("broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


# --- MQTT v5 clients ---------------------------------------------------------------------


@dataclass
class Client:
    client: Any
    connected: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)
    reason: Any = None
    session_present: bool = False
    disconnects: int = 0  # the broker closed this connection (not counting close())
    granted: list[Any] = field(default_factory=list)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, topic: str, payload: bytes, timeout: float = 5.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: (topic, payload) in self.messages, timeout)

    def subscribe(self, topic: str) -> list[Any]:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5), "no SUBACK"
        return self.granted

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)  # PUBACK: the broker has routed (or dropped) the message

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    broker: Broker,
    username: str | None,
    password: str | None,
    *,
    ca: Path | None = None,
    client_cert: tuple[Path, Path] | None = None,
    websockets: bool = False,
    wait: bool = True,
    client_id: str = "",
    session_expiry_s: int | None = None,
) -> Client:
    """session_expiry_s: a persistent session (clean start off) as edge/mqtt.py opens one."""
    transport = "websockets" if websockets else "tcp"
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, transport=transport
    )
    state = Client(client)
    context = ssl.create_default_context(cafile=str(ca or broker.pki.ca))
    if client_cert is not None:
        context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    client.tls_set_context(context)
    if username is not None:
        client.username_pw_set(username, password)

    def on_connect(_c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        state.reason = reason
        state.session_present = bool(flags.session_present)
        state.connected.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason != 0:  # 0: our own disconnect()
            state.disconnects += 1

    def on_subscribe(_c: Any, _u: Any, _mid: Any, granted: Any, _p: Any) -> None:
        state.granted = list(granted)
        state.subscribed.set()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        with state.arrived:
            state.messages.append((msg.topic, msg.payload))
            state.arrived.notify_all()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    port = broker.ws_port if websockets else broker.tls_port
    if session_expiry_s is None:
        client.connect("localhost", port, keepalive=30)
    else:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        client.connect("localhost", port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    if wait:
        assert state.connected.wait(5), "no CONNACK within 5 s"
    return state


@pytest.fixture
def clients(broker: Broker) -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for c in opened:
        c.close()


def device(broker: Broker, site: str, clients: list[Client]) -> Client:
    c = connect(broker, site, broker.device_passwords[site])
    assert not c.reason.is_failure, c.reason
    clients.append(c)
    return c


def handheld(broker: Broker, clients: list[Client], *, websockets: bool = False) -> Client:
    c = connect(broker, f"anna@{SITE_A}", HANDHELD_PASSWORD, websockets=websockets)
    assert not c.reason.is_failure, c.reason
    clients.append(c)
    return c


def topic(site: str, rest: str) -> str:
    return f"lobbywatch/{site}/{rest}"


# --- authentication and TLS --------------------------------------------------------------


def test_device_connects_over_tls_with_its_password(broker: Broker, clients: list[Client]) -> None:
    c = device(broker, SITE_A, clients)
    assert c.reason == 0


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), (SITE_A, "wrong-password-123"), ("nobody", "some-password-12")],
    ids=["anonymous", "wrong-password", "unknown-user"],
)
def test_clients_without_valid_credentials_are_refused(
    broker: Broker, clients: list[Client], username: str | None, password: str | None
) -> None:
    c = connect(broker, username, password)
    clients.append(c)
    assert c.reason.is_failure
    assert c.reason.value in (0x86, 0x87)  # bad user name or password / not authorized


def test_the_broker_listens_on_the_configured_ports_only(broker: Broker) -> None:
    # A listener option written above the first listener makes Mosquitto open a default
    # plain-text listener on 1883 as well.
    assert broker.log is not None
    opened = re.findall(r"Opening \S+ listen socket on port (\d+)", broker.log.read_text())
    assert {int(port) for port in opened} == {broker.tls_port, broker.ws_port}


def test_plain_mqtt_on_the_tls_port_gets_no_connack(broker: Broker) -> None:
    # A bare MQTT 3.1.1 CONNECT, no TLS: the broker expects a TLS ClientHello and hangs up.
    connect_packet = bytes.fromhex("101000044d5154540402003c000474657374")
    with socket.create_connection(("127.0.0.1", broker.tls_port), timeout=5) as sock:
        sock.sendall(connect_packet)
        try:
            reply = sock.recv(16)
        except (TimeoutError, ConnectionResetError):
            reply = b""
    assert not reply.startswith(b"\x20"), "the broker answered plain MQTT on its TLS port"


def test_a_client_that_trusts_another_ca_refuses_the_broker(broker: Broker) -> None:
    with pytest.raises(ssl.SSLError):
        connect(broker, SITE_A, broker.device_passwords[SITE_A], ca=broker.pki.other_ca)


# --- the ACL -------------------------------------------------------------------------------


def test_device_alert_reaches_the_handheld_and_the_ack_comes_back(
    broker: Broker, clients: list[Client]
) -> None:
    dev, hand = device(broker, SITE_A, clients), handheld(broker, clients)
    hand.subscribe(topic(SITE_A, "alerts"))
    dev.subscribe(topic(SITE_A, "alerts/+/ack"))
    dev.publish(topic(SITE_A, "alerts"), b'{"id": "a1"}')
    assert hand.wait_for(topic(SITE_A, "alerts"), b'{"id": "a1"}')
    ack = b'{"by": "anna", "status": "accepted"}'
    hand.publish(topic(SITE_A, "alerts/a1/ack"), ack)
    assert dev.wait_for(topic(SITE_A, "alerts/a1/ack"), ack)


def test_handheld_reads_occupancy_and_availability(broker: Broker, clients: list[Client]) -> None:
    dev, hand = device(broker, SITE_A, clients), handheld(broker, clients)
    hand.subscribe(topic(SITE_A, "zone/+/occupancy"))
    hand.subscribe(topic(SITE_A, "availability"))
    dev.publish(topic(SITE_A, "zone/waiting/occupancy"), b'{"people": 7}')
    dev.publish(topic(SITE_A, "availability"), b"online")
    assert hand.wait_for(topic(SITE_A, "zone/waiting/occupancy"), b'{"people": 7}')
    assert hand.wait_for(topic(SITE_A, "availability"), b"online")


def test_handheld_cannot_publish_alerts(broker: Broker, clients: list[Client]) -> None:
    dev, hand = device(broker, SITE_A, clients), handheld(broker, clients)
    dev.subscribe(topic(SITE_A, "#"))
    for forbidden in ("alerts", "supervisor/alerts", "zone/waiting/occupancy", "availability"):
        hand.publish(topic(SITE_A, forbidden), b"forged")
    # The broker handles one client's packets in order: the device's own sentinel, sent after
    # the forged messages were acknowledged, arrives after any of them would have.
    dev.publish(topic(SITE_A, "it/alerts"), b"sentinel")
    assert dev.wait_for(topic(SITE_A, "it/alerts"), b"sentinel")
    assert [m for m in dev.messages if m[1] == b"forged"] == []


def test_device_cannot_write_or_read_another_site(broker: Broker, clients: list[Client]) -> None:
    dev_a, dev_b = device(broker, SITE_A, clients), device(broker, SITE_B, clients)
    dev_b.subscribe(topic(SITE_B, "#"))
    dev_a.publish(topic(SITE_B, "alerts"), b"forged")
    dev_a.publish(topic(SITE_B, "alerts/x/ack"), b"forged")
    dev_a.publish("lobbywatch/elsewhere", b"forged")
    dev_b.publish(topic(SITE_B, "availability"), b"sentinel")
    assert dev_b.wait_for(topic(SITE_B, "availability"), b"sentinel")
    assert [m for m in dev_b.messages if m[1] == b"forged"] == []
    # Reading another site's alerts: the subscription is refused or delivers nothing.
    granted = dev_a.subscribe(topic(SITE_B, "alerts"))
    dev_b.publish(topic(SITE_B, "alerts"), b"private")
    dev_b.publish(topic(SITE_B, "availability"), b"sentinel-2")
    assert dev_b.wait_for(topic(SITE_B, "availability"), b"sentinel-2")
    time.sleep(0.2)
    assert (topic(SITE_B, "alerts"), b"private") not in dev_a.messages, granted


def test_device_announces_its_own_home_assistant_entities_only(
    broker: Broker, clients: list[Client]
) -> None:
    dev_a, dev_b = device(broker, SITE_A, clients), device(broker, SITE_B, clients)
    dev_a.subscribe(f"homeassistant/+/{SITE_A}/#")
    dev_b.subscribe(f"homeassistant/+/{SITE_B}/#")
    own = f"homeassistant/sensor/{SITE_A}/zone_waiting/config"
    dev_a.publish(own, b"announced")
    dev_a.publish(f"homeassistant/sensor/{SITE_B}/zone_waiting/config", b"forged")
    assert dev_a.wait_for(own, b"announced")
    dev_b.publish(f"homeassistant/sensor/{SITE_B}/zone_x/config", b"sentinel")
    assert dev_b.wait_for(f"homeassistant/sensor/{SITE_B}/zone_x/config", b"sentinel")
    assert [m for m in dev_b.messages if m[1] == b"forged"] == []


def test_handheld_cannot_read_another_site(broker: Broker, clients: list[Client]) -> None:
    dev_b, hand = device(broker, SITE_B, clients), handheld(broker, clients)
    hand.subscribe(topic(SITE_B, "alerts"))
    hand.subscribe(topic(SITE_A, "alerts"))
    dev_b.publish(topic(SITE_B, "alerts"), b"private")
    dev_a = device(broker, SITE_A, clients)
    dev_a.publish(topic(SITE_A, "alerts"), b"sentinel")
    assert hand.wait_for(topic(SITE_A, "alerts"), b"sentinel")
    assert (topic(SITE_B, "alerts"), b"private") not in hand.messages


def test_monitor_reads_every_site_and_writes_nothing(broker: Broker, clients: list[Client]) -> None:
    mon = connect(broker, "it@all", MONITOR_PASSWORD)
    clients.append(mon)
    assert not mon.reason.is_failure
    dev_b = device(broker, SITE_B, clients)
    mon.subscribe("lobbywatch/+/it/alerts")
    dev_b.subscribe(topic(SITE_B, "#"))
    dev_b.publish(topic(SITE_B, "it/alerts"), b"camera offline")
    assert mon.wait_for(topic(SITE_B, "it/alerts"), b"camera offline")
    mon.publish(topic(SITE_B, "alerts/x/ack"), b"forged")
    dev_b.publish(topic(SITE_B, "availability"), b"sentinel")
    assert dev_b.wait_for(topic(SITE_B, "availability"), b"sentinel")
    assert [m for m in dev_b.messages if m[1] == b"forged"] == []


def test_browser_handheld_over_secure_websockets(broker: Broker, clients: list[Client]) -> None:
    dev, hand = device(broker, SITE_A, clients), handheld(broker, clients, websockets=True)
    hand.subscribe(topic(SITE_A, "alerts"))
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 3600
    dev.client.publish(topic(SITE_A, "alerts"), b'{"id": "ws"}', qos=1, properties=props)
    assert hand.wait_for(topic(SITE_A, "alerts"), b'{"id": "ws"}')


def test_anonymous_websocket_client_is_refused(broker: Broker, clients: list[Client]) -> None:
    c = connect(broker, None, None, websockets=True)
    clients.append(c)
    assert c.reason.is_failure


# --- client ids are bound to accounts (use_username_as_clientid) ---------------------------


def persistent_device(broker: Broker, clients: list[Client]) -> Client:
    """The device as edge/mqtt.py connects: its client id, clean start off, a session expiry."""
    c = connect(
        broker,
        SITE_A,
        broker.device_passwords[SITE_A],
        client_id=DEVICE_CLIENT_ID,
        session_expiry_s=3600,
    )
    assert not c.reason.is_failure, c.reason
    clients.append(c)
    return c


@pytest.mark.parametrize("websockets", [False, True], ids=["mqtts", "wss"])
def test_a_handheld_using_the_device_client_id_cannot_disconnect_the_device(
    broker: Broker, clients: list[Client], websockets: bool
) -> None:
    dev = persistent_device(broker, clients)
    dev.subscribe(topic(SITE_A, "alerts/+/ack"))
    for attempt in range(5):
        attacker = connect(
            broker, MANAGER, MANAGER_PASSWORD, client_id=DEVICE_CLIENT_ID, websockets=websockets
        )
        clients.append(attacker)
        # Accepted as its own account (its session is keyed by its username) or refused:
        # either way it must not take the device's connection or session.
        attacker.publish(topic(SITE_A, f"alerts/t{attempt}/ack"), b"from the attacker")
        attacker.close()
        time.sleep(0.3)  # a takeover closes the device's socket at once
        assert dev.disconnects == 0, f"the device was disconnected on attempt {attempt + 1}"
        assert dev.client.is_connected()
        assert dev.wait_for(topic(SITE_A, f"alerts/t{attempt}/ack"), b"from the attacker")
    # The device's own session was not replaced: it still has its subscription, and its alert
    # still reaches a handheld.
    hand = handheld(broker, clients)
    hand.subscribe(topic(SITE_A, "alerts"))
    dev.publish(topic(SITE_A, "alerts"), b'{"id": "after"}')
    assert hand.wait_for(topic(SITE_A, "alerts"), b'{"id": "after"}')
    assert dev.disconnects == 0


def test_a_handheld_using_another_handhelds_client_id_cannot_disconnect_it(
    broker: Broker, clients: list[Client]
) -> None:
    anna = connect(
        broker,
        f"anna@{SITE_A}",
        HANDHELD_PASSWORD,
        client_id=HANDHELD_CLIENT_ID,
        session_expiry_s=3600,
    )
    clients.append(anna)
    attacker = connect(broker, MANAGER, MANAGER_PASSWORD, client_id=HANDHELD_CLIENT_ID)
    clients.append(attacker)
    time.sleep(0.3)
    assert anna.disconnects == 0 and anna.client.is_connected()


@pytest.mark.parametrize("who", ["device", "handheld"])
def test_the_persistent_session_survives_a_reconnect(
    broker: Broker, clients: list[Client], who: str
) -> None:
    """What the broker kept while the client was away arrives on reconnect, unsubscribed."""
    if who == "device":
        username, password = SITE_A, broker.device_passwords[SITE_A]
        client_id, kept, sender = DEVICE_CLIENT_ID, topic(SITE_A, "alerts/p1/ack"), "handheld"
    else:
        username, password = f"anna@{SITE_A}", HANDHELD_PASSWORD
        client_id, kept, sender = HANDHELD_CLIENT_ID, topic(SITE_A, "alerts"), "device"

    def session() -> Client:
        c = connect(broker, username, password, client_id=client_id, session_expiry_s=3600)
        assert not c.reason.is_failure, c.reason
        clients.append(c)
        return c

    first = session()
    first.subscribe(kept)
    first.close()
    other = handheld(broker, clients) if sender == "handheld" else device(broker, SITE_A, clients)
    other.publish(kept, b"while away")
    again = session()
    assert again.session_present
    assert again.wait_for(kept, b"while away")


# --- mutual TLS variant --------------------------------------------------------------------


def test_require_certificate_refuses_clients_without_one(tmp_path: Path) -> None:
    b = configure_broker(tmp_path, require_certificate=True)
    b.start()
    opened: list[Client] = []
    try:
        with_cert = connect(
            b, SITE_A, b.device_passwords[SITE_A], client_cert=(b.pki.client_cert, b.pki.client_key)
        )
        opened.append(with_cert)
        assert with_cert.reason == 0
        try:
            without = connect(b, SITE_A, b.device_passwords[SITE_A], wait=False)
            opened.append(without)
            # The broker ends the handshake (certificate required): no CONNACK arrives.
            refused = not without.connected.wait(2) or without.reason.is_failure
        except (ssl.SSLError, OSError):
            refused = True  # or the handshake fails inside connect()
        assert refused
    finally:
        for c in opened:
            c.close()
        b.stop()
