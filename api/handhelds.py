"""The API's way to the paired handhelds: the store's handheld tables, opened on first use.

Lookups read the table on every request, so a `lobbywatch handheld revoke` from another
process refuses the phone's very next request; nothing is cached but when last_seen_at was
last written.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime

from api.db import StoreAccess, StoreUnavailable
from edge.storage.handhelds import HandheldRegistry


class HandheldAccess:
    """api.auth.Handhelds over the site's store; StoreUnavailable (503) while it cannot open."""

    def __init__(self, store: StoreAccess, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock  # UTC wall time: codes' expiry, last_seen_at
        self._lock = threading.Lock()
        self._registry: HandheldRegistry | None = None

    def registry(self) -> HandheldRegistry:
        with self._lock:
            if self._registry is None:
                self._store.store()  # creates the file and checks its site first
                try:
                    self._registry = HandheldRegistry(self._store.path, self._clock)
                except sqlite3.Error as exc:
                    raise StoreUnavailable(
                        f"cannot open the handhelds in {self._store.path}: {exc}"
                    ) from exc
            return self._registry

    def lookup(self, token: str) -> str | None:
        return self.registry().lookup(token)

    def redeem(self, code: str) -> tuple[str, str] | None:
        return self.registry().redeem(code)

    def close(self) -> None:
        with self._lock:
            if self._registry is not None:
                self._registry.close()
                self._registry = None


#: The cookie the phone web app keeps its token in: HttpOnly (no script reads it), Secure
#: (https only), SameSite=Strict (no other site's page makes the browser send it). The
#: browser's EventSource cannot send an Authorization header, hence a cookie.
COOKIE_NAME = "lobbywatch_handheld"
#: Browsers cap a cookie's life at 400 days; revoking is how a phone is logged out.
COOKIE_MAX_AGE_S = 400 * 86400
#: A header every state-changing request of the app sends. A page of another origin cannot
#: add it without a CORS preflight, which the API never grants for it: with SameSite=Strict,
#: the second of two defences against a forged request riding on the cookie.
APP_HEADER = "X-Lobbywatch-App"
