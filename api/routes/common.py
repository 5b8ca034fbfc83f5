"""Parameters and helpers shared by the listing routes: time ranges and CSV answers."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import Query, Response
from pydantic import AwareDatetime

from api.buckets import RangeError, TimeRange, resolve_range
from api.csv_export import CSV_MEDIA_TYPE
from api.deps import ApiContext, invalid

StartParam = Annotated[
    AwareDatetime | None,
    Query(description="Range start, ISO 8601 with an offset (2024-05-06T09:00:00+02:00 or Z)"),
]
EndParam = Annotated[
    AwareDatetime | None, Query(description="Range end (exclusive), ISO 8601 with an offset")
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
