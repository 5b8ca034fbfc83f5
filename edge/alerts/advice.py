"""What to do about a busy lobby: the advice an alert carries (docs/queueing.md, "Advice").

Pure: from a QueueSnapshot (edge/queueing/snapshot.py) and the alert's diversion point to a list
of Advice, each with its text in the catalog's language and the figures the text says, so the
payload, the store and the handheld can show the numbers apart from the words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from edge.alerts.messages import MessageCatalog, people_round
from edge.config import DiversionPoint
from edge.queueing.snapshot import QueueSnapshot, ZoneUse

AdviceKind = Literal[
    "kiosks_free",
    "kiosks_full",
    "counter_unstaffed",
    "open_counter",
    "entrance_surge",
    "wait_rising",
]
Figures = Mapping[str, float | int | str | None]

HORIZON_MIN = 15  # the forecast wait_rising looks at
RISING_BY_S = 300.0  # forecast wait above the current one by this much: the wait is rising
# A line's smoothed count wobbles by a fraction of a person: it is shrinking only when it has
# lost at least half a person in 10 minutes (an unknown trend is not shrinking: the alert that
# carries this advice was raised because the lobby is busy).
SHRINKING_PER_10MIN = -0.5
# An expectation under one arrival in 5 minutes (a quiet hour) counts as one, so that two
# people walking in together at 8:55 are not a surge.
MIN_EXPECTED_5MIN = 1.0
# A counter label that reads as a number ("3", "A2", "12B", or a single letter "A") is said
# "counter 3" / "3 号柜台"; any other is a name. A label of letters only ("VIP", "Cash") is a
# name: "VIP 号柜台" is not Chinese.
_COUNTER_NUMBER = re.compile(r"(?=[^0-9]*[0-9])[0-9A-Za-z]{1,4}|[A-Za-z]")


@dataclass(frozen=True)
class Advice:
    kind: AdviceKind
    text: str  # in the catalog's language
    figures: Figures  # what the text says, as numbers (and the counter's label)


def advise(
    snapshot: QueueSnapshot,
    point: DiversionPoint,
    catalog: MessageCatalog,
    *,
    unstaffed_after_s: float = 120.0,
    surge_factor: float = 2.0,
) -> list[Advice]:
    """The advice for an alert at `point`, most useful first.

    Waiting area: kiosks (free: move kiosk-able customers; full: call a colleague), each
    unstaffed counter, a rising wait. Entrance: an arrival surge, then the kiosks for the
    greeter (free: send kiosk errands there; full: keep them in the ticket line). Unknown
    figures give no advice rather than a guess.
    """
    if point == "entrance":
        found = [_surge(snapshot, catalog, surge_factor), _kiosks(snapshot, catalog, entrance=True)]
    else:
        found = [
            _kiosks(snapshot, catalog, entrance=False),
            *_unstaffed(snapshot, catalog, unstaffed_after_s),
            _wait_rising(snapshot, catalog),
        ]
    return [a for a in found if a is not None]


def compose(message: str, advice: list[Advice], catalog: MessageCatalog) -> str:
    """The alert's text followed by its advice, one line each.

    Lines, not "; ": a phone notification and a WeCom message both keep line breaks, and a
    manager scans a short list faster than one run-on sentence (the rule's text already ends
    with its own full stop). `catalog` is where a language could choose another layout; both
    shipped languages use the same.
    """
    del catalog  # same layout in en and zh-CN (see above)
    return "\n".join([message, *(a.text for a in advice)])


def kiosk_use(kiosks: tuple[ZoneUse, ...]) -> tuple[int, int] | None:
    """(in use, capacity) over the self-service zones with a capacity; None when there is none
    or any of them has an unknown count (a partial sum would say "free" where it may not be).
    A zone's use is its rounded count, at most its capacity (a queue at the kiosks is still
    all of them in use)."""
    zones = [z for z in kiosks if z.capacity is not None]
    if not zones or any(_known(z.count) is None for z in zones):
        return None
    in_use = sum(min(z.capacity or 0, people_round(z.count or 0.0)) for z in zones)
    return in_use, sum(z.capacity or 0 for z in zones)


def _kiosks(snapshot: QueueSnapshot, catalog: MessageCatalog, *, entrance: bool) -> Advice | None:
    use = kiosk_use(snapshot.kiosks)
    if use is None:
        return None
    in_use, capacity = use
    figures: Figures = {"in_use": in_use, "capacity": capacity}
    suffix = "_entrance" if entrance else ""
    if in_use < capacity:
        text = catalog.render_advice("kiosks_free" + suffix, in_use=in_use, capacity=capacity)
        return Advice("kiosks_free", text, figures)
    text = catalog.render_advice("kiosks_full" + suffix, in_use=in_use, capacity=capacity)
    return Advice("kiosks_full", text, figures)


def _unstaffed(
    snapshot: QueueSnapshot, catalog: MessageCatalog, unstaffed_after_s: float
) -> list[Advice]:
    """One advice per counter: each names its counter, and the handheld lists them apart.

    A counter may have two zones (the customer's service zone and the clerk's staff zone,
    both with its label): it is unstaffed only when every one of them is known and empty, and
    said once. A clerk at the desk with no customer in front is not "unstaffed"."""
    trend = snapshot.line_trend_per_10min
    if trend is not None and trend <= SHRINKING_PER_10MIN:
        return []  # the line is being served down: an empty counter is not needed now
    groups: dict[str, list[ZoneUse]] = {}
    for zone in snapshot.counters:
        key = zone.zone_id if zone.counter is None else "counter:" + zone.counter
        groups.setdefault(key, []).append(zone)
    out = []
    for zones in groups.values():
        if any(_known(z.count) is None or z.empty_s < unstaffed_after_s for z in zones):
            continue
        zone = min(zones, key=lambda z: z.empty_s)  # the counter is empty as long as its last
        label = zone.counter or zone.name
        figures: Figures = {
            "counter": label,
            "zone": zone.zone_id,
            "empty_minutes": round(zone.empty_s / 60.0, 1),
        }
        if zone.counter is not None and _COUNTER_NUMBER.fullmatch(zone.counter):
            text = catalog.render_advice("counter_unstaffed", counter=zone.counter)
        else:
            text = catalog.render_advice("counter_unstaffed_named", name=label)
        out.append(Advice("counter_unstaffed", text, figures))
    return out


def _wait_rising(snapshot: QueueSnapshot, catalog: MessageCatalog) -> Advice | None:
    now_s = _known(snapshot.wait.wait_s)
    ahead = snapshot.forecast.get(HORIZON_MIN)
    ahead_s = None if ahead is None else _known(ahead.wait_s)
    if now_s is None or ahead_s is None:
        return None
    if ahead_s - now_s < RISING_BY_S:
        return None
    minutes = people_round(ahead_s / 60.0)
    figures: Figures = {
        "minutes": minutes,
        "horizon_min": HORIZON_MIN,
        "wait_minutes": people_round(now_s / 60.0),
    }
    text = catalog.render_advice("wait_rising", minutes=minutes, horizon=HORIZON_MIN)
    return Advice("wait_rising", text, figures)


def _surge(snapshot: QueueSnapshot, catalog: MessageCatalog, surge_factor: float) -> Advice | None:
    """A surge is measured against the site's own profile; without one (a new site, a
    profile not learnt yet) there is none: an absolute number would be a guess per branch,
    and an entrance rule on `arrivals` already carries its own threshold."""
    arrivals = _known(snapshot.arrivals_5min)
    expected = _known(snapshot.arrivals_expected_5min)
    if arrivals is None or expected is None:
        return None
    if arrivals < surge_factor * max(expected, MIN_EXPECTED_5MIN):
        return None
    shown = {"arrivals": people_round(arrivals), "expected": people_round(expected)}
    text = catalog.render_advice("entrance_surge", **shown)
    figures: Figures = dict(shown)
    return Advice("entrance_surge", text, figures)


def _known(value: float | None) -> float | None:
    """A figure, or None where it is unknown: NaN or infinity from a model with nothing to go
    on is no figure (and would otherwise raise when rounded, losing the alert's text)."""
    return value if value is not None and math.isfinite(value) else None
