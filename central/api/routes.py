"""The routes (docs/central.md, "Head-office API"). Every list holds only the caller's
branches; a branch outside them is 404 (app.CentralContext.site_for)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import StringConstraints
from pydantic_core import to_json

from api.buckets import MAX_SPAN as HISTORY_MAX_SPAN
from api.buckets import bucket_edges, iso
from api.deps import invalid
from api.routes.common import EndParam, StartParam
from central.api.app import AUTH_RESPONSES, Caller, CentralContext, Context, Viewer
from central.api.schemas import (
    AboveThresholdOut,
    AckTimesOut,
    AlertStateOut,
    BranchAckOut,
    BranchOpenOut,
    BranchPassesOut,
    BranchWaitingOut,
    BranchWaitOut,
    CentralHealthOut,
    CentralHistoryOut,
    OfflineBranchOut,
    OfflineReportOut,
    PassesReportOut,
    Problem,
    SiteAlertsOut,
    SiteOut,
    WaitingReportOut,
)
from central.store import MIGRATIONS, HistoryBucket, SiteState
from edge.config import ID_PATTERN

router = APIRouter(prefix="/v1")

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such branch, or not in the key's regions"}
}
LATEST_SCHEMA = MIGRATIONS[-1][0]
BUCKET_S = 900
UTC_ZONE = ZoneInfo("UTC")  # 15m buckets are UTC-aligned whatever the zone

SiteParam = Annotated[str, Path(pattern=ID_PATTERN, description="The branch's site id")]
#: A zone id as the site config has it (and never a NUL, which PostgreSQL text refuses).
ZoneId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


@router.get(
    "/health",
    tags=["health"],
    summary="The database answers, with the schema this API reads (no key needed)",
    response_model=CentralHealthOut,
    responses={503: {"model": CentralHealthOut, "description": "Not ready: see detail"}},
)
def health(context: Context) -> JSONResponse:
    version: int | None = None
    detail = None
    try:
        version = context.query(lambda s: s.schema_version())
    except psycopg.Error as exc:  # unreachable, or no schema table yet: not ready
        detail = f"database unreachable: {type(exc).__name__}"
    if version is not None and version < LATEST_SCHEMA:
        detail = f"schema version {version}, this API reads {LATEST_SCHEMA}: run the ingestion"
    body = CentralHealthOut(
        status="ok" if detail is None else "fail",
        database=version is not None,
        schema_version=version,
        expected_schema_version=LATEST_SCHEMA,
        at=context.clock(),
        detail=detail,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if detail is None else 503)


def _online(context: CentralContext, state: SiteState | None, now: datetime) -> bool:
    if state is None:
        return False
    recent = (now - state.last_seen_at).total_seconds() <= context.config.offline_after_s
    return recent and state.availability in (None, "online")


def _branches(context: CentralContext, caller: Caller) -> dict[str, SiteState | None]:
    """The caller's branches: those heard from and those configured in a region, by id."""
    seen = context.query(lambda s: s.sites_seen(caller.sites))
    known: dict[str, SiteState | None] = {s: None for s in context.configured_sites()}
    known.update({s.site: s for s in seen})
    return {site: known[site] for site in sorted(known) if caller.sees(site)}


@router.get(
    "/sites",
    tags=["sites"],
    summary="The branches the key sees: region, last heard from, online",
    description="Branches heard from and those central.yaml lists in a region (never heard "
    "from: last_seen_at null, not online). Online: heard from within offline_after_s and its "
    "availability, when it said one, online.",
    response_model=list[SiteOut],
    responses=AUTH_RESPONSES,
)
def list_sites(context: Context, caller: Viewer) -> list[SiteOut]:
    now = context.clock()
    return [
        SiteOut(
            site=site,
            region=context.region_of(site),
            last_seen_at=None if state is None else state.last_seen_at,
            availability=None if state is None else state.availability,
            online=_online(context, state, now),
        )
        for site, state in _branches(context, caller).items()
    ]


ZoneParam = Annotated[
    list[ZoneId] | None,
    Query(description="Zone id; repeat for several. Default: every zone the branch sent"),
]


