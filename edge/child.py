"""A child process kept running: the API beside the pipeline when `api.enabled` is set.

The API is its own process so either can crash or restart without the other; this only makes
`lobbywatch run` start it and bring it back, with a bounded backoff, when it dies.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence

log = logging.getLogger("lobbywatch.child")


class ChildProcess:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.command = list(command)
        self._min, self._max = min_backoff_s, max_backoff_s
        self._backoff = min_backoff_s
        self._clock = clock
        self._proc: subprocess.Popen[bytes] | None = None
        self._next_start = 0.0
        self._started_at = 0.0
        self.restarts = 0

    def start(self) -> None:
        self._proc = subprocess.Popen(self.command)
        self._started_at = self._clock()
        log.info("%s started (pid %d)", self.name, self._proc.pid)

    def poll(self) -> None:
        """Restart the child if it died and its backoff has passed; call periodically."""
        now = self._clock()
        if self._proc is not None:
            code = self._proc.poll()
            if code is None:
                if now - self._started_at > 60.0:
                    self._backoff = self._min  # it ran a while: the next failure starts afresh
                return
            log.error("%s exited with %s; restarting in %.0f s", self.name, code, self._backoff)
            self._proc = None
            self._next_start = now + self._backoff
            self._backoff = min(self._max, self._backoff * 2)
        if now >= self._next_start:
            self.restarts += 1
            self.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
