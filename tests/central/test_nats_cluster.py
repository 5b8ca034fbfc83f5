"""The central broker as it runs (docs/central.md, "Topology"): a real 3-node NATS cluster,
one R3 stream on `lobbywatch.>`, one node lost without losing a message, and the MQTT
listener the device bridges use turning `lobbywatch/<site>/x/y` into `lobbywatch.<site>.x.y`.

nats-py is asyncio; each test runs its scenario with asyncio.run (the project has no asyncio
test plugin), every wait bounded and on a condition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TypeVar

import nats
import paho.mqtt.client as mqtt
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from paho.mqtt.enums import CallbackAPIVersion

from tests.central.nats_cluster import NatsCluster, nats_cluster  # noqa: F401 (the fixture)
from tests.waiting import wait_for

T = TypeVar("T")


@asynccontextmanager
async def connected(servers: list[str]) -> AsyncIterator[tuple[NATS, JetStreamContext]]:
    """A NATS connection to `servers` (it fails over between them) and its JetStream."""
    nc = await nats.connect(
        servers=servers, connect_timeout=2, reconnect_time_wait=0.1, max_reconnect_attempts=-1
    )
    try:
        yield nc, nc.jetstream(timeout=2)
    finally:
        await nc.close()


async def fresh_stream(js: JetStreamContext, name: str) -> None:
    """The centre's stream, R3 on every branch's subjects, new and empty. The cluster is shared
    by the session's tests and two streams may not overlap on subjects, so an earlier test's
    is deleted first; each test names its own, because nats-server 2.9 restarting a node that
    held a deleted stream of the same name finds a "duplicate assignment" and never reports
    the new one current."""
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith("LOBBYWATCH"):
            with suppress(NotFoundError):
                await js.delete_stream(info.config.name)
    await js.add_stream(StreamConfig(name=name, subjects=["lobbywatch.>"], num_replicas=3))


async def until(what: str, attempt: Callable[[], Awaitable[T]], timeout: float = 15.0) -> T:
    """Retry `attempt` until it returns a truthy value without raising (a node's failover is
    a matter of seconds, not of one try); fail with the last error after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = await attempt()
            if value:
                return value
        except Exception as exc:  # any error of a node in failover is retried
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout} s (last error: {last!r})")


async def publish_once(js: JetStreamContext, subject: str, payload: bytes) -> int:
    """Publish with the payload as its message id, retried through a failover: JetStream
    drops the retry of a message it already stored, so a retry can never make a duplicate."""

    async def attempt() -> int:
        ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": payload.decode()})
        return ack.seq

    return await until(f"publish {payload!r}", attempt)


async def fetch_all(js: JetStreamContext, stream: str, durable: str, count: int) -> list[bytes]:
    """`count` messages from the durable pull consumer, each acknowledged once received."""
    sub = await until(
        "pull subscription", lambda: js.pull_subscribe("lobbywatch.>", durable, stream=stream)
    )
    got: list[bytes] = []

    async def more() -> bool:
        for msg in await sub.fetch(count - len(got), timeout=1):
            await msg.ack_sync()
            got.append(msg.data)
        return len(got) >= count

    await until(f"{count} messages on {durable}", more)
    return got


def test_a_message_published_to_one_node_is_consumed_from_another(
    nats_cluster: NatsCluster,  # noqa: F811
) -> None:
    stream = "LOBBYWATCH_ONE"
    first, second = nats_cluster.urls[0], nats_cluster.urls[1]

    async def scenario() -> None:
        async with connected([first]) as (_, js_first), connected([second]) as (_, js_second):
            await fresh_stream(js_first, stream)
            info = await js_second.stream_info(stream)
            assert info.config.num_replicas == 3
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2

            await publish_once(js_first, "lobbywatch.branch-1.history.intervals", b"interval-1")
            got = await fetch_all(js_second, stream, "ingest", 1)
            assert got == [b"interval-1"]

    asyncio.run(scenario())


def test_losing_a_node_loses_nothing_and_the_node_catches_up(
    nats_cluster: NatsCluster,  # noqa: F811
) -> None:
    stream = "LOBBYWATCH_LOSS"
    subject = "lobbywatch.branch-2.history.intervals"

    async def scenario() -> None:
        async with connected(nats_cluster.urls) as (_, js):
            await fresh_stream(js, stream)
            before = [f"before-{i}".encode() for i in range(20)]
            for payload in before:
                await publish_once(js, subject, payload)
            assert await fetch_all(js, stream, "ingest", 10) == before[:10]

            # The stream's leader is the node to lose: its followers must elect another.
            info = await js.stream_info(stream)
            assert info.cluster is not None and info.cluster.leader
            lost = next(
                i for i, n in enumerate(nats_cluster.nodes) if n.name == info.cluster.leader
            )
            survivors = [u for i, u in enumerate(nats_cluster.urls) if i != lost]
            nats_cluster.kill(lost)

        try:
            async with connected(survivors) as (_, js):
                after = [f"after-{i}".encode() for i in range(20)]
                for payload in after:
                    await publish_once(js, subject, payload)
                rest = await fetch_all(js, stream, "ingest", 30)
                assert rest == before[10:] + after, "lost, duplicated or reordered"
                info = await js.stream_info(stream)
                assert info.state.messages == 40
                assert info.cluster is not None
                assert info.cluster.leader != nats_cluster.nodes[lost].name
        finally:
            nats_cluster.restart(lost)

        # Back on its own store, the node fetches from its peers what it missed.
        node = nats_cluster.nodes[lost]

        def local_messages() -> int:
            jsz = node.monitor("/jsz?accounts=true&streams=true") or {}
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream:
                        return int(detail["state"]["messages"])
            return 0

        wait_for(lambda: local_messages() == 40, 20, f"{node.name}'s replica holding all 40")

        async def replica_current() -> bool:
            info = await js_all.stream_info(stream)
            replicas = info.cluster.replicas if info.cluster else None
            return any(r.name == node.name and r.current for r in replicas or []) or (
                info.cluster is not None and info.cluster.leader == node.name
            )

        async with connected(nats_cluster.urls) as (_, js_all):
            await until(f"{node.name} current in the stream's group", replica_current)

    asyncio.run(scenario())


def test_an_mqtt_publish_lands_in_the_stream_as_a_nats_subject(
    nats_cluster: NatsCluster,  # noqa: F811
) -> None:
    stream = "LOBBYWATCH_MQTT"

    async def prepare() -> None:
        async with connected(nats_cluster.urls) as (_, js):
            await fresh_stream(js, stream)

    asyncio.run(prepare())

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bridge-branch-1", protocol=mqtt.MQTTv311
    )
    client.connect("127.0.0.1", nats_cluster.mqtt_ports[0])
    client.loop_start()
    try:
        wait_for(client.is_connected, 15, "the MQTT connection")
        info = client.publish("lobbywatch/branch-1/history/intervals", b'{"zone": "hall"}', qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), "no PUBACK from the NATS MQTT listener"
    finally:
        client.loop_stop()
        client.disconnect()

    async def check() -> None:
        # Read on another node than the one the MQTT client used.
        async with connected([nats_cluster.urls[2]]) as (_, js):
            msg = await js.get_last_msg(stream, "lobbywatch.branch-1.history.intervals")
            assert msg.data == b'{"zone": "hall"}'
            assert (await js.stream_info(stream)).state.messages == 1

    asyncio.run(check())
