"""Readiness: can this device do its job right now? For IT and for service managers.

Ready means the store can be read and written, the disk is not nearly full, and at least one
camera is online (the pipeline reports it, recently). The broker connection is reported but does
not decide readiness: occupancy and history work without it. Liveness is the process answering.
"""

from __future__ import annotations

import shutil
from datetime import datetime

from api.db import StoreAccess, StoreUnavailable
from api.live import camera_states
from api.schemas import BrokerHealth, CameraHealth, Check, DiskHealth, HealthOut
from edge.config import LobbyConfig

#: Below either, the disk is "nearly full": history writes would soon fail.
MIN_FREE_BYTES = 200 * 1024 * 1024
MIN_FREE_FRACTION = 0.02


def check_health(config: LobbyConfig, store: StoreAccess, now: datetime) -> HealthOut:
    readable = _readable(store)
    writable_error = store.check_writable()
    writable = Check(ok=writable_error is None, detail=writable_error or "ok")
    disk = _disk(store)
    cameras: list[CameraHealth] = []
    meta: dict[str, str] = {}
    if readable.ok:
        try:
            states = camera_states(config, store.store(), now)
            meta = store.meta("mqtt_connected", "mqtt_connected_at")
        except StoreUnavailable as exc:
            readable = Check(ok=False, detail=str(exc))
            states = []
        cameras = [CameraHealth.model_validate(s, from_attributes=True) for s in states]
    pipeline_running = any(not c.stale for c in cameras)
    broker = _broker(config, meta, pipeline_running)
    online = any(c.status == "online" for c in cameras)
    ready = readable.ok and writable.ok and disk.ok and online
    degraded = broker.state == "disconnected" or any(c.status != "online" for c in cameras)
    return HealthOut(
        status="fail" if not ready else "degraded" if degraded else "ok",
        live=True,
        ready=ready,
        at=now,
        store_readable=readable,
        store_writable=writable,
        disk=disk,
        broker=broker,
        cameras=cameras,
    )


def _readable(store: StoreAccess) -> Check:
    try:
        version = store.meta("schema_version").get("schema_version", "?")
    except StoreUnavailable as exc:
        return Check(ok=False, detail=str(exc))
    return Check(ok=True, detail=f"schema version {version}")


def _disk(store: StoreAccess) -> DiskHealth:
    try:
        usage = shutil.disk_usage(store.path.parent)
    except OSError:
        return DiskHealth(ok=False, free_bytes=None, free_fraction=None)
    fraction = usage.free / usage.total if usage.total else 0.0
    return DiskHealth(
        ok=usage.free >= MIN_FREE_BYTES and fraction >= MIN_FREE_FRACTION,
        free_bytes=usage.free,
        free_fraction=round(fraction, 4),
    )


def _broker(config: LobbyConfig, meta: dict[str, str], pipeline_running: bool) -> BrokerHealth:
    """The pipeline records its broker connection in the store's meta table; a record left by
    a pipeline that is no longer running says nothing about now."""
    if not config.mqtt.enabled:
        return BrokerHealth(state="disabled", since=None)
    state = meta.get("mqtt_connected")
    if state not in ("0", "1") or not pipeline_running:
        return BrokerHealth(state="unknown", since=None)
    since = meta.get("mqtt_connected_at")
    try:
        since_at = datetime.fromisoformat(since) if since else None
    except ValueError:
        since_at = None
    return BrokerHealth(state="connected" if state == "1" else "disconnected", since=since_at)
