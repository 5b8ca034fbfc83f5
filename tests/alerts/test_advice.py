"""The advice an alert carries (edge/alerts/advice.py): text tables in English and Chinese for
kiosks free / full / unknown, an unstaffed counter / a staffed one / a shrinking line, a rising
wait, an arrival surge at the entrance; the figures behind each text; the message with its
advice; templates_dir fallback and refusal of advice templates with unknown fields."""

from __future__ import annotations

import string
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.alerts.advice import Advice, advise, compose, kiosk_use
from edge.alerts.messages import ADVICE_KEYS, MessageCatalog
from edge.queueing.snapshot import QueueSnapshot, ZoneUse
from edge.queueing.wait import WaitEstimate, WaitForecast

AT = datetime(2026, 3, 2, 10, 30, tzinfo=timezone.utc)
SHIPPED = Path(__file__).resolve().parents[2] / "edge" / "alerts" / "templates"


@pytest.fixture(scope="module")
def catalogs() -> dict[str, MessageCatalog]:
    return {"en": MessageCatalog("en"), "zh-CN": MessageCatalog("zh-CN")}


def wait(minutes: float | None) -> WaitEstimate:
    seconds = None if minutes is None else minutes * 60.0
    confidence = "unknown" if seconds is None else "medium"
    return WaitEstimate(seconds, seconds, seconds, confidence, "departures", 10.0, 1.0, 1.0, None)


def ahead(minutes: float | None) -> dict[int, WaitForecast]:
    seconds = None if minutes is None else minutes * 60.0
    return {15: WaitForecast(900, seconds, seconds, seconds, 12.0, 10.0, 14.0)}


def kiosks(*zones: tuple[float | None, int | None]) -> tuple[ZoneUse, ...]:
    return tuple(
        ZoneUse(f"kiosks-{i}", f"Kiosks {i}", count, capacity=capacity)
        for i, (count, capacity) in enumerate(zones)
    )


def counter(label: str | None, empty_s: float, name: str = "Counter", count: float | None = 0.0):
    zone_id = f"counter-{label or name}"
    return ZoneUse(zone_id, name, 1.0 if empty_s == 0 else count, counter=label, empty_s=empty_s)


def snap(**fields: Any) -> QueueSnapshot:
    return QueueSnapshot(at=AT, line_zones=("waiting",), **fields)


def texts(advice: list[Advice]) -> list[str]:
    return [a.text for a in advice]


