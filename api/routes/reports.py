"""Did the passes work (issue 13, item 5): each diversion pass with the waiting count and wait
before and after it, and per day the passes, their mean effect and the time above threshold.

Days are the site's (local midnight to local midnight). The figures come from the store's
passes table (edge/store.py); the day's time above threshold from the diversion alerts'
[raised, cleared) spans. Unknown stays null, never 0.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from api.buckets import TimeRange, bucket_edges
from api.csv_export import daily_csv, passes_csv, usual_day_csv, wants_csv
from api.deps import AUTH_RESPONSES, ApiContext, Context, Viewer, invalid
from api.queries import history
from api.routes.common import CSV_RESPONSE, FormatParam, csv_response
from api.routes.forecast import PARAMS
from api.routes.history import ZoneParam
from api.routes.history import _zones as zones_asked
from api.schemas import WEEKDAY_NAMES, DailyOut, PassesOut, UsualDayOut, WeekdayName
from edge.queueing.forecast import SLOT_S, CountModel, SlotHistory
from edge.store import PassRecord

router = APIRouter(prefix="/v1", tags=["reports"], responses=AUTH_RESPONSES)

#: At most this many days per report (a quarter): a report is read whole into memory.
MAX_DAYS = 92
#: Days outside these hold nothing (the API's time bounds, api/buckets.py); they are left out
#: of a report rather than refused, so any date the schema allows gets an answer.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)

FromParam = Annotated[
    date | None,
    Query(alias="from", description="First day, YYYY-MM-DD in the site's time zone (default: to)"),
]
ToParam = Annotated[
    date | None,
    Query(alias="to", description="Last day, included (default: today in the site's time zone)"),
]


@dataclass(frozen=True)
class Days:
    """The report's days (within FIRST_DAY..LAST_DAY) and the UTC range they cover."""

    first: date
    last: date
    days: tuple[date, ...]
    start: datetime
    end: datetime


def days_of(context: ApiContext, first: date | None, last: date | None) -> Days:
    """The days asked, defaults filled; a 422 naming the rule otherwise."""
    last = last if last is not None else context.clock().astimezone(context.tz).date()
    first = first if first is not None else last
    if first > last:
        raise invalid(
            "query", "from", f"from {first} is after to {last}: the start must be before end "
            "or the same day", str(first),
        )  # fmt: skip
    span = (last - first).days + 1
    if span > MAX_DAYS:
        raise invalid(
            "query", "from", f"{span} days is longer than the {MAX_DAYS} days allowed in one "
            "report", str(first),
        )  # fmt: skip
    days = tuple(
        first + timedelta(days=n)
        for n in range(span)
        if FIRST_DAY <= first + timedelta(days=n) <= LAST_DAY
    )
    if not days:  # wholly outside the recorded years: an empty range
        nothing = _midnight(FIRST_DAY, context.tz)
        return Days(first, last, (), nothing, nothing)
    start = _midnight(days[0], context.tz)
    end = _midnight(days[-1] + timedelta(days=1), context.tz)
    return Days(first, last, days, start, end)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    """The start of `day` in the site's time zone, in UTC (23 or 25 hours from the next's on
    the days the clocks change)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc)


@dataclass(frozen=True)
class AlertSpan:
    """A diversion alert's time open: [raised_at, cleared_at), cleared_at None while open."""

    alert_id: str
    rule: str
    raised_at: datetime
    cleared_at: datetime | None


def alert_spans(context: ApiContext, start: datetime, end: datetime) -> list[AlertSpan]:
    """The diversion alerts open at some time in [start, end), raised earlier or not."""
    with context.store.read() as db:
        rows = db.execute(
            "SELECT alert_id, rule, raised_at, cleared_at FROM alerts WHERE kind = 'diversion'"
            " AND raised_at < ? AND (cleared_at IS NULL OR cleared_at > ?) ORDER BY raised_at",
            (end.isoformat(), start.isoformat()),
        ).fetchall()
    return [
        AlertSpan(
            str(alert_id),
            str(rule),
            datetime.fromisoformat(raised),
            None if cleared is None else datetime.fromisoformat(cleared),
        )
        for alert_id, rule, raised, cleared in rows
    ]


