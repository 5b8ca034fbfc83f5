"""The lobby model: customers, counters, kiosks and the diversion pass, as discrete events.

Times are seconds since the lobby opens (09:00 local by default). Every random draw that
describes a customer (arrival, kiosk-ability, service times, whether they accept being moved)
is made when the day is built, from its own stream: two runs of one seed under different alert
policies see the same customers (common random numbers), so a difference in waits comes from
the policy, not from luck.

A customer's path:

    entrance --ticket--> waiting --called--> queue (walk to the counter) --> counter --> out
    entrance --self-serves--> self_service (kiosk queue, then a kiosk) --> out
    waiting --diversion pass, kiosk-able, accepts--> self_service

True wait: from the ticket to being called (the ticket machine's own definition), or, for a
kiosk user, from reaching the kiosk zone (or the ticket, when diverted) to starting at a kiosk.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Zone = Literal["entrance", "waiting", "queue", "counter", "self_service"]
ZONES: tuple[Zone, ...] = ("entrance", "waiting", "queue", "counter", "self_service")


@dataclass(frozen=True)
class Surge:
    """Extra arrivals: `factor` times the profile's rate for `duration_s` from `at_s`."""

    at_s: float
    duration_s: float
    factor: float


@dataclass(frozen=True)
class LobbyParams:
    """One branch. Rates per minute, times in seconds, shares in [0, 1].

    profile: (hour offset from opening, arrivals per minute), linearly interpolated; the default
    is a weekday with a lunchtime peak (12:00-13:30, about 0.85 a minute) and an after-work rise.
    staff: (seconds from opening, open counters) steps; the default loses a counter to staff
    lunch breaks in the second half of the peak (12:30-13:30), the situation a diversion pass is for.
    """

    open_s: float = 8 * 3600.0  # 09:00-17:00
    profile: tuple[tuple[float, float], ...] = (
        (0.0, 0.4), (1.0, 0.45), (2.5, 0.5), (3.0, 0.85), (4.5, 0.85), (5.0, 0.45),
        (6.5, 0.5), (7.5, 0.65), (8.0, 0.5),
    )  # fmt: skip
    surges_per_day: float = 1.0  # Poisson mean
    surge_duration_s: tuple[float, float] = (600.0, 1200.0)  # uniform
    surge_factor: tuple[float, float] = (1.8, 2.5)  # uniform
    kiosk_share: float = 0.35  # customers whose errand a kiosk can do
    self_serve_share: float = 0.3  # of those, who go to a kiosk unprompted
    entrance_s: tuple[float, float] = (10.0, 30.0)  # uniform: in the door, taking a ticket
    walk_s: tuple[float, float] = (10.0, 25.0)  # uniform: from being called to the counter
    service_mean_s: float = 240.0  # lognormal counter service
    service_sd_s: float = 150.0
    kiosk_mean_s: float = 180.0  # gamma kiosk session
    kiosk_shape: float = 3.0
    staff: tuple[tuple[float, int], ...] = (
        (0.0, 2), (1800.0, 3), (3.5 * 3600.0, 2), (4.5 * 3600.0, 3),
    )  # fmt: skip
    kiosks: int = 4
    accept_share: float = 0.8  # kiosk-able customers who go when asked
    pass_s: float = 120.0  # the manager walking the rows
    kiosk_queue_max: int = 2  # the manager sends no more than this many beyond free kiosks

    def rate_per_s(self, t: float) -> float:
        hours = [h for h, _ in self.profile]
        rates = [r for _, r in self.profile]
        return float(np.interp(t / 3600.0, hours, rates)) / 60.0


@dataclass
class Customer:
    """One visit, drawn when the day is built; the times are filled in as it happens (seconds)."""

    id: int
    arrival: float
    kiosk_able: bool
    self_serves: bool  # goes to a kiosk without being asked
    accepts: bool  # goes to a kiosk when a pass asks
    entrance_s: float
    walk_s: float
    service_s: float
    kiosk_s: float
    ticket_at: float | None = None
    ready_at: float | None = None  # when their wait began (ticket, or reaching the kiosks)
    called_at: float | None = None  # wait over: called to a counter or starting at a kiosk
    service_start: float | None = None
    end: float | None = None
    route: Literal["counter", "kiosk"] | None = None
    counter: int | None = None  # which counter called them (0-based)
    diverted: bool = False
    visits: list[tuple[Zone, float, float | None]] = field(default_factory=list)

    @property
    def wait(self) -> float | None:
        if self.ready_at is None or self.called_at is None:
            return None
        return self.called_at - self.ready_at


@dataclass(eq=False)  # counters are compared by identity
class _Counter:
    open: bool = False
    closing: bool = False
    busy: int | None = None  # the customer called to it or served there


