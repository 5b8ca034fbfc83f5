"""The waiting count 15 and 30 minutes ahead (issue 13, item 3), read-only from the history.

Publishing it on MQTT beside the live state is a later step (edge/state_publisher.py); the wait
forecast (item 2) builds on the same `CountModel`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query

from api.buckets import TimeRange, bucket_edges
from api.deps import AUTH_RESPONSES, ApiContext, Context, Viewer, invalid
from api.queries import history
from api.schemas import ForecastOut
from edge.queueing.forecast import SLOT_S, CountForecast, CountModel, ForecastParams, SlotHistory

router = APIRouter(prefix="/v1", tags=["forecast"], responses=AUTH_RESPONSES)

HORIZONS_MIN = (15, 30)
PARAMS = ForecastParams()
#: History read per request: the profile's weeks before the calibration days, and those days.
LOOKBACK = timedelta(days=7 * PARAMS.weeks + PARAMS.calibration_days + 1)  # 85 of 15m's 90 days

ZonesParam = Annotated[
    list[str] | None,
    Query(
        description="Zone id; repeat for several (zone=a&zone=b), their counts are summed. "
        "Default: every waiting and queue zone"
    ),
]


@router.get(
    "/forecast",
    summary="Waiting count 15 and 30 minutes ahead, with an interval",
    description="The mean people of the zones (summed) in the quarter hour that holds now + 15 "
    "and now + 30 minutes: the median of that quarter hour over the last 8 same weekdays "
    "(the schedule's holidays left out), times today's ratio to it, plus a share of how far "
    "today's last complete quarter hour ran from its own such forecast (a line that built up "
    "stays a while). The share, 0 to 1 per horizon, is the one that served best on the past "
    "28 days; the basis shows it, that quarter hour's count and its usual value (null without "
    "one: the first quarter hour of the day, a camera gap). The 80% interval comes from the "
    "errors of the same forecast, anchor and all, on those 28 days. Unknown, with a reason, on "
    "a holiday, with fewer than 3 past same weekdays for that quarter hour, or fewer than 50 "
    "past forecasts to size the interval. Times are in the site's time zone.",
)
def count_forecast(context: Context, _: Viewer, zone: ZonesParam = None) -> ForecastOut:
    zone_ids = _zones(context, zone)
    now = context.clock()
    model = _model(context, zone_ids, now)
    ts = int(now.timestamp())
    forecasts = [model.forecast(ts, minutes * 60) for minutes in HORIZONS_MIN]
    return ForecastOut.model_validate(
        {
            "at": now.astimezone(context.tz),
            "timezone": context.config.site.timezone,
            "zones": zone_ids,
            "horizons": [_horizon(context, f) for f in forecasts],
        }
    )


def _model(context: ApiContext, zone_ids: list[str], now: datetime) -> CountModel:
    """The zones' summed 15m means up to the last complete quarter hour (the forecast's anchor;
    the quarter hour in progress is left out): a slot is unknown where any zone's is, since a
    sum with a camera missing would read as a quiet lobby."""
    origin = datetime.fromtimestamp(int(now.timestamp()) // SLOT_S * SLOT_S, timezone.utc)
    edges = bucket_edges("15m", TimeRange(origin - LOOKBACK, origin), context.tz)
    per_zone = history(context.store, context.rollup, "15m", zone_ids, edges)
    counts = np.sum([b.mean for b in per_zone.values()], axis=0)
    holidays = context.config.alerts.schedule.holidays
    return CountModel(SlotHistory(int(edges[0]), counts), context.tz, holidays, PARAMS)


def _horizon(context: ApiContext, f: CountForecast) -> dict[str, Any]:
    return {
        "horizon_min": f.horizon_s // 60,
        "start": datetime.fromtimestamp(f.target_start, context.tz),
        "end": datetime.fromtimestamp(f.target_end, context.tz),
        "status": "ok" if f.known else "unknown",
        "point": f.point,
        "low": f.low,
        "high": f.high,
        "coverage": f.coverage,
        "reason": f.reason,
        "basis": f.basis.__dict__ if f.basis is not None else None,
    }


def _zones(context: ApiContext, asked: list[str] | None) -> list[str]:
    zones = [z for c in context.config.cameras for z in c.zones]
    if not asked:
        waiting = [z.id for z in zones if z.role in ("waiting", "queue")]
        if not waiting:
            raise invalid("query", "zone", "the site has no waiting or queue zone; name zones")
        return waiting
    known = [z.id for z in zones]
    unknown = [z for z in asked if z not in known]
    if unknown:
        raise invalid(
            "query", "zone", f"unknown zone {unknown[0]!r}; zones: {', '.join(known)}", unknown[0]
        )
    return list(dict.fromkeys(asked))