@router.get(
    "/reports/passes",
    summary="Each diversion pass with the count and wait before and after it",
    description="Passes asked on the days from `from` to `to` (site time zone; default: today; "
    "at most 92 days), oldest first: the raise is a pass, and so is each re-ask. Before: "
    "at the accept; after: the rule's effect_after_s after the pass was done. Changes are "
    "after - before (negative: the pass shortened the line); waits in minutes. Times in the "
    "site's time zone.",
    response_model=PassesOut,
    responses=CSV_RESPONSE,
)
def passes_report(
    request: Request,
    context: Context,
    _: Viewer,
    first: FromParam = None,
    last: ToParam = None,
    format: FormatParam = None,
) -> PassesOut | Response:
    days = days_of(context, first, last)
    records = passes_in(context, days)
    rules = {s.alert_id: s.rule for s in alert_spans(context, days.start, days.end)}
    rows = [pass_row(p, rules.get(p.alert_id), context.tz) for p in records]
    if wants_csv(format, request.headers.get("accept")):
        return csv_response(passes_csv(rows), "passes.csv")
    return PassesOut.model_validate(report_document(context, days, "passes", rows))


@router.get(
    "/reports/daily",
    summary="Per day: alerts, passes, their mean effect and the time above threshold",
    description="Every day from `from` to `to` (site time zone; default: today; at most 92 "
    "days): diversion alerts raised; passes asked, and of those accepted, done and measured; "
    "the mean count and wait change of the passes measured; the minutes with a diversion "
    "alert open (overlapping alerts once; an open alert up to now); the peak wait among the "
    "day's passes (null when none was known).",
    response_model=DailyOut,
    responses=CSV_RESPONSE,
)
def daily_report(
    request: Request,
    context: Context,
    _: Viewer,
    first: FromParam = None,
    last: ToParam = None,
    format: FormatParam = None,
) -> DailyOut | Response:
    days = days_of(context, first, last)
    records = passes_in(context, days)
    spans = alert_spans(context, days.start, days.end) if days.days else []
    now = context.clock()
    rows = [
        day_row(
            day,
            _midnight(day, context.tz),
            _midnight(day + timedelta(days=1), context.tz),
            records,
            spans,
            now,
        )
        for day in days.days
    ]
    if wants_csv(format, request.headers.get("accept")):
        return csv_response(daily_csv(rows), "daily.csv")
    return DailyOut.model_validate(report_document(context, days, "days", rows))


@router.get(
    "/reports/usual-day",
    summary="The usual day for a weekday: per local quarter hour, the median people",
    description="Per zone and local quarter hour of the site's time zone, the median of the 15m "
    "means over the last 8 same weekdays before the day (today when `weekday` is today's, "
    "else the next such day), the schedule's holidays left out: the profile the forecast "
    "uses (edge/queueing/forecast.py). Null where fewer than 3 of those weekdays are known "
    "(a camera offline, a new site), never 0. Today's own counts: "
    "`GET /v1/occupancy/history?bucket=15m`.",
    response_model=UsualDayOut,
    responses=CSV_RESPONSE,
)
def usual_day_report(
    request: Request,
    context: Context,
    _: Viewer,
    zone: ZoneParam = None,
    weekday: Annotated[
        WeekdayName | None, Query(description="mon..sun (default: today's in the site's zone)")
    ] = None,
    format: FormatParam = None,
) -> UsualDayOut | Response:
    zone_ids = zones_asked(context, zone)
    today = context.clock().astimezone(context.tz).date()
    wanted = today.weekday() if weekday is None else WEEKDAY_NAMES.index(weekday)
    day = today + timedelta(days=(wanted - today.weekday()) % 7)
    document = {
        "weekday": WEEKDAY_NAMES[wanted],
        "day": day,
        "weeks": PARAMS.weeks,
        "timezone": context.config.site.timezone,
        "zones": [
            {"zone_id": zone_id, "slots": slots}
            for zone_id, slots in usual_slots(context, zone_ids, day).items()
        ],
    }
    if wants_csv(format, request.headers.get("accept")):
        return csv_response(usual_day_csv(document), f"usual-{document['weekday']}.csv")
    return UsualDayOut.model_validate(document)