def draw_customers(params: LobbyParams, rng: np.random.Generator) -> list[Customer]:
    """Arrivals by thinning a non-homogeneous Poisson process (profile x surges)."""
    surges = [
        Surge(
            float(rng.uniform(0, params.open_s)),
            float(rng.uniform(*params.surge_duration_s)),
            float(rng.uniform(*params.surge_factor)),
        )
        for _ in range(rng.poisson(params.surges_per_day))
    ]
    top = max(r for _, r in params.profile) / 60.0 * max([s.factor for s in surges] + [1.0])
    customers: list[Customer] = []
    t = 0.0
    mu = math.log(params.service_mean_s**2 / math.hypot(params.service_mean_s, params.service_sd_s))
    sigma = math.sqrt(math.log(1 + (params.service_sd_s / params.service_mean_s) ** 2))
    kiosk_scale = params.kiosk_mean_s / params.kiosk_shape
    while True:
        t += float(rng.exponential(1.0 / top))
        if t >= params.open_s:
            break
        rate = params.rate_per_s(t) * max(
            [s.factor for s in surges if s.at_s <= t < s.at_s + s.duration_s] + [1.0]
        )
        u = rng.random(7)  # drawn whether kept or not: the stream never depends on the branch
        if u[0] * top > rate:
            continue
        able = bool(u[1] < params.kiosk_share)
        customers.append(
            Customer(
                id=len(customers),
                arrival=t,
                kiosk_able=able,
                self_serves=able and bool(u[2] < params.self_serve_share),
                accepts=bool(u[3] < params.accept_share),
                entrance_s=_between(params.entrance_s, u[4]),
                walk_s=_between(params.walk_s, u[5]),
                service_s=float(rng.lognormal(mu, sigma)),
                kiosk_s=float(rng.gamma(params.kiosk_shape, kiosk_scale)),
            )
        )
    return customers


def _between(bounds: tuple[float, float], u: float) -> float:
    return bounds[0] + float(u) * (bounds[1] - bounds[0])


