"""The wait for a customer taking a ticket now, from the line's count and its flow (issue 13).

Types first (docs/queueing.md, "edge/queueing/wait.py"); the estimator follows. The estimate is
the queue ahead (the people waiting, plus what is left of the services in progress) times the
time the counters take per customer when all are busy: from the ticket machine where it
reports, else from the people at counters and the measured service times, else from the
departures counted while a line stood, else Little's law on arrivals. bench/wait_estimate.py
measures each on the lobby simulator.
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
#: A line standing this long (seconds) means every counter is busy: a departure (or a call)
#: then is a service that ended, and their rate is what the counters can do. A shorter one is
#: a customer being called to a free counter, or walking to it (the queue zone).
BUSY_AFTER_S = 30.0
#: Service durations kept for the mean service time: the last this many (a branch's errands
#: change over weeks, not minutes; 50 is about 2-4 busy hours, a mean within about 10%).
SERVICE_SAMPLES = 50
#: Seconds between one service-zone visit's end (last seen) and another's start within which
#: they are one customer whose track id switched: a new id is found a frame or two after the
#: old one is lost, while the next customer is called when a service ends and then walks to the
#: counter (10 s or more; the lobby simulator's walk_s is 10-25 s).
JOIN_S = 3.0
#: Seconds of people-at-counters readings whose largest is the counters in use.
SERVING_S = 120.0
#: z of the 80% interval (10% each side): the contract's "about 80%".
_Z = 1.2816
_STEPS: tuple[Confidence, ...] = ("exact", "high", "medium", "low", "unknown")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def ahead(line_count: float, cv: float = 1.0) -> float:
    """Service slots (mean service time / counters) before a customer taking a ticket now is
    called.

    The L people waiting, plus what is left of the services in progress until the first counter
    frees: a customer only waits while every counter is busy, and in a first-come line anyone
    waiting means they all are. Of a service found in progress, the mean time left is
    (1 + cv^2) / 2 of a mean service (the residual life of renewal theory; cv: the services'
    coefficient of variation): a whole slot for exponential services (cv 1, the default when
    durations are not measured), 0.69 for the lobby simulator's (cv 0.62). That residual is
    added in full for a line of one or more and in proportion below (a smoothed count under 1
    is a line that is empty most of the time, a free counter likely).
    """
    return line_count + min(1.0, max(0.0, line_count)) * (1.0 + cv * cv) / 2.0


def _lower(confidence: Confidence) -> Confidence:
    return _STEPS[min(len(_STEPS) - 2, _STEPS.index(confidence) + 1)]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


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
        # (at, online seconds before it, the line busy then): one per observe()
        self._online: deque[tuple[float, float, bool]] = deque()
        self._departures: deque[tuple[float, int, bool]] = deque()  # (at, n, the line busy)
        self._arrivals: deque[tuple[float, int]] = deque()
        self._visits: deque[tuple[float, float]] = deque()  # (ended at, dwell s)
        self._services: deque[float] = deque(maxlen=SERVICE_SAMPLES)  # seconds
        # Service-zone visits of the last hour: (ended at, seconds, counted, zone)
        self._visits_served: deque[tuple[float, float, bool, str | None]] = deque()
        self._count: float | None = None
        self._serving: deque[tuple[float, float | None]] = deque()  # (at, people at counters)
        self._standing_since: float | None = None  # the line has held someone since
        self._seen = False
        self._book: TicketBook | None = None

    # --- feeding ------------------------------------------------------------------------

    def observe(
        self,
        now: float,
        line_count: float | None,
        online_s: float,
        serving: float | None = None,
    ) -> None:
        """Each frame (or update): the line's smoothed count (None: a camera is down), the
        seconds since the last call the line's cameras were all online, and, where the site
        has service zones, the people at counters now (their smoothed count; None: unknown).
        A figure that is not finite is unknown: min(cap, nan) is the cap, so a NaN count would
        otherwise read as the longest wait."""
        line_count, serving = _finite(line_count), _finite(serving)
        self._seen = True
        self._count = line_count
        self._serving.append((now, serving))
        while self._serving and self._serving[0][0] <= now - SERVING_S:
            self._serving.popleft()
        if line_count is None or line_count < 1.0:
            self._standing_since = None
        elif self._standing_since is None:
            self._standing_since = now
        busy = self._standing_since is not None and now - self._standing_since >= BUSY_AFTER_S
        if online_s > 0:
            self._online.append((now, float(online_s), busy))
        self._prune(now)

    def departure(
        self, at: float, n: int = 1, service_s: float | None = None, *, zone: str | None = None
    ) -> None:
        """A departure at `at`, which may be a little in the past (a visit ends once its exit
        grace has passed): whether the line was busy then is read from the observations.

        service_s: how long the service-zone visit lasted (a visit then, not a counted
        departure: the estimator judges it). A visit shorter than min_service_s is a passer-by.
        A visit that began within JOIN_S of another's end in the same `zone` (the service
        zone: one per counter, as sites draw them) is the same customer under a new track id
        (an id switch at the counter): the two are one service, counted once. A customer
        sitting down at another counter as one leaves is not (at 6 counters of 5-minute
        services, one visit in 16 would be joined to a stranger's)."""
        if service_s is None:
            self._count_departure(at, n)
            return
        start = at - service_s
        for i in range(len(self._visits_served) - 1, -1, -1):
            end, took, counted, where = self._visits_served[i]
            if where == zone and 0.0 <= start - end <= JOIN_S:
                del self._visits_served[i]
                service_s += took + (start - end)
                if counted:
                    self._uncount(end, took)
                break
        counted = service_s >= self.settings.min_service_s
        if counted:
            self._services.append(float(service_s))
            self._count_departure(at, n)
        self._visits_served.append((at, float(service_s), counted, zone))
        while self._visits_served and self._visits_served[0][0] < at - 2 * JOIN_S - 3600.0:
            self._visits_served.popleft()  # a visit joins only one that just ended

    def _count_departure(self, at: float, n: int) -> None:
        busy = False
        for when, _, was_busy in reversed(self._online):
            busy = was_busy
            if when <= at:
                break
        self._departures.append((at, n, busy))
        self._prune(at)

    def _uncount(self, at: float, took: float) -> None:
        """Take back the departure (and its service time) of a visit that turned out to be
        the first part of a longer one."""
        for i in range(len(self._departures) - 1, -1, -1):
            if self._departures[i][0] == at:
                del self._departures[i]
                break
        for i in range(len(self._services) - 1, -1, -1):
            if self._services[i] == took:
                del self._services[i]
                break

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

    def _counters_busy(self) -> float | None:
        """Counters in use: the most people at counters in the last SERVING_S, unknown if the
        latest reading is. Between two customers a counter stands empty while the next walks
        up (10-25 s) or is missed a frame: the count now would read a counter short."""
        if not self._serving or self._serving[-1][1] is None:
            return None
        return max(v for _, v in self._serving if v is not None)

    def _prune(self, now: float) -> None:
        start = now - self.settings.window_s
        for q in (self._online, self._departures, self._arrivals, self._visits):
            while q and q[0][0] <= start:
                q.popleft()

    # --- the answer ---------------------------------------------------------------------

    def estimate(self, now: float) -> WaitEstimate:
        s = self.settings
        start = now - s.window_s
        online = [(o, busy) for at, o, busy in self._online if start < at <= now]
        online_min = sum(o for o, _ in online) / 60.0
        busy_min = sum(o for o, busy in online if busy) / 60.0
        departed = [(n, busy) for at, n, busy in self._departures if start < at <= now]
        departures = sum(n for n, _ in departed)
        busy_departures = sum(n for n, busy in departed if busy)
        arrivals = sum(n for at, n in self._arrivals if start < at <= now)
        dwells = [d for at, d in self._visits if start < at <= now]
        # What the counters do when a line stands (departures over the minutes it stood), where
        # it stood long enough to count them; else all departures over the online minutes, an
        # underestimate when counters sat idle (the wait of a short line comes out long).
        served_min = online_min
        if busy_departures >= s.min_departures and busy_min > 0:
            departures, served_min = busy_departures, busy_min
        throughput = departures / served_min if served_min > 0 and departures else None
        serving = self._counters_busy()
        capacity = _capacity(serving, list(self._services), s.min_departures)
        if capacity is not None:
            throughput = capacity
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
        if capacity is not None and serving is not None:
            wait, low, high = _by_service(line, serving, list(self._services))
            confidence: Confidence = "high" if len(self._services) >= 10 else "medium"
            method: Method = "departures"
        elif departures >= s.min_departures and throughput is not None:
            wait, low, high = _by_rate(ahead(line), departures, served_min)
            confidence = "high" if departures >= 10 else "medium"
            method = "departures"
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
        since = now - timedelta(seconds=span_s)
        calls = book.called_in(since)
        if calls < s.min_departures:
            return None
        waiting = float(book.waiting())
        _, arrival_rate, dwell_p50 = flows
        serving, services = float(book.in_service()), book.recent_services_s(SERVICE_SAMPLES)
        rate = _capacity(serving, services, s.min_departures)
        if rate is not None:  # the machine says who is at a counter and for how long
            wait, low, high = _by_service(waiting, serving, services)
        else:
            # As for departures: the calls while every counter was busy, over the time it was.
            busy_calls, busy_s = book.called_busy_in(since), book.busy_s(since, now)
            if busy_calls >= s.min_departures and busy_s > 0:
                calls, span_s = busy_calls, busy_s
            wait, low, high = _by_rate(ahead(waiting), calls, span_s / 60.0)
            rate = calls / (span_s / 60.0)
        flows = (rate, arrival_rate, dwell_p50)
        return self._finish(wait, low, high, "exact", "tickets", waiting, flows, "")

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


def _capacity(serving: float | None, services: list[float], need: int) -> float | None:
    """People per minute the counters serve while all are busy: those being served over the
    mean service time. None without someone at a counter or `need` services measured."""
    if serving is None or serving < 0.5 or len(services) < need:
        return None
    mean = statistics.fmean(services)
    return serving / mean * 60.0 if mean > 0 else None


def _by_service(line: float, serving: float, services: list[float]) -> tuple[float, float, float]:
    """Seconds until the `line` people ahead have been called, at `serving` busy counters of
    the mean service time, and an 80% interval. Two uncertainties, as relative spreads added in
    quadrature: the mean from n services (cv / sqrt(n)), and the time for k services to end,
    which for services ending at random (Poisson) is a Gamma(k) with relative spread
    1 / sqrt(k)."""
    mean = statistics.fmean(services)
    cv = statistics.pstdev(services) / mean if len(services) > 1 else 1.0
    ahead_n = ahead(line, cv)
    wait = ahead_n * mean / serving
    spread = math.sqrt(cv**2 / len(services) + 1.0 / max(1.0, ahead_n))
    return wait, wait * math.exp(-_Z * spread), wait * math.exp(_Z * spread)


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
    count: CountForecast,
    now: WaitEstimate,
    horizon_s: int | None = None,
    *,
    max_wait_s: float = WaitSettings.max_wait_s,
) -> WaitForecast:
    """The wait of a customer arriving `horizon_s` (default: the count forecast's) from now:
    the forecast line count over the current throughput (or, without one, the arrival rate),
    its interval from the count's, capped at the site's max_wait_s like the wait now. A future
    change of staffing is not foreseen. Unknown while the line's count is (a camera down, and
    no ticket feed: the rate in the window is from before, and a forecast_wait rule must not
    raise on it); the count forecast stays. A figure that is not finite is unknown (json.dumps
    would write NaN, which no browser parses)."""
    horizon = count.horizon_s if horizon_s is None else horizon_s
    point, low, high = _finite(count.point), _finite(count.low), _finite(count.high)
    if point is None:
        reason = count.reason or ("no count" if count.point is None else "count not finite")
        return WaitForecast(horizon, None, None, None, None, None, None, reason)
    if not now.known and now.line_count is None:
        return WaitForecast(
            horizon, None, None, None, point, low, high,
            "no line count now: " + (now.reason or "nothing measured"),
        )  # fmt: skip
    rate, residual = _finite(now.throughput_per_min), True
    if rate is None:
        rate, residual = _finite(now.arrivals_per_min), False
    if rate is None or rate <= 0:
        return WaitForecast(
            horizon, None, None, None, point, low, high,
            "no throughput or arrival rate now: " + (now.reason or "nothing measured"),
        )  # fmt: skip

    def wait(people: float | None) -> float | None:
        if people is None:
            return None
        n = ahead(people) if residual else people
        return min(n / rate * 60.0, max_wait_s)

    return WaitForecast(
        horizon, wait(point), wait(low), wait(high), point, low, high, "",
    )  # fmt: skip
