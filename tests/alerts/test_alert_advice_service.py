"""The alert service with the queue (issue 13): rules on the wait, advice in the ask, passes
asked again while the lobby stays full, and the figures of each pass.

A real store in a temp dir, the real board and catalog, a fake queue source (what the queue
monitor answers) and a fake clock; ticks are called as the notifier calls them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.alerts.messages import MessageCatalog
from edge.alerts.service import AlertService, QueueSource
from edge.alerts.state import SiteNames, build_state
from edge.board import BoardUpdate, OccupancyBoard
from edge.config import LobbyConfig, parse_config
from edge.queueing.snapshot import ZoneUse
from edge.store import AlertRecord, Store
from edge.types import CameraStatus, ZoneReading
from tests.alerts.queue_support import FakeQueue, busy_snapshot
from tests.alerts.support import T0, FakeClock

ZONES = ("waiting", "queue", "kiosks", "counter-3", "door")

SITE = """\
site: {{id: branch-7, name: Branch 7, timezone: Asia/Shanghai}}
cameras:
  - id: lobby
    source: rtsp://127.0.0.1:9/none
    zones:
      - {{id: waiting, name: Waiting, role: waiting, polygon: [[0, 0], [0.2, 0], [0.2, 1], [0, 1]]}}
      - {{id: queue, name: Queue, role: queue, polygon: [[0.2, 0], [0.4, 0], [0.4, 1], [0.2, 1]]}}
      - {{id: kiosks, name: Kiosks, role: self_service, capacity: 4,
         polygon: [[0.4, 0], [0.6, 0], [0.6, 1], [0.4, 1]]}}
      - {{id: counter-3, name: Counter 3, role: service, counter: "3",
         polygon: [[0.6, 0], [0.8, 0], [0.8, 1], [0.6, 1]]}}
      - {{id: door, name: Door, role: entrance, polygon: [[0.8, 0], [1, 0], [1, 1], [0.8, 1]]}}
storage: {{path: "{db}"}}
mqtt: {{enabled: false}}
alerts:
  language: {language}
  rules:
    - {{id: {rule_id}, name: Long wait, zones: {zones}, metric: {metric}, point: {point},
       raise_at: {raise_at}, clear_at: {clear_at}, raise_after_s: 0, clear_after_s: 0,
       cooldown_s: 0, escalate_after_s: {escalate}, max_escalations: 1, effect_after_s: 300,
       reask_after_s: 600}}
"""


def make_config(
    tmp_path: Path,
    language: str = "en",
    metric: str = "wait",
    point: str = "waiting_area",
    escalate: float = 3600,
) -> LobbyConfig:
    zones = "[door]" if point == "entrance" else "[waiting, queue]"
    raise_at, clear_at = (6, 2) if point == "entrance" else (15, 8)
    text = SITE.format(
        db=tmp_path / "lw.db", language=language, metric=metric, point=point, zones=zones,
        raise_at=raise_at, clear_at=clear_at, escalate=escalate,
        rule_id="door-busy" if point == "entrance" else "wait-long",
    )  # fmt: skip
    return parse_config(text, base_dir=tmp_path, environ={})


class Rig:
    def __init__(self, tmp_path: Path, queue: FakeQueue | None, **config: Any) -> None:
        self.config = make_config(tmp_path, **config)
        self.store = Store(self.config.storage.path, site_id="branch-7")
        self.board = OccupancyBoard({"lobby": list(ZONES)})
        self.clock = FakeClock()
        self.queue = queue
        self.alerts = self.service()

    def service(self) -> AlertService:
        """An alert service on this rig's store (a second one: the process restarted)."""
        source: QueueSource | None = self.queue
        return AlertService(
            self.config, self.store, self.board, clock=self.clock.monotonic,
            wall_clock=self.clock.utc, queue=source,
        )  # fmt: skip

    def feed(self, waiting: float, queue: float = 0.0, door: float = 0.0) -> None:
        counts = {"waiting": waiting, "queue": queue, "kiosks": 1.0, "counter-3": 0.0,
                  "door": door}  # fmt: skip
        readings = tuple(
            ZoneReading(z, "lobby", c, None, self.clock.wall, CameraStatus.ONLINE)
            for z, c in counts.items()
        )
        self.board.update(BoardUpdate("lobby", CameraStatus.ONLINE, readings, frame=True))

    def tick(self, seconds: float = 1.0) -> None:
        self.clock.advance(seconds)
        self.alerts.tick()

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        payloads = [json.loads(m.payload) for m in self.store.pending_messages(limit=1000)]
        return [p for p in payloads if kind is None or p["kind"] == kind]

    def only_alert(self) -> AlertRecord:
        (alert,) = self.store.alerts()
        return alert

    def ack(self, alert_id: str, status: str, number: int | None = None) -> AlertRecord:
        ack: dict[str, Any] = {"by": "li.wei", "status": status}
        if number is not None:
            ack["pass"] = number
        record = self.alerts.handle_ack(alert_id, json.dumps(ack).encode())
        assert record is not None
        return record


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {"wait": 18.0}))
    rig.feed(10, 4)
    yield rig
    rig.store.close()


