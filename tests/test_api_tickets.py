"""POST /v1/tickets/events: a ticket machine's events over HTTP, through the real store (the
table the edge reads in order), for managers and admins only; today's events only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.test_api_support import Clock, auth, client_for, site_config

#: 10:00 in Berlin (the test site), a Monday.
NOW = datetime(2024, 5, 6, 8, 0, tzinfo=timezone.utc)


def event(kind: str, ticket: str, at: datetime, **extra: str) -> dict[str, str]:
    return {"kind": kind, "ticket": ticket, "at": at.isoformat(), **extra}


@pytest.fixture
def client(tmp_path):
    return client_for(site_config(tmp_path), Clock(NOW))


def stored(client) -> list[tuple[str, str, str | None]]:
    store = client.app.state.lobbywatch.store.store()
    return [(e.kind, e.ticket, e.counter) for _, e in store.tickets_after(0)]


def test_a_list_of_events_is_stored_in_its_order_and_one_event_alone_too(client):
    events = [
        event("issued", "A001", NOW - timedelta(minutes=9)),
        event("called", "A001", NOW - timedelta(minutes=2), counter="3"),
    ]
    response = client.post("/v1/tickets/events", json=events, headers=auth("manager"))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2}
    one = event("served", "A001", NOW, counter="3", service="cash")
    response = client.post("/v1/tickets/events", json=one, headers=auth("admin"))
    assert response.json() == {"accepted": 1}
    assert stored(client) == [("issued", "A001", None), ("called", "A001", "3"),
                              ("served", "A001", "3")]  # fmt: skip


@pytest.mark.parametrize(("headers", "status"), [({}, 401), (auth("viewer"), 403)])
def test_only_a_manager_or_admin_may_send_events(client, headers, status):
    body = event("issued", "A001", NOW)
    assert client.post("/v1/tickets/events", json=body, headers=headers).status_code == status
    assert stored(client) == []


def test_events_of_another_day_or_too_far_ahead_are_refused_by_index_and_none_stored(client):
    local_midnight = datetime(2024, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    events = [
        event("issued", "A001", local_midnight),  # today's first second: taken
        event("issued", "Z999", local_midnight - timedelta(seconds=1)),  # yesterday
        event("issued", "A002", NOW + timedelta(minutes=5)),  # 5 minutes ahead: taken
        event("issued", "A003", NOW + timedelta(minutes=5, seconds=1)),
    ]
    response = client.post("/v1/tickets/events", json=events, headers=auth("manager"))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", 1, "at"], ["body", 3, "at"]]
    assert "before 2024-05-06" in detail[0]["msg"] and "5 minutes ahead" in detail[1]["msg"]
    assert stored(client) == []
    single = client.post("/v1/tickets/events", json=events[1], headers=auth("manager")).json()[
        "detail"
    ]
    assert [d["loc"] for d in single] == [["body", "at"]]


@pytest.mark.parametrize(
    "body",
    [
        [{"kind": "issued", "ticket": "A001", "at": "2024-05-06T09:00:00"}],  # no offset
        [{"kind": "printed", "ticket": "A001", "at": "2024-05-06T09:00:00Z"}],
        [{"kind": "issued", "ticket": "A\n1", "at": "2024-05-06T09:00:00Z"}],
        [{"kind": "issued", "ticket": "A" * 33, "at": "2024-05-06T09:00:00Z"}],
        [{"kind": "issued", "ticket": "A1", "at": "2024-05-06T09:00:00Z", "lane": 1}],
        [],
        [{"kind": "issued", "ticket": f"A{i}", "at": "2024-05-06T07:00:00Z"} for i in range(501)],
    ],
    ids=["naive", "kind", "control", "long", "extra", "empty", "501"],
)
def test_malformed_events_are_a_422(client, body):
    response = client.post("/v1/tickets/events", json=body, headers=auth("manager"))
    assert response.status_code == 422, response.text
    assert stored(client) == []


def test_a_bad_event_in_a_list_is_named_by_its_index(client):
    body = [event("issued", "A001", NOW), {"kind": "issued", "ticket": "", "at": NOW.isoformat()}]
    response = client.post("/v1/tickets/events", json=body, headers=auth("manager"))
    assert response.status_code == 422
    assert any(d["loc"][-2:] == [1, "ticket"] for d in response.json()["detail"])


def test_a_full_disk_is_a_503_with_retry_after_and_the_events_can_be_sent_again(
    tmp_path, small_disk
):
    path = small_disk.path / "lw.db"
    client = client_for(site_config(tmp_path), Clock(NOW), store_path=path)
    batch = [event("issued", f"A{i:03d}", NOW - timedelta(seconds=i)) for i in range(500)]
    assert client.post("/v1/tickets/events", json=batch[:1], headers=auth("manager")).json() == {
        "accepted": 1
    }
    small_disk.fill()
    for _ in range(100):  # a few batches may still fit on pages the store had
        response = client.post("/v1/tickets/events", json=batch, headers=auth("manager"))
        if response.status_code != 200:
            break
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "30"
    small_disk.free()