# (case, snapshot, point, English texts, Chinese texts)
CASES = [
    (
        "one kiosk of four in use",
        snap(kiosks=kiosks((1.2, 4))),
        "waiting_area",
        ["kiosks: 1 of 4 in use: move kiosk-able customers there"],
        ["自助机：4台中1台在用，请引导可自助办理的客户前往"],
    ),
    (
        "kiosk zones are summed",
        snap(kiosks=kiosks((1.6, 2), (0.4, 3))),
        "waiting_area",
        ["kiosks: 2 of 5 in use: move kiosk-able customers there"],
        ["自助机：5台中2台在用，请引导可自助办理的客户前往"],
    ),
    (
        "kiosks full",
        snap(kiosks=kiosks((4.0, 4))),
        "waiting_area",
        ["kiosks full: call a colleague / open a counter"],
        ["自助机已满：请呼叫同事或加开柜台"],
    ),
    (
        "a queue at the kiosks is still full, not more than full",
        snap(kiosks=kiosks((6.8, 4))),
        "waiting_area",
        ["kiosks full: call a colleague / open a counter"],
        ["自助机已满：请呼叫同事或加开柜台"],
    ),
    (
        "3.5 people round up to a full set of four",
        snap(kiosks=kiosks((3.5, 4))),
        "waiting_area",
        ["kiosks full: call a colleague / open a counter"],
        ["自助机已满：请呼叫同事或加开柜台"],
    ),
    ("kiosk count unknown", snap(kiosks=kiosks((None, 4))), "waiting_area", [], []),
    (
        "one kiosk zone of two unknown: no partial sum",
        snap(kiosks=kiosks((0.0, 2), (None, 2))),
        "waiting_area",
        [],
        [],
    ),
    ("kiosk zone without a capacity", snap(kiosks=kiosks((1.0, None))), "waiting_area", [], []),
    (
        "counter 3 empty for 5 minutes while the line grows",
        snap(counters=(counter("3", 300.0),), line_trend_per_10min=2.0),
        "waiting_area",
        ["counter 3 unstaffed"],
        ["3号柜台无人值守"],
    ),
    (
        "an unknown trend is not shrinking",
        snap(counters=(counter("3", 300.0),), line_trend_per_10min=None),
        "waiting_area",
        ["counter 3 unstaffed"],
        ["3号柜台无人值守"],
    ),
    (
        "a flat line (smoothing noise) is not shrinking",
        snap(counters=(counter("3", 300.0),), line_trend_per_10min=-0.3),
        "waiting_area",
        ["counter 3 unstaffed"],
        ["3号柜台无人值守"],
    ),
    (
        "staffed counter",
        snap(counters=(counter("3", 0.0),), line_trend_per_10min=2.0),
        "waiting_area",
        [],
        [],
    ),
    (
        "empty only for a minute",
        snap(counters=(counter("3", 60.0),), line_trend_per_10min=2.0),
        "waiting_area",
        [],
        [],
    ),
    (
        "shrinking line",
        snap(counters=(counter("3", 300.0),), line_trend_per_10min=-2.0),
        "waiting_area",
        [],
        [],
    ),
    (
        "a counter whose count is unknown",
        snap(counters=(counter("3", 300.0, count=None),), line_trend_per_10min=2.0),
        "waiting_area",
        [],
        [],
    ),
    (
        "two counters unstaffed: one advice each",
        snap(counters=(counter("2", 200.0), counter("A5", 130.0)), line_trend_per_10min=1.0),
        "waiting_area",
        ["counter 2 unstaffed", "counter A5 unstaffed"],
        ["2号柜台无人值守", "A5号柜台无人值守"],
    ),
    (
        "a counter without a number is named by its zone",
        snap(counters=(counter(None, 300.0, name="Business desk"),)),
        "waiting_area",
        ["Business desk unstaffed"],
        ["Business desk无人值守"],
    ),
    (
        "wait rising by 6 minutes",
        snap(wait=wait(10.0), forecast=ahead(16.4)),
        "waiting_area",
        ["wait rising: about 16 min in 15 minutes"],
        ["等候时间上升：15分钟后约16分钟"],
    ),
    (
        "wait rising by exactly 5 minutes",
        snap(wait=wait(10.0), forecast=ahead(15.0)),
        "waiting_area",
        ["wait rising: about 15 min in 15 minutes"],
        ["等候时间上升：15分钟后约15分钟"],
    ),
    ("wait up by less than 5", snap(wait=wait(10.0), forecast=ahead(14.9)), "waiting_area", [], []),
    ("wait falling", snap(wait=wait(20.0), forecast=ahead(8.0)), "waiting_area", [], []),
    ("wait unknown", snap(wait=wait(None), forecast=ahead(30.0)), "waiting_area", [], []),
    ("forecast unknown", snap(wait=wait(5.0), forecast=ahead(None)), "waiting_area", [], []),
    ("no forecast", snap(wait=wait(5.0)), "waiting_area", [], []),
    (
        "everything at once, kiosks first",
        snap(
            kiosks=kiosks((4.0, 4)),
            counters=(counter("3", 600.0),),
            line_trend_per_10min=3.0,
            wait=wait(12.0),
            forecast=ahead(21.0),
        ),
        "waiting_area",
        [
            "kiosks full: call a colleague / open a counter",
            "counter 3 unstaffed",
            "wait rising: about 21 min in 15 minutes",
        ],
        [
            "自助机已满：请呼叫同事或加开柜台",
            "3号柜台无人值守",
            "等候时间上升：15分钟后约21分钟",
        ],
    ),
    (
        "arrival surge at the entrance",
        snap(arrivals_5min=9.0, arrivals_expected_5min=4.2),
        "entrance",
        ["arrival surge: 9 in 5 minutes (usually 4): greeter to the ticket machine"],
        ["到店高峰：5分钟内9人（平时约4人）：请大堂迎宾到取号机旁"],
    ),
    (
        "surge with kiosks free: the greeter sends kiosk errands there",
        snap(arrivals_5min=9.0, arrivals_expected_5min=4.2, kiosks=kiosks((1.0, 4))),
        "entrance",
        [
            "arrival surge: 9 in 5 minutes (usually 4): greeter to the ticket machine",
            "kiosks: 1 of 4 in use: send kiosk errands there",
        ],
        [
            "到店高峰：5分钟内9人（平时约4人）：请大堂迎宾到取号机旁",
            "自助机：4台中1台在用，请引导可自助业务前往自助机",
        ],
    ),
    (
        "surge with kiosks full: the greeter does not send anyone there",
        snap(arrivals_5min=9.0, arrivals_expected_5min=4.2, kiosks=kiosks((4.0, 4))),
        "entrance",
        [
            "arrival surge: 9 in 5 minutes (usually 4): greeter to the ticket machine",
            "kiosks full: keep kiosk errands in the ticket line",
        ],
        [
            "到店高峰：5分钟内9人（平时约4人）：请大堂迎宾到取号机旁",
            "自助机已满：暂勿引导客户前往自助机",
        ],
    ),
    (
        "no surge: under twice the usual",
        snap(arrivals_5min=8.0, arrivals_expected_5min=4.2),
        "entrance",
        [],
        [],
    ),
    (
        "no surge advice without a profile",
        snap(arrivals_5min=30.0, arrivals_expected_5min=None),
        "entrance",
        [],
        [],
    ),
    (
        "arrivals unknown",
        snap(arrivals_5min=None, arrivals_expected_5min=4.0),
        "entrance",
        [],
        [],
    ),
    (
        "a quiet hour: one arrival is no surge",
        snap(arrivals_5min=1.0, arrivals_expected_5min=0.2),
        "entrance",
        [],
        [],
    ),
    (
        "a quiet hour: two arrivals are",
        snap(arrivals_5min=2.0, arrivals_expected_5min=0.2),
        "entrance",
        ["arrival surge: 2 in 5 minutes (usually 0): greeter to the ticket machine"],
        ["到店高峰：5分钟内2人（平时约0人）：请大堂迎宾到取号机旁"],
    ),
    (
        "the entrance is not told about counters or the wait",
        snap(
            counters=(counter("3", 600.0),),
            line_trend_per_10min=3.0,
            wait=wait(12.0),
            forecast=ahead(21.0),
        ),
        "entrance",
        [],
        [],
    ),
    (
        "the waiting area is not told about a surge",
        snap(arrivals_5min=20.0, arrivals_expected_5min=4.0),
        "waiting_area",
        [],
        [],
    ),
]


