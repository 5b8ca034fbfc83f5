"""A child process kept running: the API beside the pipeline when `api.enabled` is set.

The API is its own process so either can crash or restart without the other; this makes
`lobbywatch run` start it, bring it back with a bounded backoff when it dies, and give up loudly
when it keeps dying (a port already in use fails the same way on every start: retrying forever
only hides it). The child's stderr comes through a pipe: every line is forwarded to this log,
and the last lines are kept so an exit can say why.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Literal

log = logging.getLogger("lobbywatch.child")

Phase = Literal["stopped", "running", "restarting", "failed"]

# A line that names a failure: log levels as Python's logging and uvicorn write them, a
# traceback's last line (OSError: ...), errno texts. Case-sensitive: uvicorn's logger is called
# "uvicorn.error" and writes its INFO lines under that name.
_ERROR_LINE = re.compile(
    r"\b(ERROR|CRITICAL|FATAL)\b|^\S*(Error|Exception)\b|\[Errno \d+\]|address already in use"
)
_WARNING_LINE = re.compile(r"\bWARNING\b")


@dataclass(frozen=True)
class ChildState:
    """What the supervisor knows about its child, for the status line and health.

    since: when the phase began, on the supervisor's monotonic clock (seconds); since_utc: the
    same moment as UTC wall time, for payloads. last_error: the last stderr line that names a
    failure (or the last line) of the latest exit; None while nothing has failed.
    """

    name: str
    phase: Phase
    pid: int | None
    restarts: int
    last_exit_code: int | None
    last_error: str | None
    since: float
    since_utc: datetime

    @property
    def ok(self) -> bool:
        return self.phase == "running"

    def describe(self) -> str:
        """One line: 'api: running (pid 12, 0 restarts)', 'api: failed: exit code 3: ...'."""
        if self.phase == "running":
            return f"{self.name}: running (pid {self.pid}, {self.restarts} restart(s))"
        if self.phase == "stopped":
            return f"{self.name}: stopped"
        why = describe_exit(self.last_exit_code)
        if self.last_error:
            why += f": {self.last_error}"
        return f"{self.name}: {self.phase} after {why}"


def describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def error_line(lines: Sequence[str]) -> str | None:
    """The line that says why a process failed: the last one naming an error, else the last."""
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line
    return lines[-1] if lines else None


class ChildProcess:
    """Start a command, restart it when it dies, stop restarting after too many failures.

    Backoff: min_backoff_s, doubled after each exit up to max_backoff_s, back to the minimum
    after the child ran healthy_after_s. Budget: max_failures exits within failure_window_s
    and the child is left down, in phase "failed" (seconds on the injected monotonic clock).
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        max_failures: int = 5,
        failure_window_s: float = 300.0,
        healthy_after_s: float = 60.0,
        stderr_lines: int = 20,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.name = name
        self.command = list(command)
        self._min, self._max = min_backoff_s, max_backoff_s
        self._backoff = min_backoff_s
        self._max_failures = max_failures
        self._window = failure_window_s
        self._healthy_after = healthy_after_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._tail: deque[str] = deque(maxlen=stderr_lines)
        self._failures: deque[float] = deque()
        self._next_start = 0.0
        self._started_at = 0.0
        self.restarts = 0
        self._phase: Phase = "stopped"
        self._since = clock()
        self._since_utc = wall_clock()
        self._last_exit: int | None = None
        self._last_error: str | None = None

    @property
    def state(self) -> ChildState:
        return ChildState(
            name=self.name,
            phase=self._phase,
            pid=self._proc.pid if self._proc is not None else None,
            restarts=self.restarts,
            last_exit_code=self._last_exit,
            last_error=self._last_error,
            since=self._since,
            since_utc=self._since_utc,
        )

    def stderr_tail(self) -> list[str]:
        """The child's last stderr lines (of the current or the latest run)."""
        with self._lock:
            return list(self._tail)

    def start(self) -> None:
        with self._lock:
            self._tail.clear()
        self._proc = subprocess.Popen(self.command, stderr=subprocess.PIPE)
        self._started_at = self._clock()
        self._set_phase("running")
        assert self._proc.stderr is not None  # stderr=PIPE
        self._reader = threading.Thread(
            target=self._forward, args=(self._proc.stderr,), name=f"{self.name}-stderr", daemon=True
        )
        self._reader.start()
        log.info("%s started (pid %d)", self.name, self._proc.pid)

    def poll(self) -> None:
        """Restart the child if it died and its backoff has passed; call periodically."""
        if self._phase == "failed":
            return
        now = self._clock()
        if self._proc is not None:
            code = self._proc.poll()
            if code is None:
                if now - self._started_at > self._healthy_after:
                    self._backoff = self._min  # it ran a while: the next failure starts afresh
                return
            if not self._exited(code, now):
                return  # out of restarts
        if now >= self._next_start:
            self.restarts += 1
            self.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._join_reader()
            self._proc = None
        if self._phase != "failed":  # keep the reason visible after shutdown
            self._set_phase("stopped")

    def _exited(self, code: int, now: float) -> bool:
        """Record an exit; True when the child is to be restarted, False when it is failed."""
        self._join_reader()  # the pipe closes with the process: its last lines are in
        self._proc = None
        self._last_exit = code
        self._last_error = error_line(self.stderr_tail())
        self._failures.append(now)
        while self._failures and self._failures[0] < now - self._window:
            self._failures.popleft()
        why = describe_exit(code) + (f": {self._last_error}" if self._last_error else "")
        if len(self._failures) >= self._max_failures:
            self._set_phase("failed")
            log.error(
                "%s exited (%s); %d failures within %.0f s: not restarting it again."
                " Last stderr lines:\n%s",
                self.name,
                why,
                len(self._failures),
                self._window,
                "\n".join(self.stderr_tail()) or "(none)",
            )
            return False
        log.error("%s exited (%s); restarting in %.0f s", self.name, why, self._backoff)
        self._set_phase("restarting")
        self._next_start = now + self._backoff
        self._backoff = min(self._max, self._backoff * 2)
        return True

    def _forward(self, stream: IO[bytes]) -> None:
        """Copy the child's stderr into this log, keeping the last lines (a reader thread)."""
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if not line:
                    continue
                with self._lock:
                    self._tail.append(line)
                if _ERROR_LINE.search(line):
                    level = logging.ERROR
                elif _WARNING_LINE.search(line):
                    level = logging.WARNING
                else:
                    level = logging.INFO
                log.log(level, "%s| %s", self.name, line)

    def _join_reader(self) -> None:
        # A grandchild holding the pipe open must not block the supervisor: bounded wait.
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None

    def _set_phase(self, phase: Phase) -> None:
        if phase != self._phase:
            self._since, self._since_utc = self._clock(), self._wall_clock()
        self._phase = phase
