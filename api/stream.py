"""The live alert stream (`GET /v1/alerts/stream`, Server-Sent Events; docs/handheld.md).

The API is another process than the service that decides alerts, so it learns of changes from
the store: one watcher per app polls the site's alert version (an indexed MAX) every POLL_S and
the zones' live counts every ZONES_POLL_S, in a thread of its own, and wakes the streams; a
stream then reads what changed since the version it sent. Nothing is queued per client: a slow
client is sent the newest states when it is ready (each alert's latest state is all it needs),
and one that stops reading for SEND_TIMEOUT_S is dropped, so no client can pile up memory.

sse-starlette would do the framing, but its current releases need Python 3.11 and the device
runs 3.10 (JetPack 6); the framing is a few lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.to_thread
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from edge.alerts.state import AlertState

log = logging.getLogger("lobbywatch.api.stream")

POLL_S = 0.25
ZONES_POLL_S = 1.0
#: The zones are sent at least this often, changed or not (docs/handheld.md).
ZONES_EVERY_S = 10.0
HEARTBEAT_S = 15.0
# How often a stream asks whether its credential still admits it: a revoked phone's stream ends
# within this (its reconnect is then refused).
RECHECK_S = 5.0
#: A client that has not taken an event for this long is gone or stuck: its stream ends.
SEND_TIMEOUT_S = 30.0
#: A Last-Event-ID further behind than this many changed alerts gets a snapshot instead.
REPLAY_MAX = 200
#: What EventSource waits before reconnecting, in milliseconds.
RETRY_MS = 2000


def event(name: str, data: Any, event_id: int | None = None) -> bytes:
    """One SSE event; `data` as one line of JSON (JSON escapes any newline in it)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{head}event: {name}\ndata: {body}\n\n".encode()


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


@dataclass
class _Subscriber:
    wake: Callable[[], None]


@dataclass
class StoreWatch:
    """Polls the store for the streams of one app, in a thread that runs while any listens.

    `read_version` answers the site's alert version; `read_zones` the zones as the stream
    sends them (called every ZONES_POLL_S). Read `version`, `zones` and `zones_seq` (grows with
    each change of the zones) after a wake-up."""

    read_version: Callable[[], int]
    read_zones: Callable[[], list[dict[str, Any]]]
    poll_s: float = POLL_S
    zones_poll_s: float = ZONES_POLL_S
    version: int = -1
    zones: list[dict[str, Any]] | None = None
    zones_seq: int = 0
    _subscribers: list[_Subscriber] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _failures: int = 0

    def subscribe(self, wake: Callable[[], None]) -> _Subscriber:
        """Call `wake` (from the watcher's thread) whenever the version or the zones change."""
        subscriber = _Subscriber(wake)
        with self._lock:
            self._subscribers.append(subscriber)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alert-watch", daemon=True)
                self._thread.start()
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def poll_once(self) -> bool:
        """Read the store now; True when something changed (callers in tests, and _run)."""
        changed = False
        version = self.read_version()
        if version != self.version:
            self.version, changed = version, True
        return changed

    def _run(self) -> None:
        next_zones = 0.0
        while True:
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    return
                subscribers = list(self._subscribers)
            changed = False
            try:
                changed = self.poll_once()
                if time.monotonic() >= next_zones:
                    next_zones = time.monotonic() + self.zones_poll_s
                    zones = self.read_zones()
                    if zones != self.zones:
                        self.zones, self.zones_seq, changed = zones, self.zones_seq + 1, True
                self._failures = 0
            except Exception as exc:  # a busy or missing store: the streams wait, then go on
                self._failures += 1
                if self._failures == 1 or self._failures % 240 == 0:
                    log.warning("alert stream: cannot read the store (%s); retrying", exc)
            if changed:
                for subscriber in subscribers:
                    subscriber.wake()
            time.sleep(self.poll_s)


