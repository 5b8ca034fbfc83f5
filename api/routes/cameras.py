"""A camera's latest frame and what the detector found in it, for admins (docs/ui.md 3).

The snapshot is the only camera image the product serves: off unless `api.snapshots.enabled`,
held in the service's memory only (edge/runtime/frames.py, asked over its Unix socket; nothing
is stored here either), to admins only, and every view is logged with who and from where and
counted (ApiContext.snapshot_views, for lobbywatch_snapshot_views_total). /debug draws it with
each box, its score, zone and why it does not count, and the camera's zones and ignore masks.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from api import frames_client
from api.auth import Principal
from api.deps import AUTH_RESPONSES, ApiContext, Context, client_of, require
from api.routes.webapp import SECURITY_HEADERS
from api.schemas import Problem
from edge.config import CameraConfig, ZoneRole
from edge.runtime.frames import socket_path

log = logging.getLogger("lobbywatch.api")

router = APIRouter(tags=["cameras"])

Admin = Annotated[Principal, Depends(require("admin"))]

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

SNAPSHOT_RESPONSES: dict[int | str, dict[str, object]] = {
    **AUTH_RESPONSES,
    404: {"model": Problem, "description": "No such camera (or the frame is no longer held)"},
    503: {
        "model": Problem,
        "description": "Snapshots are off, the service is not running, or the camera has no "
        "frame yet; the detail says which",
    },
}


class BoxOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    xyxy: list[float] = Field(description="Box corners in pixels of the frame: x1, y1, x2, y2")
    anchor: list[float] = Field(description="The feet (bottom centre), normalized: what places "
                                "a person in a zone")  # fmt: skip
    score: float = Field(description="The detector's confidence, 0..1")
    zone: str | None = Field(description="The zone it counts in; null when it does not count")
    counted: bool
    reason: Literal["ignored", "scene", "no zone"] | None = Field(
        description="Why it does not count: in an ignore mask, ruled out by the scene (size, "
        "text overlay, static clutter), or outside every zone; null when counted"
    )
    rule: str | None = Field(None, description="The scene's rule, for reason scene")


class DetectionsOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    camera: str
    seq: int = Field(description="The frame's number in the service (the snapshot's "
                     "X-Lobbywatch-Seq): ask for its boxes with ?seq=")  # fmt: skip
    frame_index: int
    at: datetime = Field(description="When the frame was captured (UTC)")
    width: int = Field(description="Frame width in pixels")
    height: int
    counted: int = Field(description="Boxes that count in a zone")
    scene_dropped: int = Field(description="Boxes the scene ruled out")
    boxes: list[BoxOut]


class ZoneShape(BaseModel):
    id: str
    name: str
    role: ZoneRole
    priority: int
    polygon: list[tuple[float, float]] = Field(description="Normalized (x, y), 0..1")


class MaskShape(BaseModel):
    id: str
    reason: str
    polygon: list[tuple[float, float]]


class GeometryOut(BaseModel):
    camera: str
    name: str
    zones: list[ZoneShape]
    ignore: list[MaskShape] = Field(description="Ignore masks: feet here never count")


def _camera(context: ApiContext, camera_id: str) -> CameraConfig:
    for camera in context.config.cameras:
        if camera.id == camera_id:
            return camera
    raise HTTPException(404, f"no camera {camera_id!r} at this site")


def _fetch(
    context: ApiContext, camera_id: str, *, image: bool, seq: int | None = None
) -> frames_client.Snapshot:
    _camera(context, camera_id)
    if not context.config.api.snapshots.enabled:
        raise HTTPException(
            503, "snapshots are off: set api.snapshots.enabled: true and restart the service"
        )
    try:
        return frames_client.fetch(
            socket_path(context.config.storage.path), camera_id, image=image, seq=seq
        )
    except frames_client.FramesUnavailable as exc:
        raise HTTPException(exc.status, exc.reason) from None


def _viewed(
    request: Request, context: ApiContext, who: Principal, camera_id: str, what: str
) -> None:
    context.snapshot_views.add(camera_id)
    log.info("snapshot of camera %s (%s) viewed by key %s from %s",
             camera_id, what, who.key_id, client_of(request))  # fmt: skip


@router.get(
    "/v1/cameras/{camera_id}/snapshot.jpg",
    summary="The camera's latest frame as JPEG (admin; only with api.snapshots.enabled)",
    description="Held in the service's memory only, never stored; every view is logged and "
    "counted. X-Lobbywatch-Seq names the frame: GET .../detections?seq= gives its boxes.",
    response_class=Response,
    responses={**SNAPSHOT_RESPONSES, 200: {"content": {"image/jpeg": {}}}},
)
def snapshot(camera_id: str, request: Request, context: Context, who: Admin) -> Response:
    frame = _fetch(context, camera_id, image=True)
    if not frame.jpeg:
        raise HTTPException(503, f"no frame of camera {camera_id} yet")
    _viewed(request, context, who, camera_id, "image")
    headers = {
        **NO_STORE,
        "X-Lobbywatch-Seq": str(frame.header["seq"]),
        "X-Lobbywatch-At": str(frame.header["at"]),
    }
    return Response(frame.jpeg, media_type="image/jpeg", headers=headers)


@router.get(
    "/v1/cameras/{camera_id}/detections",
    summary="The boxes of the camera's latest frame, each counted or why not (admin)",
    description="Of the latest frame, or of frame `seq` (a snapshot's X-Lobbywatch-Seq, kept "
    "for the last few frames). Only with api.snapshots.enabled; every view logged.",
    responses=SNAPSHOT_RESPONSES,
)
def detections(
    camera_id: str,
    request: Request,
    context: Context,
    who: Admin,
    seq: Annotated[int | None, Query(ge=1, description="A snapshot's frame number")] = None,
) -> Response:
    frame = _fetch(context, camera_id, image=False, seq=seq)
    _viewed(request, context, who, camera_id, "detections")
    out = DetectionsOut.model_validate(frame.header)
    return Response(out.model_dump_json(), media_type="application/json", headers=NO_STORE)


@router.get(
    "/v1/cameras/{camera_id}/geometry",
    summary="The camera's zones and ignore masks as configured (admin)",
    responses={**AUTH_RESPONSES, 404: {"model": Problem, "description": "No such camera"}},
)
def geometry(camera_id: str, context: Context, _: Admin) -> GeometryOut:
    camera = _camera(context, camera_id)
    return GeometryOut(
        camera=camera.id,
        name=camera.name or camera.id,
        zones=[
            ZoneShape(
                id=z.id,
                name=z.name,
                role=z.role,
                priority=z.priority,
                polygon=[(p[0], p[1]) for p in z.polygon],
            )
            for z in camera.zones
        ],
        ignore=[
            MaskShape(id=m.id, reason=m.reason, polygon=[(p[0], p[1]) for p in m.polygon])
            for m in camera.ignore
        ],
    )


# ---- /debug: the page (no data in it: it asks the routes above with the browser's credential)

DEBUG_DIR = Path(__file__).resolve().parent.parent / "web" / "debug"
DEBUG_FILES = {
    "index.html": "text/html; charset=utf-8",
    "debug.js": "text/javascript; charset=utf-8",
    "debug.css": "text/css; charset=utf-8",
}
#: The app's policy, and the snapshot shown from a blob: URL (fetched with its headers, so
#: the page knows which frame's boxes to ask for).
DEBUG_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": SECURITY_HEADERS["Content-Security-Policy"].replace(
        "img-src 'self'", "img-src 'self' blob:"
    ),
}


def _debug_file(name: str) -> bytes:
    try:
        return (DEBUG_DIR / name).read_bytes()
    except OSError as exc:  # an install without its package data
        raise HTTPException(
            404, f"the debug page's {name} is not installed ({exc.strerror})"
        ) from None


@router.get("/debug", include_in_schema=False)
def debug_page(context: Context) -> Response:
    page = _debug_file("index.html").replace(
        b'data-site-language="en"',
        f'data-site-language="{context.config.alerts.language}"'.encode(),
    )
    return Response(page, media_type=DEBUG_FILES["index.html"], headers=DEBUG_HEADERS)


@router.get("/debug/", include_in_schema=False)
def debug_slash() -> RedirectResponse:
    return RedirectResponse("/debug", status_code=308)


@router.get("/debug/{name}", include_in_schema=False)
def debug_asset(name: str) -> Response:
    if name not in DEBUG_FILES:
        raise HTTPException(404, f"no /debug/{name}")
    return Response(_debug_file(name), media_type=DEBUG_FILES[name], headers=DEBUG_HEADERS)
