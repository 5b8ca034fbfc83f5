"""Branch opening hours, holidays, quiet periods and per-period thresholds.

Pure: every question takes a UTC-aware datetime and answers in the branch's IANA time zone, so
a DST change moves opening hours with the local clock, as branch staff expect. Wall time decides
only *whether* alerts may be raised now; how long a condition has held is measured elsewhere on
the monotonic clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from edge.config import WEEKDAYS, AlertRuleConfig, ScheduleConfig, parse_time_range

Minutes = tuple[int, int]  # [start, end) in minutes after local midnight


@dataclass(frozen=True)
class Thresholds:
    raise_at: float
    clear_at: float


@dataclass(frozen=True)
class _Period:
    days: frozenset[int]
    minutes: Minutes
    thresholds: Thresholds


class Schedule:
    """When a branch is open and when diversion alerts are allowed."""

    def __init__(self, config: ScheduleConfig, timezone: str) -> None:
        self.tz = ZoneInfo(timezone)
        self._hours: dict[int, list[Minutes]] = {
            WEEKDAYS.index(day): sorted(parse_time_range(r) for r in ranges)
            for day, ranges in config.opening_hours.items()
        }
        self._always_open = not config.opening_hours
        self._holidays = frozenset(config.holidays)
        self._quiet = [
            (frozenset(WEEKDAYS.index(d) for d in q.days), parse_time_range(q.time))
            for q in config.quiet
        ]
        self._quiet_before_close = config.quiet_before_close_min

    def local(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("schedule questions need timezone-aware datetimes")
        return at.astimezone(self.tz)

    def is_open(self, at: datetime) -> bool:
        local = self.local(at)
        if local.date() in self._holidays:
            return False
        if self._always_open:
            return True
        return _within(self._hours.get(local.weekday(), []), _minute_of_day(local))

    def is_quiet(self, at: datetime) -> bool:
        """Inside a configured quiet period, or in the last minutes before a closing."""
        local = self.local(at)
        minute = _minute_of_day(local)
        for days, span in self._quiet:
            if local.weekday() in days and span[0] <= minute < span[1]:
                return True
        if self._always_open or not self._quiet_before_close:
            return False
        for start, end in self._hours.get(local.weekday(), []):
            if start <= minute < end and minute >= end - self._quiet_before_close:
                return True
        return False

    def alerts_allowed(self, at: datetime) -> bool:
        return self.is_open(at) and not self.is_quiet(at)


class RuleThresholds:
    """A rule's raise/clear thresholds at a given moment: the first matching period wins."""

    def __init__(self, rule: AlertRuleConfig, schedule: Schedule) -> None:
        self._schedule = schedule
        self._default = Thresholds(rule.raise_at, rule.clear_at)
        self._periods = [
            _Period(
                frozenset(WEEKDAYS.index(d) for d in p.days),
                parse_time_range(p.time),
                Thresholds(p.raise_at, p.clear_at),
            )
            for p in rule.periods
        ]

    def at(self, when: datetime) -> Thresholds:
        local = self._schedule.local(when)
        minute = _minute_of_day(local)
        for period in self._periods:
            if local.weekday() in period.days and period.minutes[0] <= minute < period.minutes[1]:
                return period.thresholds
        return self._default


def _minute_of_day(local: datetime) -> int:
    return local.hour * 60 + local.minute


def _within(ranges: Sequence[Minutes], minute: int) -> bool:
    return any(start <= minute < end for start, end in ranges)
