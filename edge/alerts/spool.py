"""Alert decisions the store could not take, kept in memory until it can.

An alert needs no disk to be decided or published: when the store refuses a write (a full
disk), the write waits here, in order, and its messages are published from here meanwhile. Each
later write joins the queue behind it, so the store sees them in the order they were decided;
`flush` (called on every notifier tick) writes them once the store takes writes again, and the
publisher then records the PUBACKs it got meanwhile. What is here is lost if the process dies
before the store comes back: the log, the status line and health say how much is waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge.store import AlertRecord, OutboxMessage, Store, StoreWriteError

log = logging.getLogger("lobbywatch.alerts")

#: Writes kept at most; beyond it the oldest are dropped (and counted). A lobby raises a few
#: alerts an hour: this is days of a full disk.
LIMIT = 10_000


@dataclass(frozen=True)
class _Pending:
    write: Callable[[Store], object]
    messages: tuple[OutboxMessage, ...]
    record: AlertRecord | None
    key: str | None


class WriteSpool:
    def __init__(self, store: Store, limit: int = LIMIT) -> None:
        self.store = store
        self._limit = limit
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self.dropped = 0

    def write(
        self,
        write: Callable[[Store], object],
        messages: Sequence[OutboxMessage] = (),
        *,
        record: AlertRecord | None = None,
        key: str | None = None,
    ) -> bool:
        """Make the write now if nothing waits before it and the store takes it; else keep it.
        True when it is in the store. `record` is the alert the write creates (so it can be
        looked up before it is stored); `key` names the write for `waiting`."""
        with self._lock:
            if not self._pending:
                try:
                    write(self.store)
                    return True
                except StoreWriteError as exc:
                    log.error("alert writes kept in memory until the store takes writes again "
                              "(%s); their messages are published meanwhile", exc)  # fmt: skip
            self._pending.append(_Pending(write, tuple(messages), record, key))
            if len(self._pending) > self._limit:
                del self._pending[0]
                self.dropped += 1
            return False

    def flush(self) -> int:
        """Write what waits, in order, until the store refuses one; returns how many remain."""
        with self._lock:
            written = 0
            while self._pending:
                try:
                    self._pending[0].write(self.store)
                except StoreWriteError:
                    break
                del self._pending[0]
                written += 1
            if written and not self._pending:
                log.warning("the %d alert writes kept in memory are in the store", written)
            return len(self._pending)

    def waiting(self, key: str) -> bool:
        """Whether a write made with this key waits here."""
        with self._lock:
            return any(p.key == key for p in self._pending)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def messages(self) -> list[OutboxMessage]:
        """Messages of the waiting writes, in order: not in the store's outbox yet."""
        with self._lock:
            return [m for p in self._pending for m in p.messages]

    def record(self, alert_id: str) -> AlertRecord | None:
        """An alert that is only here so far."""
        with self._lock:
            for pending in self._pending:
                if pending.record is not None and pending.record.alert_id == alert_id:
                    return pending.record
        return None
