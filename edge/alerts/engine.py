"""The alert rule state machine: hysteresis, sustain, cooldown, escalation, re-asks, schedules.

Metric-agnostic: it is fed a value (people, minutes of wait, a forecast: docs/queueing.md) and
compares it with the rule's thresholds, which are in the same unit; "count" below is that value.
Pure and clock-injected. Durations (how long a count has held, cooldowns, escalation delays) are
measured on the monotonic clock, so a wall-clock step (NTP, a wrong RTC after a power cut) can
neither raise nor clear anything; wall time (UTC) is only asked whether alerts are allowed now
(opening hours, quiet periods, per-period thresholds) and stamped on records.

    IDLE --count >= raise_at, alerts allowed--> PENDING_RAISE --held raise_after_s--> ACTIVE
    ACTIVE --count <= clear_at--> PENDING_CLEAR --held clear_after_s--> COOLDOWN --cooldown_s--> IDLE
    ACTIVE --pass done, reask_after_s later count >= raise_at, alerts allowed--> ACTIVE (re-asked)
    ACTIVE --accepted, never done, 2 x reask_after_s later count >= raise_at--> ACTIVE (re-asked)

A re-ask (Reasked) is the next pass asked of the manager while the lobby stays full after one
was done: the alert stays the same alert, is unacknowledged again and escalates anew. Without
it an accepted alert never asks again however long the lobby stays full (BENCHMARKS.md, the
lobby simulator's first numbers). A pass accepted and never reported done (the tap forgotten,
or the manager called away) is taken as walked reask_after_s after the accept, and asked
again reask_after_s later: an accept must not silence a full lobby for the rest of the day.

A count between clear_at and raise_at changes nothing: that band is what stops an alert from
flapping when the waiting area hovers around one number. Unknown counts (a camera down) never
raise or clear: they interrupt a pending raise or clear, and an active alert stays active.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from edge.config import AlertRuleConfig
from edge.schedule import RuleThresholds, Schedule


class Phase(str, enum.Enum):
    IDLE = "idle"
    PENDING_RAISE = "pending_raise"
    ACTIVE = "active"
    PENDING_CLEAR = "pending_clear"
    COOLDOWN = "cooldown"


@dataclass(frozen=True)
class Raised:
    rule: str
    alert_id: str
    count: float
    threshold: float
    since: datetime  # UTC: when the count first reached the threshold
    at: datetime


@dataclass(frozen=True)
class Escalated:
    rule: str
    alert_id: str
    count: float | None
    threshold: float
    number: int  # 1 for the first escalation
    at: datetime


@dataclass(frozen=True)
class Cleared:
    rule: str
    alert_id: str
    count: float
    threshold: float
    at: datetime


@dataclass(frozen=True)
class Reasked:
    rule: str
    alert_id: str
    value: float
    threshold: float
    number: int  # the pass asked: 2 for the first re-ask (the raise asked pass 1)
    at: datetime


AlertEvent = Raised | Escalated | Reasked | Cleared


def new_alert_id(rule: str, at: datetime) -> str:
    """Stable once made, unique across restarts: rule, UTC second, and a random suffix."""
    return f"{rule}-{at.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class RuleState:
    phase: Phase = Phase.IDLE
    pending_since: float | None = None  # monotonic start of a pending raise or clear
    pending_since_utc: datetime | None = None
    alert_id: str | None = None
    notified_at: float | None = None  # monotonic time of the last raise or escalation
    escalations: int = 0
    acknowledged: bool = False
    cooldown_until: float | None = None
    passes: int = 1  # passes asked so far: the raise is the first
    pass_done_at: float | None = None  # monotonic: when the latest pass was reported done
    accepted_at: float | None = None  # monotonic: when the latest pass was accepted


class RuleEngine:
    """One alert rule. Feed it the watched zones' total with step(); act on the events."""

    def __init__(
        self,
        rule: AlertRuleConfig,
        schedule: Schedule,
        *,
        alert_ids: Callable[[str, datetime], str] = new_alert_id,
    ) -> None:
        self.rule = rule
        self.schedule = schedule
        self.thresholds = RuleThresholds(rule, schedule)
        self._alert_ids = alert_ids
        self.state = RuleState()

    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def alert_id(self) -> str | None:
        return self.state.alert_id

    def restore(
        self,
        alert_id: str,
        escalations: int,
        acknowledged: bool,
        now: float,
        *,
        passes: int = 1,
        pass_done: bool = False,
    ) -> None:
        """Resume an alert that was open when the process stopped (its record is in the store):
        `passes` asked so far, and whether the latest was reported done.

        The escalation and re-ask timers restart now: the process cannot know how long it was
        down (the monotonic clock does not survive it), and an early re-notification is worse
        than a late one for a manager who already acted.
        """
        self.state = RuleState(
            phase=Phase.ACTIVE,
            alert_id=alert_id,
            notified_at=now,
            escalations=escalations,
            acknowledged=acknowledged or pass_done,
            passes=max(1, passes),
            pass_done_at=now if pass_done else None,
            accepted_at=now if acknowledged and not pass_done else None,
        )

    def acknowledge(self, alert_id: str, now: float | None = None) -> None:
        """The latest pass of `alert_id` was accepted (at monotonic `now`, where known: a pass
        accepted and never done is asked again in time; a repeat keeps the first time)."""
        s = self.state
        if s.alert_id == alert_id:
            s.acknowledged = True
            if s.accepted_at is None and s.pass_done_at is None:
                s.accepted_at = now

    def pass_done(self, alert_id: str, now: float) -> None:
        """The latest pass of `alert_id` was reported done (monotonic `now`): the re-ask timer
        starts. A repeat (the same pass seen again through the store) keeps the first time."""
        s = self.state
        if s.alert_id == alert_id and s.pass_done_at is None:
            s.acknowledged = True
            s.pass_done_at = now

    def step(self, count: float | None, now: float, utc: datetime) -> list[AlertEvent]:
        """Advance with the rule's current value (the zones' total, a wait...; None = unknown)."""
        s = self.state
        thresholds = self.thresholds.at(utc)
        allowed = self.schedule.alerts_allowed(utc)
        events: list[AlertEvent] = []
        if s.phase is Phase.COOLDOWN and s.cooldown_until is not None and now >= s.cooldown_until:
            self._enter(Phase.IDLE)
        if count is None:
            if s.phase is Phase.PENDING_RAISE:
                self._enter(Phase.IDLE)
            elif s.phase is Phase.PENDING_CLEAR:
                self._enter(Phase.ACTIVE)
        else:
            if s.phase is Phase.IDLE and allowed and count >= thresholds.raise_at:
                self._enter(Phase.PENDING_RAISE, now, utc)
            if s.phase is Phase.PENDING_RAISE:
                events += self._pending_raise(count, now, utc, thresholds.raise_at, allowed)
            if s.phase is Phase.ACTIVE and count <= thresholds.clear_at:
                self._enter(Phase.PENDING_CLEAR, now, utc)
            if s.phase is Phase.PENDING_CLEAR:
                events += self._pending_clear(count, now, utc, thresholds.clear_at)
        if s.phase is Phase.ACTIVE and allowed and count is not None:
            events += self._maybe_reask(count, now, utc, thresholds.raise_at)
        if s.phase in (Phase.ACTIVE, Phase.PENDING_CLEAR) and allowed:
            events += self._maybe_escalate(count, now, utc, thresholds.raise_at)
        return events

    def _pending_raise(
        self, count: float, now: float, utc: datetime, raise_at: float, allowed: bool
    ) -> list[AlertEvent]:
        s = self.state
        if not allowed or count < raise_at:
            self._enter(Phase.IDLE)
            return []
        assert s.pending_since is not None and s.pending_since_utc is not None
        if now - s.pending_since < self.rule.raise_after_s:
            return []
        since = s.pending_since_utc
        alert_id = self._alert_ids(self.rule.id, utc)
        self._enter(Phase.ACTIVE)
        s.alert_id, s.notified_at, s.escalations, s.acknowledged = alert_id, now, 0, False
        s.passes, s.pass_done_at, s.accepted_at = 1, None, None
        return [Raised(self.rule.id, alert_id, count, raise_at, since, utc)]

    def _pending_clear(
        self, count: float, now: float, utc: datetime, clear_at: float
    ) -> list[AlertEvent]:
        s = self.state
        if count > clear_at:
            self._enter(Phase.ACTIVE)
            return []
        assert s.pending_since is not None and s.alert_id is not None
        if now - s.pending_since < self.rule.clear_after_s:
            return []
        event = Cleared(self.rule.id, s.alert_id, count, clear_at, utc)
        self._enter(Phase.COOLDOWN)
        s.alert_id, s.cooldown_until = None, now + self.rule.cooldown_s
        s.passes, s.pass_done_at, s.accepted_at = 1, None, None
        return [event]

    def _maybe_reask(
        self, value: float, now: float, utc: datetime, raise_at: float
    ) -> list[AlertEvent]:
        """The next pass, once reask_after_s have passed since the latest was done and the
        value is still at or above raise_at. Checked when the time comes, not held through:
        a value that sank into the band (above clear_at) and came back is a full lobby again,
        and one that sank to clear_at went to PENDING_CLEAR, where nothing is re-asked."""
        s, rule = self.state, self.rule
        if rule.reask_after_s is None or s.alert_id is None or value < raise_at:
            return []
        if s.pass_done_at is not None:
            due = now - s.pass_done_at >= rule.reask_after_s
        else:  # accepted, never reported done: taken as walked reask_after_s after the accept
            due = s.accepted_at is not None and now - s.accepted_at >= 2 * rule.reask_after_s
        if not due:
            return []
        s.passes += 1
        s.pass_done_at = s.accepted_at = None
        s.acknowledged = False  # a new ask: it escalates again if nobody accepts it
        s.escalations, s.notified_at = 0, now
        return [Reasked(rule.id, s.alert_id, value, raise_at, s.passes, utc)]

    def _maybe_escalate(
        self, count: float | None, now: float, utc: datetime, raise_at: float
    ) -> list[AlertEvent]:
        s, rule = self.state, self.rule
        if (
            s.acknowledged
            or rule.escalate_after_s is None
            or s.escalations >= rule.max_escalations
            or s.notified_at is None
            or s.alert_id is None
            or now - s.notified_at < rule.escalate_after_s
        ):
            return []
        s.escalations += 1
        s.notified_at = now
        return [Escalated(rule.id, s.alert_id, count, raise_at, s.escalations, utc)]

    def _enter(self, phase: Phase, now: float | None = None, utc: datetime | None = None) -> None:
        s = self.state
        s.phase = phase
        s.pending_since, s.pending_since_utc = now, utc
