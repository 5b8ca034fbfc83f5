"""The supervisor REST API: live and historical occupancy, alerts and health, secure by default.

`create_app` builds the app from the site config; it reads the same store the pipeline writes,
from the same process or another one. Every route but health needs a key; with no key
configured those routes refuse with 503 and say how to add one (there is no open mode).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.auth import Authenticator, FailureLimiter, load_keys
from api.clients import ClientAddress
from api.config_edit import ConfigFile
from api.db import StoreAccess, StoreUnavailable
from api.deps import ApiContext
from api.frames_client import SnapshotViews
from api.handhelds import HandheldAccess
from api.metrics import StoreCollector, make_registry
from api.rollup import Rollup, RollupWorker, default_path
from api.routes import (
    alerts,
    cameras,
    docs,
    forecast,
    hand_counts,
    handhelds,
    history,
    live,
    pages,
    queue,
    reports,
    session,
    system,
    tickets,
    webapp,
)
from edge.config import LobbyConfig
from edge.store import RECOVERY_S, StoreWriteError

log = logging.getLogger("lobbywatch.api")

VERSION = "1"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(
    config: LobbyConfig,
    *,
    store_path: Path | None = None,
    rollup_path: Path | None = None,
    use_rollup: bool = True,
    rollup_every_s: float | None = 60.0,
    clock: Callable[[], datetime] = utc_now,
    monotonic: Callable[[], float] = time.monotonic,
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> FastAPI:
    """The API for `config`'s site.

    store_path: the store (default: storage.path). rollup_path: the API's cache of closed
    buckets (default: beside the store; see api/rollup.py); use_rollup=False answers every
    query from the stored intervals. rollup_every_s: how often a background thread brings the
    cache up to date (None: never, for tests that refresh it themselves). clock: UTC wall time;
    monotonic: seconds for the failed-authentication window. config_path: the file `config`
    was loaded from, which the zone editor's save writes (api/config_edit.py); without it the
    geometry has no ETag and cannot be saved.
    """
    store = StoreAccess(store_path or config.storage.path, config.site.id)
    tz = ZoneInfo(config.site.timezone)
    rollup = _open_rollup(config, store, tz, rollup_path) if use_rollup else None
    limiter = FailureLimiter(config.api.failed_auth_limit_per_min, monotonic)
    environ = os.environ if environ is None else environ
    keys = load_keys(config.api.keys, environ)
    if not keys:
        log.warning("no API key configured: every route except health answers 503")
    views = SnapshotViews()
    collector = StoreCollector(
        config, store, clock, lambda: limiter.failures_total, views.by_camera
    )
    context = ApiContext(
        config=config,
        store=store,
        rollup=rollup,
        auth=Authenticator(keys, limiter, HandheldAccess(store, clock)),
        clients=ClientAddress(config.api.trusted_proxies),
        clock=clock,
        tz=tz,
        registry=make_registry(collector),
        snapshot_views=views,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if rollup is not None and rollup_every_s is not None:
            worker = RollupWorker(rollup, clock, rollup_every_s, monotonic)
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = LobbyApi(
        [z.id for c in config.cameras for z in c.zones],
        title="lobbywatch supervisor API",
        version=VERSION,
        summary="Occupancy now and in the past, diversion alerts and device health.",
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: api/routes/docs.py serves it
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.lobbywatch = context
    # The config's loader expands ${VAR} and LOBBYWATCH_* from the same environment the keys
    # come from: a save is validated as the service will load it.
    app.state.lobbywatch_config_file = (
        None if config_path is None else ConfigFile(Path(config_path), environ, clock)
    )
    for module in (live, history, forecast, queue, reports, tickets, alerts, handhelds, system,
                   webapp, session, pages, cameras, hand_counts, docs):  # fmt: skip
        app.include_router(module.router)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(sqlite3.Error, _store_unavailable)  # e.g. a read-only disk on ack
    app.add_exception_handler(StoreWriteError, _store_unavailable)  # a full disk on an ack
    if config.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.api.cors_origins),
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=["Authorization", "Content-Type", "Accept", "If-Match"],
            expose_headers=["ETag"],
        )
    return app


class LobbyApi(FastAPI):
    """The app, whose OpenAPI document lists the site's zone ids as the values `zone` takes.

    The routes are declared once for every site, so their `zone` parameter is any string; the
    document is where a client (or a generated test) learns which ids exist, and that any other
    one, the empty string too, is refused with a 422.
    """

    def __init__(self, zone_ids: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zone_ids = zone_ids

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            _declare_zone_ids(schema, self.zone_ids)
            _declare_body_models(schema, cameras.BODY_MODELS)
        return super().openapi()


def _declare_body_models(schema: dict[str, Any], models: tuple[type[BaseModel], ...]) -> None:
    """Request bodies a route reads by hand (to bound their size as they arrive) refer to their
    model in the components; FastAPI only puts there the models a signature names."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body


def _declare_zone_ids(schema: dict[str, Any], zone_ids: list[str]) -> None:
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] != "zone" or parameter["in"] != "query":
                    continue
                for variant in parameter["schema"].get("anyOf", [parameter["schema"]]):
                    if variant.get("type") == "array":
                        variant["items"] = {"type": "string", "enum": zone_ids}


def _open_rollup(
    config: LobbyConfig, store: StoreAccess, tz: ZoneInfo, path: Path | None
) -> Rollup | None:
    path = path or default_path(store.path)
    try:
        return Rollup(
            path,
            store,
            tz=tz,
            zone_ids=[z.id for c in config.cameras for z in c.zones],
            retention_days=config.storage.retention_days,
            interval_s=config.storage.interval_s,
        )
    except (OSError, sqlite3.Error) as exc:  # without the cache, queries are only slower
        log.warning("rollup cache %s unavailable (%s); history comes from the store", path, exc)
        return None


async def _store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("store unavailable: %s", exc)
    detail = str(exc) if isinstance(exc, StoreUnavailable) else f"store error: {exc}"
    # The store tries writes again by itself after RECOVERY_S.
    headers = {"Retry-After": str(round(RECOVERY_S))} if isinstance(exc, StoreWriteError) else None
    return JSONResponse({"detail": detail}, status_code=503, headers=headers)