# --- rules on the wait --------------------------------------------------------------------


def test_a_wait_rule_raises_on_the_queues_wait_and_never_while_it_is_unknown(rig):
    rig.queue.values["wait"] = None  # the line's camera is down: no estimate
    for _ in range(5):
        rig.tick(60)
    assert rig.store.alerts() == []
    rig.queue.values["wait"] = 12.0  # under raise_at (15 minutes)
    rig.tick()
    assert rig.store.alerts() == []
    rig.queue.values["wait"] = 18.0
    rig.tick()
    alert = rig.only_alert()
    assert alert.rule == "wait-long" and alert.threshold == 15
    assert alert.count_at_raise == 14  # people in its zones, not minutes
    assert ("wait", 15) in rig.queue.asked
    rig.queue.values["wait"] = None  # unknown again: it does not clear
    rig.tick(600)
    assert rig.only_alert().cleared_at is None
    rig.queue.values["wait"] = 6.0
    rig.tick()
    assert rig.only_alert().cleared_at is not None


def test_without_a_queue_source_a_wait_rule_never_raises_and_says_so_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lobbywatch.alerts")
    rig = Rig(tmp_path, None)
    try:
        rig.feed(40, 20)
        for _ in range(3):
            rig.tick(60)
        assert rig.store.alerts() == []
        inert = [r for r in caplog.records if "never raise" in r.getMessage()]
        assert len(inert) == 1 and "wait-long" in inert[0].getMessage()
    finally:
        rig.store.close()


ADVICE = {
    "en": (
        "Long wait: about 18 min for a customer arriving now (14 people in Waiting, Queue"
        " since 10:00). Please start a waiting-area diversion pass.",
        [
            "kiosks: 1 of 4 in use: move kiosk-able customers there",
            "counter 3 unstaffed",
            "wait rising: about 25 min in 15 minutes",
        ],
    ),
    "zh-CN": (
        "等候时间较长：现在取号约需等候18分钟（Waiting、Queue自10:00起有14人）。请开始等候区分流。",
        [
            "自助机：4台中1台在用，请引导可自助办理的客户前往",
            "3号柜台无人值守",
            "等候时间上升：15分钟后约25分钟",
        ],
    ),
}


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_raise_says_the_wait_and_what_to_do_in_the_sites_language(tmp_path, language):
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {"wait": 18.0}), language=language)
    try:
        rig.feed(10, 4)
        rig.tick()
        rule_text, advice = ADVICE[language]
        alert = rig.only_alert()
        assert alert.message == "\n".join([rule_text, *advice])
        (payload,) = rig.messages("raised")
        assert payload["message"] == alert.message and payload["language"] == language
        assert payload["audience"] == "lobby_manager" and payload["point"] == "waiting_area"
        assert (payload["metric"], payload["value"], payload["pass"]) == ("wait", 18.0, 1)
        assert [a["text"] for a in payload["advice"]] == advice
        assert [a["kind"] for a in payload["advice"]] == [
            "kiosks_free", "counter_unstaffed", "wait_rising",
        ]  # fmt: skip
        assert payload["advice"][0]["figures"] == {"in_use": 1, "capacity": 4}
        assert payload["figures"] == {
            "count": 14.0, "wait_minutes": 18.0, "wait_confidence": "medium",
            "forecast_15_minutes": 25.0, "forecast_30_minutes": 30.0,
            "kiosks_in_use": 1, "kiosks_capacity": 4,
        }  # fmt: skip
        details = json.loads(alert.details or "{}")
        assert details["advice"] == payload["advice"] and details["figures"] == payload["figures"]
        assert (details["metric"], details["value"], details["pass"]) == ("wait", 18.0, 1)
    finally:
        rig.store.close()


