"""A zone group's stored history as the forecast's SlotHistory (edge/queueing/forecast.py).

The stored intervals (the store's `zone_history`: mean people over `samples` frames per 10 s or
so) become one mean per 15-minute slot per zone, weighted by frames, as the API's 15m buckets
are (edge/storage/aggregate.py); the zones are then summed, and a slot is unknown (NaN) where any zone's
is: a sum with a camera missing would read as a quiet lobby. Pure: rows in, arrays out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from edge.queueing.forecast import SLOT_S, SlotHistory

#: (zone id, interval start in UTC seconds, frames counted, mean people or None)
Interval = tuple[str, int, int, float | None]


def slot_history(
    zone_ids: Sequence[str],
    start: int,
    end: int,
    rows: Iterable[Interval],
    slot_s: int = SLOT_S,
) -> SlotHistory:
    """The zones' summed mean people per slot in [start, end) (UTC seconds; start is rounded
    down and end up to slot boundaries). Rows outside the range, or of other zones, are ignored;
    a row with no frames or no mean adds nothing (unknown is never 0)."""
    first = start // slot_s * slot_s
    n = max(0, -(-(end - first) // slot_s))
    index = {zone_id: i for i, zone_id in enumerate(zone_ids)}
    weight = np.zeros((len(zone_ids), n))
    total = np.zeros((len(zone_ids), n))
    for zone_id, at, samples, mean in rows:
        z = index.get(zone_id)
        slot = (at - first) // slot_s
        if z is None or not 0 <= slot < n or mean is None or samples <= 0:
            continue
        weight[z, slot] += samples
        total[z, slot] += mean * samples
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)
    counts = means.sum(axis=0) if len(zone_ids) else np.full(n, np.nan)
    return SlotHistory(first, counts.astype(np.float64), slot_s)
