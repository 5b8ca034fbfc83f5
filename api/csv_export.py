"""CSV versions of the history, alert and pass listings, for spreadsheets and head-office reports.

One row per zone and bucket, per alert, per pass or per day; empty cells for unknown values
(never 0). Text cells that a spreadsheet would run as a formula (starting with = + - @, or a
tab or carriage return before one, which some spreadsheets skip) get a leading apostrophe.
(Named csv_export so that it does not shadow the standard library's csv module.)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from api.schemas import AlertOut

CSV_MEDIA_TYPE = "text/csv"
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


def history_csv(document: Mapping[str, Any]) -> str:
    """From the history document (see api.routes.history.history_document)."""
    rows = (
        (zone["zone_id"], *(point[column] for column in HISTORY_COLUMNS[1:]))
        for zone in document["zones"]
        for point in zone["points"]
    )
    return _write(HISTORY_COLUMNS, rows)


def alerts_csv(alerts: Sequence[AlertOut]) -> str:
    rows = (
        tuple(
            " ".join(a.zones) if column == "zones" else getattr(a, column)
            for column in ALERT_COLUMNS
        )
        for a in alerts
    )
    return _write(ALERT_COLUMNS, rows)


def passes_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """From the pass rows (see api.routes.reports.pass_row)."""
    return _write(PASS_COLUMNS, (tuple(row[c] for c in PASS_COLUMNS) for row in rows))


def daily_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """From the day rows (see api.routes.reports.day_row)."""
    return _write(DAY_COLUMNS, (tuple(row[c] for c in DAY_COLUMNS) for row in rows))


def _write(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value[:1] in _FORMULA_START:
        return "'" + value
    return value