def test_unknown_figures_are_null_not_zero(tmp_path):
    unknown = replace(busy_snapshot(), kiosks=(ZoneUse("kiosks", "Kiosks", None, capacity=4),),
                      forecast={}, wait=replace(busy_snapshot().wait, wait_s=None))  # fmt: skip
    rig = Rig(tmp_path, FakeQueue(unknown, {"wait": 18.0}))
    try:
        rig.feed(10, 4)
        rig.tick()
        (payload,) = rig.messages("raised")
        figures = payload["figures"]
        assert figures["count"] == 14.0
        assert all(figures[k] is None for k in figures if k != "count")
        assert [a["kind"] for a in payload["advice"]] == ["counter_unstaffed"]
    finally:
        rig.store.close()


def test_a_count_rule_keeps_its_text_and_gains_advice_and_figures(tmp_path):
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {}), metric="count")
    try:
        rig.feed(12, 4)
        rig.tick()
        alert = rig.only_alert()
        first, *advice = alert.message.split("\n")
        assert first.startswith("Waiting area busy: 16 people in Waiting, Queue since 10:00.")
        assert advice[0] == "kiosks: 1 of 4 in use: move kiosk-able customers there"
        (payload,) = rig.messages("raised")
        assert (payload["metric"], payload["value"], payload["count"]) == ("count", 16.0, 16.0)
        assert rig.queue.asked == []  # its value is the board's
    finally:
        rig.store.close()


@pytest.mark.parametrize(
    ("language", "starts"),
    [
        ("en", "Entrance busy: 7 people in Door since 10:00. Greeter: please go to the ticket"),
        ("zh-CN", "入口客流较多：Door自10:00起有7人。请迎宾到取号机旁引导。"),
    ],
)
def test_an_entrance_rule_goes_to_the_greeter_with_the_surge(tmp_path, language, starts):
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {}), language=language, metric="count",
              point="entrance")  # fmt: skip
    try:
        rig.feed(10, 4, door=7)
        rig.tick()
        (payload,) = rig.messages("raised")
        assert payload["audience"] == "greeter" and payload["point"] == "entrance"
        assert payload["message"].startswith(starts)
        assert [a["kind"] for a in payload["advice"]] == ["entrance_surge", "kiosks_free"]
        assert payload["advice"][0]["figures"] == {"arrivals": 9, "expected": 4}
    finally:
        rig.store.close()


