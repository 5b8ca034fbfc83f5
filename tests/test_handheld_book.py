"""The handheld's alert book (edge/handheld.py), pure: alerts keep their number, each change is
reported once whichever topics brought it, older states lose to newer ones, and what is no
longer open is cleared, never acknowledged by its number."""

from __future__ import annotations

import pytest

from edge.handheld import AlertBook


def state(alert_id: str = "a1", version: int = 1, **fields) -> dict:
    return {"alert_id": alert_id, "status": "raised", "escalations": 0, "version": version,
            "message": "busy", **fields}  # fmt: skip


def message(kind: str, alert_id: str = "a1", **fields) -> dict:
    return {"alert_id": alert_id, "message_id": f"{alert_id}:{kind}", "kind": kind,
            "at": "2026-12-01T02:02:03Z", "message": "busy", **fields}  # fmt: skip


def kinds(changes) -> list[str]:
    return [c.kind for c in changes]


def test_alerts_are_numbered_as_they_appear_and_keep_their_number():
    book = AlertBook()
    book.apply_state("a1", state("a1", 1))
    book.apply_state("a2", state("a2", 2))
    book.apply_state("a1", state("a1", 3, status="cleared", cleared_at="x"))
    book.apply_state("a3", state("a3", 4))
    assert [(e.number, e.alert_id, e.open) for e in book.entries()] == [
        (1, "a1", False), (2, "a2", True), (3, "a3", True),
    ]  # fmt: skip
    assert book.number(1).alert_id == "a1" and book.number(9) is None


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # the message and the state of one raise: shown once, whichever comes first
        ([("m", message("raised")), ("s", state())], ["raised"]),
        ([("s", state()), ("m", message("raised"))], ["raised"]),
        # an escalation on two topics (manager's and supervisor's) and in the state: once
        (
            [
                ("s", state()),
                ("m", message("escalated", escalation=1)),
                ("m", {**message("escalated", escalation=1), "message_id": "a1:escalated:1:sup"}),
                ("s", state(version=2, status="escalated", escalations=1)),
            ],
            ["raised", "escalated"],
        ),
        # from messages alone (a device without states): raised, escalated once, cleared
        (
            [
                ("m", message("raised")),
                ("m", message("escalated", escalation=1)),
                ("m", {**message("escalated", escalation=1), "message_id": "x"}),
                ("m", message("cleared")),
            ],
            ["raised", "escalated", "cleared"],
        ),
        # an older state redelivered after a newer one changes nothing
        (
            [
                ("s", state(version=1)),
                ("s", state(version=5, status="accepted", accepted_by="mgr-1")),
                ("s", state(version=3)),
            ],
            ["raised", "accepted"],
        ),
        # pass done without accept: both, once
        (
            [
                ("s", state()),
                ("s", state(version=2, status="pass_done", accepted_by="m", pass_done_by="m")),
            ],
            ["raised", "accepted", "pass_done"],
        ),
        # the retained state removed (empty payload): gone, i.e. cleared
        ([("s", state()), ("s", None)], ["raised", "cleared"]),
        # cleared before ever seen open: nothing to show
        ([("s", state(status="cleared"))], []),
        # the index no longer lists it (at a version not older than its state): cleared
        ([("s", state(version=4)), ("i", {"version": 6, "alerts": []})], ["raised", "cleared"]),
        # an index older than the state does not clear it
        ([("s", state(version=7)), ("i", {"version": 6, "alerts": []})], ["raised"]),
    ],
    ids=[
        "message-then-state",
        "state-then-message",
        "escalation-once",
        "messages-only",
        "older-state",
        "pass-done-implies-accept",
        "removed",
        "never-open",
        "index",
        "older-index",
    ],
)
def test_each_change_is_reported_once(steps, expected):
    book = AlertBook()
    changes = []
    for kind, payload in steps:
        if kind == "s":
            changes += book.apply_state("a1", payload)
        elif kind == "m":
            changes += book.apply_message(payload)
        else:
            changes += book.apply_index(payload)
    assert kinds(changes) == expected


def test_a_change_keeps_the_state_it_was_made_from():
    book = AlertBook()
    book.apply_state("a1", state())
    (first,) = book.apply_state("a1", state(version=2, status="escalated", escalations=1))
    book.apply_state("a1", state(version=3, status="escalated", escalations=2))
    assert first.state["escalations"] == 1 and first.entry.state["escalations"] == 2


def test_a_late_handheld_shows_an_alert_that_was_accepted_before_it_came_as_such():
    from edge.handheld import describe

    book = AlertBook()
    (change,) = book.apply_state(
        "a1", state(status="accepted", accepted_by="mgr-1", accepted_at="2026-12-01T10:02:00+08:00")
    )
    assert "accepted by mgr-1 at 10:02" in describe(change, lambda iso: str(iso)[11:16])


def test_a_done_pass_asked_again_is_a_change_and_its_accept_is_reported_anew():
    book = AlertBook()
    book.apply_state("a1", state(version=1, passes=1))
    assert kinds(book.apply_state("a1", state(version=2, passes=1, status="accepted",
                                              accepted_by="li"))) == ["accepted"]  # fmt: skip
    asked = book.apply_state("a1", state(version=3, passes=2, status="raised"))
    assert kinds(asked) == ["reasked"]
    again = book.apply_state("a1", state(version=4, passes=2, status="accepted", accepted_by="li"))
    assert kinds(again) == ["accepted"]
    assert book.apply_state("a1", state(version=5, passes=2, status="accepted",
                                        accepted_by="li")) == []  # fmt: skip


@pytest.mark.parametrize("bad", ["x", [2], {"n": 2}, 2.5, True])
def test_a_state_whose_pass_or_escalation_count_is_no_number_changes_no_count(bad):
    # Whoever can publish on the broker can publish a state: int("x") raised in paho's thread
    book = AlertBook()
    book.apply_state("a1", state(version=1, passes=1))
    changes = book.apply_state("a1", state(version=2, passes=bad, escalations=bad))
    assert "reasked" not in kinds(changes) and "escalated" not in kinds(changes)
    later = book.apply_state("a1", state(version=3, passes=2, escalations=1))
    assert kinds(later) == ["reasked", "escalated"]
