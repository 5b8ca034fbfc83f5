"""The app: its context, who is asking (and which branches they may see), and create_app.

Every route but health needs a key (api/auth.py: the device's Authenticator and failure
limiter, reused as they are); the key's regions decide the branches it sees. A branch outside
them answers 404, as one that does not exist, so a key cannot learn which branches others run.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, TypeVar, cast

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Authenticator, AuthError, FailureLimiter, Principal, load_keys
from api.buckets import RangeError, TimeRange, resolve_range
from api.clients import ClientAddress
from api.deps import invalid
from central.api.schemas import Problem
from central.config import CentralConfig
from central.store import CentralStore

log = logging.getLogger("lobbywatch.central.api")

VERSION = "1"
T = TypeVar("T")

#: A range without a start: the last day. Longest range: 400 days, what the store keeps.
DEFAULT_SPAN = timedelta(days=1)
MAX_SPAN = timedelta(days=400)
#: Failed authentications per client address a minute (the device's default).
FAILED_AUTH_LIMIT_PER_MIN = 10


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Caller:
    """Who is asking, and the branches their key's regions hold (None: every branch)."""

    principal: Principal
    sites: frozenset[str] | None

    def sees(self, site: str) -> bool:
        return self.sites is None or site in self.sites


class StorePool:
    """Stores (each holding one connection, reconnecting by itself) lent to one query at a
    time: FastAPI runs the routes in threads, so as many queries run at once as there are
    stores, and a request finding none free waits for one."""

    def __init__(self, stores: Sequence[CentralStore]) -> None:
        if not stores:
            raise ValueError("a pool of no stores")
        self._free: queue.SimpleQueue[CentralStore] = queue.SimpleQueue()
        for store in stores:
            self._free.put(store)

    def query(self, work: Callable[[CentralStore], T]) -> T:
        store = self._free.get()
        try:
            return work(store)
        finally:
            self._free.put(store)


@dataclass(frozen=True)
class CentralContext:
    """What the routes share; one per app, on app.state."""

    config: CentralConfig
    stores: StorePool
    auth: Authenticator
    clients: ClientAddress
    clock: Callable[[], datetime]
    scopes: dict[str, frozenset[str] | None]  # key id -> the branches it sees

    def query(self, work: Callable[[CentralStore], T]) -> T:
        return self.stores.query(work)

    def region_of(self, site: str) -> str | None:
        """The first region central.yaml lists the branch in; None when in none."""
        return next((r for r, sites in self.config.regions.items() if site in sites), None)

    def configured_sites(self) -> set[str]:
        return {s for sites in self.config.regions.values() for s in sites}

    def range_of(
        self,
        start: datetime | None,
        end: datetime | None,
        max_span: timedelta = MAX_SPAN,
        default_span: timedelta = DEFAULT_SPAN,
    ) -> TimeRange:
        """The request's [start, end) with defaults filled; a 422 saying what is allowed."""
        try:
            return resolve_range(
                start, end, now=self.clock(), max_span=max_span, default_span=default_span
            )
        except RangeError as exc:
            raise invalid("query", "start", str(exc)) from None

    def site_for(self, caller: Caller, site: str) -> str:
        """`site` when the caller may see it and the centre knows it (heard from, or in a
        region); 404 otherwise, the same answer for both."""
        if caller.sees(site) and (
            site in self.configured_sites() or self.query(lambda s: s.sites_seen(frozenset({site})))
        ):
            return site
        raise HTTPException(404, f"no branch {site!r}")


def get_context(request: Request) -> CentralContext:
    return cast(CentralContext, request.app.state.central)


Context = Annotated[CentralContext, Depends(get_context)]

bearer = HTTPBearer(
    auto_error=False,
    description="A head-office key: `Authorization: Bearer <key>`. Every route reads: any "
    "role (viewer, manager, admin) may; the key's regions decide which branches it sees.",
)


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """Admit a configured key of at least viewer (401 missing or wrong, 429 over the failure
    limit, 503 none configured) and attach its branches."""
    context = get_context(request)
    client = context.clients.of(request.client.host if request.client else None, [])
    token = credentials.credentials if credentials is not None else None
    try:
        principal = context.auth.authenticate(token, client, "viewer", keys_only=True)
    except AuthError as exc:
        raise HTTPException(exc.status, exc.detail, headers=exc.headers) from None
    return Caller(principal, context.scopes.get(principal.key_id, frozenset()))


Viewer = Annotated[Caller, Depends(caller)]

_WWW_AUTHENTICATE = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
_RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until a try may succeed"}
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong key", "headers": _WWW_AUTHENTICATE},
    429: {
        "model": Problem,
        "description": "Too many failed authentications, from this address or from everywhere",
        "headers": _RETRY_AFTER,
    },
    503: {"model": Problem, "description": "No key configured, or the database unavailable"},
}


def create_app(
    config: CentralConfig,
    store: CentralStore | Sequence[CentralStore],
    clock: Callable[[], datetime] = utc_now,
    *,
    monotonic: Callable[[], float] = time.monotonic,
    environ: Mapping[str, str] | None = None,
    failed_auth_limit: int = FAILED_AUTH_LIMIT_PER_MIN,
) -> FastAPI:
    """The head-office API over `store` (or several: as many queries at once, StorePool).
    clock: UTC wall time (ranges' defaults, offline); monotonic: the failure window's seconds;
    environ: where `env:` keys are read from."""
    from central.api import routes  # the routes import this module's dependencies

    environ = os.environ if environ is None else environ
    keys = load_keys(config.api.keys, environ)
    if not keys:
        log.warning("no API key configured: every route except health answers 503")
    context = CentralContext(
        config=config,
        stores=StorePool([store] if isinstance(store, CentralStore) else store),
        auth=Authenticator(keys, FailureLimiter(failed_auth_limit, monotonic)),
        # central.yaml names no proxy: the client is the connection's peer, whatever
        # X-Forwarded-For says (api/clients.py).
        clients=ClientAddress([]),
        clock=clock,
        scopes={key.id: config.sites_of(key.regions) for key in config.api.keys},
    )
    app = FastAPI(
        title="lobbywatch head-office API",
        version=VERSION,
        summary="Every branch's occupancy, waits, alerts and passes; fleet reports.",
        docs_url=None,  # Swagger UI would load from a CDN; /openapi.json is served
        redoc_url=None,
    )
    app.state.central = context
    app.include_router(routes.router)
    # The database down or restarting: 503 (the store reconnects on the next query). Any other
    # database error is a bug here and stays a 500.
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    return app


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable: %s", exc)
    return JSONResponse({"detail": "the central database is unavailable"}, status_code=503)
