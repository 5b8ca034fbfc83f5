"""Log lines that whoever can publish to the broker cannot forge or flood.

A handheld's ack carries text (who acknowledged, an alert id in the topic) that ends up in the
journal. A newline there would forge a second log line; 60 000 characters would bury the real
ones; 2000 bogus acks in a few seconds would bury everything. So what comes from outside is
escaped and shortened before it is logged (`shorten`), every formatted record is escaped again
(`SafeFormatter`, for what a call site forgot), and warnings that outsiders can trigger are
rate-limited per kind (`LogThrottle`), with a count of what was left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Characters of outside text kept in a log line.
MAX_LOGGED = 120
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
    0x85: "\\x85",
}


def escape(text: str) -> str:
    """Control characters and line separators as visible escapes."""
    return text.translate(_CONTROL)


def shorten(value: object, limit: int = MAX_LOGGED) -> str:
    """Outside text fit for a log line: escaped, and cut with its full length said."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return escape(text)


class SafeFormatter(logging.Formatter):
    """Escapes control characters in the message (not in a traceback, which is ours)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class LogThrottle:
    """At most `burst` warnings of one kind per `window_s`; then one line a window saying how
    many were left out."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._burst = burst
        self._window = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[float, int, int]] = {}  # start, logged, suppressed

    def warning(self, kind: str, msg: str, *args: object) -> bool:
        """Log unless this kind is over its budget; True when logged."""
        now = self._clock()
        with self._lock:
            start, logged, suppressed = self._kinds.get(kind, (now, 0, 0))
            if now - start >= self._window:
                if suppressed:
                    self._log.warning("%d more like %r left out in the last %.0f s",
                                      suppressed, kind, now - start)  # fmt: skip
                start, logged, suppressed = now, 0, 0
            if logged < self._burst:
                self._kinds[kind] = (start, logged + 1, suppressed)
                emit = True
            else:
                self._kinds[kind] = (start, logged, suppressed + 1)
                emit = False
        if emit:
            self._log.warning(msg, *args)
        return emit
