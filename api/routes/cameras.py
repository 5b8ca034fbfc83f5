"""A camera's latest frame and what the detector found in it, for admins (docs/ui.md 3).

The snapshot is the only camera image the product serves: off unless `api.snapshots.enabled`,
held in the service's memory only (edge/runtime/frames.py, asked over its Unix socket; nothing
is stored here either), to admins only, and every view is logged with who and from where and
counted (ApiContext.snapshot_views, for lobbywatch_snapshot_views_total). /debug draws it with
each box, its score, zone and why it does not count, and the camera's zones and ignore masks.

The zone editor (docs/ui.md 5) reads the geometry with the config file's ETag and saves it
back with PUT, into the file (api/config_edit.py); the service reloads on the change.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api import frames_client
from api.auth import Principal
from api.config_edit import ConfigFile, ConfigInvalid, EditError
from api.deps import AUTH_RESPONSES, ApiContext, Context, client_of, require
from api.routes.webapp import SECURITY_HEADERS
from api.schemas import Problem
from edge.config import ID_PATTERN, CameraConfig, ConfigError, ZoneRole
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


GEOMETRY_RESPONSES: dict[int | str, dict[str, object]] = {
    **AUTH_RESPONSES,
    200: {"headers": {"ETag": {"schema": {"type": "string"},
                               "description": "The config file's version (quoted sha256)"}}},
    404: {"model": Problem, "description": "No such camera"},
}  # fmt: skip


def _shapes(camera: CameraConfig) -> GeometryOut:
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


def _geometry_response(out: GeometryOut, etag: str | None) -> Response:
    headers = {**NO_STORE, **({"ETag": f'"{etag}"'} if etag else {})}
    return Response(out.model_dump_json(), media_type="application/json", headers=headers)


def config_file(request: Request) -> ConfigFile | None:
    """The file the API was started with (create_app(config_path=...)); None without one."""
    found = getattr(request.app.state, "lobbywatch_config_file", None)
    return found if isinstance(found, ConfigFile) else None


@router.get(
    "/v1/cameras/{camera_id}/geometry",
    summary="The camera's zones and ignore masks as configured (admin)",
    description="From the config file as it is now, with its version as the ETag that a "
    "PUT must send back as If-Match (while the file does not load: the running config's).",
    response_model=GeometryOut,
    responses=GEOMETRY_RESPONSES,
)
def geometry(camera_id: str, request: Request, context: Context, _: Admin) -> Response:
    found = config_file(request)
    if found is None:
        return _geometry_response(_shapes(_camera(context, camera_id)), None)
    try:
        version = found.read()
    except EditError:
        return _geometry_response(_shapes(_camera(context, camera_id)), None)
    try:
        on_disk = found.load(version)
    except ConfigError:
        return _geometry_response(_shapes(_camera(context, camera_id)), version.etag)
    camera = next((c for c in on_disk.cameras if c.id == camera_id), None)
    if camera is None:
        raise HTTPException(404, f"no camera {camera_id!r} at this site")
    return _geometry_response(_shapes(camera), version.etag)


# ---- PUT geometry: the zone editor's save (api/config_edit.py)

#: A body over this is refused before it is parsed: 32 zones and 32 masks of 64 points, written
#: out with long decimals, stay under it.
MAX_BODY_BYTES = 256 * 1024
MAX_SHAPES = 32
MAX_POINTS = 64

Polygon = Annotated[
    list[tuple[float, float]],
    Field(min_length=3, max_length=MAX_POINTS,
          description="Normalized (x, y), 0..1; 3 to 64 points, written with 4 decimals"),
]  # fmt: skip
ConfigId = Annotated[str, Field(pattern=ID_PATTERN, description="Letters, digits and _ . - (up to 64)")]


class ZoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: ConfigId
    name: str = Field("", max_length=200)
    role: ZoneRole
    priority: int = Field(0, ge=-1000, le=1000)
    polygon: Polygon


class MaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: ConfigId
    reason: str = Field("", max_length=200)
    polygon: Polygon


class GeometryIn(BaseModel):
    """A camera's new zones and ignore masks (the rest of each zone kept, docs/ui.md 5)."""

    model_config = ConfigDict(extra="forbid")

    zones: list[ZoneIn] = Field(max_length=MAX_SHAPES)
    ignore: list[MaskIn] = Field(default_factory=list, max_length=MAX_SHAPES)


SAVE_RESPONSES: dict[int | str, dict[str, object]] = {
    **GEOMETRY_RESPONSES,
    404: {"model": Problem, "description": "No such camera in the config file"},
    409: {"model": Problem, "description": "The file changed since its ETag was read"},
    413: {"model": Problem, "description": "The body is over 256 KiB"},
    422: {"description": "The body, or the config it would make, does not validate: FastAPI's "
          "list of {loc, msg}; the loader's issues also name their path and line in the file"},
    428: {"model": Problem, "description": "No If-Match"},
    503: {"model": Problem, "description": "The config file cannot be read or written (a "
          "read-only mount), or the API was started without its path; also as for every route"},
}  # fmt: skip


async def _body(request: Request) -> bytes:
    """The body, refused with 413 past MAX_BODY_BYTES however it comes (a length or chunks)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the body is over {MAX_BODY_BYTES // 1024} KiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, f"the body is over {MAX_BODY_BYTES // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


#: Bodies read by hand (for the size limit), for the app to put in the document's components.
BODY_MODELS: tuple[type[BaseModel], ...] = (GeometryIn,)


def _parse_body(raw: bytes) -> GeometryIn:
    try:
        return GeometryIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None


@router.put(
    "/v1/cameras/{camera_id}/geometry",
    summary="Save the camera's zones and ignore masks into the config file (admin)",
    description="With If-Match: the ETag of GET .../geometry. The camera's `zones` and "
    "`ignore` in the file are replaced (each kept zone's other keys, and the rest of the "
    "file, comments too, stay), the whole new file validated as the service loads it, the old "
    "one kept as `<file>.bak-<UTC stamp>`, and the new one written atomically. The service "
    "takes it up within seconds without a restart (its API restarts with it).",
    response_model=GeometryOut,
    responses=SAVE_RESPONSES,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/GeometryIn"}}}},
        # Read by hand (a missing one is a 428, not a 422), declared here as the required
        # header it is, so clients and generated tests send it.
        "parameters": [{"name": "If-Match", "in": "header", "required": True,
                        "description": "The ETag of GET .../geometry",
                        "schema": {"type": "string", "pattern": '^"[0-9a-f]{64}"$'}}],
    },
)  # fmt: skip
async def save_geometry(camera_id: str, request: Request, who: Admin) -> Response:
    if_match = request.headers.get("if-match")
    found = config_file(request)
    if found is None:
        raise HTTPException(503, "the API was started without its config file's path: "
                                 "start it with --config to save zones")  # fmt: skip
    body = _parse_body(await _body(request))
    zones = [z.model_dump() for z in body.zones]
    ignore = [m.model_dump() for m in body.ignore]
    try:
        version, config = await run_in_threadpool(
            found.save_geometry, camera_id, zones, ignore, if_match
        )
    except EditError as exc:
        raise HTTPException(exc.status, exc.detail) from None
    except ConfigInvalid as exc:
        return Response(
            json.dumps({"detail": exc.details()}, ensure_ascii=False),
            status_code=422,
            media_type="application/json",
            headers=NO_STORE,
        )
    log.info("config: camera %s zones saved by key %s from %s",
             camera_id, who.key_id, client_of(request))  # fmt: skip
    return _geometry_response(_shapes(config.camera(camera_id)), version.etag)


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
