"""The branch's ticket machine: its events, and today's tickets built from them (issue 13).

Where a branch has a ticket machine that reports "issued", "called", "served" and "cancelled",
the wait is no longer an inference from people in a zone: tickets waiting over the rate at which
counters call them is the queue ahead of a new customer, in the machine's own definition of a
wait (ticket to call). The events come from outside (MQTT, HTTP), so the event is a pydantic
model with strict checks; the book is plain code, fed in order.

Tickets are keyed by (service, ticket): machines number each service's queue on its own ("A012",
"B012"). A ticket number is reused the next day, so the book holds one local day: the first
event of a later day empties it. Times are UTC datetimes (events are wall-clock records).
"""

from __future__ import annotations

import json
from bisect import bisect_left, insort
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

TicketKind = Literal["issued", "called", "served", "cancelled"]

#: One POST or MQTT message carries at most this many events.
MAX_EVENTS = 500
#: ...and at most this many bytes (500 events of the longest ids are about 110 KB): a larger
#: message is refused before it is parsed, so a hostile one costs no memory.
MAX_PAYLOAD_BYTES = 512 * 1024
#: Seconds a ticket must have been waiting before calls count as services that ended (every
#: counter busy): a call sooner is a free counter taking a new ticket.
BUSY_AFTER_S = 30.0

# 1-32 characters, none of them a control character: ids are shown to people and logged.
_Id = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]


class TicketEvent(BaseModel):
    """What a ticket machine sends, over MQTT or HTTP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TicketKind = Field(description="issued, called (to a counter), served or cancelled")
    ticket: _Id = Field(description="The ticket's number as printed, e.g. A012")
    at: AwareDatetime = Field(description="When it happened, with a timezone offset; kept in UTC")
    counter: _Id | None = Field(None, description="The counter, with called and served")
    service: _Id | None = Field(None, description="The machine's queue or service id, if any")

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(timezone.utc)


def parse_ticket_events(payload: bytes | str) -> list[TicketEvent]:
    """One event (a JSON object) or a list of at most MAX_EVENTS; ValueError says what is wrong
    and, in a list, which event."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"ticket events: {len(payload)} bytes, at most {MAX_PAYLOAD_BYTES}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"ticket events: not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("ticket events: not JSON: nested too deep") from None
    items = data if isinstance(data, list) else [data]
    if not isinstance(data, (list, dict)):
        raise ValueError("ticket events: expected an event object or a list of them")
    if not items:
        raise ValueError("ticket events: the list is empty")
    if len(items) > MAX_EVENTS:
        raise ValueError(f"ticket events: {len(items)} in one message, at most {MAX_EVENTS}")
    events = []
    for i, item in enumerate(items):
        where = f"event {i}" if isinstance(data, list) else "event"
        if not isinstance(item, dict):
            raise ValueError(f"ticket events: {where} is not an object")
        try:
            events.append(TicketEvent.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"ticket events: {where}: {problems}") from None
    return events


@dataclass
class _Ticket:
    issued_at: datetime | None = None
    called_at: datetime | None = None
    state: Literal["new", "waiting", "called", "served", "cancelled"] = "new"


