"""The API's way into the pipeline's SQLite store.

The pipeline may run in another process and restart at any time; WAL lets both work at once.
Queries use short-lived read-only connections (a slow report never holds a lock the pipeline
needs); the few writes (acknowledgements) go through one `edge.store.Store`, which also creates
the schema when the API starts before the pipeline ever ran.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from edge.store import Store, probe_write

log = logging.getLogger("lobbywatch.api")

#: Seconds a read waits for a lock before giving up (WAL readers rarely wait at all).
READ_TIMEOUT_S = 5.0


class StoreUnavailable(RuntimeError):
    """The store cannot be opened or read; the API answers 503 and says why."""


class StoreAccess:
    """Connections to the store at `path`, which belongs to site `site_id`."""

    def __init__(self, path: Path, site_id: str) -> None:
        self.path = path
        self.site_id = site_id
        self._lock = threading.Lock()
        self._store: Store | None = None

    def store(self) -> Store:
        """The shared read-write Store, opened on first use (and retried after a failure)."""
        with self._lock:
            if self._store is None:
                try:
                    self._store = Store(self.path, site_id=self.site_id)
                except (sqlite3.Error, OSError, ValueError) as exc:
                    raise StoreUnavailable(f"cannot open the store {self.path}: {exc}") from exc
            return self._store

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection, closed afterwards; rows are plain tuples."""
        if not self.path.exists():
            self.store()  # creates the file and schema, or raises StoreUnavailable
        try:
            db = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=READ_TIMEOUT_S,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot read the store {self.path}: {exc}") from exc
        try:
            yield db
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"cannot read the store {self.path}: {exc}") from exc
        finally:
            db.close()

    def meta(self, *keys: str) -> dict[str, str]:
        """Values of the store's `meta` table for `keys` (missing keys are left out)."""
        marks = ",".join("?" * len(keys))
        with self.read() as db:
            rows = db.execute(f"SELECT key, value FROM meta WHERE key IN ({marks})", keys)
            return {str(key): str(value) for key, value in rows}

    def check_writable(self) -> str | None:
        """None when the store takes a write (a real one: see edge.store.probe_write)."""
        try:
            self.store()
        except StoreUnavailable as exc:
            return str(exc)
        return probe_write(self.path, "health_probe_at", datetime.now(timezone.utc))

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
