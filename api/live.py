"""The live state as the API reports it: the pipeline's last word, unless it is too old to trust.

The pipeline rewrites `zone_live` and `camera_live` about every second while it runs and marks
everything unknown when it stops cleanly. If it dies or hangs, the rows stay as they were; a row
older than its camera's `offline_after_s` is therefore reported stale, with an unknown count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from edge.config import LobbyConfig, ZoneRole
from edge.store import Store
from edge.types import CameraStatus

CameraStateName = Literal["online", "stale", "offline", "unknown"]
_NAMES: dict[CameraStatus, CameraStateName] = {
    CameraStatus.ONLINE: "online",
    CameraStatus.STALE: "stale",
    CameraStatus.OFFLINE: "offline",
}


@dataclass(frozen=True)
class CameraState:
    camera_id: str
    status: CameraStateName
    fps: float | None
    inference_ms: float | None
    updated_at: datetime | None
    stale: bool  # the pipeline's report is too old (or missing)


@dataclass(frozen=True)
class ZoneState:
    zone_id: str
    name: str
    role: ZoneRole
    camera_id: str
    count: float | None
    raw: int | None
    measured_at: datetime | None
    stale: bool
    camera_status: CameraStateName


def camera_states(config: LobbyConfig, store: Store, now: datetime) -> list[CameraState]:
    """One entry per configured camera, in config order."""
    rows = {c.camera_id: c for c in store.cameras()}
    states = []
    for camera in config.cameras:
        row = rows.get(camera.id)
        if row is None:
            states.append(CameraState(camera.id, "unknown", None, None, None, True))
            continue
        stale = (now - row.at).total_seconds() > camera.offline_after_s
        states.append(
            CameraState(
                camera.id,
                "unknown" if stale else _NAMES[row.status],
                None if stale else row.fps,
                None if stale else row.inference_ms,
                row.at,
                stale,
            )
        )
    return states


def zone_states(config: LobbyConfig, store: Store, now: datetime) -> list[ZoneState]:
    """One entry per configured zone, in config order; unknown and stale counts are None."""
    rows = {r.zone_id: r for r in store.live()}
    states = []
    for camera in config.cameras:
        for zone in camera.zones:
            row = rows.get(zone.id)
            stale = row is None or (now - row.at).total_seconds() > camera.offline_after_s
            states.append(
                ZoneState(
                    zone_id=zone.id,
                    name=zone.name,
                    role=zone.role,
                    camera_id=camera.id,
                    count=None if stale or row is None else row.count,
                    raw=None if stale or row is None else row.raw,
                    measured_at=None if row is None else row.at,
                    stale=stale,
                    camera_status="unknown" if stale or row is None else _NAMES[row.camera_status],
                )
            )
    return states


def totals_by_role(zones: list[ZoneState]) -> dict[str, float | None]:
    """People per role; a role with any unknown zone is unknown, not a partial sum."""
    totals: dict[str, float | None] = {}
    for zone in zones:
        if zone.role in totals and totals[zone.role] is None:
            continue
        current = totals.get(zone.role, 0.0)
        totals[zone.role] = None if zone.count is None or current is None else current + zone.count
    return totals
