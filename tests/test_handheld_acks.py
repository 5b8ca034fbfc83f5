"""The terminal handheld's acks name the pass they are for (issue 13): the `passes` of the state
it shows, so a pass 1 "done" the broker redelivers, or sent just as pass 2 is asked, cannot be
taken for pass 2. No broker: the client's publish is replaced by one that records (the real
broker path is tests/test_alert_state_mqtt.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from edge.config import MqttConfig
from edge.handheld import Handheld


@dataclass
class Published:
    """What paho's publish answers, the broker's PUBACK decided by the test."""

    delivered: bool = True
    on_wait: Callable[[], None] = lambda: None

    def wait_for_publish(self, timeout: float | None = None) -> None:
        self.on_wait()

    def is_published(self) -> bool:
        return self.delivered


@dataclass
class FakePublish:
    sent: list[tuple[str, dict, int]] = field(default_factory=list)
    answer: Published = field(default_factory=Published)

    def __call__(self, topic: str, payload: str, qos: int = 0) -> Published:
        self.sent.append((topic, json.loads(payload), qos))
        return self.answer


def state(passes: object = None, version: int = 1, **fields: object) -> dict:
    found = {"alert_id": "a1", "status": "raised", "escalations": 0, "version": version,
             "message": "busy", "raised_at": "2026-12-01T10:00:00+08:00", **fields}  # fmt: skip
    if passes is not None:
        found["passes"] = passes
    return found


@pytest.fixture
def handheld(monkeypatch) -> tuple[Handheld, FakePublish]:
    client = Handheld(MqttConfig(), "branch-7", "li.wei", timezone="Asia/Shanghai")
    publish = FakePublish()
    monkeypatch.setattr(client.client, "publish", publish)
    return client, publish


@pytest.mark.parametrize(
    ("passes", "sent"),
    [(1, 1), (2, 2), (None, None), (0, None), ("2", None), (True, None)],  # 0: a camera alert
)
def test_an_ack_carries_the_pass_of_the_state_shown_and_none_without_one(handheld, passes, sent):
    client, publish = handheld
    client.book.apply_state("a1", state(passes))
    publish.answer = Published(delivered=False)  # no PUBACK: answered at once
    assert client.request("a1", "pass_done", timeout=0.1).result == "not_sent"
    ((topic, payload, qos),) = publish.sent
    assert topic == "lobbywatch/branch-7/alerts/a1/ack" and qos == 1
    expected = {"by": "li.wei", "status": "pass_done"}
    assert payload == (expected if sent is None else {**expected, "pass": sent})


def test_a_pass_asked_while_the_ack_was_on_its_way_is_said_not_waited_for(handheld):
    client, publish = handheld
    client.book.apply_state("a1", state(1, accepted_by="li.wei", accepted_at="x"))
    # the device asks pass 2 as pass 1's "done" goes out: the state that comes back is pass 2,
    # accepted by nobody
    publish.answer = Published(on_wait=lambda: client.book.apply_state("a1", state(2, version=5)))
    answer = client.request("a1", "pass_done", timeout=2.0)
    assert [p["pass"] for _, p, _ in publish.sent] == [1]
    assert answer.result == "already"
    assert answer.message == "#1 that was pass 1: pass 2 is asked now"