class TicketBook:
    """Today's tickets, from the events in the order they are applied.

    Applying an event twice changes nothing (a machine that resends, MQTT's at-least-once). A
    call for a ticket never seen issued (the book started mid-morning) counts as a call, with no
    wait. A ticket called again (a recall: the customer did not come) is one call, its first.
    A counter calling its next ticket has finished the last one it called (a clerk may never
    close it: its "served" would never come, and it would count as in service all day).
    Memory: one day's tickets (a branch issues hundreds; capped at `max_tickets`, oldest calls
    kept as times only).
    """

    def __init__(self, tz: tzinfo = timezone.utc, *, max_tickets: int = 20000) -> None:
        self.tz = tz
        self.max_tickets = max_tickets
        self.day: date | None = None
        self._tickets: dict[tuple[str | None, str], _Ticket] = {}
        self._waiting: set[tuple[str | None, str]] = set()
        self._calls: list[datetime] = []  # sorted
        self._waits: list[tuple[datetime, float]] = []  # (called at, seconds), sorted
        self._services: list[tuple[datetime, float]] = []  # (served at, seconds from the call)
        self._in_service: set[tuple[str | None, str]] = set()
        # The latest ticket called to each counter, and when: a counter calling its next one
        # has finished the last, whether or not its "served" came.
        self._at_counter: dict[str, tuple[tuple[str | None, str], datetime]] = {}
        self._first: datetime | None = None
        self._last: datetime | None = None
        # The line standing (some ticket waiting) since; its spans past BUSY_AFTER_S, and the
        # calls made in them: what the counters do when busy.
        self._standing_since: datetime | None = None
        self._busy: list[tuple[datetime, datetime]] = []
        self._busy_calls: list[datetime] = []

    def roll(self, now: datetime) -> None:
        """A new local day empties the book (ticket numbers start again)."""
        day = now.astimezone(self.tz).date()
        if self.day is None or day > self.day:
            self.day = day
            self._tickets.clear()
            self._waiting.clear()
            self._calls.clear()
            self._waits.clear()
            self._services.clear()
            self._in_service.clear()
            self._at_counter.clear()
            self._first = self._last = None
            self._standing_since = None
            self._busy.clear()
            self._busy_calls.clear()

    def apply(self, event: TicketEvent) -> None:
        day = event.at.astimezone(self.tz).date()
        if self.day is not None and day < self.day:
            return  # yesterday's event, late: its ticket numbers are not today's
        self.roll(event.at)
        self._first = event.at if self._first is None else min(self._first, event.at)
        self._last = event.at if self._last is None else max(self._last, event.at)
        self._apply(event)
        self._stand(event.at)

    def _apply(self, event: TicketEvent) -> None:
        key = (event.service, event.ticket)
        ticket = self._tickets.get(key)
        if ticket is None:
            if len(self._tickets) >= self.max_tickets:
                return
            ticket = self._tickets[key] = _Ticket()
        if event.kind == "issued":
            if ticket.issued_at is None:
                ticket.issued_at = event.at
                if ticket.state == "new":
                    ticket.state = "waiting"
                    self._waiting.add(key)
                self._record_wait(ticket)
        elif event.kind in ("called", "served"):
            if ticket.called_at is None and (event.kind == "called" or ticket.state == "waiting"):
                # A "served" for a ticket still waiting: its call was lost; the serve is the call.
                ticket.called_at = event.at
                insort(self._calls, event.at)
                busy_from = self._busy_from()
                if busy_from is not None and busy_from <= event.at:
                    insort(self._busy_calls, event.at)
                self._record_wait(ticket)
            if event.kind == "served" and ticket.state != "served":
                self._in_service.discard(key)
                if ticket.called_at is not None and ticket.state == "called":
                    took = (event.at - ticket.called_at).total_seconds()
                    insort(self._services, (event.at, max(0.0, took)))
            elif event.kind == "called" and ticket.state in ("new", "waiting"):
                self._in_service.add(key)
                if event.counter is not None:
                    self._called_to(event.counter, key, event.at)
            ticket.state = "served" if event.kind == "served" else "called"
            self._waiting.discard(key)
        else:  # cancelled: before the call, or a no-show after it
            if ticket.state in ("new", "waiting", "called"):
                ticket.state = "cancelled"
            self._waiting.discard(key)
            self._in_service.discard(key)

    def _called_to(self, counter: str, key: tuple[str | None, str], at: datetime) -> None:
        """A call to `counter`: the ticket it called before (earlier) is out of service. No
        service time is taken from it: call to next call holds the counter's idle time too."""
        last = self._at_counter.get(counter)
        if last is not None and last[1] > at:
            self._in_service.discard(key)  # a call that came late: the counter moved on since
            return
        if last is not None and last[0] != key:
            self._in_service.discard(last[0])
        self._at_counter[counter] = (key, at)

    def _busy_from(self) -> datetime | None:
        if self._standing_since is None:
            return None
        return self._standing_since + timedelta(seconds=BUSY_AFTER_S)

    def _stand(self, at: datetime) -> None:
        if self._waiting and self._standing_since is None:
            self._standing_since = at
        elif not self._waiting and self._standing_since is not None:
            start = self._busy_from()
            if start is not None and at > start:
                self._busy.append((start, at))
            self._standing_since = None

    def _record_wait(self, ticket: _Ticket) -> None:
        if ticket.issued_at is not None and ticket.called_at is not None:
            wait = (ticket.called_at - ticket.issued_at).total_seconds()
            insort(self._waits, (ticket.called_at, max(0.0, wait)))

    def waiting(self) -> int:
        """Tickets issued and not yet called or cancelled."""
        return len(self._waiting)

    def called_in(self, since: datetime) -> int:
        """Calls at or after `since`."""
        return len(self._calls) - bisect_left(self._calls, since)

    def recent_waits_s(self, since: datetime) -> list[float]:
        """Seconds from issue to call of the tickets called at or after `since`."""
        start = bisect_left(self._waits, (since, -1.0))
        return [w for _, w in self._waits[start:]]

    def in_service(self) -> int:
        """Tickets called and not yet served or cancelled: the counters busy now, where the
        machine reports "served"."""
        return len(self._in_service)

    def recent_services_s(self, limit: int) -> list[float]:
        """Seconds from call to serve of the last `limit` tickets served (the walk to the
        counter included: the time a counter is taken per customer)."""
        return [s for _, s in self._services[-limit:]] if limit > 0 else []

    def called_busy_in(self, since: datetime) -> int:
        """Calls at or after `since` made while tickets had been waiting BUSY_AFTER_S or more."""
        return len(self._busy_calls) - bisect_left(self._busy_calls, since)

    def busy_s(self, since: datetime, until: datetime) -> float:
        """Seconds of [since, until] in which tickets had been waiting BUSY_AFTER_S or more:
        called_busy_in over it is the rate of the counters when every one is busy."""
        spans = list(self._busy)
        start = self._busy_from()
        if start is not None:
            spans.append((start, max(start, until)))
        total = 0.0
        for a, b in spans:
            total += max(0.0, (min(b, until) - max(a, since)).total_seconds())
        return total

    def first_event_at(self) -> datetime | None:
        """Today's first event: a call rate over less time than this has run is no rate."""
        return self._first

    def last_event_at(self) -> datetime | None:
        """A feed silent for 10 minutes while the branch is open is stale."""
        return self._last
