"""Ticket machine events: what is refused, and today's book built from them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from edge.queueing.tickets import MAX_EVENTS, TicketBook, TicketEvent, parse_ticket_events

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def ev(kind: str, ticket: str, minutes: float, **extra: str) -> TicketEvent:
    return TicketEvent.model_validate(
        {"kind": kind, "ticket": ticket, "at": T0 + timedelta(minutes=minutes), **extra}
    )


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "issued", "ticket": "A001", "at": "2026-12-01T09:00:00+08:00"},
        {"kind": "called", "ticket": "A001", "at": "2026-12-01T01:00:00Z", "counter": "3"},
        {"kind": "served", "ticket": "柜台 B-7", "at": "2026-12-01T01:00:00Z", "service": "loans"},
        {"kind": "cancelled", "ticket": "x" * 32, "at": "2026-12-01T01:00:00Z"},
    ],
)
def test_valid_events_are_taken_and_their_time_kept_in_utc(body):
    event = TicketEvent.model_validate(body)
    assert event.at.tzinfo == timezone.utc
    assert event.at == datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"kind": "issued", "ticket": "A1", "at": "2026-12-01T09:00:00"}, "at"),  # naive
        ({"kind": "printed", "ticket": "A1", "at": "2026-12-01T09:00:00Z"}, "kind"),
        ({"kind": "issued", "ticket": "", "at": "2026-12-01T09:00:00Z"}, "ticket"),
        ({"kind": "issued", "ticket": "x" * 33, "at": "2026-12-01T09:00:00Z"}, "ticket"),
        ({"kind": "issued", "ticket": "A\n1", "at": "2026-12-01T09:00:00Z"}, "ticket"),
        ({"kind": "issued", "ticket": "A\x851", "at": "2026-12-01T09:00:00Z"}, "ticket"),
        (
            {"kind": "called", "ticket": "A1", "at": "2026-12-01T09:00Z", "counter": "\x1b"},
            "counter",
        ),
        ({"kind": "issued", "ticket": "A1", "at": "2026-12-01T09:00Z", "service": ""}, "service"),
        ({"kind": "issued", "ticket": "A1", "at": "2026-12-01T09:00Z", "queue": "x"}, "queue"),
    ],
)
def test_bad_events_are_refused_naming_the_field(body, where):
    with pytest.raises(ValidationError) as info:
        TicketEvent.model_validate(body)
    assert where in {str(e["loc"][0]) for e in info.value.errors()}


def test_parse_takes_one_event_or_a_list():
    one = {"kind": "issued", "ticket": "A1", "at": "2026-12-01T09:00:00Z"}
    assert [e.ticket for e in parse_ticket_events(json.dumps(one))] == ["A1"]
    many = [one, {**one, "ticket": "A2"}]
    assert [e.ticket for e in parse_ticket_events(json.dumps(many).encode())] == ["A1", "A2"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"42", "an event object or a list"),
        (b"[]", "empty"),
        (b"[1]", "event 0 is not an object"),
        (
            json.dumps(
                [{"kind": "issued", "ticket": "A1", "at": "2026-12-01T09:00:00Z"}] * 2
                + [{"kind": "issued", "ticket": "A1", "at": "2026-12-01T09:00:00"}]
            ),
            "event 2: at:",
        ),
        (json.dumps([{"kind": "x"}] * (MAX_EVENTS + 1)), f"at most {MAX_EVENTS}"),
        # a hostile machine: nesting that json would recurse on (a RecursionError, which no
        # caller catches), and a message far larger than 500 events (not even parsed)
        (b"[" * 100_000, "nested too deep"),
        (b'{"kind": "issued", "ticket": "A1", "pad": "' + b"x" * (4 << 20) + b'"}', "bytes"),
    ],
)
def test_parse_refuses_with_a_clear_message(payload, message):
    with pytest.raises(ValueError, match=message):
        parse_ticket_events(payload)


def test_the_book_counts_waiting_calls_and_waits():
    book = TicketBook()
    for k in range(4):
        book.apply(ev("issued", f"A{k}", k))
    book.apply(ev("called", "A0", 5, counter="1"))
    book.apply(ev("called", "A1", 7, counter="2"))
    book.apply(ev("served", "A0", 9, counter="1"))
    book.apply(ev("cancelled", "A3", 10))
    assert book.waiting() == 1  # A2
    assert book.called_in(T0) == 2
    assert book.called_in(T0 + timedelta(minutes=6)) == 1
    assert book.recent_waits_s(T0) == [300.0, 360.0]
    assert book.recent_waits_s(T0 + timedelta(minutes=6)) == [360.0]
    assert book.first_event_at() == T0
    assert book.last_event_at() == T0 + timedelta(minutes=10)


def test_duplicate_events_change_nothing():
    events = [ev("issued", "A1", 0), ev("issued", "A2", 1), ev("called", "A1", 3, counter="1")]
    once, twice = TicketBook(), TicketBook()
    for e in events:
        once.apply(e)
        twice.apply(e)
        twice.apply(e)
    twice.apply(ev("called", "A1", 4, counter="2"))  # a recall is the same call
    for book in (once, twice):
        assert book.waiting() == 1 and book.called_in(T0) == 1
        assert book.recent_waits_s(T0) == [180.0]


def test_a_call_for_an_unknown_ticket_counts_as_a_call_without_a_wait():
    book = TicketBook()
    book.apply(ev("called", "B9", 2, counter="1"))
    assert book.called_in(T0) == 1 and book.recent_waits_s(T0) == [] and book.waiting() == 0


def test_a_serve_without_its_call_is_the_call_and_services_are_apart():
    book = TicketBook()
    book.apply(ev("issued", "1", 0, service="A"))
    book.apply(ev("issued", "1", 1, service="B"))  # the same number in another queue
    assert book.waiting() == 2
    book.apply(ev("served", "1", 4, service="A"))
    assert book.waiting() == 1 and book.called_in(T0) == 1
    assert book.recent_waits_s(T0) == [240.0]


def test_a_new_local_day_empties_the_book_and_yesterdays_late_events_are_ignored():
    shanghai = ZoneInfo("Asia/Shanghai")  # UTC+8: local midnight is 16:00 UTC
    book = TicketBook(shanghai)
    book.apply(ev("issued", "A1", 60 * 6))  # 15:00 UTC, 23:00 local
    assert book.waiting() == 1
    book.apply(ev("issued", "A1", 60 * 7 + 30))  # 16:30 UTC: the next local day, same number
    assert book.waiting() == 1 and book.first_event_at() == T0 + timedelta(minutes=450)
    book.apply(ev("called", "A1", 60 * 6 + 10, counter="1"))  # yesterday's call, late
    assert book.waiting() == 1 and book.called_in(T0) == 0
    book.roll(T0 + timedelta(days=1, hours=8))  # 01:00 local, two local days on
    assert book.waiting() == 0 and book.last_event_at() is None


def test_the_book_knows_the_counters_busy_and_how_long_services_take():
    book = TicketBook()
    book.apply(ev("issued", "A1", 0))
    book.apply(ev("issued", "A2", 0))
    book.apply(ev("called", "A1", 1, counter="1"))
    book.apply(ev("called", "A2", 2, counter="2"))
    assert book.in_service() == 2
    book.apply(ev("served", "A1", 5, counter="1"))
    book.apply(ev("served", "A1", 6, counter="1"))  # again: nothing changes
    book.apply(ev("cancelled", "A2", 3))  # a no-show after the call frees the counter
    assert book.in_service() == 0
    assert book.recent_services_s(10) == [240.0] and book.recent_services_s(0) == []


def test_a_counter_calling_its_next_ticket_has_finished_the_last_one():
    # A clerk who calls the next number without closing the last one (its "served" never
    # comes) must not leave it in service all day: tickets in service / mean service is the
    # rate, and by the afternoon the leaked ones made every wait a fraction of the real one.
    book = TicketBook()
    for k in range(12):
        book.apply(ev("issued", f"A{k}", 0))
    for k in range(10):
        book.apply(ev("called", f"A{k}", 1 + 5 * k, counter="3"))  # never "served"
    book.apply(ev("called", "A10", 2, counter="4"))
    book.apply(ev("served", "A10", 6, counter="4"))
    book.apply(ev("called", "A11", 7, counter="4"))
    assert book.in_service() == 2  # A9 at counter 3, A11 at counter 4
    assert book.recent_services_s(10) == [240.0]  # a call is no serve: no service time
    book.apply(ev("called", "A9", 60, counter="3"))  # a recall of the one at the counter
    assert book.in_service() == 2
    book.apply(ev("served", "A9", 61, counter="3"))
    book.apply(ev("served", "A11", 62))  # no counter said: it ends the service all the same
    assert book.in_service() == 0
    book.apply(ev("issued", "B1", 63))
    book.apply(ev("called", "B1", 40, counter="3"))  # late: counter 3 called A9 at 46
    assert book.in_service() == 0


def test_calls_count_as_busy_only_once_tickets_have_waited_30_seconds():
    book = TicketBook()
    book.apply(ev("issued", "A1", 0))
    book.apply(ev("called", "A1", 0.25, counter="1"))  # 15 s: a free counter took it
    book.apply(ev("issued", "A2", 1))
    book.apply(ev("issued", "A3", 1.5))
    book.apply(ev("called", "A2", 4, counter="1"))  # the line stood 3 min: a service ended
    assert book.called_in(T0) == 2 and book.called_busy_in(T0) == 1
    # Busy from 1:30 (30 s after the line formed at 1:00); A3 still waits, so it runs on.
    assert book.busy_s(T0, T0 + timedelta(minutes=5)) == pytest.approx(210.0)
    book.apply(ev("called", "A3", 6, counter="2"))
    assert book.busy_s(T0, T0 + timedelta(minutes=10)) == pytest.approx(270.0)
    assert book.busy_s(T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)) == 60.0
