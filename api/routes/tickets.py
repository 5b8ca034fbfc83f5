"""The ticket machine's events over HTTP (issue 13, docs/queueing.md), for a machine that cannot
speak MQTT: written to the store's ticket_events table, which the edge reads in order, the same
table the MQTT path fills, so the two paths are one feed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError
from pydantic import Field

from api.deps import AUTH_RESPONSES, Context, Manager
from api.schemas import Problem, TicketsAccepted
from edge.queueing.tickets import MAX_EVENTS, TicketEvent

router = APIRouter(prefix="/v1", tags=["tickets"], responses=AUTH_RESPONSES)

#: A ticket machine's clock may run a little ahead of the device's; more is a wrong clock.
MAX_AHEAD = timedelta(minutes=5)

EventsIn = Annotated[
    TicketEvent | Annotated[list[TicketEvent], Field(min_length=1, max_length=MAX_EVENTS)],
    Body(description=f"One event, or a list of 1 to {MAX_EVENTS} in the order they happened"),
]


@router.post(
    "/tickets/events",
    summary="Ticket machine events (manager or admin)",
    description="One event or a list of at most 500: issued, called (with the counter), "
    "served, cancelled. Only today's events are taken (today in the site's time zone, up to "
    "5 minutes ahead of the device's clock): a list with any other is refused whole, with a "
    "422 that names each refused event (its index in the list) and why.",
    responses={
        400: {"model": Problem, "description": "The body is not JSON"},
        503: {
            "model": Problem,
            "description": "The store cannot take writes (a full disk): send them again later",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    },
)
def post_ticket_events(context: Context, _: Manager, body: EventsIn) -> TicketsAccepted:
    events = body if isinstance(body, list) else [body]
    refused = refused_events(events, context.clock(), context.tz)
    if refused:
        listed = isinstance(body, list)
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", i, "at") if listed else ("body", "at"),
                    "msg": reason,
                    "input": events[i].at.isoformat(),
                }
                for i, reason in refused
            ]
        )
    # A full disk raises StoreWriteError: 503 with Retry-After (api/app.py); nothing is stored.
    return TicketsAccepted(accepted=context.store.store().insert_tickets(events))


def refused_events(
    events: Sequence[TicketEvent], now: datetime, tz: ZoneInfo
) -> list[tuple[int, str]]:
    """(index, why) of each event that is not today's: dated before today's local midnight (its
    ticket numbers belong to another day's book) or more than MAX_AHEAD after `now`."""
    today = now.astimezone(tz).date()
    latest = now + MAX_AHEAD
    refused: list[tuple[int, str]] = []
    for i, event in enumerate(events):
        if event.at.astimezone(tz).date() < today:
            refused.append((i, f"today's events only: {event.at.isoformat()} is before {today}"))
        elif event.at > latest:
            refused.append(
                (i, f"today's events only: {event.at.isoformat()} is more than 5 minutes ahead")
            )
    return refused
