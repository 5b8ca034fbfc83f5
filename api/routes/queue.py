"""The queue now (issue 13): the snapshot the edge's queue monitor writes to the store's
queue_live row, as it publishes it on `<prefix>/<site>/queue`, with its age.

A snapshot older than a minute is not the lobby now (the edge writes one at least every 5 s
while it runs): it is answered as status "unknown" with no figures, never as the last figures
or as zeros, and so is a store that holds none yet. Always 200, so that a dashboard polling it
shows "unknown" instead of an error.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from api.deps import AUTH_RESPONSES, Context, Viewer
from api.schemas import QueueOut
from edge.store import QUEUE_LIVE_MAX_AGE_S

router = APIRouter(prefix="/v1", tags=["queue"], responses=AUTH_RESPONSES)


@router.get(
    "/queue",
    summary="The estimated wait, its forecast, kiosks and counters now",
    description="The edge's latest queue snapshot (docs/queueing.md: wait, forecast for 15 "
    "and 30 minutes, kiosks, counters, arrivals, dwell; unknown figures are null) with "
    "`status` live and `age_s`. Older than 60 s, or none yet: `status` unknown, a `reason`, "
    "and no figures.",
    response_model=QueueOut,
    response_model_exclude_unset=True,
)
def queue_now(context: Context, _: Viewer) -> QueueOut:
    found = context.store.store().queue_live()
    if found is None:
        return QueueOut(status="unknown", reason="no queue snapshot yet: is the edge running?")
    payload, at = found
    age_s = round((context.clock() - at).total_seconds(), 1)
    if abs(age_s) > QUEUE_LIVE_MAX_AGE_S:
        reason = f"the latest queue snapshot is {age_s:.0f} s old: the edge is not updating it"
        return QueueOut(status="unknown", reason=reason, at=at, age_s=age_s)
    snapshot = _object(payload)
    if snapshot is not None:
        try:
            return QueueOut.model_validate({**snapshot, "status": "live", "at": at, "age_s": age_s})
        except ValidationError:
            pass
    # Not in the contract's shape (an edge of another version?): unknown, not a 500.
    return QueueOut(status="unknown", reason="the queue snapshot is damaged", at=at, age_s=age_s)


def _object(payload: str) -> dict[str, Any] | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
