"""Simulated branches: the device feed's messages (docs/central.md, "Device feed") for tests,
the ingestion benchmark and a demo centre, without cameras.

Deterministic: a branch's counts follow a day curve (quiet morning, lunch peak, afternoon
hump) scaled per branch and varied by a seeded random source, so a test can rebuild exactly
what every branch sent and compare it with the store.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
#: The zones of a simulated branch: (zone id, role, camera id).
ZONES = (
    ("waiting", "waiting", "lobby"),
    ("queue", "queue", "lobby"),
    ("kiosks", "self_service", "kiosk"),
)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def site_id(index: int) -> str:
    return f"branch-{index:03d}"


def day_curve(at: datetime) -> float:
    """People waiting in a typical branch at `at` (UTC hours read as local), 0..1."""
    hour = at.hour + at.minute / 60
    if hour < 9 or hour >= 17:
        return 0.0
    return (
        0.25
        + 0.6 * math.exp(-(((hour - 12.5) / 1.2) ** 2))
        + 0.3 * math.exp(-(((hour - 15.5) / 1.0) ** 2))
    )


@dataclass(frozen=True)
class Branch:
    """One simulated branch: `size` scales its crowd (a city branch 30, a village one 5)."""

    site: str
    size: float = 20.0
    seed: int = 0

    def _rng(self, *key: object) -> random.Random:
        return random.Random(f"{self.site}:{self.seed}:{':'.join(map(str, key))}")

    def interval(self, start: datetime, bucket_s: int = 900) -> dict[str, Any]:
        """The `history/intervals` message of the bucket starting at `start`."""
        end = start + timedelta(seconds=bucket_s)
        rng = self._rng("interval", start.isoformat())
        zones = []
        for zone, role, camera in ZONES:
            share = {"waiting": 1.0, "queue": 0.4, "self_service": 0.15}[role]
            mean = round(max(0.0, self.size * share * day_curve(start) + rng.gauss(0, 0.8)), 2)
            zones.append(
                {
                    "zone": zone,
                    "role": role,
                    "camera": camera,
                    "mean": mean,
                    "max": round(mean * 1.3 + 1, 2),
                    "p90": round(mean * 1.2 + 0.5, 2),
                    "coverage": 1.0,
                    "samples": bucket_s // 10 * 2,
                }
            )
        return {
            "v": 1,
            "site": self.site,
            "bucket": "15m" if bucket_s == 900 else "1m",
            "start": iso(start),
            "end": iso(end),
            "closed_at": iso(end),
            "zones": zones,
        }

    def queue(self, minute: datetime) -> dict[str, Any]:
        rng = self._rng("queue", minute.isoformat())
        line = round(self.size * 1.4 * day_curve(minute) + rng.random(), 1)
        wait = round(line / 1.1, 1) if line > 0 else None
        return {
            "v": 1,
            "site": self.site,
            "minute": iso(minute),
            "at": iso(minute + timedelta(seconds=2)),
            "wait_minutes": wait,
            "low_minutes": None if wait is None else round(wait * 0.8, 1),
            "high_minutes": None if wait is None else round(wait * 1.25, 1),
            "confidence": "medium" if wait is not None else "unknown",
            "method": "departures" if wait is not None else "none",
            "line_count": line,
        }

    def alert_states(self, raised: datetime, number: int = 1) -> list[dict[str, Any]]:
        """The `history/alerts` messages of one diversion alert's whole life: raised,
        accepted after 2 minutes, pass done after 9, cleared after 20 (4 steps, 4 events).
        Versions rise across a branch's alerts, as the device's do: alert n has 4n+1..4n+4."""
        alert_id = f"waiting-full-{raised:%Y%m%dT%H%M%SZ}-{number:04d}"
        state: dict[str, Any] = {
            "alert_id": alert_id,
            "rule": "waiting-full",
            "rule_name": "Waiting area full",
            "kind": "diversion",
            "zones": [{"id": "waiting", "name": "Waiting area"}],
            "threshold": 15,
            "count_at_raise": 17,
            "count_now": 17,
            "status": "raised",
            "since": iso(raised - timedelta(minutes=1)),
            "raised_at": iso(raised),
            "accepted_by": None,
            "accepted_at": None,
            "pass_done_by": None,
            "pass_done_at": None,
            "escalations": 0,
            "last_escalated_at": None,
            "cleared_at": None,
            "effect": None,
            "passes": 1,
            "version": 4 * number + 1,
        }
        steps = [dict(state)]
        state.update(status="accepted", accepted_by="mgr-1", version=4 * number + 2,
                     accepted_at=iso(raised + timedelta(minutes=2)))  # fmt: skip
        steps.append(dict(state))
        state.update(status="pass_done", pass_done_by="mgr-1", version=4 * number + 3, count_now=9,
                     pass_done_at=iso(raised + timedelta(minutes=9)))  # fmt: skip
        steps.append(dict(state))
        state.update(status="cleared", version=4 * number + 4, count_now=8,
                     cleared_at=iso(raised + timedelta(minutes=20)),
                     effect={"count_at_pass": 17, "count_after": 8,
                             "measured_at": iso(raised + timedelta(minutes=14))})  # fmt: skip
        steps.append(dict(state))
        return [{"v": 1, "site": self.site, "state": s} for s in steps]

    def camera(self, camera: str, status: str, at: datetime) -> dict[str, Any]:
        return {"v": 1, "site": self.site, "camera": camera, "status": status, "at": iso(at)}


def topic(site: str, kind: str, prefix: str = "lobbywatch") -> str:
    return f"{prefix}/{site}/history/{kind}"


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()
