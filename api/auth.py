"""Bearer keys with roles, compared in constant time, with failed attempts rate-limited.

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
from typing import Literal

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
    """Who made a request: the key's id (shown in audit fields) and its role."""

    key_id: str
    role: Role

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


class FailureLimiter:
    """Counts failed authentications per client address over a sliding minute.

    At `limit` failures within the last 60 s the address is refused (even with a right key, or
    a guesser would learn which key is right) until the oldest failure is a minute old. At most
    `max_clients` addresses are tracked, the least recently failing forgotten first, so a flood
    of addresses cannot exhaust memory.
    """

    WINDOW_S = 60.0

    def __init__(
        self, limit: int, monotonic: Callable[[], float], max_clients: int = 10_000
    ) -> None:
        self.limit = limit
        self.monotonic = monotonic
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.failures_total = 0  # since start, for the metrics

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until `client` may try again, or None when it may try now."""
        with self._lock:
            failures = self._recent(client)
            if failures is None or len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.WINDOW_S - self.monotonic()))

    def record_failure(self, client: str) -> None:
        with self._lock:
            self.failures_total += 1
            failures = self._recent(client) or deque()
            failures.append(self.monotonic())
            while len(failures) > self.limit:
                failures.popleft()
            self._failures[client] = failures
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        horizon = self.monotonic() - self.WINDOW_S
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures


class AuthError(Exception):
    """Why a request is refused: HTTP status, a message for the client, extra headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class Authenticator:
    def __init__(self, keys: list[_Key], limiter: FailureLimiter) -> None:
        self.keys = keys
        self.limiter = limiter

    def authenticate(self, token: str | None, client: str, role: Role) -> Principal:
        """The principal behind `token` if it may act as `role`; raises AuthError otherwise.

        503 when no key is configured (there is no open mode), 429 while the client is over its
        failure limit, 401 for a missing or wrong key, 403 for a key whose role is too low.
        """
        if not self.keys:
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
        principal = self._match(token)
        if principal is None:
            self.limiter.record_failure(client)
            log.warning("failed authentication from %s", client)
            raise AuthError(401, "invalid key", {"WWW-Authenticate": "Bearer"})
        if not principal.may(role):
            raise AuthError(403, f"key {principal.key_id!r} is a {principal.role}; needs {role}")
        return principal

    def _match(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: Principal | None = None
        for key in self.keys:  # no early exit: the same work whichever key matches
            if hmac.compare_digest(digest, key.digest) and found is None:
                found = key.principal
        return found