# The rule's own sentence already says what one advice says: the message leaves that advice out
# (said twice, a phone notification or the terminal handheld would repeat it), the payload's
# advice list keeps it (the phone app shows the list, not the message, for a diversion).
SAID_ONCE = {
    ("forecast_wait", "waiting_area", "en"): (
        "Wait rising: about 25 min in 15 minutes (14 people in Waiting, Queue now). Please start"
        " a waiting-area diversion pass.\n"
        "kiosks: 1 of 4 in use: move kiosk-able customers there\ncounter 3 unstaffed",
        ["kiosks_free", "counter_unstaffed", "wait_rising"],
    ),
    ("forecast_wait", "waiting_area", "zh-CN"): (
        "等候时间将上升：15分钟后约需等候25分钟（Waiting、Queue现有14人）。请开始等候区分流。\n"
        "自助机：4台中1台在用，请引导可自助办理的客户前往\n3号柜台无人值守",
        ["kiosks_free", "counter_unstaffed", "wait_rising"],
    ),
    ("arrivals", "entrance", "en"): (
        "Entrance busy: 9 arrivals in 5 minutes. Greeter: please go to the ticket machine.\n"
        "kiosks: 1 of 4 in use: send kiosk errands there",
        ["entrance_surge", "kiosks_free"],
    ),
    ("arrivals", "entrance", "zh-CN"): (
        "入口客流激增：5分钟内到店9人。请迎宾到取号机旁引导。\n"
        "自助机：4台中1台在用，请引导可自助业务前往自助机",
        ["entrance_surge", "kiosks_free"],
    ),
}


@pytest.mark.parametrize(("metric", "point", "language"), list(SAID_ONCE))
def test_the_message_does_not_say_twice_what_the_rule_text_says(tmp_path, metric, point, language):
    values = {"forecast_wait": 25.0, "arrivals": 9.0}
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), values), language=language, metric=metric,
              point=point)  # fmt: skip
    try:
        rig.feed(10, 4)
        rig.tick()
        message, kinds = SAID_ONCE[(metric, point, language)]
        (payload,) = rig.messages("raised")
        assert payload["message"] == rig.only_alert().message == message
        assert [a["kind"] for a in payload["advice"]] == kinds
    finally:
        rig.store.close()


def test_a_forecast_count_rule_keeps_the_rising_wait_its_text_does_not_say(tmp_path):
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {"forecast_count": 20.0}),
              metric="forecast_count")  # fmt: skip
    try:
        rig.feed(10, 4)
        rig.tick()
        rule_text, *advice = rig.only_alert().message.split("\n")
        assert rule_text.startswith("Waiting area filling up: about 20 people in Waiting, Queue")
        assert advice[-1] == "wait rising: about 25 min in 15 minutes"
    finally:
        rig.store.close()


def test_a_reask_of_a_forecast_rule_says_the_rising_wait(tmp_path):
    # its text ("still busy after the last pass") does not say it
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {"forecast_wait": 25.0}),
              metric="forecast_wait")  # fmt: skip
    try:
        rig.feed(10, 4)
        rig.tick()
        rig.ack(rig.only_alert().alert_id, "pass_done")
        rig.tick(600)
        (payload,) = rig.messages("reasked")
        assert payload["message"].endswith("\nwait rising: about 25 min in 15 minutes")
    finally:
        rig.store.close()


# --- passes: asked again while the lobby stays full -----------------------------------------


def test_a_done_pass_is_asked_again_while_the_wait_stays_long(rig):
    rig.tick()
    alert_id = rig.only_alert().alert_id
    rig.tick(30)
    rig.ack(alert_id, "accepted")
    rig.tick(60)
    rig.ack(alert_id, "pass_done")
    rig.tick(599)
    assert rig.messages("reasked") == []
    rig.tick(1)
    (payload,) = rig.messages("reasked")
    assert payload["alert_id"] == alert_id and payload["pass"] == 2
    assert payload["message"].startswith(
        "Still busy after the last pass: 14 people in Waiting, Queue. Please start pass 2.\n"
        "kiosks: 1 of 4 in use"
    )
    assert payload["figures"]["wait_minutes"] == 18.0
    record = rig.only_alert()
    assert record.passes == 2 and record.status == "open"
    assert record.acknowledged_at is None and record.pass_done_at is None
    assert json.loads(record.details or "{}")["pass"] == 2
    rig.tick(3600)
    assert len(rig.messages("reasked")) == 1  # asked once: it waits for this pass now


