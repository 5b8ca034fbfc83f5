"""Readiness: can this device do its job right now? For IT and for service managers.

Ready means the store can be read and written, the disk is not nearly full, and at least one
camera is online (the pipeline reports it, recently). A camera that drops more than a tenth of its
frames (the device is short of compute) makes the device degraded, not unready: it still counts. The broker connection is reported but does
not decide readiness: occupancy and history work without it. Liveness is the process answering.

What only the running pipeline knows (whether its writes succeed, the broker's state and why,
the outbox backlog, what it keeps in memory, its API child) comes from its state file
(edge/runtime/device_state.py), which a full disk does not stop. Without a running pipeline the API
tries a real write of its own: a check that writes nothing says a full disk is writable.
"""

from __future__ import annotations

import math
import shutil
from datetime import datetime

from api.db import StoreAccess, StoreUnavailable
from api.live import CameraState, camera_states
from api.schemas import (
    BrokerHealth,
    CameraHealth,
    ChannelHealth,
    Check,
    ChildHealth,
    ConfigHealth,
    DeliveryHealth,
    DiskHealth,
    HealthOut,
)
from edge.config import LobbyConfig
from edge.runtime.device_state import DeviceState, read_state, state_path

#: Below either, the disk is "nearly full": history writes would soon fail.
MIN_FREE_BYTES = 200 * 1024 * 1024
MIN_FREE_FRACTION = 0.02


def check_health(config: LobbyConfig, store: StoreAccess, now: datetime) -> HealthOut:
    device = read_state(state_path(store.path), now)
    running = device if device is not None and device.current else None
    readable = _readable(store)
    writable = _writable(store, running)
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
        cameras = [_camera(s, running) for s in states]
    pipeline_running = running is not None or any(not c.stale for c in cameras)
    broker = _broker(config, running, meta, pipeline_running)
    child = _child(running)
    online = any(c.status == "online" for c in cameras)
    ready = readable.ok and writable.ok and disk.ok and online
    channels = _channels(running)
    overloaded = [c.camera_id for c in cameras if c.overloaded]
    config_health = _config(running)
    degraded = (
        broker.state not in ("connected", "disabled", "unknown")
        or any(c.status != "online" for c in cameras)
        or bool(overloaded)
        or (child is not None and child.state != "running")
        or any(c.state != "ok" for c in channels)
        or (config_health is not None and config_health.state == "invalid")
    )
    return HealthOut(
        status="fail" if not ready else "degraded" if degraded else "ok",
        live=True,
        ready=ready,
        at=now,
        store_readable=readable,
        store_writable=writable,
        disk=disk,
        broker=broker,
        delivery=_delivery(running),
        pipeline_api=child,
        cameras=cameras,
        overloaded=overloaded,
        channels=channels,
        config=config_health,
    )


def _camera(state: CameraState, running: DeviceState | None) -> CameraHealth:
    """The store's camera row, with the running pipeline's rates (the shares it could not keep
    up with) while its report is current; an overload of a camera not online says nothing."""
    health = CameraHealth.model_validate(state, from_attributes=True)
    section = running.section("cameras").get(state.camera_id) if running is not None else None
    if not isinstance(section, dict):
        return health
    rates = {
        "target_fps": _number(section.get("target_fps")),
        "dropped_share": _share(section.get("dropped_share")),
        "detector_share": _share(section.get("detector_share")),
        "overloaded": section.get("overloaded") is True and state.status == "online",
    }
    return health.model_copy(update=rates)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _share(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and number <= 1 else None


def _writable(store: StoreAccess, running: DeviceState | None) -> Check:
    """The running pipeline's own writes say best; without it, a real write."""
    if running is None:
        error = store.check_writable()
        return Check(ok=error is None, detail=error or "ok")
    section = running.section("store")
    if section.get("writable", True):
        return Check(ok=True, detail="ok")
    kept = (
        f"{section.get('unsaved_history_rows', 0)} history rows and "
        f"{section.get('unsaved_alert_writes', 0)} alert writes kept in memory"
    )
    where = "; running on memory" if section.get("memory_only") else ""
    return Check(
        ok=False,
        detail=f"failing since {section.get('since')}: {section.get('error')}; {kept}{where}",
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


def _broker(
    config: LobbyConfig,
    running: DeviceState | None,
    meta: dict[str, str],
    pipeline_running: bool,
) -> BrokerHealth:
    """From the running pipeline's state file; else from the meta record an older pipeline
    keeps in the store (a record left by a pipeline no longer running says nothing)."""
    if not config.mqtt.enabled:
        return BrokerHealth(state="disabled", since=None)
    if running is not None:
        section = running.section("broker")
        try:
            return BrokerHealth.model_validate(section)
        except ValueError:
            return BrokerHealth(state="unknown", since=None)
    state = meta.get("mqtt_connected")
    if state not in ("0", "1") or not pipeline_running:
        return BrokerHealth(state="unknown", since=None)
    since = meta.get("mqtt_connected_at")
    try:
        since_at = datetime.fromisoformat(since) if since else None
    except ValueError:
        since_at = None
    return BrokerHealth(state="connected" if state == "1" else "disconnected", since=since_at)


def _delivery(running: DeviceState | None) -> DeliveryHealth:
    if running is None:
        return DeliveryHealth(
            backlog=None, unsaved_alert_writes=None, unsaved_history_rows=None, expired=None
        )
    store, outbox = running.section("store"), running.section("outbox")
    return DeliveryHealth(
        backlog=outbox.get("backlog"),
        unsaved_alert_writes=store.get("unsaved_alert_writes"),
        unsaved_history_rows=store.get("unsaved_history_rows"),
        expired=outbox.get("expired"),
    )


def _channels(running: DeviceState | None) -> list[ChannelHealth]:
    """The bank's channels as the pipeline's delivery worker reports them (a failing one makes
    the device degraded: alerts still reach the handhelds, not that group)."""
    if running is None:
        return []
    found = []
    for channel_id, section in running.section("channels").items():
        if not isinstance(section, dict):
            continue
        try:
            found.append(ChannelHealth.model_validate({**section, "channel": channel_id}))
        except ValueError:
            continue
    return found


def _child(running: DeviceState | None) -> ChildHealth | None:
    if running is None or not running.section("api"):
        return None
    try:
        return ChildHealth.model_validate(running.section("api"))
    except ValueError:
        return None


def _config(running: DeviceState | None) -> ConfigHealth | None:
    """The service's config watch (edge/runtime/config_watch.py): an invalid file is kept out
    and said, since the next start would fail on it."""
    if running is None or not running.section("config"):
        return None
    try:
        return ConfigHealth.model_validate(running.section("config"))
    except ValueError:
        return None
