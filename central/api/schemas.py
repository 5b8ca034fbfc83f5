"""The head-office API's bodies. Times are UTC, ISO 8601; null means unknown, never 0."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import HistoryOut


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Problem(_Out):
    detail: str = Field(description="What went wrong and, where it helps, what to do")


class CentralHealthOut(_Out):
    status: Literal["ok", "fail"] = Field(
        description="ok: the database answers with the current schema; fail: it does not"
    )
    database: bool = Field(description="The database answered")
    schema_version: int | None = Field(description="Its schema version; null when unreachable")
    expected_schema_version: int = Field(description="The version this API reads")
    at: datetime
    detail: str | None = Field(None, description="Why not ok")


class SiteOut(_Out):
    site: str
    region: str | None = Field(description="The region central.yaml puts the branch in")
    last_seen_at: datetime | None = Field(
        description="When its latest message arrived; null: never heard from"
    )
    availability: str | None = Field(
        description="What its availability topic said last (online, offline, stopped)"
    )
    online: bool = Field(
        description="Heard from within offline_after_s, and its availability (if said) online"
    )


class CentralHistoryOut(HistoryOut):
    site: str


class AlertStateOut(_Out):
    site: str
    alert_id: str
    kind: str = Field(description="diversion or camera")
    rule: str
    zone_ids: list[str]
    status: str = Field(description="raised, escalated, accepted, pass_done or cleared")
    at: datetime = Field(description="When it reached that status")
    by: str | None = Field(description="Who acted (accepted, pass done); null: the device")
    raised_at: datetime
    state: dict[str, Any] = Field(
        description="The device's alert state (docs/handheld.md), as the branch last sent it"
    )


class SiteAlertsOut(_Out):
    site: str
    start: datetime
    end: datetime
    alerts: list[AlertStateOut] = Field(description="Alerts raised in the range, oldest first")


class _Range(_Out):
    start: datetime
    end: datetime = Field(description="Exclusive")


class BranchWaitingOut(_Out):
    site: str
    region: str | None
    mean_waiting: float = Field(
        description="Mean people waiting, the line zones (waiting, queue) summed per interval"
    )
    intervals: int = Field(ge=0, description="Intervals with a count that the mean is over")


class BranchWaitOut(_Out):
    site: str
    region: str | None
    mean_wait_minutes: float = Field(description="Mean estimated wait, minutes")
    max_wait_minutes: float = Field(description="Longest estimated wait, minutes")
    minutes: int = Field(ge=0, description="Minutes with an estimate that the mean is over")


class WaitingReportOut(_Range):
    by_waiting: list[BranchWaitingOut] = Field(description="Most people waiting first")
    by_wait_minutes: list[BranchWaitOut] = Field(description="Longest mean wait first")


class BranchOpenOut(_Out):
    site: str
    region: str | None
    open_s: float = Field(ge=0, description="Seconds with a diversion alert open (overlaps once)")
    share: float = Field(ge=0, le=1, description="open_s over the range's seconds")
    alerts: int = Field(ge=0, description="Diversion alerts open at some time in the range")


class AboveThresholdOut(_Range):
    branches: list[BranchOpenOut] = Field(description="Longest open first; none open: left out")


class BranchAckOut(_Out):
    site: str
    region: str | None
    raised: int = Field(ge=0, description="Diversion alerts raised in the range")
    accepted: int = Field(ge=0, description="Of those, accepted")
    unaccepted: int = Field(ge=0, description="Of those, not (yet) accepted")
    p50_s: float | None = Field(description="Median seconds raise -> accept; null: none accepted")
    p90_s: float | None = Field(description="90th percentile seconds raise -> accept")


class AckTimesOut(_Range):
    branches: list[BranchAckOut] = Field(description="Slowest p90 first")


class BranchPassesOut(_Out):
    site: str
    region: str | None
    passes: int = Field(ge=0, description="Passes reported done in the range")
    measured: int = Field(ge=0, description="Of those, with their effect measured")
    mean_count_at_pass: float | None = Field(description="Mean people waiting at the pass")
    mean_count_after: float | None = Field(description="Mean people effect_after_s after it")
    mean_change: float | None = Field(
        description="Mean count_after - count_at_pass: negative when passes shortened the line"
    )


class PassesReportOut(_Range):
    branches: list[BranchPassesOut] = Field(description="Most passes first")


class OfflineBranchOut(_Out):
    site: str
    region: str | None
    last_seen_at: datetime | None = Field(description="null: never heard from")
    availability: str | None
    silent_s: float | None = Field(description="Seconds since its latest message")
    reason: Literal["never_heard", "silent", "unavailable"] = Field(
        description="never_heard: in a region, never sent anything; silent: nothing for "
        "offline_after_s; unavailable: its availability says offline or stopped"
    )


class OfflineReportOut(_Out):
    at: datetime
    offline_after_s: float
    branches: list[OfflineBranchOut] = Field(
        description="Longest silent first (never heard from at all first of all)"
    )
