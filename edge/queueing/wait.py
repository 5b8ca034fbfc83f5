"""The wait for a customer taking a ticket now, from the line's count and its flow (issue 13).

Types first (docs/queueing.md, "edge/queueing/wait.py"); the estimator follows.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

import numpy as np

from edge.queueing.forecast import CountForecast
from edge.queueing.tickets import TicketBook

Confidence = Literal["exact", "high", "medium", "low", "unknown"]
Method = Literal["tickets", "departures", "arrivals", "dwell", "none"]


@dataclass(frozen=True)
class WaitSettings:
    """window_s: trailing seconds of departures, arrivals and dwell the rates are taken over.
    min_departures: fewer departures in the window give no throughput-based estimate.
    min_service_s: a shorter service-zone visit is a passer-by, not a departure.
    max_wait_s: estimates are capped here (a line whose throughput is near zero)."""

    window_s: float = 1200.0
    min_departures: int = 3
    min_service_s: float = 30.0
    max_wait_s: float = 3 * 3600.0


@dataclass(frozen=True)
class WaitEstimate:
    """The estimated wait of a customer taking a ticket now, in seconds; None: unknown."""

    wait_s: float | None
    low_s: float | None
    high_s: float | None
    confidence: Confidence
    method: Method
    line_count: float | None  # people in the line now (or tickets waiting)
    throughput_per_min: float | None
    arrivals_per_min: float | None
    dwell_p50_s: float | None  # finished line visits in the window: a lagging cross-check
    reason: str = ""  # why unknown, or what disagrees

    @property
    def known(self) -> bool:
        return self.wait_s is not None


UNKNOWN_WAIT = WaitEstimate(None, None, None, "unknown", "none", None, None, None, None, "no data")


@dataclass(frozen=True)
class WaitForecast:
    """The line count and the wait of a customer arriving horizon_s from now."""

    horizon_s: int
    wait_s: float | None
    low_s: float | None
    high_s: float | None
    count: float | None
    count_low: float | None
    count_high: float | None
    reason: str = ""  # why unknown; "" when known


# --- the estimator ----------------------------------------------------------------------------

#: A ticket feed with no event for this long is stale (the machine or its link is down).
TICKET_STALE_S = 600.0
#: z of the 80% interval (10% each side): the contract's "about 80%".
_Z = 1.2816
_STEPS: tuple[Confidence, ...] = ("exact", "high", "medium", "low", "unknown")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def ahead(line_count: float) -> float:
    """Services that must end before a customer taking a ticket now is called.

    The L people waiting, plus the one service that must end to free a counter for the first of
    them: a customer only waits while every counter is busy, and in a first-come line anyone
    waiting means they all are. So L + 1 for a line of at least one person, L below (a smoothed
    count under 1 is a line that is empty most of the time, a free counter likely).
    """
    return line_count + min(1.0, max(0.0, line_count))


def _lower(confidence: Confidence) -> Confidence:
    return _STEPS[min(len(_STEPS) - 2, _STEPS.index(confidence) + 1)]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60.0:.1f} min"


class WaitEstimator:
    """The line's wait, from what the camera worker (or a bench) feeds it; see the module's
    rules in docs/queueing.md. Times are seconds on the steady clock `now` of observe(); the
    ticket book's times are UTC, read through `wall_clock` (injected; UTC now by default).

    Memory is bounded by the window: each deque keeps the last window_s seconds."""

    def __init__(
        self,
        settings: WaitSettings | None = None,
        *,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.settings = settings or WaitSettings()
        self._wall_clock = wall_clock
        self._online: deque[tuple[float, float]] = deque()  # (at, online seconds before it)
        self._departures: deque[tuple[float, int]] = deque()
        self._arrivals: deque[tuple[float, int]] = deque()
        self._visits: deque[tuple[float, float]] = deque()  # (ended at, dwell s)
        self._count: float | None = None
        self._seen = False
        self._book: TicketBook | None = None

    # --- feeding ------------------------------------------------------------------------

    def observe(self, now: float, line_count: float | None, online_s: float) -> None:
        """Each frame (or update): the line's smoothed count (None: a camera is down) and the
        seconds since the last call the line's cameras were all online."""
        self._seen = True
        self._count = line_count
        if online_s > 0:
            self._online.append((now, float(online_s)))
        self._prune(now)

    def departure(self, at: float, n: int = 1) -> None:
        self._departures.append((at, n))
        self._prune(at)

    def arrival(self, at: float, n: int = 1) -> None:
        self._arrivals.append((at, n))
        self._prune(at)

    def line_visit(self, at: float, dwell_s: float) -> None:
        """A finished line visit that ended at `at`, `dwell_s` long."""
        self._visits.append((at, dwell_s))
        self._prune(at)

    def tickets(self, book: TicketBook | None) -> None:
        """The ticket feed, if the branch has one (None: it has none, or no longer)."""
        self._book = book

    def _prune(self, now: float) -> None:
        start = now - self.settings.window_s
        for q in (self._online, self._departures, self._arrivals, self._visits):
            while q and q[0][0] <= start:
                q.popleft()

    # --- the answer ---------------------------------------------------------------------

    def estimate(self, now: float) -> WaitEstimate:
        s = self.settings
        start = now - s.window_s
        online_min = sum(o for at, o in self._online if start < at <= now) / 60.0
        departures = sum(n for at, n in self._departures if start < at <= now)
        arrivals = sum(n for at, n in self._arrivals if start < at <= now)
        dwells = [d for at, d in self._visits if start < at <= now]
        throughput = departures / online_min if online_min > 0 and departures else None
        arrival_rate = arrivals / online_min if online_min > 0 and arrivals else None
        dwell_p50 = statistics.median(dwells) if dwells else None
        flows = (throughput, arrival_rate, dwell_p50)

        by_tickets = self._from_tickets(flows)
        if by_tickets is not None:
            return by_tickets
        line = self._count
        if line is None:
            reason = "the line's cameras are offline" if self._seen else "no count yet"
            return WaitEstimate(None, None, None, "unknown", "none", None, *flows, reason)
        if line < 0.5:
            return WaitEstimate(0.0, 0.0, 0.0, "high", "departures", line, *flows, "")
        if departures >= s.min_departures and throughput is not None:
            wait, low, high = _by_rate(ahead(line), departures, online_min)
            confidence: Confidence = "high" if departures >= 10 else "medium"
            method: Method = "departures"
        elif arrivals >= s.min_departures and arrival_rate is not None:
            # Little's law: in a steady state the line holds arrival rate x wait. No service
            # residual: the law is about time in the line, which is what it holds.
            wait, low, high = _by_rate(line, arrivals, online_min)
            confidence, method = "low", "arrivals"
        elif len(dwells) >= s.min_departures and dwell_p50 is not None:
            wait = dwell_p50
            low, high = (float(q) for q in np.quantile(dwells, [0.1, 0.9]))
            return self._finish(wait, low, high, "low", "dwell", line, flows, "")
        else:
            reason = (
                f"too few departures ({departures}), arrivals ({arrivals}) and finished line"
                f" visits ({len(dwells)}) in the last {_minutes(s.window_s)}:"
                f" at least {s.min_departures} needed"
            )
            return WaitEstimate(None, None, None, "unknown", "none", line, *flows, reason)
        reason = ""
        checked = dwell_p50 is not None and len(dwells) >= s.min_departures
        if checked and dwell_p50 is not None and abs(dwell_p50 - wait) > 0.5 * max(dwell_p50, wait):
            confidence = _lower(confidence)
            reason = (
                f"finished line visits took {_minutes(dwell_p50)} (median), the estimate"
                f" is {_minutes(wait)}"
            )
        return self._finish(wait, low, high, confidence, method, line, flows, reason)

    def _from_tickets(
        self, flows: tuple[float | None, float | None, float | None]
    ) -> WaitEstimate | None:
        """wait = tickets waiting / call rate, from a live feed only; None: no live feed."""
        book, s = self._book, self.settings
        if book is None:
            return None
        now = self._wall_clock()
        last, first = book.last_event_at(), book.first_event_at()
        if last is None or first is None or (now - last).total_seconds() > TICKET_STALE_S:
            return None
        # The rate is over the window, or over the part of it the feed has run today: a
        # morning's first 5 minutes of calls are not spread over 20.
        span_s = min(s.window_s, max(60.0, (now - first).total_seconds()))
        calls = book.called_in(now - timedelta(seconds=span_s))
        if calls < s.min_departures:
            return None
        waiting = float(book.waiting())
        _, arrival_rate, dwell_p50 = flows
        wait, low, high = _by_rate(ahead(waiting), calls, span_s / 60.0)
        return self._finish(
            wait,
            low,
            high,
            "exact",
            "tickets",
            waiting,
            (calls / (span_s / 60.0), arrival_rate, dwell_p50),
            "",
        )

    def _finish(
        self,
        wait: float,
        low: float,
        high: float,
        confidence: Confidence,
        method: Method,
        line: float,
        flows: tuple[float | None, float | None, float | None],
        reason: str,
    ) -> WaitEstimate:
        cap = self.settings.max_wait_s
        if wait > cap:
            note = f"capped at {_minutes(cap)}"
            reason = f"{reason}; {note}" if reason else note
        wait, low, high = (min(cap, x) for x in (wait, low, high))
        return WaitEstimate(wait, low, high, confidence, method, line, *flows, reason)


