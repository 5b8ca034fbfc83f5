"""Parameters and helpers shared by the listing routes: time ranges and CSV answers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import Query, Response
from pydantic import AwareDatetime, BeforeValidator

from api.buckets import RangeError, TimeRange, resolve_range
from api.csv_export import CSV_MEDIA_TYPE
from api.deps import ApiContext, invalid

#: RFC 3339 date-time, the schema's `format: date-time`; seconds may be left out, as ISO 8601
#: allows and clients already do (2024-05-06T10:04Z).
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d(:\d\d(\.\d+)?)?([Zz]|[+-]\d\d:\d\d)")


def _iso_only(value: object) -> object:
    """Refuse what pydantic would read as a time but the schema's `date-time` is not: a bare
    number (`end=5`, read as unix seconds), a date alone, a time without an offset."""
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError(
            "expected a datetime in RFC 3339 form with a timezone offset "
            "(2024-05-06T09:00:00+02:00 or 2024-05-06T07:00:00Z)"
        )
    return value


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]

StartParam = Annotated[
    IsoDatetime | None,
    Query(
        description="Range start, ISO 8601 with an offset (2024-05-06T09:00:00+02:00 or Z). "
        "Nothing is recorded before 2000 or after 2100: a time outside is read as that bound"
    ),
]
EndParam = Annotated[
    IsoDatetime | None, Query(description="Range end (exclusive), ISO 8601 with an offset")
]
FormatParam = Annotated[
    Literal["json", "csv"] | None,
    Query(description="Answer as CSV; Accept: text/csv does the same"),
]

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
        "description": "JSON, or CSV with ?format=csv or Accept: text/csv",
    }
}


def time_range_of(
    context: ApiContext,
    start: AwareDatetime | None,
    end: AwareDatetime | None,
    max_span: timedelta,
    default_span: timedelta,
) -> TimeRange:
    """The request's range with defaults filled; a 422 that says what is allowed otherwise."""
    try:
        return resolve_range(
            start, end, now=context.clock(), max_span=max_span, default_span=default_span
        )
    except RangeError as exc:
        raise invalid("query", "start", str(exc)) from None


def csv_response(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
