"""Browser logins with an API key (docs/ui.md 1): a random token in a cookie, mapped in memory.

A supervisor types the key once on /login; the browser then holds only a session token
(HttpOnly, so no script of the page reads it), never the key. The token maps, in this process's
memory only, to the key's principal and an absolute expiry: a restart logs everyone out, and
nothing about a session is written to disk. Expiry is measured on the monotonic clock (a wall
clock step neither ends a session early nor stretches it); the wall time of the expiry is kept
only to tell the page when it will have to log in again.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from api.auth import Principal

#: The cookie a browser login rides on (the handheld app's is api.handhelds.COOKIE_NAME).
SESSION_COOKIE = "lobbywatch_session"
#: Sessions kept at most; past it the oldest login is forgotten first, so a flood of logins
#: with a right key cannot exhaust memory.
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Session:
    """One login: who, and until when (the wall time for the page; the monotonic deadline
    decides)."""

    token: str = field(repr=False)
    principal: Principal
    expires_at: datetime  # UTC
    deadline: float  # monotonic seconds


class Sessions:
    """The API process's logins; thread-safe (routes run in a thread pool)."""

    def __init__(
        self,
        ttl_s: float,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s}")
        self.ttl_s = ttl_s
        self.clock = clock  # UTC wall time: expires_at
        self.monotonic = monotonic  # the expiry itself
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # oldest login first
        self._lock = threading.Lock()

    def open(self, principal: Principal) -> Session:
        """A new session for `principal`, lasting ttl_s from now whatever is done with it."""
        session = Session(
            token=secrets.token_urlsafe(32),
            principal=principal,
            expires_at=self.clock() + timedelta(seconds=self.ttl_s),
            deadline=self.monotonic() + self.ttl_s,
        )
        with self._lock:
            self._sessions[session.token] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session

    def lookup(self, token: str) -> Session | None:
        """The live session behind `token`; None for an unknown, forgotten or expired one (an
        expired one is forgotten on the way)."""
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if self.monotonic() >= session.deadline:
                del self._sessions[token]
                return None
            return session

    def close(self, token: str) -> bool:
        """Forget the session (logout); whether there was one."""
        with self._lock:
            return self._sessions.pop(token, None) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