@router.get(
    "/sites/{site}/occupancy/history",
    tags=["sites"],
    summary="One branch's occupancy per zone in 15-minute buckets (the device's shape + site)",
    description="As the device's GET /v1/occupancy/history?bucket=15m: the range (default the "
    "last day, at most 90 days as on the device) widened to whole UTC-aligned quarter hours, "
    "every bucket listed, null and coverage 0 where nothing arrived. Default zones: those the "
    "branch sent in the range; a zone it never sent is a 422.",
    response_model=CentralHistoryOut,
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)
def site_history(
    context: Context,
    caller: Viewer,
    site: SiteParam,
    zone: ZoneParam = None,
    start: StartParam = None,
    end: EndParam = None,
) -> Response:
    site = context.site_for(caller, site)
    time_range = context.range_of(start, end, max_span=HISTORY_MAX_SPAN["15m"])
    edges = bucket_edges("15m", time_range, UTC_ZONE)
    first, last = _at(int(edges[0])), _at(int(edges[-1]))
    if zone:
        asked = list(dict.fromkeys(zone))
        known = set(context.query(lambda s: s.zones_known(site, asked)))
        unknown = [z for z in asked if z not in known]
        if unknown:
            raise invalid("query", "zone", f"branch {site!r} never sent zone {unknown[0]!r}")
        zones = asked
    else:
        zones = context.query(lambda s: s.site_zones(site, first, last))
    rows = context.query(lambda s: s.site_history(site, zones, first, last))
    document = history_document(site, [int(e) for e in edges], zones, rows)
    return Response(to_json(document), media_type="application/json")


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def history_document(
    site: str, edges: list[int], zones: list[str], rows: list[HistoryBucket]
) -> dict[str, Any]:
    """CentralHistoryOut as plain data: every bucket of every zone, unknown as None."""
    by_key = {(r.zone, int(r.start_at.timestamp())): r for r in rows}
    stamps = [iso(e) for e in edges]

    def point(zone: str, i: int) -> dict[str, Any]:
        row = by_key.get((zone, edges[i]))
        values: dict[str, Any] = {"mean": None, "max": None, "p90": None}
        if row is None:
            return {
                "start": stamps[i],
                "end": stamps[i + 1],
                **values,
                "coverage": 0.0,
                "samples": 0,
            }
        return {
            "start": stamps[i],
            "end": stamps[i + 1],
            "mean": _finite(row.mean),
            "max": _finite(row.max),
            "p90": _finite(row.p90),
            "coverage": min(1.0, max(0.0, row.seen_s / BUCKET_S)),
            "samples": max(0, row.frames),
        }

    return {
        "site": site,
        "bucket": "15m",
        "start": stamps[0],
        "end": stamps[-1],
        "timezone": "UTC",
        "zones": [
            {"zone_id": z, "points": [point(z, i) for i in range(len(edges) - 1)]} for z in zones
        ],
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


@router.get(
    "/sites/{site}/alerts",
    tags=["sites"],
    summary="One branch's alerts raised in the range, each in its latest state",
    description="Default: raised in the last day; at most 400 days.",
    response_model=SiteAlertsOut,
    responses={**AUTH_RESPONSES, **NOT_FOUND},
)
def site_alerts(
    context: Context,
    caller: Viewer,
    site: SiteParam,
    start: StartParam = None,
    end: EndParam = None,
) -> SiteAlertsOut:
    site = context.site_for(caller, site)
    time_range = context.range_of(start, end)
    rows = context.query(lambda s: s.site_alerts(site, time_range.start, time_range.end))
    return SiteAlertsOut(
        site=site,
        start=time_range.start,
        end=time_range.end,
        alerts=[
            AlertStateOut(
                site=r.site,
                alert_id=r.alert_id,
                kind=r.kind,
                rule=r.rule,
                zone_ids=list(r.zone_ids),
                status=r.status,
                at=r.at,
                by=r.by,
                raised_at=r.raised_at,
                state=r.details,
            )
            for r in rows
        ],
    )


RANGE = "Over [start, end): default the last day, at most 400 days (422 beyond)."


@router.get(
    "/reports/branches/waiting",
    tags=["reports"],
    summary="Branches ranked by mean people waiting and by mean estimated wait",
    description=f"{RANGE} People waiting: the branch's line zones (waiting, queue) summed per "
    "interval, averaged over the intervals with a count. Wait: the queue's estimate, one a "
    "minute, averaged over the minutes that had one. Unknown is left out, never read as 0.",
    response_model=WaitingReportOut,
    responses=AUTH_RESPONSES,
)
def waiting_report(
    context: Context, caller: Viewer, start: StartParam = None, end: EndParam = None
) -> WaitingReportOut:
    r = context.range_of(start, end)
    waiting = context.query(lambda s: s.report_waiting(r.start, r.end, caller.sites))
    waits = context.query(lambda s: s.report_wait_minutes(r.start, r.end, caller.sites))
    return WaitingReportOut(
        start=r.start,
        end=r.end,
        by_waiting=[
            BranchWaitingOut(region=context.region_of(b.site), **vars(b))
            for b in waiting
            if caller.sees(b.site)
        ],
        by_wait_minutes=[
            BranchWaitOut(region=context.region_of(b.site), **vars(b))
            for b in waits
            if caller.sees(b.site)
        ],
    )


@router.get(
    "/reports/branches/above-threshold",
    tags=["reports"],
    summary="Branches ranked by time with a diversion alert open",
    description=f"{RANGE} From each diversion alert's `since` (the count first at the "
    "threshold) to its clear, clipped to the range; one still open counts up to now; alerts "
    "open at once are counted once. Branches with none open are left out.",
    response_model=AboveThresholdOut,
    responses=AUTH_RESPONSES,
)
def above_threshold_report(
    context: Context, caller: Viewer, start: StartParam = None, end: EndParam = None
) -> AboveThresholdOut:
    r = context.range_of(start, end)
    now = context.clock()
    rows = context.query(lambda s: s.report_above_threshold(r.start, r.end, now, caller.sites))
    span = max((r.end - r.start).total_seconds(), 1.0)
    return AboveThresholdOut(
        start=r.start,
        end=r.end,
        branches=[
            BranchOpenOut(
                site=b.site,
                region=context.region_of(b.site),
                open_s=b.open_s,
                share=min(1.0, b.open_s / span),
                alerts=b.alerts,
            )
            for b in rows
            if caller.sees(b.site)
        ],
    )


@router.get(
    "/reports/alerts/ack-times",
    tags=["reports"],
    summary="Per branch: diversion alerts raised, accepted, seconds to accept (p50, p90)",
    description=f"{RANGE} Alerts raised in the range; seconds from the raise to the first "
    "accept, interpolated percentiles (percentile_cont) over the accepted ones.",
    response_model=AckTimesOut,
    responses=AUTH_RESPONSES,
)
def ack_times_report(
    context: Context, caller: Viewer, start: StartParam = None, end: EndParam = None
) -> AckTimesOut:
    r = context.range_of(start, end)
    rows = context.query(lambda s: s.report_ack_times(r.start, r.end, caller.sites))
    return AckTimesOut(
        start=r.start,
        end=r.end,
        branches=[
            BranchAckOut(
                site=b.site,
                region=context.region_of(b.site),
                raised=b.raised,
                accepted=b.accepted,
                unaccepted=b.unaccepted,
                p50_s=b.p50_s,
                p90_s=b.p90_s,
            )
            for b in rows
            if caller.sees(b.site)
        ],
    )


@router.get(
    "/reports/passes",
    tags=["reports"],
    summary="Per branch: diversion passes done and their effect",
    description=f"{RANGE} Passes reported done in the range; of those with their effect "
    "measured, the mean people waiting at the pass and effect_after_s after it.",
    response_model=PassesReportOut,
    responses=AUTH_RESPONSES,
)
def passes_report(
    context: Context, caller: Viewer, start: StartParam = None, end: EndParam = None
) -> PassesReportOut:
    r = context.range_of(start, end)
    rows = context.query(lambda s: s.report_passes(r.start, r.end, caller.sites))
    return PassesReportOut(
        start=r.start,
        end=r.end,
        branches=[
            BranchPassesOut(region=context.region_of(b.site), **vars(b))
            for b in rows
            if caller.sees(b.site)
        ],
    )


@router.get(
    "/reports/devices/offline",
    tags=["reports"],
    summary="Branches not heard from for offline_after_s, or whose availability is not online",
    description="With those central.yaml lists in a region that never sent anything.",
    response_model=OfflineReportOut,
    responses=AUTH_RESPONSES,
)
def offline_report(context: Context, caller: Viewer) -> OfflineReportOut:
    now = context.clock()
    limit = context.config.offline_after_s
    branches = []
    for site, state in _branches(context, caller).items():
        if _online(context, state, now):
            continue
        silent = None if state is None else max(0.0, (now - state.last_seen_at).total_seconds())
        reason = "never_heard" if silent is None else "silent" if silent > limit else "unavailable"
        branches.append(
            OfflineBranchOut(
                site=site,
                region=context.region_of(site),
                last_seen_at=None if state is None else state.last_seen_at,
                availability=None if state is None else state.availability,
                silent_s=silent,
                reason=reason,
            )
        )
    branches.sort(key=lambda b: (b.silent_s is not None, -(b.silent_s or 0.0), b.site))
    return OfflineReportOut(at=now, offline_after_s=limit, branches=branches)
