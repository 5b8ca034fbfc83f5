"""Broker messages from the branches into store rows (docs/central.md, "Device feed").

Pure: a subject and a payload in, rows out, or a Rejected saying why. A message is trusted for
its site only when the site in its payload is the one in its subject: the broker lets each
branch publish only under its own subject, so that is what ties a row to a branch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from central.store import (
    STATUS_RANK,
    AlertEventRow,
    Batch,
    CameraHealthRow,
    IntervalRow,
    QueueWaitRow,
    SiteSeen,
    utc,
)

PREFIX = "lobbywatch"
#: A payload larger than this is no message of ours (a 15-minute bucket of 200 zones is ~40 KB).
MAX_PAYLOAD = 256 * 1024
AVAILABILITY = ("online", "offline", "stopped")
# The alert state's time fields (docs/handheld.md) and the lifecycle step each one records.
STATE_STEPS = (
    ("raised", "raised_at", None),
    ("escalated", "last_escalated_at", None),
    ("accepted", "accepted_at", "accepted_by"),
    ("pass_done", "pass_done_at", "pass_done_by"),
    ("cleared", "cleared_at", None),
)


class Rejected(ValueError):
    """A message that is not one of the feed's shapes; acked and counted, never retried."""


@dataclass(frozen=True)
class Parsed:
    """Whose message it was, what kind, and its key in the receipt the centre sends back
    (docs/central.md, "Receipts"): a bucket's end and a state's version as unix seconds and
    a whole number, a queue minute as unix seconds, a camera report as [camera, at]."""

    site: str
    kind: str  # intervals, queue, alerts, cameras, availability
    key: Any = None


def parse(
    subject: str, payload: bytes, received: datetime, batch: Batch, prefix: str = PREFIX
) -> Parsed:
    """Add the rows of one message to `batch`; raises Rejected (and adds nothing) when the
    message is not one the centre takes (`prefix`: the branches' topic prefix)."""
    site, kind = _split(subject, prefix)
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(f"payload of {len(payload)} bytes, more than {MAX_PAYLOAD}")
    if kind == "availability":
        text = payload.decode("utf-8", "replace").strip()
        if text not in AVAILABILITY:
            raise Rejected(f"availability {text[:40]!r} is not one of {AVAILABILITY}")
        batch.sites.append(SiteSeen(site, received, text))
        return Parsed(site, kind)
    document = _document(payload)
    if document.get("site") != site:
        raise Rejected(f"payload site {str(document.get('site'))[:64]!r} is not the subject's")
    try:
        rows = _ROWS[kind](site, document)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Rejected(f"{kind}: {type(exc).__name__}: {exc}"[:300]) from None
    for row in rows:
        _TARGET[type(row)](batch).append(row)
    batch.sites.append(SiteSeen(site, received))
    return Parsed(site, kind, _KEYS[kind](document, rows))


def _split(subject: str, prefix: str) -> tuple[str, str]:
    parts = subject.split(".")
    if len(parts) == 3 and parts[0] == prefix and parts[2] == "availability" and parts[1]:
        return parts[1], "availability"
    if len(parts) == 4 and parts[0] == prefix and parts[2] == "history" and parts[3] in _ROWS:
        return parts[1], parts[3]
    raise Rejected(f"subject {subject[:120]!r} is not {prefix}.<site>.history.<kind>")


def _document(payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Rejected(f"not JSON: {exc}"[:200]) from None
    if not isinstance(document, dict):
        raise Rejected("not a JSON object")
    if document.get("v") != 1:
        raise Rejected(f"version {str(document.get('v'))[:20]!r}, this centre reads 1")
    return document


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an ISO time, got {type(value).__name__}")
    return utc(name, datetime.fromisoformat(value.replace("Z", "+00:00")))


def _number(value: Any, name: str) -> float | None:
    """A finite number or None (unknown); a bool or a string is an error, not a count."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number or null, got {value!r}")
    return float(value)


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError(f"{name} must be a short string or null")
    return value


def _intervals(site: str, d: dict[str, Any]) -> list[IntervalRow]:
    start, end = _time(d["start"], "start"), _time(d["end"], "end")
    span = (end - start).total_seconds()
    rows = []
    for z in d["zones"]:
        coverage = _number(z["coverage"], "coverage") or 0.0
        samples = z["samples"]
        if isinstance(samples, bool) or not isinstance(samples, int):
            raise ValueError(f"samples must be a whole number, got {samples!r}")
        rows.append(
            IntervalRow(
                site=site,
                camera=str(z["camera"]),
                zone=str(z["zone"]),
                role=str(z["role"]),
                start_at=start,
                end_at=end,
                mean=_number(z["mean"], "mean"),
                max=_number(z["max"], "max"),
                p90=_number(z["p90"], "p90"),
                frames=samples,
                seen_s=min(max(coverage, 0.0), 1.0) * span,
            )
        )
    return rows


def _queue(site: str, d: dict[str, Any]) -> list[QueueWaitRow]:
    return [
        QueueWaitRow(
            site=site,
            minute=_time(d["minute"], "minute"),
            wait_minutes=_number(d.get("wait_minutes"), "wait_minutes"),
            low_minutes=_number(d.get("low_minutes"), "low_minutes"),
            high_minutes=_number(d.get("high_minutes"), "high_minutes"),
            confidence=_text(d.get("confidence"), "confidence"),
            method=_text(d.get("method"), "method"),
            line_count=_number(d.get("line_count"), "line_count"),
        )
    ]


def _alerts(site: str, d: dict[str, Any]) -> list[AlertEventRow]:
    """One event per step the state shows: a state seen twice, or a later state repeating the
    earlier steps, adds no event twice (the key is site, alert, step, time)."""
    state = d["state"]
    if not isinstance(state, dict):
        raise ValueError("state must be an object")
    version = state.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ValueError(f"version must be a whole number, got {version!r}"[:80])
    zones = tuple(str(z["id"]) if isinstance(z, dict) else str(z) for z in state.get("zones", []))
    rows = []
    for status, at_field, by_field in STATE_STEPS:
        at = state.get(at_field)
        if at is None:
            continue
        by = _text(state.get(by_field), by_field) if by_field else None
        rows.append(
            AlertEventRow(
                site=site,
                alert_id=str(state["alert_id"]),
                kind=str(state["kind"]),
                rule=str(state["rule"]),
                zone_ids=zones,
                status=status,  # type: ignore[arg-type]  # one of STATUS_RANK by construction
                at=_time(at, at_field),
                by=by,
                details=state,
            )
        )
    if not rows:
        raise ValueError("the state has no raised_at")
    assert all(r.status in STATUS_RANK for r in rows)
    return rows


def _cameras(site: str, d: dict[str, Any]) -> list[CameraHealthRow]:
    return [
        CameraHealthRow(site, str(d["camera"]), d["status"], _time(d["at"], "at")),
    ]


_ROWS: dict[str, Any] = {
    "intervals": _intervals,
    "queue": _queue,
    "alerts": _alerts,
    "cameras": _cameras,
}
_KEYS: dict[str, Any] = {
    "intervals": lambda d, rows: int(_time(d["end"], "end").timestamp()),
    "queue": lambda d, rows: int(rows[0].minute.timestamp()),
    "alerts": lambda d, rows: d["state"].get("version"),
    "cameras": lambda d, rows: [rows[0].camera, d["at"]],
}
_TARGET: dict[type, Any] = {
    IntervalRow: lambda b: b.intervals,
    QueueWaitRow: lambda b: b.queue_waits,
    AlertEventRow: lambda b: b.alert_events,
    CameraHealthRow: lambda b: b.camera_health,
}