def test_a_reasked_pass_escalates_anew_if_nobody_accepts_it(tmp_path):
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {"wait": 18.0}), escalate=120)
    try:
        rig.feed(10, 4)
        rig.tick()
        alert_id = rig.only_alert().alert_id
        rig.ack(alert_id, "pass_done")  # accepted and done at once
        rig.tick(600)
        assert len(rig.messages("reasked")) == 1 and rig.messages("escalated") == []
        rig.tick(120)
        escalated = rig.messages("escalated")
        assert {p["audience"] for p in escalated} == {"lobby_manager", "supervisor"}
        assert all(p["pass"] == 2 and p["escalation"] == 1 for p in escalated)
        assert rig.only_alert().escalations == 1
    finally:
        rig.store.close()


def test_pass_1s_done_arriving_again_after_the_reask_leaves_pass_2_asked(tmp_path):
    # a QoS 1 redelivery or a second tap of pass 1's "done": pass 2 stays unaccepted, escalates
    # and is not timed for a re-ask; the handheld's ack for pass 2 is taken
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {"wait": 18.0}), escalate=120)
    try:
        rig.feed(10, 4)
        rig.tick()
        alert_id = rig.only_alert().alert_id
        rig.ack(alert_id, "pass_done", number=1)
        rig.tick(600)
        assert [p["pass"] for p in rig.messages("reasked")] == [2]
        for status in ("pass_done", "accepted"):
            stale = rig.ack(alert_id, status, number=1)
            assert stale.passes == 2 and stale.acknowledged_at is None
        assert rig.only_alert().pass_done_at is None
        rig.tick(120)
        assert [p["pass"] for p in rig.messages("escalated")] == [2, 2]  # manager, supervisor
        rig.ack(alert_id, "pass_done", number=2)
        rig.tick(599)
        assert len(rig.messages("reasked")) == 1
        rig.tick(1)
        assert [p["pass"] for p in rig.messages("reasked")] == [2, 3]
    finally:
        rig.store.close()


@pytest.mark.parametrize("number", [0, -1, "2", 1.5, True])
def test_an_ack_with_a_pass_that_is_no_pass_number_is_ignored(rig, number):
    rig.tick()
    alert_id = rig.only_alert().alert_id
    body = json.dumps({"by": "li.wei", "status": "accepted", "pass": number}).encode()
    assert rig.alerts.handle_ack(alert_id, body) is None
    assert rig.only_alert().acknowledged_at is None


def test_a_pass_done_through_the_api_starts_the_reask_timer_too(rig):
    rig.tick()
    alert_id = rig.only_alert().alert_id
    rig.store.apply_ack(alert_id, "mgr-1", "pass_done", rig.clock.wall)  # another process
    rig.tick()  # the service sees it in the store: the timer starts here
    rig.tick(599)
    assert rig.messages("reasked") == []
    rig.tick(1)
    assert [p["pass"] for p in rig.messages("reasked")] == [2]


def test_no_reask_once_the_wait_is_short_again(rig):
    rig.tick()
    alert_id = rig.only_alert().alert_id
    rig.ack(alert_id, "pass_done")
    rig.queue.values["wait"] = 10.0  # the pass helped: in the band, not cleared
    rig.tick(900)
    assert rig.messages("reasked") == []
    rig.queue.values["wait"] = 5.0
    rig.tick()
    assert rig.only_alert().cleared_at is not None
    rig.queue.values["wait"] = 18.0  # a new alert, not a re-ask of the cleared one
    rig.tick()
    assert rig.messages("reasked") == [] and len(rig.store.alerts()) == 2