def usual_slots(
    context: ApiContext, zone_ids: list[str], day: date
) -> dict[str, list[dict[str, Any]]]:
    """Per zone, the forecast's weekday profile for `day` (CountModel's median over the
    PARAMS.weeks same weekdays before it, holidays left out, unknown below min_weeks), read
    from the 15m history of those weeks (only days before `day`: today's partial counts are
    not part of its own usual)."""
    start = _midnight(max(FIRST_DAY, day - timedelta(days=7 * PARAMS.weeks)), context.tz)
    end = max(start, _midnight(day, context.tz))
    edges = bucket_edges("15m", TimeRange(start, end), context.tz)
    per_zone = history(context.store, context.rollup, "15m", zone_ids, edges)
    holidays = context.config.alerts.schedule.holidays
    local_day = (day - date(1970, 1, 1)).days
    times = [f"{m // 60:02d}:{m % 60:02d}" for m in range(0, 24 * 60, SLOT_S // 60)]
    out: dict[str, list[dict[str, Any]]] = {}
    for zone_id, buckets in per_zone.items():
        model = CountModel(SlotHistory(int(edges[0]), buckets.mean), context.tz, holidays, PARAMS)
        # The forecast's own profile (kept private there; one definition of "usual").
        median, weeks = model.usual_day(local_day)
        out[zone_id] = [
            {"time": t, "median": None if np.isnan(m) else round(float(m), 3), "weeks": int(w)}
            for t, m, w in zip(times, median.tolist(), weeks.tolist(), strict=True)
        ]
    return out


def passes_in(context: ApiContext, days: Days) -> list[PassRecord]:
    """The passes asked in the report's days; none, without a query, for days wholly outside
    the recorded years (their range is empty)."""
    return context.store.store().passes(days.start, days.end) if days.days else []


def report_document(
    context: ApiContext, days: Days, key: str, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """A report as plain data: the days asked and the site's time zone, which PassesOut and
    DailyOut share, then its rows under `key` (passes, days)."""
    return {
        "start": days.first,
        "end": days.last,
        "timezone": context.config.site.timezone,
        key: rows,
    }


def pass_row(record: PassRecord, rule: str | None, tz: ZoneInfo) -> dict[str, Any]:
    """A PassOut as plain data: times in the site's time zone, waits in minutes."""
    return {
        "alert_id": record.alert_id,
        "rule": rule,
        "number": record.number,
        "asked_at": _local(record.asked_at, tz),
        "accepted_at": _local(record.accepted_at, tz),
        "accepted_by": record.accepted_by,
        "done_at": _local(record.done_at, tz),
        "done_by": record.done_by,
        "count_before": record.count_before,
        "count_after": record.count_after,
        "count_change": count_change(record),
        "wait_before_minutes": _minutes(record.wait_before_s),
        "wait_after_minutes": _minutes(record.wait_after_s),
        "wait_change_minutes": _minutes(wait_change_s(record)),
        "kiosks_in_use_after": record.kiosks_in_use_after,
        "kiosks_capacity": record.kiosks_capacity,
        "measured_at": _local(record.measured_at, tz),
    }


def count_change(record: PassRecord) -> float | None:
    if record.count_before is None or record.count_after is None:
        return None
    return record.count_after - record.count_before


def wait_change_s(record: PassRecord) -> float | None:
    if record.wait_before_s is None or record.wait_after_s is None:
        return None
    return record.wait_after_s - record.wait_before_s


def day_row(
    day: date,
    start: datetime,
    end: datetime,
    passes: Sequence[PassRecord],
    spans: Sequence[AlertSpan],
    now: datetime,
) -> dict[str, Any]:
    """A DayOut as plain data, for the local day [start, end) (UTC), as seen at `now`."""
    asked = [p for p in passes if start <= p.asked_at < end]
    measured = [p for p in asked if p.measured_at is not None]
    counts = [c for c in map(count_change, measured) if c is not None]
    waits = [w for w in map(wait_change_s, measured) if w is not None]
    figures = [w for p in asked for w in (p.wait_before_s, p.wait_after_s) if w is not None]
    return {
        "day": day,
        "alerts_raised": sum(start <= s.raised_at < end for s in spans),
        "passes_asked": len(asked),
        "passes_accepted": sum(p.accepted_at is not None for p in asked),
        "passes_done": sum(p.done_at is not None for p in asked),
        "passes_measured": len(measured),
        "mean_count_change": statistics.fmean(counts) if counts else None,
        "mean_wait_change_minutes": _minutes(statistics.fmean(waits) if waits else None),
        "minutes_alert_open": round(open_seconds(spans, start, min(end, now)) / 60.0, 2),
        "peak_wait_minutes": _minutes(max(figures) if figures else None),
    }


def open_seconds(spans: Iterable[AlertSpan], start: datetime, end: datetime) -> float:
    """Seconds of [start, end) with at least one of the alerts open (an alert still open runs
    to `end`, which the caller keeps at or before now)."""
    clipped = sorted(
        (max(s.raised_at, start), min(s.cleared_at or end, end))
        for s in spans
        if s.raised_at < end and (s.cleared_at is None or s.cleared_at > start)
    )
    total = 0.0
    run_start: datetime | None = None
    run_end = start
    for a, b in clipped:
        if b <= a:
            continue
        if run_start is None or a > run_end:  # a gap: close the run before it
            if run_start is not None:
                total += (run_end - run_start).total_seconds()
            run_start, run_end = a, b
        else:
            run_end = max(run_end, b)
    if run_start is not None:
        total += (run_end - run_start).total_seconds()
    return total


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60.0, 2)


def _local(at: datetime | None, tz: ZoneInfo) -> str | None:
    return None if at is None else at.astimezone(tz).isoformat()
