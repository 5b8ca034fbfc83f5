"""The alert rule state machine, driven with a fake clock.

Properties (hypothesis, stateful): a count hovering around the threshold never floods the
manager; raise and clear alternate; the cooldown holds; nothing is raised outside opening hours;
a step of the wall clock by itself raises or clears nothing. Schedules follow DST.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from edge.alerts.engine import Cleared, Escalated, Phase, Raised, Reasked, RuleEngine
from edge.config import AlertRuleConfig, ScheduleConfig
from edge.schedule import Schedule

UTC = timezone.utc
MONDAY_NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a Monday


def make_rule(**overrides) -> AlertRuleConfig:
    values = dict(
        id="waiting", zones=["w"], raise_at=15, clear_at=10, raise_after_s=60, clear_after_s=120,
        cooldown_s=600, escalate_after_s=300, max_escalations=2,
    )  # fmt: skip
    values.update(overrides)
    return AlertRuleConfig.model_validate(values)


def always_open() -> Schedule:
    return Schedule(ScheduleConfig(), "UTC")


def counter_ids():
    n = iter(range(10_000))
    return lambda rule, at: f"{rule}-{next(n)}"


class Driver:
    """Feeds an engine a count every `dt` seconds on both clocks."""

    def __init__(self, engine: RuleEngine, start: datetime = MONDAY_NOON) -> None:
        self.engine = engine
        self.mono = 1000.0
        self.utc = start
        self.events: list = []

    def feed(self, count: float | None, seconds: float = 1.0, dt: float = 1.0) -> list:
        out = []
        for _ in range(max(1, round(seconds / dt))):
            self.mono += dt
            self.utc += timedelta(seconds=dt)
            out += self.engine.step(count, self.mono, self.utc)
        self.events += out
        return out


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def test_raise_needs_the_count_to_hold_for_raise_after_s():
    d = Driver(RuleEngine(make_rule(), always_open(), alert_ids=counter_ids()))
    assert d.feed(20, seconds=60) == []  # the first sample starts the clock: 59 s held
    assert d.engine.phase is Phase.PENDING_RAISE
    (event,) = d.feed(20, seconds=1)
    assert isinstance(event, Raised)
    assert event.count == 20 and event.threshold == 15
    assert event.since == MONDAY_NOON + timedelta(seconds=1)  # when the count first reached it


def test_a_dip_below_raise_at_restarts_the_sustain():
    d = Driver(RuleEngine(make_rule(), always_open(), alert_ids=counter_ids()))
    d.feed(20, seconds=50)
    d.feed(14, seconds=1)
    assert d.feed(20, seconds=60) == []
    assert kinds(d.feed(20, seconds=1)) == ["Raised"]


def test_counts_between_clear_and_raise_change_nothing():
    d = Driver(RuleEngine(make_rule(escalate_after_s=None), always_open(), alert_ids=counter_ids()))
    assert kinds(d.feed(20, seconds=61)) == ["Raised"]
    assert d.feed(12, seconds=3600) == []  # stays raised, no flapping


def test_clear_needs_the_count_to_stay_low_then_cooldown_holds():
    d = Driver(RuleEngine(make_rule(escalate_after_s=None), always_open(), alert_ids=counter_ids()))
    d.feed(20, seconds=61)
    d.feed(5, seconds=120)
    assert d.engine.phase is Phase.PENDING_CLEAR
    assert kinds(d.feed(5, seconds=1)) == ["Cleared"]
    assert d.feed(30, seconds=599) == []  # cooldown: 600 s
    assert kinds(d.feed(30, seconds=61)) == ["Raised"]


def test_unanswered_alert_escalates_at_most_max_escalations_times():
    d = Driver(RuleEngine(make_rule(), always_open(), alert_ids=counter_ids()))
    d.feed(20, seconds=60)
    events = d.feed(20, seconds=3600)
    assert [e.number for e in events if isinstance(e, Escalated)] == [1, 2]
    assert all(e.alert_id == "waiting-0" for e in events)


def test_an_acknowledged_alert_does_not_escalate():
    d = Driver(RuleEngine(make_rule(), always_open(), alert_ids=counter_ids()))
    (raised,) = d.feed(20, seconds=61)
    d.engine.acknowledge(raised.alert_id)
    assert d.feed(20, seconds=3600) == []


def test_unknown_counts_neither_raise_nor_clear():
    d = Driver(RuleEngine(make_rule(), always_open(), alert_ids=counter_ids()))
    d.feed(20, seconds=60)
    d.feed(None, seconds=5)
    assert d.feed(20, seconds=60) == []  # the sustain started again after the outage
    d.feed(20, seconds=1)
    d.feed(5, seconds=100)
    d.feed(None, seconds=600)
    assert d.engine.phase is Phase.ACTIVE  # missing data did not clear it
    assert not [e for e in d.events if isinstance(e, Cleared)]


def test_restored_alert_continues_and_clears_once():
    engine = RuleEngine(make_rule(), always_open(), alert_ids=counter_ids())
    engine.restore("waiting-old", escalations=1, acknowledged=True, now=1000.0)
    d = Driver(engine)
    (event,) = d.feed(3, seconds=121)
    assert isinstance(event, Cleared) and event.alert_id == "waiting-old"


# --- re-asks: another pass while the lobby stays full -----------------------------------------


def _done_after_raise(rule: AlertRuleConfig, schedule: Schedule | None = None) -> Driver:
    """Raised (20 people for 61 s), accepted and its pass reported done just now."""
    d = Driver(RuleEngine(rule, schedule or always_open(), alert_ids=counter_ids()))
    (raised,) = d.feed(20, seconds=61)
    d.engine.acknowledge(raised.alert_id)
    d.engine.pass_done(raised.alert_id, d.mono)
    return d


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # (value, seconds) after the pass was done -> the events of the last leg
        ([(20, 599)], []),  # reask_after_s not yet over
        ([(20, 599), (20, 1)], ["Reasked"]),  # still full 600 s after the pass
        ([(12, 599), (12, 60)], []),  # in the band (above clear_at, below raise_at): no ask
        ([(12, 700), (16, 1)], ["Reasked"]),  # full again later: asked when it is
        ([(5, 121), (20, 600)], []),  # cleared meanwhile: no re-ask (a new alert after cooldown)
        ([(None, 700)], []),  # unknown: never asks
        ([(None, 700), (20, 1)], ["Reasked"]),  # known and full again: asks
    ],
)
def test_a_done_pass_is_asked_again_only_while_the_value_stays_at_raise_at(script, expected):
    d = _done_after_raise(make_rule(escalate_after_s=None, reask_after_s=600))
    events: list = []
    for value, seconds in script:
        events = d.feed(value, seconds=seconds)
    assert [e for e in kinds(events) if e != "Raised"] == expected


def test_a_reask_is_the_next_pass_of_the_same_alert_and_escalates_anew():
    d = _done_after_raise(make_rule(reask_after_s=600, escalate_after_s=300, max_escalations=1))
    (reasked,) = d.feed(22, seconds=600)
    assert isinstance(reasked, Reasked)
    assert (reasked.alert_id, reasked.number, reasked.value, reasked.threshold) == (
        "waiting-0", 2, 22, 15,
    )  # fmt: skip
    assert reasked.at == d.utc
    assert d.feed(22, seconds=299) == []
    (escalated,) = d.feed(22, seconds=1)  # unaccepted again: escalated, numbered from 1
    assert isinstance(escalated, Escalated) and escalated.number == 1
    d.engine.acknowledge("waiting-0")
    d.engine.pass_done("waiting-0", d.mono)
    (third,) = d.feed(22, seconds=600)
    assert isinstance(third, Reasked) and third.number == 3


def test_an_accepted_pass_never_done_is_asked_again_after_twice_reask_after_s():
    d = Driver(RuleEngine(make_rule(escalate_after_s=None), always_open(), alert_ids=counter_ids()))
    (raised,) = d.feed(20, seconds=61)
    d.engine.acknowledge(raised.alert_id, d.mono)  # accepted, the done tap forgotten
    d.engine.acknowledge(raised.alert_id, d.mono + 500)  # seen again through the store
    assert d.feed(20, seconds=1199) == []
    (reasked,) = d.feed(20, seconds=1)
    assert isinstance(reasked, Reasked) and reasked.number == 2
    d.engine.acknowledge(raised.alert_id)  # no time known (an old caller): no reminder
    assert d.feed(20, seconds=3600) == []


def test_no_reask_before_a_pass_is_accepted_or_when_the_rule_never_reasks():
    d = Driver(RuleEngine(make_rule(escalate_after_s=None), always_open(), alert_ids=counter_ids()))
    d.feed(20, seconds=61)
    assert d.feed(20, seconds=3600) == []  # nobody accepted: escalation's job, not a re-ask
    never = _done_after_raise(make_rule(escalate_after_s=None, reask_after_s=None))
    assert never.feed(20, seconds=3600) == []


def test_a_repeated_pass_done_keeps_the_first_time():
    d = _done_after_raise(make_rule(escalate_after_s=None, reask_after_s=600))
    d.feed(20, seconds=300)
    d.engine.pass_done("waiting-0", d.mono)  # the same pass, seen again through the store
    d.engine.pass_done("other-alert", d.mono)  # not this rule's alert: nothing
    assert kinds(d.feed(20, seconds=300)) == ["Reasked"]


def test_no_reask_while_alerts_are_not_allowed_then_one_after():
    # Monday 12:20 London: the quiet period is 12:30-13:00, the pass done at 12:21.
    schedule = Schedule(LONDON, "Europe/London")
    d = Driver(RuleEngine(make_rule(escalate_after_s=None, reask_after_s=600), schedule,
                          alert_ids=counter_ids()),
               start=datetime(2026, 11, 30, 12, 20, tzinfo=UTC))  # fmt: skip
    (raised,) = d.feed(20, seconds=61)
    d.engine.pass_done(raised.alert_id, d.mono)
    assert d.feed(20, seconds=38 * 60 + 58) == []  # due at 12:31:01, quiet until 12:59:59
    (reasked,) = d.feed(20, seconds=60)
    assert isinstance(reasked, Reasked) and reasked.at == datetime(2026, 11, 30, 13, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pass_done", "seconds", "expected"),
    # Accepted, never done: asked again 2 x reask_after_s after the restart.
    [(True, 599, []), (True, 600, ["Reasked"]), (False, 1199, []), (False, 1200, ["Reasked"])],
)
def test_a_restored_alert_resumes_its_pass_count_and_reask_timer(pass_done, seconds, expected):
    engine = RuleEngine(make_rule(escalate_after_s=None), always_open(), alert_ids=counter_ids())
    engine.restore("waiting-old", 0, True, now=1000.0, passes=2, pass_done=pass_done)
    d = Driver(engine)  # its monotonic clock starts at 1000: the timer counts from the restore
    events = d.feed(20, seconds=seconds)
    assert kinds(events) == expected
    if expected:
        assert events[0].number == 3 and events[0].alert_id == "waiting-old"


# --- schedules ------------------------------------------------------------------------------

LONDON = ScheduleConfig.model_validate(
    {
        "opening_hours": {
            d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        },
        "holidays": ["2026-12-25"],
        "quiet": [{"days": ["mon"], "time": "12:30-13:00"}],
        "quiet_before_close_min": 15,
    }
)


@pytest.mark.parametrize(
    ("utc", "open_", "allowed"),
    [
        # winter: London = UTC
        (datetime(2026, 11, 30, 8, 59, tzinfo=UTC), False, False),
        (datetime(2026, 11, 30, 9, 0, tzinfo=UTC), True, True),
        (datetime(2026, 11, 30, 12, 45, tzinfo=UTC), True, False),  # Monday quiet period
        (datetime(2026, 11, 30, 16, 44, tzinfo=UTC), True, True),
        (datetime(2026, 11, 30, 16, 45, tzinfo=UTC), True, False),  # last 15 minutes
        (datetime(2026, 11, 30, 17, 0, tzinfo=UTC), False, False),
        (datetime(2026, 12, 25, 11, 0, tzinfo=UTC), False, False),  # holiday
        # DST starts 2026-03-29 01:00 UTC: London = UTC+1, opening at 08:00 UTC
        (datetime(2026, 3, 28, 8, 30, tzinfo=UTC), False, False),
        (datetime(2026, 3, 29, 8, 30, tzinfo=UTC), True, True),
        # DST ends 2026-10-25 01:00 UTC: back to UTC, closing at 17:00 UTC
        (datetime(2026, 10, 24, 16, 30, tzinfo=UTC), False, False),
        (datetime(2026, 10, 25, 16, 30, tzinfo=UTC), True, True),
    ],
)
def test_opening_hours_follow_the_local_clock_across_dst(utc, open_, allowed):
    schedule = Schedule(LONDON, "Europe/London")
    assert schedule.is_open(utc) is open_
    assert schedule.alerts_allowed(utc) is allowed


def test_no_alert_is_raised_outside_opening_hours_but_one_comes_after_opening():
    schedule = Schedule(LONDON, "Europe/London")
    d = Driver(RuleEngine(make_rule(), schedule, alert_ids=counter_ids()),
               start=datetime(2026, 11, 30, 7, 0, tzinfo=UTC))  # fmt: skip
    assert d.feed(40, seconds=2 * 3600 - 1, dt=10) == []  # until 08:59:59 local
    events = d.feed(40, seconds=70, dt=10)
    assert kinds(events) == ["Raised"]
    assert events[0].at >= datetime(2026, 11, 30, 9, 1, tzinfo=UTC)


def test_period_thresholds_apply_in_their_period():
    rule = make_rule(
        periods=[{"days": ["mon"], "time": "12:00-14:00", "raise_at": 25, "clear_at": 18}]
    )
    d = Driver(RuleEngine(rule, always_open(), alert_ids=counter_ids()))  # Monday noon UTC
    assert d.feed(20, seconds=120) == []  # lunch peak: 20 is normal
    d.utc = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert kinds(d.feed(20, seconds=61)) == ["Raised"]


def test_a_wall_clock_step_raises_and_clears_nothing():
    d = Driver(RuleEngine(make_rule(), always_open(), alert_ids=counter_ids()))
    d.feed(20, seconds=30)
    d.utc += timedelta(hours=5)  # NTP fixes a wrong clock
    assert d.feed(20, seconds=30) == []  # 59 s held on the monotonic clock, whatever the wall says
    assert kinds(d.feed(20, seconds=1)) == ["Raised"]
    d.feed(5, seconds=60)
    d.utc -= timedelta(hours=7)
    assert d.feed(5, seconds=60) == []
    assert kinds(d.feed(5, seconds=1)) == ["Cleared"]


# --- properties -------------------------------------------------------------------------------


class EngineMachine(RuleBasedStateMachine):
    """Random counts, gaps, unknowns, acks and clock steps; check what a manager would see."""

    @initialize(
        raise_at=st.integers(5, 30),
        band=st.integers(1, 10),
        raise_after=st.sampled_from([0, 5, 30, 60]),
        clear_after=st.sampled_from([0, 10, 60]),
        cooldown=st.sampled_from([0, 60, 300]),
        hours=st.booleans(),
    )
    def setup(self, raise_at, band, raise_after, clear_after, cooldown, hours):
        self.rule = make_rule(
            raise_at=raise_at, clear_at=max(0, raise_at - band), raise_after_s=raise_after,
            clear_after_s=clear_after, cooldown_s=cooldown, escalate_after_s=120, max_escalations=2,
            reask_after_s=120,
        )  # fmt: skip
        self.schedule = Schedule(LONDON, "Europe/London") if hours else always_open()
        self.engine = RuleEngine(self.rule, self.schedule, alert_ids=counter_ids())
        self.mono = 0.0
        self.utc = datetime(2026, 11, 30, 8, 50, tzinfo=UTC)
        self.active: str | None = None
        self.last_clear: float | None = None
        self.escalations = 0
        self.high_since: float | None = None  # monotonic start of count >= raise_at, known, allowed
        self.done_at: float | None = None  # monotonic: the active alert's latest pass done
        self.passes = 0

    def _step(self, count, dt):
        self.mono += dt
        self.utc += timedelta(seconds=dt)
        allowed = self.schedule.alerts_allowed(self.utc)
        thresholds = self.engine.thresholds.at(self.utc)
        if count is None or count < thresholds.raise_at or not allowed:
            self.high_since = None
        elif self.high_since is None:
            self.high_since = self.mono
        for event in self.engine.step(count, self.mono, self.utc):
            self._check(event, count, allowed)

    def _check(self, event, count, allowed):
        if isinstance(event, Raised):
            assert self.active is None, "two raises without a clear"
            assert allowed, "raised while the branch is closed or quiet"
            assert self.high_since is not None
            assert self.mono - self.high_since >= self.rule.raise_after_s - 1e-9
            if self.last_clear is not None:
                assert self.mono - self.last_clear >= self.rule.cooldown_s - 1e-9
            self.active, self.escalations, self.passes, self.done_at = event.alert_id, 0, 1, None
        elif isinstance(event, Reasked):
            assert event.alert_id == self.active, "re-asked an alert that is not open"
            assert allowed, "re-asked while the branch is closed or quiet"
            assert self.done_at is not None, "re-asked before a pass was done"
            assert self.mono - self.done_at >= self.rule.reask_after_s - 1e-9
            assert count is not None and count >= self.engine.thresholds.at(self.utc).raise_at
            self.passes += 1
            assert event.number == self.passes
            self.escalations, self.done_at = 0, None
        elif isinstance(event, Cleared):
            assert event.alert_id == self.active, "cleared an alert that was not raised"
            assert count is not None and count <= self.rule.clear_at
            self.active, self.last_clear, self.done_at = None, self.mono, None
        else:
            assert event.alert_id == self.active
            self.escalations += 1
            assert self.escalations <= self.rule.max_escalations

    @rule(count=st.integers(0, 40), seconds=st.integers(1, 120))
    def hold(self, count, seconds):
        for _ in range(seconds // 5 or 1):
            self._step(count, 5.0)

    @rule(center=st.integers(0, 40), seconds=st.integers(10, 600))
    def hover(self, center, seconds):
        # The count flickers by one person around a value, every second.
        for i in range(seconds):
            self._step(center + (i % 3) - 1, 1.0)

    @rule(seconds=st.integers(1, 300))
    def camera_down(self, seconds):
        phase = self.engine.phase
        for _ in range(seconds // 5 or 1):
            self._step(None, 5.0)
        assert not (phase is Phase.ACTIVE and self.active is None)

    @rule()
    def acknowledge(self):
        if self.active:
            self.engine.acknowledge(self.active)

    @rule()
    def pass_done(self):
        if self.active:
            self.engine.pass_done(self.active, self.mono)
            if self.done_at is None:
                self.done_at = self.mono

    @rule(hours=st.integers(-12, 12))
    def wall_clock_step(self, hours):
        before = self.engine.phase
        self.utc += timedelta(hours=hours)
        assert self.engine.phase is before

    @invariant()
    def phase_matches_what_was_announced(self):
        if getattr(self, "engine", None) is None:
            return
        announced = self.engine.phase in (Phase.ACTIVE, Phase.PENDING_CLEAR)
        assert announced == (self.active is not None)


EngineMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
TestEngineProperties = EngineMachine.TestCase


def test_hovering_around_the_threshold_for_a_day_gives_few_alerts():
    """The flood check in numbers: +-1 person around raise_at all day, with the defaults."""
    d = Driver(RuleEngine(make_rule(), always_open(), alert_ids=counter_ids()))
    for i in range(8 * 3600):
        d.feed(15 + (i % 3) - 1, seconds=1)
    for i in range(8 * 3600):
        d.feed(10 + (i % 3) - 1, seconds=1)  # then around clear_at
    raises = [e for e in d.events if isinstance(e, Raised)]
    clears = [e for e in d.events if isinstance(e, Cleared)]
    assert len(raises) <= 1 and len(clears) <= 1