def test_a_restarted_service_resumes_the_pass_count_and_asks_again(rig):
    rig.tick()
    alert_id = rig.only_alert().alert_id
    rig.ack(alert_id, "pass_done")
    rig.tick(600)  # pass 2 asked
    rig.ack(alert_id, "pass_done")
    rig.tick(100)
    rig.alerts = rig.service()  # the process restarts
    rig.alerts.restore()
    rig.tick(599)  # the re-ask timer restarted with the process
    assert [p["pass"] for p in rig.messages("reasked")] == [2]
    rig.tick(1)
    assert [p["pass"] for p in rig.messages("reasked")] == [2, 3]
    assert rig.only_alert().passes == 3


# --- the figures of each pass -------------------------------------------------------------


def test_a_pass_records_the_wait_before_and_the_wait_and_kiosks_after(rig):
    rig.tick()
    alert_id = rig.only_alert().alert_id
    rig.ack(alert_id, "accepted")  # before: an 18-minute wait
    rig.tick(60)
    rig.ack(alert_id, "pass_done")
    after = replace(
        busy_snapshot(), wait=replace(busy_snapshot().wait, wait_s=600.0),
        kiosks=(ZoneUse("kiosks", "Kiosks", 3.0, capacity=4),),
    )  # fmt: skip
    rig.queue.snap = after
    rig.feed(6, 2)
    rig.queue.values["wait"] = 10.0
    rig.tick(300)  # effect_after_s
    (done,) = rig.store.passes(T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert (done.number, done.accepted_by, done.done_by) == (1, "li.wei", "li.wei")
    assert done.count_before is None  # read from the live table: the pipeline's, none here
    assert done.wait_before_s == 1080.0
    assert (done.count_after, done.wait_after_s) == (8.0, 600.0)
    assert (done.kiosks_in_use_after, done.kiosks_capacity) == (3, 4)
    assert rig.only_alert().effect_count == 8.0


def test_templates_without_the_rule_texts_take_the_shipped_ones(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "en.yaml").write_text(
        "raised: 'Busy: {count} in {zones}.'\nescalated: 'Still busy ({number}).'\n"
        "cleared: 'Fine.'\ncamera_offline: 'Camera {camera} down.'\n"
        "camera_online: 'Camera {camera} up.'\nunknown_count: '?'\n",
        encoding="utf-8",
    )
    catalog = MessageCatalog("en", folder)
    assert catalog.render("raised", count=3, zones=["W"]) == "Busy: 3 in W."
    assert catalog.render("reasked", count=3, zones=["W"], number=2).startswith(
        "Still busy after the last pass: 3 people in W. Please start pass 2."
    )


# --- the state handhelds show -------------------------------------------------------------


def test_the_handhelds_state_carries_the_pass_the_advice_and_the_figures(rig):
    names = SiteNames.of(rig.config)
    rig.tick()
    alert = rig.only_alert()
    state = build_state(alert, names, count_now=14.0).as_dict()
    assert (state["passes"], state["metric"], state["value"]) == (1, "wait", 18.0)
    assert state["point"] == "waiting_area"
    assert [a["kind"] for a in state["advice"]] == ["kiosks_free", "counter_unstaffed",
                                                     "wait_rising"]  # fmt: skip
    assert state["figures"]["wait_minutes"] == 18.0 and state["figures"]["kiosks_capacity"] == 4
    json.loads(build_state(alert, names, 14.0).to_json())  # the wire form is JSON
    rig.ack(alert.alert_id, "pass_done")
    rig.tick(600)
    again = build_state(rig.only_alert(), names, count_now=14.0)
    assert again.passes == 2 and again.status == "raised" and again.accepted_by is None


@pytest.mark.parametrize("details", [None, "", "not json", "[1, 2]", '{"advice": "x"}'])
def test_a_state_without_readable_details_has_no_advice_and_keeps_the_old_fields(rig, details):
    rig.tick()
    alert = replace(rig.only_alert(), details=details)
    state = build_state(alert, SiteNames.of(rig.config), count_now=None)
    assert (state.advice, state.figures, state.metric, state.value) == ((), None, None, None)
    assert state.passes == 1 and state.message == alert.message and state.status == "raised"


# --- a full disk: the re-ask stands while the store cannot take it -----------------------


def _refuse(monkeypatch: pytest.MonkeyPatch, store: Store, *names: str) -> dict[str, bool]:
    """The store refuses these writes while `full["on"]` (a full disk, as the store says it)."""
    from edge.store import StoreWriteError

    full = {"on": True}
    for name in names:
        real = getattr(store, name)

        def refusing(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if full["on"]:
                raise StoreWriteError("store lw.db: database or disk is full")
            return _real(*args, **kwargs)

        monkeypatch.setattr(store, name, refusing)
    return full


def test_a_reask_the_store_could_not_take_still_escalates_and_is_not_asked_again(
    tmp_path, monkeypatch
):
    # The store still says pass 1 was done (the re-ask waits in memory): the service must not
    # take that for pass 2 done, which would stop pass 2's escalation and ask a pass 3.
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {"wait": 18.0}), escalate=120)
    try:
        rig.feed(10, 4)
        rig.tick()
        alert_id = rig.only_alert().alert_id
        rig.ack(alert_id, "pass_done")
        full = _refuse(monkeypatch, rig.store, "reask_alert", "escalate_alert")
        rig.tick(600)
        spooled = [json.loads(m.payload) for m in rig.alerts.spool.messages()]
        assert [(p["kind"], p["pass"]) for p in spooled] == [("reasked", 2)]
        rig.tick(120)
        spooled = [json.loads(m.payload) for m in rig.alerts.spool.messages()]
        assert [(p["kind"], p["pass"]) for p in spooled] == [
            ("reasked", 2), ("escalated", 2), ("escalated", 2),
        ]  # fmt: skip
        rig.tick(600)
        assert len(rig.alerts.spool.messages()) == 3  # no pass 3 while pass 2 is not done
        full["on"] = False
        rig.tick()
        record = rig.only_alert()
        assert (record.passes, record.escalations, record.pass_done_at) == (2, 1, None)
    finally:
        rig.store.close()


