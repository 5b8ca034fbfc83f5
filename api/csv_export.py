"""CSV versions of the history, alert and pass listings, for spreadsheets and head-office reports.

One row per zone and bucket, per alert, per pass or per day; empty cells for unknown values
(never 0). Made to open cleanly in a spreadsheet (Excel above all, at a branch or head
office): UTF-8 with a byte order mark (without it Excel reads the file in the PC's legacy code
page and garbles Chinese names), times in the site's time zone as `YYYY-MM-DD HH:MM:SS` (a
form Excel reads as a date and time; ISO 8601 with a `T` and an offset stays text), numbers
rounded to 2 decimals (a mean of 3.4666666 people says no more than 3.47). Text cells that a spreadsheet would run as a formula (starting with = + - @, or a
tab or carriage return before one, which some spreadsheets skip) get a leading apostrophe.
(Named csv_export so that it does not shadow the standard library's csv module.)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from api.schemas import AlertOut

CSV_MEDIA_TYPE = "text/csv"
#: Excel opens a CSV as UTF-8 only when it starts with this (its own "CSV UTF-8" does).
BOM = "\ufeff"
#: Decimals a number keeps: people to a hundredth, coverage to a percent.
DECIMALS = 2
#: How a time is written: local, no offset, to the second (Excel reads it as a date and time).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
UTC = ZoneInfo("UTC")
#: First characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection list).
_FORMULA_START = frozenset("=+-@\t\r")

HISTORY_COLUMNS = ("zone_id", "start", "end", "mean", "max", "p90", "coverage", "samples")
ALERT_COLUMNS = (
    "alert_id", "rule", "kind", "zones", "status", "threshold", "since", "raised_at",
    "count_at_raise", "escalations", "acknowledged_at", "acknowledged_by", "seconds_to_ack",
    "count_at_ack", "pass_done_at", "pass_done_by", "effect_after_s", "effect_count",
    "effect_measured_at", "effect", "cleared_at", "count_at_clear", "message",
)  # fmt: skip


PASS_COLUMNS = (
    "alert_id", "rule", "number", "asked_at", "accepted_at", "accepted_by", "done_at",
    "done_by", "count_before", "count_after", "count_change", "wait_before_minutes",
    "wait_after_minutes", "wait_change_minutes", "kiosks_in_use_after", "kiosks_capacity",
    "measured_at",
)  # fmt: skip
DAY_COLUMNS = (
    "day", "alerts_raised", "passes_asked", "passes_accepted", "passes_done", "passes_measured",
    "mean_count_change", "mean_wait_change_minutes", "minutes_alert_open", "peak_wait_minutes",
)  # fmt: skip


def wants_csv(format_param: str | None, accept: str | None) -> bool:
    """`?format=` decides; without it, an Accept header that names text/csv before JSON."""
    if format_param is not None:
        return format_param == "csv"
    if not accept:
        return False
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media == CSV_MEDIA_TYPE:
            return True
        if media in ("application/json", "*/*", "application/*"):
            return False
    return False


def history_csv(document: Mapping[str, Any], tz: ZoneInfo = UTC) -> str:
    """From the history document (see api.routes.history.history_document); its ISO times
    written in `tz`, the site's."""
    rows = (
        (
            zone["zone_id"],
            *(
                _time(point[column]) if column in ("start", "end") else point[column]
                for column in HISTORY_COLUMNS[1:]
            ),
        )
        for zone in document["zones"]
        for point in zone["points"]
    )
    return _write(HISTORY_COLUMNS, rows, tz)


def alerts_csv(alerts: Sequence[AlertOut], tz: ZoneInfo = UTC) -> str:
    rows = (
        tuple(
            " ".join(a.zones) if column == "zones" else getattr(a, column)
            for column in ALERT_COLUMNS
        )
        for a in alerts
    )
    return _write(ALERT_COLUMNS, rows, tz)


def passes_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """From the pass rows (see api.routes.reports.pass_row), whose times are already the
    site's (ISO strings with the site's offset)."""
    return _write(
        PASS_COLUMNS,
        (
            tuple(_time(row[c]) if c.endswith("_at") else row[c] for c in PASS_COLUMNS)
            for row in rows
        ),
    )


def daily_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """From the day rows (see api.routes.reports.day_row)."""
    return _write(DAY_COLUMNS, (tuple(row[c] for c in DAY_COLUMNS) for row in rows))


BUSIEST_COLUMNS = ("zone_id", "weekday", "hour", "mean", "peak", "coverage", "hours")


def busiest_hours_csv(document: Mapping[str, Any]) -> str:
    """From the busiest-hours document (see api.routes.history.busiest_hours_report): local
    weekdays and hours already."""
    rows = (
        (zone["zone_id"], *(slot[c] for c in BUSIEST_COLUMNS[1:]))
        for zone in document["zones"]
        for slot in zone["slots"]
    )
    return _write(BUSIEST_COLUMNS, rows)


USUAL_DAY_COLUMNS = ("zone_id", "weekday", "time", "median", "weeks")


def usual_day_csv(document: Mapping[str, Any]) -> str:
    """From the usual-day document (see api.routes.reports.usual_day_report)."""
    rows = (
        (zone["zone_id"], document["weekday"], slot["time"], slot["median"], slot["weeks"])
        for zone in document["zones"]
        for slot in zone["slots"]
    )
    return _write(USUAL_DAY_COLUMNS, rows)


def _time(value: str | None) -> datetime | None:
    """An ISO time of a document (Z or an offset) as a datetime, for _cell to write."""
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))  # 3.10 reads no Z


def _write(
    columns: Sequence[str], rows: Iterable[Sequence[object]], tz: ZoneInfo | None = None
) -> str:
    """tz: where aware times are written; None keeps each time's own offset (the pass rows
    are the site's already)."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180, and what Excel writes
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(value, tz) for value in row])
    return out.getvalue()


def _cell(value: object, tz: ZoneInfo | None) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return (aware.astimezone(tz) if tz is not None else aware).strftime(TIME_FORMAT)
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, str) and value[:1] in _FORMULA_START:
        return "'" + value
    return value