def _by_rate(ahead_n: float, events: int, minutes: float) -> tuple[float, float, float]:
    """Seconds for `ahead_n` people to pass at the rate of `events` in `minutes`, and an 80%
    interval from the Poisson uncertainty of the count: the rate from events +- z sqrt(events).
    """
    rate = events / minutes / 60.0  # per second
    spread = _Z * math.sqrt(events)
    fast = (events + spread) / minutes / 60.0
    slow = max(events - spread, 0.5) / minutes / 60.0
    return ahead_n / rate, ahead_n / fast, ahead_n / slow


def forecast_wait(
    count: CountForecast, now: WaitEstimate, horizon_s: int | None = None
) -> WaitForecast:
    """The wait of a customer arriving `horizon_s` (default: the count forecast's) from now:
    the forecast line count over the current throughput (or, without one, the arrival rate),
    its interval from the count's. A future change of staffing is not foreseen."""
    horizon = count.horizon_s if horizon_s is None else horizon_s
    if not count.known or count.point is None:
        return WaitForecast(horizon, None, None, None, None, None, None, count.reason or "no count")
    rate, residual = now.throughput_per_min, True
    if rate is None:
        rate, residual = now.arrivals_per_min, False
    if rate is None or rate <= 0:
        return WaitForecast(
            horizon, None, None, None, count.point, count.low, count.high,
            "no throughput or arrival rate now: " + (now.reason or "nothing measured"),
        )  # fmt: skip

    def wait(people: float | None) -> float | None:
        if people is None:
            return None
        n = ahead(people) if residual else people
        return min(n / rate * 60.0, WaitSettings.max_wait_s)

    return WaitForecast(
        horizon, wait(count.point), wait(count.low), wait(count.high),
        count.point, count.low, count.high, "",
    )  # fmt: skip
