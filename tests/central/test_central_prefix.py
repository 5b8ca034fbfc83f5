"""A centre whose branches use another mqtt.topic_prefix (central.yaml broker.topic_prefix):
its stream takes that prefix's subjects (an existing stream is moved over to them), what the
branches send under it is stored, and the receipts go back under it. Real NATS cluster and
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import nats
import psycopg
import pytest
from nats.aio.msg import Msg
from nats.js.errors import NoStreamResponseError

from central.config import CentralConfig
from central.ingest import Ingestor, ensure_stream, subjects
from central.messages import Rejected, parse
from central.simulate import Branch, encode
from central.store import Batch, CentralStore
from tests.central.nats_cluster import NatsCluster, nats_cluster
from tests.central.postgres import postgres_dsn, postgres_server

__all__ = ["nats_cluster", "postgres_dsn", "postgres_server"]  # fixtures, imported for pytest

SITE = "branch-p"
STREAM = "LOBBYWATCH_PREFIX"
AT = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


def config_for(dsn: str, cluster: NatsCluster, prefix: str | None) -> CentralConfig:
    broker = {"servers": cluster.urls, "stream": STREAM, "consumer": "prefix"}
    if prefix is not None:
        broker["topic_prefix"] = prefix
    return CentralConfig.model_validate({"database": {"dsn": dsn}, "broker": broker})


def test_the_subject_must_carry_the_centres_prefix() -> None:
    message = encode(Branch(SITE).interval(AT))
    parsed = parse(f"bank1.{SITE}.history.intervals", message, AT, Batch(), prefix="bank1")
    assert (parsed.site, parsed.kind) == (SITE, "intervals")
    with pytest.raises(Rejected, match=r"is not lobbywatch\.<site>\.history"):
        parse(f"bank1.{SITE}.history.intervals", message, AT, Batch())
    with pytest.raises(ValueError, match="topic_prefix"):
        broker = {"servers": ["nats://h:4222"], "topic_prefix": "bank/one"}
        CentralConfig.model_validate({"database": {"dsn": "x"}, "broker": broker})


def test_a_centre_with_another_prefix_stores_its_branches_and_answers_under_it(
    nats_cluster: NatsCluster, postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    nats_cluster.drop_streams()
    config = config_for(postgres_dsn, nats_cluster, "bank1")
    store = CentralStore(postgres_dsn)

    async def scenario() -> tuple[list[str], list[bytes]]:
        nc = await nats.connect(servers=nats_cluster.urls)
        js = nc.jetstream(timeout=5)
        # An earlier centre made the stream for the default prefix.
        await ensure_stream(js, config_for(postgres_dsn, nats_cluster, None).broker)
        receipts: list[bytes] = []

        async def on_receipt(message: Msg) -> None:
            receipts.append(message.data)

        await nc.subscribe(f"bank1.{SITE}.central.receipts", cb=on_receipt)
        stop = asyncio.Event()
        ingestor = Ingestor(config, store)
        task = asyncio.create_task(ingestor.run(stop))
        try:
            for _ in range(300):
                if ingestor.consuming:
                    break
                await asyncio.sleep(0.1)
            taken = (await js.stream_info(STREAM)).config.subjects or []
            for _ in range(100):  # the updated stream's leader may take a moment to answer
                try:
                    await js.publish(f"bank1.{SITE}.history.intervals",
                                     encode(Branch(SITE).interval(AT)))  # fmt: skip
                    break
                except nats.errors.Error:
                    await asyncio.sleep(0.1)
            # The old prefix is no longer the stream's: NATS says nobody takes it.
            with pytest.raises(NoStreamResponseError):
                await js.publish(f"lobbywatch.{SITE}.history.intervals", b"{}")
            for _ in range(300):
                if receipts:
                    break
                await asyncio.sleep(0.1)
            return list(taken), receipts
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await nc.close()

    try:
        taken, receipts = asyncio.run(scenario())
    finally:
        store.close()
    assert sorted(taken) == sorted(subjects("bank1"))
    assert "now takes" in caplog.text  # the stream moved to the new prefix, said so
    assert receipts, "no receipt under bank1"
    receipt = json.loads(receipts[0])
    assert (receipt["site"], receipt["intervals"]) == (SITE, [int(AT.timestamp()) + 900])
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM occupancy_intervals WHERE site = %s", (SITE,))
        assert row.fetchone() == (3,)
