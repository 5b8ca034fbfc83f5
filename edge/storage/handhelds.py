"""Paired phones (issue #12): one revocable manager credential per handheld, kept in the store.

`lobbywatch handheld pair --name mgr-1` writes a pairing code (single use, valid
CODE_TTL_S); the phone's page exchanges it through the API for a token of its own. Only
sha256 hashes of codes and tokens are stored: a copy of the database lets no one in, and
neither is ever logged. Revoking a handheld refuses its token from the next request on.

The tables live in the site's store (CREATE TABLE IF NOT EXISTS on open, so a store of any
schema version gains them without a migration, and an older lobbywatch ignores them). The CLI
and the API open the same file from different processes; WAL and short transactions keep
both working.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge.config import ID_PATTERN

#: Seconds a pairing code can be exchanged after `pair` printed it.
CODE_TTL_S = 600.0
#: last_seen_at is written at most this often per handheld (seconds): every request of a phone
#: reads the table, few need to write it.
SEEN_EVERY_S = 60.0
#: Crockford's base32 without the letters read as digits (I, L, O) or rude words (U): what a
#: person types from a terminal reads back the same. 8 symbols are 40 bits; with the API's
#: failure limit (10 a minute per address, 100 from everywhere) a guesser tries at most 1000
#: codes in a code's 10 minutes, one chance in 10^9.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
_CODE_READS_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handhelds (
    name TEXT PRIMARY KEY,              -- the principal's id: what every ack records
    token_sha256 TEXT UNIQUE,           -- NULL until the phone exchanged its code
    created_at TEXT NOT NULL,           -- UTC ISO 8601: when `pair` ran
    revoked_at TEXT,
    last_seen_at TEXT
);
CREATE TABLE IF NOT EXISTS handheld_codes (
    code_sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES handhelds (name) ON DELETE CASCADE,
    expires_at TEXT NOT NULL
);
"""


class HandheldError(ValueError):
    """A pairing request that cannot be done as asked; the message says why, for a person."""


@dataclass(frozen=True)
class Handheld:
    """A handheld as stored; times UTC. paired: its code was exchanged for a token."""

    name: str
    paired: bool
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Pairing:
    """What `pair` shows once: the code (never stored) and until when it works (UTC)."""

    name: str
    code: str
    expires_at: datetime

    @property
    def display_code(self) -> str:
        """The code in two groups of four, as printed and typed (XXXX-XXXX)."""
        return f"{self.code[:4]}-{self.code[4:]}"


def normalize_code(text: str) -> str | None:
    """A typed code in its stored form, or None when it cannot be one. Case, spaces and dashes
    do not matter; O reads as 0, I and L as 1."""
    code = re.sub(r"[\s-]", "", text).upper().translate(_CODE_READS_AS)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class HandheldRegistry:
    """The handheld tables of the store at `path` (created if missing). wall_clock: UTC."""

    def __init__(
        self,
        path: Path | str,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.path = Path(path)
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._seen: dict[str, datetime] = {}  # last written last_seen_at, per name
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._db:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> HandheldRegistry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def pair(self, name: str, *, replace: bool = False) -> Pairing:
        """A new pairing code for `name`. A paired, unrevoked handheld of that name is kept
        (HandheldError) unless `replace`: then its token stops working now. Earlier codes for
        the name stop working too: only the newest one printed counts."""
        if not re.fullmatch(ID_PATTERN, name):
            raise HandheldError(
                f"handheld name {name!r}: use 1-64 letters, digits, _ . - (e.g. mgr-1)"
            )
        now = self._wall()
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        expires = now + timedelta(seconds=CODE_TTL_S)
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT token_sha256, revoked_at FROM handhelds WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row["token_sha256"] and not row["revoked_at"] and not replace:
                raise HandheldError(
                    f"handheld {name!r} is already paired: `lobbywatch handheld revoke {name}` "
                    "first, or pair again with --replace (the old phone is logged out)"
                )
            self._db.execute("DELETE FROM handheld_codes WHERE name = ?", (name,))
            self._db.execute(
                "INSERT OR REPLACE INTO handhelds (name, token_sha256, created_at, revoked_at,"
                " last_seen_at) VALUES (?, NULL, ?, NULL, NULL)",
                (name, _iso(now)),
            )
            self._db.execute(
                "INSERT INTO handheld_codes (code_sha256, name, expires_at) VALUES (?, ?, ?)",
                (_sha256(code), name, _iso(expires)),
            )
        self._seen.pop(name, None)
        return Pairing(name, code, expires)

    def redeem(self, code: str) -> tuple[str, str] | None:
        """Exchange a pairing code for (name, token): once, within its time. None for a code
        that is wrong, used, expired or whose handheld was revoked since."""
        normalized = normalize_code(code)
        if normalized is None:
            return None
        now = self._wall()
        token = secrets.token_urlsafe(32)
        with self._lock, self._db:
            self._db.execute("DELETE FROM handheld_codes WHERE expires_at <= ?", (_iso(now),))
            row = self._db.execute(
                "SELECT name FROM handheld_codes WHERE code_sha256 = ?", (_sha256(normalized),)
            ).fetchone()
            if row is None:
                return None
            name = str(row["name"])
            self._db.execute("DELETE FROM handheld_codes WHERE name = ?", (name,))
            self._db.execute(
                "UPDATE handhelds SET token_sha256 = ?, last_seen_at = ? WHERE name = ?",
                (_sha256(token), _iso(now), name),
            )
        self._seen[name] = now
        return name, token

    def lookup(self, token: str) -> str | None:
        """The name of the unrevoked handheld holding `token`, or None. Notes it as seen."""
        with self._lock:
            row = self._db.execute(
                "SELECT name FROM handhelds WHERE token_sha256 = ? AND revoked_at IS NULL",
                (_sha256(token),),
            ).fetchone()
        if row is None:
            return None
        name = str(row["name"])
        self._touch(name)
        return name

    def _touch(self, name: str) -> None:
        now = self._wall()
        last = self._seen.get(name)
        if last is not None and (now - last).total_seconds() < SEEN_EVERY_S:
            return
        self._seen[name] = now
        try:
            with self._lock, self._db:
                self._db.execute(
                    "UPDATE handhelds SET last_seen_at = ? WHERE name = ?", (_iso(now), name)
                )
        except sqlite3.OperationalError:  # a full disk or a held lock: only a record is late
            self._seen.pop(name, None)

    def revoke(self, name: str) -> bool:
        """Refuse `name`'s token (and any unused code) from now on; False if there is no such
        unrevoked handheld."""
        now = self._wall()
        with self._lock, self._db:
            self._db.execute("DELETE FROM handheld_codes WHERE name = ?", (name,))
            changed = self._db.execute(
                "UPDATE handhelds SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (_iso(now), name),
            ).rowcount
        return changed > 0

    def handhelds(self) -> list[Handheld]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, token_sha256, created_at, revoked_at, last_seen_at"
                " FROM handhelds ORDER BY name"
            ).fetchall()
        return [
            Handheld(
                name=row["name"],
                paired=row["token_sha256"] is not None,
                created_at=datetime.fromisoformat(row["created_at"]),
                revoked_at=_dt(row["revoked_at"]),
                last_seen_at=_dt(row["last_seen_at"]),
            )
            for row in rows
        ]

    def waiting_code(self, name: str) -> datetime | None:
        """Until when `name` has an unused pairing code (UTC), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT max(expires_at) AS until FROM handheld_codes WHERE name = ?", (name,)
            ).fetchone()
        until = _dt(row["until"]) if row is not None else None
        return until if until is not None and until > self._wall() else None
