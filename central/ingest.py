"""The ingestion service: the branches' messages from NATS JetStream into PostgreSQL.

docs/central.md, "Ingestion". Every instance fetches from one durable pull consumer, so
JetStream hands each message to one of them (the consumer group) and gives it to another when
it is not acked in time (an instance killed mid-batch). A batch is stored in one transaction and
acked only after its commit: a crash between the two makes a redelivery, which the store's
natural keys turn into nothing. A message the centre cannot read is acked and counted: left
unacked it would come back for ever and hold up the branch's later messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import nats
import psycopg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, BadRequestError, NotFoundError

from central.config import BrokerConfig, CentralConfig
from central.messages import Parsed, Rejected, parse
from central.store import Batch, BatchResult, CentralStore, Retention

log = logging.getLogger("lobbywatch.central.ingest")


#: What the stream takes: the device feed and availability, not the receipts going back.
def subjects(prefix: str) -> list[str]:
    """What the stream takes for the branches under `prefix` (broker.topic_prefix)."""
    return [f"{prefix}.*.history.*", f"{prefix}.*.availability"]


#: Seconds between partition upkeep and retention runs (every instance; they take a lock).
UPKEEP_S = 3600.0
#: Seconds a batch the database refused waits before it is delivered again.
RETRY_DELAY_S = 2.0
#: Rejected messages logged in full per status interval; the rest are counted.
REJECTS_LOGGED = 5


@dataclass
class IngestStats:
    """What this instance did since it started (the status line and the tests read it)."""

    messages: int = 0
    rejected: int = 0
    batches: int = 0
    failed_batches: int = 0
    receipts: int = 0
    new_rows: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("intervals", "alert_events", "camera_health", "queue_waits"), 0
        )
    )
    last_batch_at: float | None = None

    def add(self, result: BatchResult) -> None:
        for name in self.new_rows:
            self.new_rows[name] += getattr(result, name)


async def connect(broker: BrokerConfig, name: str) -> NATS:
    """A connection that fails over between every node and never gives up reconnecting."""
    tls = None
    if broker.ca_file is not None:
        tls = ssl.create_default_context(cafile=str(broker.ca_file))
    return await nats.connect(
        servers=broker.servers,
        user=broker.user,
        password=broker.password,
        tls=tls,
        name=name,
        connect_timeout=2,
        reconnect_time_wait=0.5,
        max_reconnect_attempts=-1,
    )


async def ensure_stream(js: JetStreamContext, broker: BrokerConfig) -> None:
    """The stream every branch's messages land in, created when missing (by whichever
    instance gets there first; another creating it at the same moment is no error)."""
    config = StreamConfig(
        name=broker.stream,
        subjects=subjects(broker.topic_prefix),
        num_replicas=broker.replicas,
        storage=StorageType.FILE,
        max_age=broker.max_age_days * 86400,
        duplicate_window=120,
    )
    try:
        info = await js.stream_info(broker.stream)
    except NotFoundError:
        pass
    else:
        if sorted(info.config.subjects or []) != sorted(config.subjects or []):
            # topic_prefix changed: the stream must take the new subjects, or the branches'
            # messages under it would be acked by NATS and kept nowhere.
            await js.update_stream(replace(info.config, subjects=config.subjects))
            log.warning("stream %s now takes %s (was %s)", broker.stream, config.subjects,
                        info.config.subjects)  # fmt: skip
        return
    try:
        await js.add_stream(config)
        log.info("created stream %s on %s (R%d)", broker.stream, config.subjects, broker.replicas)
    except BadRequestError:
        await js.stream_info(broker.stream)  # made by another instance meanwhile, or raise


def consumer_config(config: CentralConfig) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=config.broker.consumer,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=config.ingest.ack_wait_s,
        max_deliver=-1,
        max_ack_pending=config.ingest.batch * 4,
    )


class Ingestor:
    """One ingestion instance. `run(stop)` until `stop` is set; `stats` says what it did."""

    def __init__(
        self,
        config: CentralConfig,
        store: CentralStore,
        name: str = "lobbywatch-central-ingest",
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.prefix = config.broker.topic_prefix
        self.store = store
        self.name = name
        self.stats = IngestStats()
        self.consuming = False  # the stream and the consumer are there
        self._nc: NATS | None = None
        self._wall_clock = wall_clock
        self._clock = clock
        self._rejects_seen = self._rejects_logged = 0  # since the last status line
        self._next_upkeep = 0.0
        self._next_status = clock() + config.ingest.status_interval_s

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.store.migrate)
        nc = self._nc = await connect(self.config.broker, self.name)
        try:
            js = nc.jetstream(timeout=5)
            await self._until_ready(js, stop)
            sub = await js.pull_subscribe_bind(
                durable=self.config.broker.consumer, stream=self.config.broker.stream
            )
            log.info("%s: consuming %s as %s", self.name, self.config.broker.stream,
                     self.config.broker.consumer)  # fmt: skip
            self.consuming = True
            while not stop.is_set():
                await self._upkeep()
                try:
                    messages = await sub.fetch(self.config.ingest.batch, timeout=1)
                except (NatsTimeoutError, asyncio.TimeoutError):
                    continue
                except (ConnectionClosedError, NoServersError, APIError) as exc:
                    log.warning("%s: fetch failed (%s); retrying", self.name, exc)
                    await asyncio.sleep(0.5)
                    continue
                try:
                    await self.handle(messages)
                except nats.errors.Error as exc:  # an ack lost with its node: redelivered
                    log.warning("%s: batch not fully acked (%s); redelivered", self.name, exc)
        finally:
            await nc.close()

    async def _ensure_consumer(self, js: JetStreamContext) -> None:
        """The durable consumer every instance shares; one made earlier with other settings
        (another batch size) is used as it is, with a warning."""
        broker = self.config.broker
        try:
            await js.add_consumer(broker.stream, consumer_config(self.config))
        except BadRequestError as exc:
            await js.consumer_info(broker.stream, broker.consumer)  # there, or raise
            log.warning("%s: consumer %s exists with other settings (%s); using it", self.name,
                        broker.consumer, exc.description)  # fmt: skip

    async def _until_ready(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        """Create the stream and the consumer, retrying while the cluster elects its leaders (a node restarting
        as this instance starts answers 'no responders' or times out for a few seconds)."""
        while True:
            try:
                await ensure_stream(js, self.config.broker)
                await self._ensure_consumer(js)
                return
            except (APIError, NatsTimeoutError, asyncio.TimeoutError, nats.errors.Error) as exc:
                if stop.is_set():
                    raise
                log.warning("%s: stream %s not ready (%s); retrying", self.name,
                            self.config.broker.stream, exc)  # fmt: skip
                await asyncio.sleep(1)

    async def handle(self, messages: list[Msg]) -> None:
        """Parse, store in one transaction, then ack; nak the whole batch when the database
        refused it (down, restarting), to be delivered again after a pause."""
        batch, kept, parsed = Batch(), [], []
        for message in messages:
            try:
                received = _received(message)
                parsed.append(parse(message.subject, message.data, received, batch, self.prefix))
                kept.append(message)
            except Rejected as exc:
                self._reject(message, str(exc))
                await message.ack()
        try:
            result = await asyncio.to_thread(self.store.ingest, batch) if len(batch) else None
        except psycopg.OperationalError as exc:
            self.stats.failed_batches += 1
            log.warning("%s: the database refused a batch of %d (%s); redelivered in %.0f s",
                        self.name, len(kept), _first_line(exc), RETRY_DELAY_S)  # fmt: skip
            for message in kept:
                await message.nak(delay=RETRY_DELAY_S)
            await asyncio.sleep(RETRY_DELAY_S)
            return
        except psycopg.Error:
            await self._one_by_one(kept)  # a row the database will never take: find it
            return
        for message in kept:
            await message.ack()
        await self._send_receipts(parsed)
        self.stats.messages += len(kept)
        self.stats.batches += 1
        self.stats.last_batch_at = self._clock()
        if result is not None:
            self.stats.add(result)

    async def _send_receipts(self, parsed: list[Parsed]) -> None:
        """Tell each branch what the database now holds of what it sent (docs/central.md,
        "Receipts"): the device keeps a message until its receipt comes, because the broker's
        PUBACK does not prove the centre has it. Core NATS, at most once: a lost receipt only
        makes the device send again, which is stored once."""
        if self._nc is None:
            return
        for site, receipt in receipts(parsed).items():
            try:
                await self._nc.publish(f"{self.prefix}.{site}.central.receipts", receipt)
            except (ConnectionClosedError, nats.errors.Error) as exc:
                log.debug("%s: receipt for %s not sent (%s)", self.name, site, exc)
                return
        self.stats.receipts += len(parsed)

    async def _one_by_one(self, messages: list[Msg]) -> None:
        for message in messages:
            batch = Batch()
            one = parse(message.subject, message.data, _received(message), batch, self.prefix)
            try:
                result = await asyncio.to_thread(self.store.ingest, batch)
            except psycopg.OperationalError:
                await message.nak(delay=RETRY_DELAY_S)
                continue
            except psycopg.Error as exc:
                self._reject(message, f"the database refused it: {_first_line(exc)}")
                await message.ack()
                continue
            await message.ack()
            await self._send_receipts([one])
            self.stats.messages += 1
            self.stats.add(result)

    def _reject(self, message: Msg, why: str) -> None:
        self.stats.rejected += 1
        self._rejects_seen += 1
        if self._rejects_logged < REJECTS_LOGGED:
            self._rejects_logged += 1
            log.warning("%s: rejected a message on %s: %s", self.name, message.subject[:120], why)

    async def _upkeep(self) -> None:
        now = self._clock()
        if now >= self._next_status:
            self._next_status = now + self.config.ingest.status_interval_s
            s = self.stats
            left = self._rejects_seen - self._rejects_logged
            log.info("%s: %d messages stored, %d rejected%s, new rows %s",
                     self.name, s.messages, s.rejected,
                     f" ({left} not logged)" if left > 0 else "", s.new_rows)  # fmt: skip
            self._rejects_seen = self._rejects_logged = 0
        if now < self._next_upkeep:
            return
        self._next_upkeep = now + UPKEEP_S
        wall = self._wall_clock()
        retention = self.config.retention_days
        try:
            await asyncio.to_thread(self.store.ensure_partitions, wall)
            dropped = await asyncio.to_thread(
                self.store.purge,
                wall,
                Retention(retention.intervals, retention.alert_events, retention.health),
            )
        except psycopg.Error as exc:
            log.warning("%s: partition upkeep failed (%s); next try in an hour", self.name,
                        _first_line(exc))  # fmt: skip
            return
        if dropped:
            log.info("%s: dropped partitions past retention: %s", self.name, ", ".join(dropped))


def receipts(parsed: list[Parsed]) -> dict[str, bytes]:
    """One receipt per site of a stored batch: the keys of its messages, by kind."""
    by_site: dict[str, dict[str, list[Any]]] = {}
    for p in parsed:
        if p.key is None:
            continue  # availability: nothing the device waits for
        kinds = by_site.setdefault(
            p.site, {"intervals": [], "alerts": [], "queue": [], "cameras": []}
        )
        kinds[p.kind].append(p.key)
    return {
        site: json.dumps({"v": 1, "site": site, **kinds}, separators=(",", ":")).encode()
        for site, kinds in by_site.items()
    }


def _received(message: Msg) -> datetime:
    """When JetStream stored the message: the same on every redelivery."""
    try:
        stamp: Any = message.metadata.timestamp
    except Exception:  # not a JetStream message (a test publishing plain NATS)
        return datetime.now(timezone.utc)
    return stamp if isinstance(stamp, datetime) else datetime.now(timezone.utc)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def run_ingest(config: CentralConfig, instances: int = 1) -> None:
    """`lobbywatch central ingest`: run until SIGINT/SIGTERM."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stores = [CentralStore(config.database.dsn) for _ in range(instances)]
        try:
            ingestors = [Ingestor(config, s, name=f"ingest-{i + 1}") for i, s in enumerate(stores)]
            await asyncio.gather(*(ingestor.run(stop) for ingestor in ingestors))
        finally:
            for s in stores:
                s.close()

    asyncio.run(main())
