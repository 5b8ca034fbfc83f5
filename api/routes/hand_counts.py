"""Hand counts for calibration (docs/ui.md 6): heads clicked on a snapshot in /debug, kept
without the picture, for `lobbywatch calibrate --from-store`.

A hand count is only worth something beside what the detector found in that very frame, so a
POST names the frame by the snapshot's seq and the route asks the service for its boxes (the
service keeps those of the last 16 frames, never an image beyond the latest); when the frame
has gone by, 409: take a new snapshot. What is stored: the heads (normalized), the boxes the
scene kept (pixels, score, zone), the detector's count per zone, who and when. The image is
never written anywhere. Admins only, with snapshots on (as the snapshot routes), every use
logged with who and from where.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import Response

from api import frames_client
from api.auth import Principal
from api.deps import AUTH_RESPONSES, ApiContext, Context, client_of, require
from api.routes.cameras import NO_STORE, _camera
from api.schemas import HandCountIn, HandCountOut, HandCountsOut, Problem
from edge.calibration import MIN_FRAMES, camera_geometry, heads_per_zone, zones_key
from edge.config import CameraConfig
from edge.runtime.frames import socket_path
from edge.store import HandCount, StoredBox
from edge.zones import tally

log = logging.getLogger("lobbywatch.api")

router = APIRouter(tags=["cameras"])

Admin = Annotated[Principal, Depends(require("admin"))]

#: Hand counts kept per camera: 50 times what a fit is advised, and a bound on the table.
MAX_PER_CAMERA = 1000
GONE = "that frame is gone, take a new snapshot"

RESPONSES: dict[int | str, dict[str, object]] = {
    **AUTH_RESPONSES,
    404: {"model": Problem, "description": "No such camera (or hand count)"},
    503: {
        "model": Problem,
        "description": "Snapshots are off, or (POST) the service is not running; the detail "
        "says which",
    },
}


def _snapshots_on(context: ApiContext, camera_id: str) -> CameraConfig:
    camera = _camera(context, camera_id)
    if not context.config.api.snapshots.enabled:
        raise HTTPException(
            503, "snapshots are off: set api.snapshots.enabled: true and restart the service"
        )
    return camera


def _frame(context: ApiContext, camera_id: str, seq: int) -> dict[str, Any]:
    """The boxes of frame `seq` as the service judged them (no image asked for)."""
    try:
        return frames_client.fetch(
            socket_path(context.config.storage.path), camera_id, image=False, seq=seq
        ).header
    except frames_client.FramesUnavailable as exc:
        if exc.status == 404 and "no longer held" in exc.reason:
            raise HTTPException(409, GONE) from None
        raise HTTPException(exc.status, exc.reason) from None


def _out(count: HandCount, camera: CameraConfig) -> HandCountOut:
    zones, ignore = camera_geometry(camera)
    xy = np.array(count.heads, np.float64).reshape(-1, 2)
    return HandCountOut(
        id=count.id,
        camera_id=count.camera_id,
        at=count.at,
        seq=count.seq,
        width=count.width,
        height=count.height,
        heads=list(count.heads),
        heads_per_zone=heads_per_zone(xy, zones, ignore),
        detected=count.detected,
        boxes=len(count.boxes),
        saved_by=count.saved_by,
        saved_at=count.saved_at,
    )


def _json(body: HandCountOut | HandCountsOut, status: int = 200) -> Response:
    return Response(
        body.model_dump_json(), status_code=status, media_type="application/json",
        headers=NO_STORE,
    )  # fmt: skip


@router.post(
    "/v1/cameras/{camera_id}/hand-counts",
    summary="Keep the heads counted by hand on a snapshot, with that frame's boxes (admin)",
    description="The frame is named by the snapshot's X-Lobbywatch-Seq and must still be held "
    "by the service (409 otherwise: take a new snapshot). Stored: the heads, the boxes the "
    "scene kept and the detector's count per zone; never the image. Only with "
    "api.snapshots.enabled; logged.",
    status_code=201,
    response_model=HandCountOut,
    responses={
        **RESPONSES,
        201: {"model": HandCountOut},
        400: {"model": Problem, "description": "The body is not JSON"},
        409: {"model": Problem, "description": "The frame is gone, or the camera has too many"},
    },
)
def add_hand_count(
    camera_id: str, body: HandCountIn, request: Request, context: Context, who: Admin
) -> Response:
    camera = _snapshots_on(context, camera_id)
    store = context.store.store()
    if store.hand_count_total(camera_id) >= MAX_PER_CAMERA:
        raise HTTPException(
            409, f"camera {camera_id} has {MAX_PER_CAMERA} hand counts: delete some first"
        )
    frame = _frame(context, camera_id, body.seq)
    zones, ignore = camera_geometry(camera)
    kept = [b for b in frame["boxes"] if b["reason"] != "scene"]
    count = HandCount(
        camera_id=camera_id,
        at=datetime.fromisoformat(frame["at"]),
        seq=int(frame["seq"]),
        width=int(frame["width"]),
        height=int(frame["height"]),
        heads=tuple((float(x), float(y)) for x, y in body.heads),
        boxes=tuple(
            StoredBox(tuple(b["xyxy"]), tuple(b["anchor"]), float(b["score"]), b["zone"])
            for b in kept
        ),
        # The record has each box's zone, not the per-zone count: counted boxes per zone is the
        # count as the pipeline tallies it (without its presence hold).
        detected=tally([b["zone"] for b in kept if b["counted"]], [z.id for z in zones]),
        zones_key=zones_key(zones, ignore),
        saved_by=who.key_id,
        saved_at=context.clock(),
    )
    stored = replace(count, id=store.add_hand_count(count))
    log.info("hand count %d of camera %s (frame %d, %d heads) saved by key %s from %s",
             stored.id, camera_id, stored.seq, len(stored.heads), who.key_id,
             client_of(request))  # fmt: skip
    return _json(_out(stored, camera), 201)


@router.get(
    "/v1/cameras/{camera_id}/hand-counts",
    summary="The hand counts kept for a camera (admin; no images)",
    response_model=HandCountsOut,
    responses=RESPONSES,
)
def list_hand_counts(camera_id: str, request: Request, context: Context, who: Admin) -> Response:
    camera = _snapshots_on(context, camera_id)
    counts = context.store.store().hand_counts(camera_id)
    log.info("hand counts of camera %s listed by key %s from %s",
             camera_id, who.key_id, client_of(request))  # fmt: skip
    out = HandCountsOut(
        camera_id=camera_id, hand_counts=[_out(c, camera) for c in counts], advised=MIN_FRAMES
    )
    return _json(out)


@router.delete(
    "/v1/cameras/{camera_id}/hand-counts/{count_id}",
    summary="Drop one hand count (admin)",
    status_code=204,
    response_class=Response,
    responses=RESPONSES,
)
def delete_hand_count(
    camera_id: str,
    count_id: Annotated[int, Path(ge=1, le=2**62)],
    request: Request,
    context: Context,
    who: Admin,
) -> Response:
    _snapshots_on(context, camera_id)
    if not context.store.store().delete_hand_count(camera_id, count_id):
        raise HTTPException(404, f"camera {camera_id} has no hand count {count_id}")
    log.info("hand count %d of camera %s deleted by key %s from %s",
             count_id, camera_id, who.key_id, client_of(request))  # fmt: skip
    return Response(status_code=204, headers=NO_STORE)
