"""The service's watch on its own config file (docs/ui.md 5): a saved change is taken up without
a restart, an invalid one is not taken and said.

Polled from the service's main loop: every `every_s` seconds a stat (size, mtime, inode: cheap,
and an atomic rename shows as a new inode); only when that changed is the file read and its
sha256 compared, and only new bytes are loaded, with the loader and the checks `lobbywatch run`
starts with (edge/tools/preflight.py), so a config that could not start the service is not
taken by a running one either. A change that loads to the config already running (a comment,
a blank line) asks for no reload.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from edge.config import ConfigError, LobbyConfig, read_config

log = logging.getLogger("lobbywatch.config")

EVERY_S = 2.0
#: The error kept for health and the state file: the first issues, one line.
MAX_ERROR_CHARS = 1000

ConfigState = Literal["ok", "invalid", "restart_needed"]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def load_runnable(path: Path) -> LobbyConfig:
    """The file's config as `lobbywatch run` would accept it: valid, and runnable here (its
    models, files and sources found). Raises ConfigError."""
    from edge.tools.preflight import check_runnable

    config, source = read_config(path)
    problems = check_runnable(config, source)
    if problems:
        raise ConfigError(str(path), problems)
    return config


def one_line(error: ConfigError) -> str:
    """`N error(s): path (line L): message; ...`, bounded, for health and the state file."""
    text = f"{len(error.issues)} error(s): " + "; ".join(str(i) for i in error.issues)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


@dataclass(frozen=True)
class ConfigStatus:
    """Whether the file on disk is the config running. since: UTC, when this state began.
    invalid: the file does not load (the service keeps the config it has, and would not start
    from the file); restart_needed: it loads, but changes what only a start takes (the store,
    the site id)."""

    state: ConfigState
    since: datetime
    error: str | None = None
    reloads: int = 0  # changes taken in this process
    reloaded_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": self.since.isoformat(),
            "error": self.error,
            "reloads": self.reloads,
            "reloaded_at": None if self.reloaded_at is None else self.reloaded_at.isoformat(),
        }

    def describe(self) -> str:
        """The status line's part while the file is not the config running."""
        if self.state == "ok":
            return "config ok"
        what = "INVALID" if self.state == "invalid" else "changed, RESTART NEEDED"
        return f"config {what} since {self.since:%H:%M:%S}: {self.error}"


class ConfigWatch:
    """Polls `path`; poll() returns a new config to take, once, when the file changed to one
    that loads and differs from the running one. `running` is the config the service started
    with (the file's content at construction is taken as its source)."""

    def __init__(
        self,
        path: Path,
        running: LobbyConfig,
        *,
        load: Callable[[Path], LobbyConfig] = load_runnable,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.path = path
        self.running = running
        self._load = load
        self._every_s = every_s
        self._clock = clock
        self._wall = wall_clock
        self._signature = self._stat()
        self._digest = self._read_digest()
        self._next = clock() + every_s
        self.status = ConfigStatus("ok", wall_clock())

    def poll(self) -> LobbyConfig | None:
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self._every_s
        signature = self._stat()
        if signature == self._signature:
            return None
        self._signature = signature
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return None  # gone for a moment (an editor's rename), or touched without a change
        self._digest = digest
        try:
            config = self._load(self.path)
        except ConfigError as exc:
            self._set("invalid", one_line(exc))
            log.error("config %s changed but is not valid; still running the config it has:"
                      "\n%s", self.path, exc)  # fmt: skip
            return None
        if config == self.running:
            self._set("ok")
            return None
        return config

    def taken(self, config: LobbyConfig) -> None:
        """The service runs `config` now."""
        self.running = config
        now = self._wall()
        self.status = ConfigStatus("ok", now, reloads=self.status.reloads + 1, reloaded_at=now)

    def not_taken(self, why: str) -> None:
        """A valid change the service cannot take while it runs (the next start takes it)."""
        self._set("restart_needed", why)
        log.warning("config %s changed: %s; it takes effect at the next restart", self.path, why)

    def _set(self, state: ConfigState, error: str | None = None) -> None:
        current = self.status
        since = current.since if current.state == state else self._wall()
        if state == "ok" and current.state != "ok":
            log.info("config %s: the file is the running config again", self.path)
        self.status = ConfigStatus(state, since, error, current.reloads, current.reloaded_at)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_size, info.st_mtime_ns, info.st_ino

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None
