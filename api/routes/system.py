"""Health (no key needed, for IT and orchestrators) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import AUTH_RESPONSES, Context, Viewer
from api.health import check_health
from api.metrics import render
from api.schemas import HealthOut, LiveOut

router = APIRouter(tags=["system"])


@router.get(
    "/v1/health",
    summary="Readiness and liveness, with cameras, broker, disk and store (no key needed)",
    description="200 when ready, 503 when not (store unreadable or unwritable, disk nearly "
    "full, or no camera online). The body is the same either way. Shows no counts.",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "Not ready"}},
)
def health(context: Context) -> JSONResponse:
    report = check_health(context.config, context.store, context.clock())
    return JSONResponse(report.model_dump(mode="json"), status_code=200 if report.ready else 503)


@router.get("/v1/health/live", summary="Liveness: the API process answers (no key needed)")
def live() -> LiveOut:
    return LiveOut(live=True)


@router.get(
    "/metrics",
    summary="Prometheus metrics (viewer key)",
    description="Per camera: fps, detector seconds, status; per zone: occupancy (absent while "
    "unknown) and whether it is known; alerts by kind and status; failed authentications.",
    response_class=Response,
    responses={
        **AUTH_RESPONSES,
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
    },
)
def metrics(context: Context, _: Viewer) -> Response:
    return Response(render(context.registry), media_type=CONTENT_TYPE_LATEST)