def test_an_escalation_whose_details_the_store_refused_is_counted_once(tmp_path, monkeypatch):
    # escalate_alert was taken, set_alert_details refused: the retry must not escalate twice
    rig = Rig(tmp_path, FakeQueue(busy_snapshot(), {"wait": 18.0}), escalate=120)
    try:
        rig.feed(10, 4)
        rig.tick()
        full = _refuse(monkeypatch, rig.store, "set_alert_details")
        rig.tick(120)
        full["on"] = False
        rig.tick()
        record = rig.only_alert()
        assert record.escalations == 1
        assert len(rig.messages("escalated")) == 2  # manager and supervisor, once
        assert json.loads(record.details or "{}")["pass"] == 1
    finally:
        rig.store.close()


def test_a_state_never_carries_nan_from_the_details_browsers_cannot_parse_it(rig):
    # json.loads takes NaN and Infinity, json.dumps writes them back: JSON.parse refuses the
    # whole state, so the phone would show nothing of the alert
    names = SiteNames.of(rig.config)
    rig.tick()
    alert = rig.only_alert()
    details = ('{"pass": 1, "metric": "wait", "value": NaN, "figures": {"wait_minutes": Infinity, "forecast_15_minutes": 1e999},'
               ' "advice": [{"kind": "wait_rising", "text": "t", "figures": {"minutes": NaN}}]}')  # fmt: skip
    text = build_state(replace(alert, details=details), names, count_now=14.0).to_json()

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the state")

    state = json.loads(text, parse_constant=refuse)
    assert state["value"] is None and state["figures"]["wait_minutes"] is None
    assert state["figures"]["forecast_15_minutes"] is None
    assert state["advice"][0]["figures"]["minutes"] is None