class EventStream(Response):
    """A text/event-stream response fed by `events`. It ends when the client disconnects, when
    `stopping()` turns true (the server shuts down: uvicorn would otherwise wait for the
    endless response), or when a send stalls past SEND_TIMEOUT_S."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[bytes, None], stopping: Callable[[], bool]) -> None:
        super().__init__(
            headers={
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a reverse proxy must not hold events back
            },
            media_type=self.media_type,
        )
        # Endless: no Content-Length (Response puts one for its empty body).
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._events = events
        self._stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with anyio.create_task_group() as group, aclosing(self._events) as events:

            async def disconnected() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()  # nobody to send anything to any more

            async def stopping(scope: anyio.CancelScope) -> None:
                while not self._stopping():
                    await anyio.sleep(0.5)
                scope.cancel()

            group.start_soon(disconnected)
            with anyio.CancelScope() as sending:
                group.start_soon(stopping, sending)
                async for chunk in events:
                    with anyio.move_on_after(SEND_TIMEOUT_S) as timer:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if timer.cancelled_caught:
                        log.info("alert stream: a client took nothing for %.0f s: dropped",
                                 SEND_TIMEOUT_S)  # fmt: skip
                        group.cancel_scope.cancel()  # closed unfinished: it is not reading
                        return
            with anyio.move_on_after(1.0):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await anyio.to_thread.run_sync(function, *args)


class Feed(Protocol):
    """What a stream reads (api/alert_state.py's AlertFeed); called in a worker thread."""

    def version(self) -> int: ...

    def zones(self) -> list[dict[str, Any]]: ...

    def open_set(self, zones: list[dict[str, Any]] | None = None) -> dict[str, Any]: ...

    def changed_since(
        self, version: int, limit: int, zones: list[dict[str, Any]] | None = None
    ) -> Sequence[AlertState] | None: ...

    def local_now(self) -> str | None: ...


def last_event_id(value: str | None) -> int | None:
    """The version a reconnecting client saw last; None when it sent none (or nonsense)."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


async def alert_events(
    feed: Feed,
    watch: StoreWatch,
    last_seen: int | None,
    *,
    admitted: Callable[[], bool] = lambda: True,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[bytes, None]:
    """The events of one stream: a snapshot (or, for a Last-Event-ID the store can catch up
    from, the alerts changed since), the zones, then each change as it comes; until
    `admitted` (asked every RECHECK_S) says the credential no longer admits the stream."""
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:  # the watcher's thread
        with contextlib.suppress(RuntimeError):  # the loop closed: the stream is gone
            loop.call_soon_threadsafe(woken.set)

    subscriber = watch.subscribe(wake)
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        zones = watch.zones if watch.zones is not None else await in_thread(feed.zones)
        current = await in_thread(feed.version)
        replay = None
        if last_seen is not None and last_seen <= current:
            replay = await in_thread(feed.changed_since, last_seen, REPLAY_MAX, zones)
        sent = -1
        if replay is None:
            snapshot = await in_thread(feed.open_set, zones)
            sent = snapshot["version"]
            yield event("snapshot", snapshot, sent)
        else:
            assert last_seen is not None
            sent = last_seen
            for state in replay:
                sent = max(sent, state.version)
                yield event("alert", state.as_dict(), state.version)
        yield event("zones", {"at": feed.local_now(), "zones": zones}, sent)
        zones_seq, now = watch.zones_seq, clock()
        next_zones, last_sent, next_check = now + ZONES_EVERY_S, now, now + RECHECK_S
        while True:
            if clock() >= next_check:
                if not await in_thread(admitted):
                    return  # revoked: the reconnect gets the 401 that logs the phone out
                next_check = clock() + RECHECK_S
            timeout = min(next_zones, last_sent + HEARTBEAT_S, next_check) - clock()
            with anyio.move_on_after(max(0.0, timeout)):
                await woken.wait()
            woken.clear()
            sent_before = sent
            if watch.version > sent:
                changed = await in_thread(feed.changed_since, sent, REPLAY_MAX, watch.zones)
                if changed is None:
                    snapshot = await in_thread(feed.open_set, watch.zones)
                    sent = snapshot["version"]
                    yield event("snapshot", snapshot, sent)
                else:
                    for state in changed:
                        sent = max(sent, state.version)
                        yield event("alert", state.as_dict(), state.version)
            elif 0 <= watch.version < sent:  # the store was replaced: start over
                snapshot = await in_thread(feed.open_set, watch.zones)
                sent = snapshot["version"]
                yield event("snapshot", snapshot, sent)
            now = clock()
            if watch.zones is not None and (watch.zones_seq != zones_seq or now >= next_zones):
                zones, zones_seq = watch.zones, watch.zones_seq
                yield event("zones", {"at": feed.local_now(), "zones": zones}, sent)
                next_zones, last_sent = now + ZONES_EVERY_S, now
            elif sent != sent_before:
                last_sent = now
            if now - last_sent >= HEARTBEAT_S:
                yield comment("heartbeat")
                last_sent = now
    finally:
        watch.unsubscribe(subscriber)