class Lobby:
    """The event loop. Advance it with advance_to(t); ask counts(); start passes with start_pass."""

    def __init__(self, params: LobbyParams, customers: list[Customer]) -> None:
        self.params = params
        self.customers = customers
        self.now = 0.0
        self._events: list[tuple[float, int, str, int]] = []
        self._seq = 0
        self.zones: dict[Zone, set[int]] = {z: set() for z in ZONES}
        self.waiting: deque[int] = deque()  # ticket order
        self.kiosk_queue: deque[int] = deque()
        self.kiosks_busy: set[int] = set()
        self.counters: list[_Counter] = []
        self.passes: list[tuple[float, float, int]] = []  # (start, end, customers moved)
        self.extra = 0  # counters opened by colleagues the manager called, on top of the rota
        self.colleagues: list[tuple[float, float]] = []  # (from, until) of each called colleague
        self._rota = 0  # counters the staff rota has open now
        for c in customers:
            self._push(c.arrival, "arrive", c.id)
        for i, (at, _) in enumerate(params.staff):
            self._push(at, "staff", i)

    # --- driving --------------------------------------------------------------------------

    def advance_to(self, t: float) -> None:
        """Run every event up to and including time t (seconds since opening)."""
        while self._events and self._events[0][0] <= t:
            at, _, kind, arg = heapq.heappop(self._events)
            self.now = at
            getattr(self, f"_on_{kind}")(arg)
        self.now = max(self.now, t)

    def counts(self) -> dict[str, int]:
        """True people per zone now."""
        return {z: len(ids) for z, ids in self.zones.items()}

    def start_pass(self, t: float) -> float:
        """A manager starts walking the rows at t; returns when the pass ends (moves happen then)."""
        end = t + self.params.pass_s
        self._push(end, "pass_end", len(self.passes))
        self.passes.append((t, end, 0))
        return end

    def call_colleague(self, at: float, until: float) -> None:
        """A colleague from the back office opens one more counter from `at` until `until`
        (they finish the customer in hand first): what "kiosks full: open a counter" asks for."""
        self._push(at, "extra", +1)
        self._push(until, "extra", -1)
        self.colleagues.append((at, until))

    def counter_states(self) -> list[tuple[bool, bool]]:
        """Per counter ever opened: (staffed now, a customer called to it or served there)."""
        return [(c.open, c.busy is not None) for c in self.counters]

    @property
    def empty(self) -> bool:
        return not any(self.zones.values())

    @property
    def done(self) -> bool:
        """The doors have closed and everyone has left."""
        return self.now >= self.params.open_s and self.empty and not self._events_left()

    def _events_left(self) -> bool:
        return any(kind not in ("staff", "extra") for _, _, kind, _ in self._events)

    def present(self) -> list[tuple[int, Zone]]:
        """Who is where now: the hook for scripted tracks (per-person positions come later)."""
        return [(cid, z) for z, ids in self.zones.items() for cid in sorted(ids)]

    # --- events ---------------------------------------------------------------------------

    def _push(self, at: float, kind: str, arg: int) -> None:
        heapq.heappush(self._events, (at, self._seq, kind, arg))
        self._seq += 1

    def _enter(self, cid: int, zone: Zone) -> None:
        self.zones[zone].add(cid)
        self.customers[cid].visits.append((zone, self.now, None))

    def _leave(self, cid: int, zone: Zone) -> None:
        self.zones[zone].discard(cid)
        visits = self.customers[cid].visits
        z, start, _ = visits[-1]
        assert z == zone
        visits[-1] = (z, start, self.now)

    def _on_arrive(self, cid: int) -> None:
        c = self.customers[cid]
        self._enter(cid, "entrance")
        self._push(self.now + c.entrance_s, "ticket", cid)

    def _on_ticket(self, cid: int) -> None:
        c = self.customers[cid]
        self._leave(cid, "entrance")
        if c.self_serves:
            c.ready_at = self.now
            self._to_kiosks(cid)
            return
        c.ticket_at = c.ready_at = self.now
        c.route = "counter"
        self._enter(cid, "waiting")
        self.waiting.append(cid)
        self._dispatch()

    def _dispatch(self) -> None:
        for number, counter in enumerate(self.counters):
            if not self.waiting:
                return
            if counter.open and not counter.closing and counter.busy is None:
                cid = self.waiting.popleft()
                c = self.customers[cid]
                self._leave(cid, "waiting")
                c.called_at, c.counter = self.now, number
                counter.busy = cid
                self._enter(cid, "queue")
                self._push(self.now + c.walk_s, "at_counter", cid)

    def _on_at_counter(self, cid: int) -> None:
        c = self.customers[cid]
        self._leave(cid, "queue")
        self._enter(cid, "counter")
        c.service_start = self.now
        self._push(self.now + c.service_s, "served", cid)

    def _on_served(self, cid: int) -> None:
        self._leave(cid, "counter")
        self.customers[cid].end = self.now
        (counter,) = (k for k in self.counters if k.busy == cid)
        counter.busy = None
        if counter.closing:
            counter.open = counter.closing = False
        self._dispatch()

    def _on_staff(self, index: int) -> None:
        self._rota = self.params.staff[index][1]
        self._staff_to(self._rota + self.extra)

    def _on_extra(self, change: int) -> None:
        self.extra += change
        self._staff_to(self._rota + self.extra)

    def _staff_to(self, wanted: int) -> None:
        while len(self.counters) < wanted:
            self.counters.append(_Counter())
        working = [c for c in self.counters if c.open and not c.closing]
        for counter in self.counters:  # open (or keep) the first `wanted`, close the rest
            if len(working) < wanted and counter not in working:
                counter.open, counter.closing = True, False
                working.append(counter)
        for counter in sorted(working, key=lambda c: c.busy is not None)[wanted:]:
            if counter.busy is None:
                counter.open = False
            else:
                counter.closing = True  # finishes the customer first
        self._dispatch()

    def _to_kiosks(self, cid: int) -> None:
        self.customers[cid].route = "kiosk"
        self._enter(cid, "self_service")
        self.kiosk_queue.append(cid)
        self._start_kiosks()

    def _start_kiosks(self) -> None:
        while self.kiosk_queue and len(self.kiosks_busy) < self.params.kiosks:
            cid = self.kiosk_queue.popleft()
            c = self.customers[cid]
            c.called_at = c.service_start = self.now
            self.kiosks_busy.add(cid)
            self._push(self.now + c.kiosk_s, "kiosk_done", cid)

    def _on_kiosk_done(self, cid: int) -> None:
        self.kiosks_busy.discard(cid)
        self._leave(cid, "self_service")
        self.customers[cid].end = self.now
        self._start_kiosks()

    def _on_pass_end(self, index: int) -> None:
        room = self.params.kiosks + self.params.kiosk_queue_max
        room -= len(self.kiosks_busy) + len(self.kiosk_queue)
        moved = 0
        for cid in list(self.waiting):
            if moved >= room:
                break
            c = self.customers[cid]
            if c.kiosk_able and c.accepts:
                self.waiting.remove(cid)
                self._leave(cid, "waiting")
                c.diverted = True
                self._to_kiosks(cid)
                moved += 1
        start, end, _ = self.passes[index]
        self.passes[index] = (start, end, moved)
