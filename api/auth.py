"""Bearer keys with roles, compared in constant time, with failed attempts rate-limited.

Besides the configured keys, a paired phone (edge/storage/handhelds.py) authenticates with a
token of its own, as a manager whose id is the handheld's name; its pairing code and a wrong
token count against the same failure limit as a wrong key.

Keys are configured as the sha256 of the key, or as the name of an environment variable holding
the key (hashed at start-up): no key is ever written to the config, a log line or an error. A
request's key is hashed and compared with every configured hash with `hmac.compare_digest`,
without stopping at a match, so the time taken tells nothing about which keys exist.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from edge.config import ApiKeyConfig

log = logging.getLogger("lobbywatch.api.auth")

Role = Literal["viewer", "manager", "admin"]
#: A role may do everything the roles below it may.
ROLE_RANK: dict[Role, int] = {"viewer": 0, "manager": 1, "admin": 2}

HOW_TO_CONFIGURE = (
    "no API keys are configured: add one under api.keys in the config, e.g. "
    "{id: supervisor, role: viewer, sha256: <hash>} with the hash from "
    "`lobbywatch api hash-key`, or {id: ..., role: ..., env: VAR} with the key in $VAR"
)


def hash_key(key: str) -> str:
    """The sha256 hex of a key, the form it takes in the config."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's id, or a paired handheld's name (shown in audit fields),
    and its role. handheld: authenticated by a paired phone's token, not a configured key."""

    key_id: str
    role: Role
    handheld: bool = False

    def may(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class _Key:
    principal: Principal
    digest: bytes = field(repr=False)


def load_keys(configs: Sequence[ApiKeyConfig], environ: Mapping[str, str]) -> list[_Key]:
    """Resolve configured keys. A key whose environment variable is unset or empty is left out
    and logged (by id and variable name), so the other keys keep working."""
    keys: list[_Key] = []
    for config in configs:
        if config.sha256 is not None:
            digest = bytes.fromhex(config.sha256)
        else:
            assert config.env is not None  # the config allows exactly one of sha256 and env
            value = environ.get(config.env, "")
            if not value:
                log.error("api key %r: environment variable %s is not set; key disabled",
                          config.id, config.env)  # fmt: skip
                continue
            digest = hashlib.sha256(value.encode("utf-8")).digest()
        keys.append(_Key(Principal(config.id, config.role), digest))
    return keys


#: Failed authentications a minute from all addresses together past which every request that
#: needs a key is refused, at least. One client fails at most `limit` times (10 by default)
#: before its own address is refused, so no single client, typing a key wrong or retrying with
#: a revoked one, can reach it; 100 leaves room for several such clients at once, and bounds
#: guessing from any number of addresses (a spoofed X-Forwarded-For behind a trusted proxy, a
#: botnet) to 100 keys a minute: nothing against the 256-bit keys `new-key` makes, and a slow
#: start against a weak one kept in the environment.
GLOBAL_FLOOR_PER_MIN = 100
#: The global budget is also at least this many times the per-address limit, for sites that
#: raise that limit (a proxy or NAT that puts many clients behind one address).
GLOBAL_PER_ADDRESS_FACTOR = 10


def global_limit_for(limit: int) -> int:
    return max(GLOBAL_FLOOR_PER_MIN, GLOBAL_PER_ADDRESS_FACTOR * limit)


class FailureLimiter:
    """Counts failed authentications over a sliding minute, per client address and in all.

    At `limit` failures from one address within the last 60 s the address is refused (even
    with a right key, or a guesser would learn which key is right) until its oldest failure is
    a minute old. At `global_limit` failures from all addresses together, every address is
    refused in the same way, except those that presented a right key within the last
    KNOWN_S: a flood of guesses from elsewhere does not lock out the dashboard that was already
    working (its own address stays under the per-address limit). At most `max_clients`
    addresses are tracked, the least recently seen forgotten first, so a flood of addresses
    cannot exhaust memory.
    """

    WINDOW_S = 60.0
    KNOWN_S = 600.0

    def __init__(
        self,
        limit: int,
        monotonic: Callable[[], float],
        max_clients: int = 10_000,
        global_limit: int | None = None,
    ) -> None:
        self.limit = limit
        self.global_limit = global_limit if global_limit is not None else global_limit_for(limit)
        self.monotonic = monotonic
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._all_failures: deque[float] = deque()
        self._known: OrderedDict[str, float] = OrderedDict()  # address -> last right key
        self._lock = threading.Lock()
        self.failures_total = 0  # since start, for the metrics

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until `client` may try again, or None when it may try now."""
        with self._lock:
            now = self.monotonic()
            failures = self._recent(client)
            if failures is not None and len(failures) >= self.limit:
                return self._seconds_until(failures[0], now)
            _expire(self._all_failures, now - self.WINDOW_S)
            if len(self._all_failures) >= self.global_limit and not self._is_known(client, now):
                return self._seconds_until(self._all_failures[0], now)
            return None

    def record_failure(self, client: str) -> None:
        with self._lock:
            now = self.monotonic()
            self.failures_total += 1
            failures = self._recent(client) or deque()
            failures.append(now)
            while len(failures) > self.limit:
                failures.popleft()
            self._failures[client] = failures
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
            _expire(self._all_failures, now - self.WINDOW_S)
            self._all_failures.append(now)
            while len(self._all_failures) > self.global_limit:
                self._all_failures.popleft()
            if len(self._all_failures) == self.global_limit:
                log.warning(
                    "%d failed authentications within a minute from all addresses: refusing "
                    "every key but from addresses that used a right key lately",
                    self.global_limit,
                )

    def record_success(self, client: str) -> None:
        with self._lock:
            self._known[client] = self.monotonic()
            self._known.move_to_end(client)
            while len(self._known) > self.max_clients:
                self._known.popitem(last=False)

    def _is_known(self, client: str, now: float) -> bool:
        seen = self._known.get(client)
        return seen is not None and now - seen < self.KNOWN_S

    def _seconds_until(self, oldest: float, now: float) -> int:
        return max(1, math.ceil(oldest + self.WINDOW_S - now))

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        _expire(failures, self.monotonic() - self.WINDOW_S)
        if not failures:
            del self._failures[client]
            return None
        return failures


def _expire(failures: deque[float], horizon: float) -> None:
    while failures and failures[0] <= horizon:
        failures.popleft()


class AuthError(Exception):
    """Why a request is refused: HTTP status, a message for the client, extra headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


#: The role a paired handheld acts with: it accepts alerts and reports passes done.
HANDHELD_ROLE: Role = "manager"


class Handhelds(Protocol):
    """The paired phones' tokens (edge.storage.handhelds.HandheldRegistry behind the API)."""

    def lookup(self, token: str) -> str | None:
        """The name of the unrevoked handheld holding `token`, or None."""

    def redeem(self, code: str) -> tuple[str, str] | None:
        """(name, token) for an unused, unexpired pairing code, once; None otherwise."""


class Authenticator:
    def __init__(
        self, keys: list[_Key], limiter: FailureLimiter, handhelds: Handhelds | None = None
    ) -> None:
        self.keys = keys
        self.limiter = limiter
        self.handhelds = handhelds

    def authenticate(
        self,
        token: str | None,
        client: str,
        role: Role,
        *,
        handheld_only: bool = False,
        keys_only: bool = False,
    ) -> Principal:
        """The principal behind `token` if it may act as `role`; raises AuthError otherwise.

        503 when no key is configured (there is no open mode; a paired handheld still gets
        in), 429 while the client, or every client together, is over its failure limit, 401 for
        a missing or wrong key, 403 for a key whose role is too low. handheld_only: the token
        came in the app's cookie, which only ever holds a handheld's token, never a key.
        keys_only: a configured key and nothing else (a browser login, api/sessions.py: a
        session must not outlive a phone's revocation, so a phone's token opens none).
        """
        if not self.keys and not token:
            raise AuthError(503, HOW_TO_CONFIGURE)
        retry = self.limiter.retry_after(client)
        if retry is not None:
            raise AuthError(
                429, "too many failed authentications; try again later", {"Retry-After": str(retry)}
            )
        if not token:
            raise AuthError(
                401, "missing key: send Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"}
            )
        principal = None if handheld_only else self._match(token)
        if principal is None and self.handhelds is not None and not keys_only:
            name = self.handhelds.lookup(token)
            if name is not None:
                principal = Principal(name, HANDHELD_ROLE, handheld=True)
        if principal is None:
            if not self.keys and not handheld_only:
                raise AuthError(503, HOW_TO_CONFIGURE)
            self.limiter.record_failure(client)
            log.warning("failed authentication from %s", client)
            detail = "not paired, or this handheld was revoked" if handheld_only else "invalid key"
            raise AuthError(401, detail, {"WWW-Authenticate": "Bearer"})
        self.limiter.record_success(client)
        if not principal.may(role):
            raise AuthError(403, f"key {principal.key_id!r} is a {principal.role}; needs {role}")
        return principal

    def admit_session(self, principal: Principal | None, client: str, role: Role) -> Principal:
        """The principal of a browser session (api/sessions.py) if it may act as `role`.

        principal: the session's, None when the cookie names no live session (expired,
        logged out, forgotten by a restart, or guessed): 401, counted as a failed
        authentication as a wrong key is, so guessing session tokens meets the same limit.
        """
        retry = self.limiter.retry_after(client)
        if retry is not None:
            raise AuthError(
                429, "too many failed authentications; try again later", {"Retry-After": str(retry)}
            )
        if principal is None:
            self.limiter.record_failure(client)
            log.warning("unknown or expired session from %s", client)
            raise AuthError(
                401, "not logged in, or the session expired: log in again",
                {"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        if not principal.may(role):
            raise AuthError(403, f"key {principal.key_id!r} is a {principal.role}; needs {role}")
        return principal

    def still_valid(self, principal: Principal, token: str) -> bool:
        """Whether `token` still names `principal` (a paired phone may have been revoked since).
        Not through the failure limiter: re-checking a credential already admitted is not a
        login attempt, and a stream must not end because another client failed from its
        address."""
        if principal.handheld:
            return self.handhelds is not None and self.handhelds.lookup(token) == principal.key_id
        return self._match(token) == principal

    def pair(self, code: str, client: str) -> tuple[Principal, str]:
        """Exchange a pairing code for the handheld's principal and its token (shown once).
        A wrong, used or expired code counts as a failed authentication: 401, then 429."""
        retry = self.limiter.retry_after(client)
        if retry is not None:
            raise AuthError(
                429, "too many failed attempts; try again later", {"Retry-After": str(retry)}
            )
        found = self.handhelds.redeem(code) if self.handhelds is not None else None
        if found is None:
            self.limiter.record_failure(client)
            log.warning("failed pairing attempt from %s", client)
            raise AuthError(
                401,
                "unknown, used or expired pairing code: run `lobbywatch handheld pair` again",
            )
        self.limiter.record_success(client)
        name, token = found
        log.info("handheld %r paired from %s", name, client)
        return Principal(name, HANDHELD_ROLE, handheld=True), token

    def _match(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: Principal | None = None
        for key in self.keys:  # no early exit: the same work whichever key matches
            if hmac.compare_digest(digest, key.digest) and found is None:
                found = key.principal
        return found
