"""Occupancy history in buckets, and the busiest hours report."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic_core import to_json

from api.buckets import DEFAULT_SPAN, MAX_SPAN, Bucket, Int64Array, bucket_edges, iso
from api.csv_export import busiest_hours_csv, history_csv, wants_csv
from api.deps import AUTH_RESPONSES, ApiContext, Context, Viewer, invalid
from api.queries import busiest_hours, history
from api.routes.common import (
    CSV_RESPONSE,
    EndParam,
    FormatParam,
    StartParam,
    csv_response,
    time_range_of,
)
from api.schemas import WEEKDAY_NAMES, BusiestHoursOut, HistoryOut
from edge.storage.aggregate import Buckets, FloatArray, coverage

router = APIRouter(prefix="/v1", tags=["history"], responses=AUTH_RESPONSES)

REPORT_MAX_SPAN = MAX_SPAN["1h"]
REPORT_DEFAULT_SPAN = DEFAULT_SPAN["1d"]

ZoneParam = Annotated[
    list[str] | None,
    Query(description="Zone id; repeat for several (zone=a&zone=b). Default: every zone"),
]


@router.get(
    "/occupancy/history",
    summary="Occupancy per zone in 1m, 15m, 1h or 1d buckets",
    description="Ranges are bounded per bucket size: 1m up to 7 days, 15m up to 90 days, "
    "1h up to 400 days, 1d up to 5 years (422 beyond). Without start and end: the last hour "
    "(1m), day (15m), week (1h) or 30 days (1d) up to now. The range is widened to whole "
    "buckets. 1m, 15m and 1h buckets are aligned to UTC; 1d buckets run from local midnight "
    "to local midnight in the site's time zone (23 or 25 hours on days the clocks change). "
    "Every bucket of the range is listed; where nothing was recorded, mean, max and p90 are "
    "null and coverage is 0.",
    response_model=HistoryOut,
    responses=CSV_RESPONSE,
)
def occupancy_history(
    request: Request,
    context: Context,
    _: Viewer,
    zone: ZoneParam = None,
    start: StartParam = None,
    end: EndParam = None,
    bucket: Annotated[Bucket, Query(description="Bucket size")] = "1h",
    format: FormatParam = None,
) -> Response:
    zone_ids = _zones(context, zone)
    time_range = time_range_of(context, start, end, MAX_SPAN[bucket], DEFAULT_SPAN[bucket])
    edges = bucket_edges(bucket, time_range, context.tz)
    per_zone = history(context.store, context.rollup, bucket, zone_ids, edges)
    timezone = context.config.site.timezone if bucket == "1d" else "UTC"
    document = history_document(bucket, timezone, edges, per_zone)
    if wants_csv(format, request.headers.get("accept")):
        return csv_response(history_csv(document, context.tz), "occupancy-history.csv")
    # Serialized straight from plain data: a month of 1h buckets for 10 zones is 7 200 points,
    # and validating them into models would double the time of the whole request. The tests
    # check every answer against HistoryOut (and schemathesis against the OpenAPI schema).
    return Response(to_json(document), media_type="application/json")


def history_document(
    bucket: Bucket, timezone: str, edges: Int64Array, per_zone: dict[str, Buckets]
) -> dict[str, Any]:
    """The HistoryOut document as plain data: times as ISO strings, unknown as None."""
    stamps = [iso(int(e)) for e in edges]
    return {
        "bucket": bucket,
        "start": stamps[0],
        "end": stamps[-1],
        "timezone": timezone,
        "zones": [
            {"zone_id": zone_id, "points": _points(buckets, edges, stamps)}
            for zone_id, buckets in per_zone.items()
        ],
    }


def _points(buckets: Buckets, edges: Int64Array, stamps: list[str]) -> list[dict[str, Any]]:
    columns = zip(
        stamps[:-1],
        stamps[1:],
        _nullable(buckets.mean),
        _nullable(buckets.max),
        _nullable(buckets.p90),
        coverage(buckets, edges).tolist(),
        buckets.samples.tolist(),
        strict=True,
    )
    keys = ("start", "end", "mean", "max", "p90", "coverage", "samples")
    return [dict(zip(keys, row, strict=True)) for row in columns]


def _nullable(values: FloatArray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


@router.get(
    "/reports/busiest-hours",
    summary="Mean and peak occupancy by local weekday and hour",
    description="Over [start, end) (default: the last 30 days, at most 400 days), per zone and "
    "per weekday and hour of the site's time zone: the mean (weighted by frames counted) and "
    "the peak people, and the fraction of those hours the camera was seen.",
    response_model=BusiestHoursOut,
    responses=CSV_RESPONSE,
)
def busiest_hours_report(
    request: Request,
    context: Context,
    _: Viewer,
    zone: ZoneParam = None,
    start: StartParam = None,
    end: EndParam = None,
    format: FormatParam = None,
) -> BusiestHoursOut | Response:
    zone_ids = _zones(context, zone)
    time_range = time_range_of(context, start, end, REPORT_MAX_SPAN, REPORT_DEFAULT_SPAN)
    slots = busiest_hours(context.store, context.rollup, zone_ids, time_range, context.tz)
    document = {
        "start": time_range.start,
        "end": time_range.end,
        "timezone": context.config.site.timezone,
        "zones": [
            {
                "zone_id": zone_id,
                "slots": [
                    {**s.__dict__, "weekday": WEEKDAY_NAMES[s.weekday]} for s in slots[zone_id]
                ],
            }
            for zone_id in zone_ids
        ],
    }
    if wants_csv(format, request.headers.get("accept")):
        return csv_response(busiest_hours_csv(document), "busiest-hours.csv")
    return BusiestHoursOut.model_validate(document)


def _zones(context: ApiContext, asked: list[str] | None) -> list[str]:
    known = [z.id for c in context.config.cameras for z in c.zones]
    if not asked:
        return known
    unknown = [z for z in asked if z not in known]
    if unknown:
        raise invalid(
            "query", "zone", f"unknown zone {unknown[0]!r}; zones: {', '.join(known)}", unknown[0]
        )
    return list(dict.fromkeys(asked))  # in the order asked, each once