@pytest.mark.parametrize(
    ("snapshot", "point", "en", "zh"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_advice_texts_in_both_languages(catalogs, snapshot, point, en, zh):
    assert texts(advise(snapshot, point, catalogs["en"])) == en
    assert texts(advise(snapshot, point, catalogs["zh-CN"])) == zh


SAID = ("in_use", "capacity", "counter", "minutes", "horizon_min", "arrivals", "expected")


# The figures of each kind: what its text says, and for context what it rests on (a full set
# of kiosks' capacity, how long a counter has been empty, the wait now).
@pytest.mark.parametrize(
    ("snapshot", "point", "kinds", "figures"),
    [
        (
            snap(kiosks=kiosks((1.2, 4))),
            "waiting_area",
            ["kiosks_free"],
            [{"in_use": 1, "capacity": 4}],
        ),
        (
            snap(kiosks=kiosks((4.4, 2), (1.0, 2))),
            "waiting_area",
            ["kiosks_free"],
            [{"in_use": 3, "capacity": 4}],
        ),
        (
            snap(kiosks=kiosks((4.0, 4))),
            "waiting_area",
            ["kiosks_full"],
            [{"in_use": 4, "capacity": 4}],
        ),
        (
            snap(counters=(counter("3", 390.0),)),
            "waiting_area",
            ["counter_unstaffed"],
            [{"counter": "3", "zone": "counter-3", "empty_minutes": 6.5}],
        ),
        (
            snap(wait=wait(10.2), forecast=ahead(16.4)),
            "waiting_area",
            ["wait_rising"],
            [{"minutes": 16, "horizon_min": 15, "wait_minutes": 10}],
        ),
        (
            snap(arrivals_5min=8.6, arrivals_expected_5min=4.2, kiosks=kiosks((0.0, 3))),
            "entrance",
            ["entrance_surge", "kiosks_free"],
            [{"arrivals": 9, "expected": 4}, {"in_use": 0, "capacity": 3}],
        ),
    ],
)
def test_figures_are_the_numbers_the_text_says(catalogs, snapshot, point, kinds, figures):
    for catalog in catalogs.values():
        advice = advise(snapshot, point, catalog)
        assert [a.kind for a in advice] == kinds
        assert [dict(a.figures) for a in advice] == figures
        for a in advice:  # what the text quotes (kiosks_full and the context figures do not)
            said = [] if a.kind == "kiosks_full" else SAID
            for key in set(said) & set(a.figures):
                assert str(a.figures[key]) in a.text


def test_thresholds_are_the_callers(catalogs):
    en = catalogs["en"]
    counters = snap(counters=(counter("3", 200.0),))
    assert texts(advise(counters, "waiting_area", en, unstaffed_after_s=300.0)) == []
    assert texts(advise(counters, "waiting_area", en, unstaffed_after_s=180.0)) == [
        "counter 3 unstaffed"
    ]
    surge = snap(arrivals_5min=9.0, arrivals_expected_5min=4.0)
    assert advise(surge, "entrance", en, surge_factor=3.0) == []
    assert [a.kind for a in advise(surge, "entrance", en, surge_factor=1.5)] == ["entrance_surge"]


def test_kiosk_use_is_none_without_a_known_capacity_zone():
    assert kiosk_use(()) is None
    assert kiosk_use(kiosks((2.0, None))) is None
    assert kiosk_use(kiosks((2.0, None), (1.0, 3))) == (1, 3)
    assert kiosk_use(kiosks((2.5, 3))) == (3, 3)  # half up, not to even


def test_compose_puts_each_advice_on_its_own_line(catalogs):
    snapshot = snap(kiosks=kiosks((1.0, 4)), counters=(counter("3", 300.0),))
    en = catalogs["en"]
    message = en.render("raised", count=20, zones=["Waiting area"], since="10:12")
    assert compose(message, advise(snapshot, "waiting_area", en), en) == (
        "Waiting area busy: 20 people in Waiting area since 10:12. Please start a waiting-area "
        "diversion pass.\nkiosks: 1 of 4 in use: move kiosk-able customers there\n"
        "counter 3 unstaffed"
    )
    zh = catalogs["zh-CN"]
    message = zh.render("raised", count=20, zones=["等候区"], since="10:12")
    assert compose(message, advise(snapshot, "waiting_area", zh), zh) == (
        "等候区客流较多：等候区自10:12起有20人等候。请开始等候区分流。\n"
        "自助机：4台中1台在用，请引导可自助办理的客户前往\n3号柜台无人值守"
    )
    assert compose(message, [], zh) == message


def _without_advice(language: str) -> dict[str, Any]:
    data = yaml.safe_load((SHIPPED / f"{language}.yaml").read_text(encoding="utf-8"))
    del data["advice"]
    return data


def _write(tmp_path: Path, language: str, data: dict[str, Any]) -> Path:
    (tmp_path / f"{language}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return tmp_path


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_a_templates_dir_without_advice_falls_back_to_the_shipped_texts(
    tmp_path, catalogs, language
):
    data = _without_advice(language)
    data["raised"] = "Busy: {count} in {zones}."
    custom = MessageCatalog(language, _write(tmp_path, language, data))
    assert custom.render("raised", count=3, zones=["W"]) == "Busy: 3 in W."
    snapshot = snap(kiosks=kiosks((1.0, 4)), counters=(counter("3", 300.0),))
    assert texts(advise(snapshot, "waiting_area", custom)) == texts(
        advise(snapshot, "waiting_area", catalogs[language])
    )


def test_a_templates_dir_may_override_some_advice_keys(tmp_path):
    data = _without_advice("en")
    data["advice"] = {"kiosks_free": "{capacity} kiosks, {in_use} busy: send people there"}
    custom = MessageCatalog("en", _write(tmp_path, "en", data))
    assert custom.render_advice("kiosks_free", in_use=1, capacity=4) == (
        "4 kiosks, 1 busy: send people there"
    )
    assert custom.render_advice("kiosks_full") == "kiosks full: call a colleague / open a counter"


@pytest.mark.parametrize(
    ("advice", "error"),
    [
        (
            {"kiosks_free": "{in_use} of {kiosks} in use"},
            r"advice\.kiosks_free uses unknown field\(s\) \['kiosks'\]; known: arrivals, ",
        ),
        ({"kiosk_free": "kiosks: {in_use}"}, r"advice\.kiosk_free is not an advice key; known: "),
        ({"kiosks_full": ""}, r"advice\.kiosks_full must be a non-empty text"),
        (["kiosks full"], r"advice must be a mapping"),
    ],
)
def test_bad_advice_templates_are_refused_with_a_clear_error(tmp_path, advice, error):
    data = _without_advice("en")
    data["advice"] = advice
    path = _write(tmp_path, "en", data)
    with pytest.raises(ValueError, match=error) as caught:
        MessageCatalog("en", path)
    assert str(path / "en.yaml") in str(caught.value)


def test_numbers_are_shown_as_people_read_them(catalogs):
    en = catalogs["en"]
    assert en.render_advice("wait_rising", minutes=15.5, horizon=15) == (
        "wait rising: about 16 min in 15 minutes"
    )
    assert en.render_advice("entrance_surge", arrivals=8.49, expected=4.5) == (
        "arrival surge: 8 in 5 minutes (usually 5): greeter to the ticket machine"
    )
    assert catalogs["zh-CN"].render_advice("kiosks_free", in_use=None, capacity=4) == (
        "自助机：4台中未知台在用，请引导可自助办理的客户前往"
    )
    with pytest.raises(KeyError, match="no advice template 'nope'"):
        en.render_advice("nope")


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_shipped_templates_have_every_advice_key(language):
    data = yaml.safe_load((SHIPPED / f"{language}.yaml").read_text(encoding="utf-8"))
    assert sorted(data["advice"]) == sorted(ADVICE_KEYS)


def test_both_languages_say_the_same_figures():
    def fields(language: str) -> dict[str, set[str]]:
        data = yaml.safe_load((SHIPPED / f"{language}.yaml").read_text(encoding="utf-8"))
        return {
            key: {f for _, f, _, _ in string.Formatter().parse(text) if f}
            for key, text in data["advice"].items()
        }

    assert fields("en") == fields("zh-CN")


def test_a_counter_named_in_chinese_reads_naturally(catalogs):
    snapshot = snap(
        counters=(counter("对公柜台", 300.0), counter(None, 300.0, name="理财室")),
        line_trend_per_10min=1.0,
    )
    advice = advise(snapshot, "waiting_area", catalogs["zh-CN"])
    assert texts(advice) == ["对公柜台无人值守", "理财室无人值守"]
    assert [a.figures["counter"] for a in advice] == ["对公柜台", "理财室"]


def test_a_counter_of_letters_only_is_said_by_its_name_and_a_single_letter_as_a_number(catalogs):
    snapshot = snap(counters=(counter("VIP", 300.0), counter("B", 300.0)), line_trend_per_10min=1.0)
    assert texts(advise(snapshot, "waiting_area", catalogs["zh-CN"])) == [
        "VIP无人值守",
        "B号柜台无人值守",
    ]
    assert texts(advise(snapshot, "waiting_area", catalogs["en"])) == [
        "VIP unstaffed",
        "counter B unstaffed",
    ]


def test_a_counter_with_a_clerk_in_its_staff_zone_is_not_unstaffed_and_one_empty_is_said_once(
    catalogs,
):
    service = ZoneUse("counter-3", "Counter 3", 0.0, counter="3", empty_s=400.0)
    clerk = ZoneUse("staff-3", "Clerk 3", 1.0, counter="3", empty_s=0.0)
    staffed = snap(counters=(service, clerk), line_trend_per_10min=1.0)
    assert advise(staffed, "waiting_area", catalogs["en"]) == []
    gone = ZoneUse("staff-3", "Clerk 3", 0.0, counter="3", empty_s=200.0)
    (advice,) = advise(snap(counters=(service, gone), line_trend_per_10min=1.0), "waiting_area",
                       catalogs["en"])  # fmt: skip
    assert advice.text == "counter 3 unstaffed"
    assert advice.figures == {"counter": "3", "zone": "staff-3", "empty_minutes": 3.3}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_figure_that_is_not_a_number_gives_no_advice_and_never_raises(catalogs, bad):
    snapshots = [
        snap(arrivals_5min=bad, arrivals_expected_5min=2.0, kiosks=kiosks((bad, 4))),
        snap(arrivals_5min=9.0, arrivals_expected_5min=bad),
        snap(wait=wait(5.0), forecast=ahead(bad)),
        snap(wait=wait(bad), forecast=ahead(30.0)),
        snap(counters=(counter("3", 300.0, count=bad),), line_trend_per_10min=1.0),
    ]
    for snapshot in snapshots:
        for point in ("entrance", "waiting_area"):
            assert advise(snapshot, point, catalogs["en"]) == []
    assert kiosk_use(kiosks((1.0, 2), (bad, 2))) is None


@pytest.mark.parametrize(
    ("advice", "error"),
    [
        ({"kiosks_free": "{} of {capacity} in use"}, r"advice\.kiosks_free uses unknown field"),
        ({"kiosks_free": "{in_use} of {capacity"}, r"advice\.kiosks_free is not a valid templ"),
        ({"kiosks_free": "{in_use:d} of {capacity}"}, r"advice\.kiosks_free cannot be filled in"),
        ({"counter_unstaffed": "{counter:.1f} empty"}, r"counter_unstaffed cannot be filled in"),
    ],
)
def test_advice_templates_that_would_raise_when_sent_are_refused_when_loaded(
    tmp_path, advice, error
):
    data = _without_advice("en")
    data["advice"] = advice
    path = _write(tmp_path, "en", data)
    with pytest.raises(ValueError, match=error) as caught:
        MessageCatalog("en", path)
    assert str(path / "en.yaml") in str(caught.value)


@pytest.mark.parametrize(
    ("key", "text", "error"),
    [
        ("raised", "Busy: {} in {zones}.", r"template en\.raised uses unknown field\(s\) \['{}'\]"),
        ("reasked", "Pass {number", r"template en\.reasked is not a valid template"),
    ],
)
def test_rule_templates_with_a_positional_field_or_a_lone_brace_are_refused(
    tmp_path, key, text, error
):
    data = _without_advice("en")
    data[key] = text
    with pytest.raises(ValueError, match=error):
        MessageCatalog("en", _write(tmp_path, "en", data))
