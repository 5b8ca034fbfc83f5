"""Zones and the occupancy now."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AUTH_RESPONSES, Context, Viewer
from api.live import totals_by_role, zone_states
from api.schemas import OccupancyOut, ZoneOccupancy, ZoneOut, ZonesOut

router = APIRouter(prefix="/v1", tags=["live"], responses=AUTH_RESPONSES)


@router.get("/zones", summary="Zones with their camera, role and name")
def list_zones(context: Context, _: Viewer) -> ZonesOut:
    config = context.config
    return ZonesOut(
        site_id=config.site.id,
        site_name=config.site.name,
        timezone=config.site.timezone,
        zones=[
            ZoneOut(
                id=zone.id,
                name=zone.name,
                role=zone.role,
                camera_id=camera.id,
                camera_name=camera.name,
            )
            for camera in config.cameras
            for zone in camera.zones
        ],
    )


@router.get("/occupancy", summary="People per zone now; null when unknown or stale")
def occupancy(context: Context, _: Viewer) -> OccupancyOut:
    now = context.clock()
    zones = zone_states(context.config, context.store.store(), now)
    return OccupancyOut(
        at=now,
        zones=[ZoneOccupancy.model_validate(z, from_attributes=True) for z in zones],
        by_role=totals_by_role(zones),
    )
