"""What the channel tests share: a site config with channels, alerts made in a real store, a
fake clock and a scripted sender."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from edge.alerts.channels import Channel, resolve
from edge.alerts.delivery import DeliveryWorker
from edge.alerts.sender import Job, Outcome
from edge.config import LobbyConfig, parse_config
from edge.store import AlertRecord, Store

T0 = datetime(2026, 12, 1, 2, 0, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai

#: The alert tests' site: one camera, a waiting area and a queue (one rule counts both), and the
#: store at `{db}` (a format field). A piece of a config template, braces doubled.
LOBBY = """\
cameras:
  - id: lobby
    source: rtsp://127.0.0.1:9/none
    zones:
      - {{id: waiting, name: 等候区, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
      - {{id: queue, name: Queue, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}}
storage: {{path: "{db}"}}
"""

BASE = (
    """\
site: {{id: branch-7, name: Branch 7, timezone: Asia/Shanghai}}
"""
    + LOBBY
    + """\
mqtt: {{enabled: false}}
alerts:
  language: {language}
  rules:
    - {{id: waiting-full, name: Waiting area full, zones: [waiting, queue], raise_at: 10,
       clear_at: 5, raise_after_s: 0, clear_after_s: 0, cooldown_s: 0, escalate_after_s: 1,
       max_escalations: 2}}
  channels:
{channels}
"""
)


def make_config(
    tmp_path: Path, channels: str, language: str = "en", extra: str = ""
) -> LobbyConfig:
    text = BASE.format(db=tmp_path / "lw.db", channels=channels, language=language) + extra
    return parse_config(text, base_dir=tmp_path, environ={})


class FakeClock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = T0

    def monotonic(self) -> float:
        return self.mono

    def utc(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


@dataclass
class ScriptedSender:
    """Answers jobs as a receiver would: down until `up` is set; records what it took."""

    up: bool = True
    taken: list[Job] = field(default_factory=list)
    tried: int = 0
    error: str = "ConnectionError: Connection refused"

    def send(self, job: Job) -> Outcome:
        self.tried += 1
        if not self.up:
            return Outcome(False, self.error)
        self.taken.append(job)
        return Outcome(True)

    def close(self) -> None:
        pass


def channels_of(config: LobbyConfig, environ: Mapping[str, str]) -> list[Channel]:
    return [resolve(c, config.alerts.language, environ) for c in config.alerts.channels]


def worker(
    config: LobbyConfig,
    store: Store,
    environ: Mapping[str, str],
    sender: Any,
    clock: FakeClock,
    counts: float | None = 12.0,
) -> DeliveryWorker:
    return DeliveryWorker(
        config, store, channels_of(config, environ), sender,
        counts=lambda zones: counts, clock=clock.monotonic, wall_clock=clock.utc,
    )  # fmt: skip


def raise_alert(store: Store, alert_id: str, at: datetime, count: float = 12.0,
                kind: str = "diversion", rule: str = "waiting-full") -> AlertRecord:  # fmt: skip
    record = AlertRecord(
        alert_id=alert_id, rule=rule, kind=kind, zones=("waiting", "queue"), threshold=10.0,
        since=at - timedelta(seconds=60), raised_at=at, count_at_raise=count, message="busy",
        escalations=0, last_notified_at=at, acknowledged_at=None, acknowledged_by=None,
        count_at_ack=None, pass_done_at=None, pass_done_by=None, effect_after_s=600.0,
        effect_count=None, effect_measured_at=None, cleared_at=None, count_at_clear=None,
        status="open",
    )  # fmt: skip
    store.insert_alert(record, [])
    return record
