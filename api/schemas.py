"""HTTP bodies: what the API answers and accepts. Units are in every description.

Times are UTC, ISO 8601. A count is a number of people; null means unknown (camera not online, or
the pipeline not running), never 0.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.buckets import Bucket
from api.live import CameraStateName
from edge.config import ZoneRole
from edge.store import PassNumber

CameraState = CameraStateName
AlertStatus = Literal["open", "acknowledged", "pass_done", "cleared"]
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WeekdayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Problem(_Out):
    detail: str = Field(description="What went wrong and, where it helps, what to do")


class ZoneOut(_Out):
    id: str
    name: str
    role: ZoneRole
    camera_id: str
    camera_name: str


class ZonesOut(_Out):
    site_id: str
    site_name: str
    timezone: str = Field(description="IANA time zone of the branch (1d buckets, reports)")
    zones: list[ZoneOut]


class ZoneOccupancy(_Out):
    zone_id: str
    name: str
    role: ZoneRole
    camera_id: str
    count: float | None = Field(
        description="People now (smoothed); null when unknown: camera not online or data stale"
    )
    raw: int | None = Field(description="Detections in the latest frame; null when unknown")
    measured_at: datetime | None = Field(description="When the pipeline last wrote this zone")
    stale: bool = Field(
        description="True when the pipeline has not updated the zone for longer than the "
        "camera's offline_after_s (pipeline stopped or hung); count is then null"
    )
    camera_status: CameraState = Field(
        description="online / stale (no new frame) / offline, as the pipeline last saw it; "
        "unknown when the pipeline's report is itself stale or missing"
    )


class OccupancyOut(_Out):
    at: datetime = Field(description="When this answer was made")
    zones: list[ZoneOccupancy]
    by_role: dict[str, float | None] = Field(
        description="People per zone role, summed over the role's zones; null when any is unknown"
    )


class HistoryPoint(_Out):
    start: datetime
    end: datetime
    mean: float | None = Field(
        description="Mean people over the frames counted in the bucket; null when none was "
        "counted (unknown, never 0)"
    )
    max: float | None = Field(description="Highest smoothed count in the bucket, people")
    p90: float | None = Field(
        description="90th percentile (nearest rank) of the stored interval means in the bucket "
        "(one per storage.interval_s, 10 s by default): 90% of the time there were at most "
        "this many people"
    )
    coverage: float = Field(
        ge=0, le=1, description="Fraction of the bucket during which the camera was seen online"
    )
    samples: int = Field(ge=0, description="Frames counted in the bucket")


class ZoneHistory(_Out):
    zone_id: str
    points: list[HistoryPoint]


class HistoryOut(_Out):
    bucket: Bucket
    start: datetime = Field(
        description="Start of the first bucket (the request's start, rounded down)"
    )
    end: datetime = Field(description="End of the last bucket (the request's end, rounded up)")
    timezone: str = Field(
        description="Time zone whose midnights bound 1d buckets; 1m, 15m, 1h are UTC-aligned"
    )
    zones: list[ZoneHistory]


class HourSlotOut(_Out):
    weekday: WeekdayName
    hour: int = Field(ge=0, le=23, description="Local hour of the day in the site's time zone")
    mean: float | None = Field(description="Mean people in that hour, weighted by frames")
    peak: float | None = Field(description="Highest smoothed count seen in that hour, people")
    coverage: float = Field(ge=0, le=1, description="Fraction of those hours the camera was seen")
    hours: int = Field(ge=0, description="How many such hours the range holds")


class ZoneHours(_Out):
    zone_id: str
    slots: list[HourSlotOut] = Field(description="Weekday and hour pairs the range covers")


class BusiestHoursOut(_Out):
    start: datetime
    end: datetime
    timezone: str
    zones: list[ZoneHours]


class DeliveryOut(_Out):
    """One alert event sent, or to be sent, to one channel (WeCom, DingTalk, e-mail...)."""

    channel: str = Field(description="The channel's id in alerts.channels")
    kind: str | None = Field(description="wecom, dingtalk, feishu, email, ntfy or webhook")
    event: str = Field(description="raised, escalated, accepted, pass_done or cleared")
    number: int = Field(description="The escalation's number (0 for other events)")
    state: Literal["waiting", "rate_limited", "sent", "failed", "expired"] = Field(
        description="waiting: not delivered yet (retried); rate_limited: held back by the "
        "channel's max_per_minute, goes out merged; sent: the receiver took it; failed: given "
        "up after attempts that failed; expired: given up untried, no longer useful"
    )
    attempts: int = Field(description="Attempts so far")
    last_error: str | None = Field(
        description="Why the last attempt failed, or why it was given up (secrets removed)"
    )
    last_attempt_at: datetime | None
    sent_at: datetime | None
    merged: int = Field(description="Deliveries carried by the message it went out in (1: alone)")


class AlertOut(_Out):
    alert_id: str
    rule: str
    kind: str = Field(description="diversion | camera")
    zones: list[str]
    threshold: float | None = Field(description="People at which the rule raises")
    status: AlertStatus
    message: str
    since: datetime = Field(description="When the condition began")
    raised_at: datetime
    count_at_raise: float | None
    escalations: int
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    seconds_to_ack: float | None = Field(description="Seconds from raised to acknowledged")
    count_at_ack: float | None = Field(description="People in the alert's zones at the ack")
    pass_done_at: datetime | None
    pass_done_by: str | None
    effect_after_s: float = Field(description="Seconds after the pass that the effect is measured")
    effect_count: float | None = Field(description="People effect_after_s after the pass")
    effect_measured_at: datetime | None
    effect: float | None = Field(
        description="count_at_ack - effect_count: people fewer after the pass (negative: more)"
    )
    cleared_at: datetime | None
    count_at_clear: float | None
    passes: int = Field(
        0, ge=0, description="Diversion passes asked: the raise is the first, each re-ask one more"
    )
    details: dict[str, Any] | None = Field(
        None,
        description="The advice and the figures behind the latest ask (advice, figures, metric, "
        "value; docs/queueing.md); null when the alert has none",
    )
    deliveries: list[DeliveryOut] = Field(
        default_factory=list,
        description="Its messages to the bank's channels (alerts.channels), oldest first",
    )


class AlertSummary(_Out):
    raised: int
    acknowledged: int
    passes_done: int
    median_seconds_to_ack: float | None
    max_seconds_to_ack: float | None
    mean_effect: float | None = Field(description="Mean of `effect` where measured, people")


class AlertsOut(_Out):
    alerts: list[AlertOut]
    summary: AlertSummary


#: The pass an acknowledgement is for (issue 13: a done pass may be asked again as pass 2, 3...).
PASS_FIELD = Field(
    None,
    alias="pass",
    description="The pass this is for: the `passes` of the alert's state the person saw. "
    "Another pass than the alert's latest changes nothing and answers `already` (a repeated "
    "tap on pass 1 does not take pass 2). Absent: the latest pass",
)


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["accepted", "pass_done"] = Field(
        description="accepted: someone is going; pass_done: the diversion pass is finished"
    )
    pass_: PassNumber | None = PASS_FIELD


class PassIn(BaseModel):
    """The optional body of accept and pass-done. Other keys are ignored: these routes took no
    body before, and a client that sent one anyway must keep working."""

    model_config = ConfigDict(extra="ignore")

    pass_: PassNumber | None = PASS_FIELD


class CameraHealth(_Out):
    camera_id: str
    status: CameraState
    fps: float | None
    inference_ms: float | None
    updated_at: datetime | None
    stale: bool
    target_fps: float | None = Field(
        None, description="Frames per second the camera is asked for (cameras[].fps); null when "
        "the pipeline is not running"
    )  # fmt: skip
    dropped_share: float | None = Field(
        None, ge=0, le=1, description="Share of the camera's frames over the last 30 s that "
        "capture dropped because the device could not keep up (0..1); null without frames"
    )  # fmt: skip
    detector_share: float | None = Field(
        None, ge=0, le=1, description="Share of the frames processed over the last 30 s that the "
        "detector ran on (the rest reuse the last detections: nothing changed); null without frames"
    )  # fmt: skip
    overloaded: bool = Field(
        False, description="The camera drops more than a tenth of its frames: the device is short"
    )


class Check(_Out):
    ok: bool
    detail: str


class BrokerHealth(_Out):
    state: Literal["connected", "connecting", "disconnected", "refused", "unknown", "disabled"] = (
        Field(description="As the running pipeline sees it; unknown when it is not running")
    )
    since: datetime | None
    reason: str | None = Field(None, description="Why it is not connected (connection refused...)")
    attempts: int | None = Field(None, description="Failed connection attempts since `since`")


class DeliveryHealth(_Out):
    """Alerts on their way to the broker, as the running pipeline reports them."""

    backlog: int | None = Field(description="Alert messages the broker has not acknowledged yet")
    unsaved_alert_writes: int | None = Field(
        description="Alert writes kept in memory while the store refuses writes (lost on a crash)"
    )
    unsaved_history_rows: int | None = Field(
        description="History rows kept in memory while the store refuses writes"
    )
    expired: int | None = Field(description="Alert messages given up since the pipeline started")


class ChannelHealth(_Out):
    """One of the bank's channels, as the running pipeline's delivery worker sees it."""

    channel: str
    kind: str
    state: Literal["ok", "failing", "off"] = Field(
        description="ok; failing: its last attempt failed, retried with backoff; off: its URL "
        "or secret could not be read"
    )
    since: datetime | None = Field(None, description="When it started failing")
    last_error: str | None = Field(None, description="Why (secrets removed)")
    waiting: int | None = Field(None, description="Deliveries not sent yet")
    rate_limited: int | None = Field(None, description="Deliveries held back by max_per_minute")
    sent: int | None = Field(None, description="Deliveries sent since the pipeline started")
    failed: int | None = Field(None, description="Deliveries given up after failing, since start")


class ChildHealth(_Out):
    """The API process that `lobbywatch run` supervises (when api.enabled)."""

    state: Literal["stopped", "running", "restarting", "failed"]
    since: datetime | None
    restarts: int
    last_exit_code: int | None
    last_error: str | None


class ConfigHealth(_Out):
    """Whether the config file is the config running (the service reloads a valid change)."""

    state: Literal["ok", "invalid", "restart_needed"] = Field(
        description="ok: the file is what runs; invalid: the file does not load (the service "
        "keeps what it runs, and would not start from the file); restart_needed: it loads but "
        "changes the store or the site id, which only a start takes"
    )
    since: datetime | None = Field(description="When this state began")
    error: str | None = Field(description="The loader's issues, one line; null when ok")


class DiskHealth(_Out):
    ok: bool
    free_bytes: int | None
    free_fraction: float | None


class HealthOut(_Out):
    status: Literal["ok", "degraded", "fail"] = Field(
        description="ok: ready; degraded: ready but something needs a look; fail: not ready"
    )
    live: bool = Field(description="The API process answers (always true when you read this)")
    ready: bool = Field(description="Store readable and writable, disk not full, a camera online")
    at: datetime
    store_readable: Check
    store_writable: Check
    disk: DiskHealth
    broker: BrokerHealth
    delivery: DeliveryHealth
    pipeline_api: ChildHealth | None = Field(
        description="The API child of `lobbywatch run`, as the pipeline sees it (null when the "
        "API runs on its own or the pipeline is not running)"
    )
    cameras: list[CameraHealth]
    overloaded: list[str] = Field(
        default_factory=list,
        description="Cameras that drop more than a tenth of their frames (the device cannot keep "
        "their fps); any makes the status degraded",
    )
    channels: list[ChannelHealth] = Field(
        default_factory=list,
        description="The bank's channels (alerts.channels); empty when none or the pipeline is "
        "not running",
    )
    config: ConfigHealth | None = Field(
        None,
        description="The running service's watch on its config file; null when the pipeline is "
        "not running or runs without a file; invalid makes the status degraded",
    )


class LiveOut(_Out):
    live: bool


# --- alert state (docs/handheld.md): times here are ISO 8601 in the site's time zone ----------


def _site_time() -> Any:
    return Field(
        description="ISO 8601 in the site's time zone, with its offset (people read it)",
        json_schema_extra={"format": "date-time"},
    )


class ZoneNameOut(_Out):
    id: str
    name: str = Field(description="The zone's configured name (its id when it has none)")


class EffectOut(_Out):
    count_at_pass: float | None = Field(
        description="People waiting when the alert was accepted (the pass began); null: unknown"
    )
    count_after: float | None = Field(
        description="People waiting effect_after_s after the pass was reported done"
    )
    measured_at: str = _site_time()


class AlertStateOut(_Out):
    """One alert's state, the same as its retained MQTT message."""

    alert_id: str
    rule: str
    rule_name: str = Field(description="The rule's name (a camera's name for a camera alert)")
    kind: str = Field(description="diversion (for the lobby manager) | camera (for IT)")
    zones: list[ZoneNameOut]
    threshold: float | None = Field(description="People at which the rule raises")
    count_at_raise: float | None
    count_now: float | None = Field(
        description="People in its zones when this state was read; null when unknown (a "
        "camera down), never 0 for that"
    )
    status: Literal["raised", "accepted", "pass_done", "escalated", "cleared"] = Field(
        description="raised -> accepted -> pass_done; escalated while raised and not accepted "
        "in time; cleared at the end"
    )
    since: str = _site_time()
    raised_at: str = _site_time()
    message: str = Field(description="The raised message, in the site's language")
    accepted_by: str | None = Field(description="Who accepted it: a credential's identity")
    accepted_at: str | None = _site_time()
    pass_done_by: str | None
    pass_done_at: str | None = _site_time()
    escalations: int = Field(ge=0)
    last_escalated_at: str | None = _site_time()
    cleared_at: str | None = _site_time()
    effect: EffectOut | None = Field(description="The pass's measured effect, once measured")
    deliveries: list[dict[str, Any]] = Field(
        description="One entry per channel delivery (issue #12 item 3): channel, state, "
        "attempts, last error"
    )
    version: int = Field(ge=0, description="The site's alert version at this alert's latest change")
    # Issue 13: the latest ask. Without these the answer to an accept would hand the handheld a
    # state without its pass, and its pass done would then be sent for no pass.
    passes: int = Field(
        0, ge=0, description="The pass asked: 1 for the raise, 2 once a done pass was asked "
        "again...; 0 for a camera alert. Send it back as `pass` with accept and pass-done",
    )  # fmt: skip
    metric: str | None = Field(None, description="What the rule measures: count, wait...")
    value: float | None = Field(None, description="The rule's value at the latest ask, its unit")
    point: str | None = Field(None, description="waiting_area, or entrance (for the greeter)")
    advice: list[dict[str, Any]] = Field(
        default_factory=list, description="What to do: kind, text (site language), figures"
    )
    figures: dict[str, Any] | None = Field(
        None, description="The figures behind the ask (wait_minutes...; null where unknown)"
    )


class OpenAlertsOut(_Out):
    version: int = Field(ge=0, description="The site's alert version: grows with every change")
    timezone: str = Field(description="IANA time zone of the site, which every time is in")
    alerts: list[AlertStateOut] = Field(description="Every open alert, oldest raised first")


class AckAnswerOut(_Out):
    result: Literal["accepted", "pass_done", "already"] = Field(
        description="accepted / pass_done: recorded now; already: an earlier one stands"
    )
    message: str = Field(
        description="For the person: 'already accepted by mgr-1 at 10:02' (site time)"
    )
    alert: AlertStateOut


class ForecastBasisOut(_Out):
    profile: float = Field(description="People: median of that quarter hour on past weekdays")
    weeks: int = Field(ge=0, description="Past same weekdays (holidays left out) in the profile")
    trend: float = Field(gt=0, description="Today's ratio to the profile, applied (1: as usual)")
    today_slots: int = Field(ge=0, description="Today's quarter hours behind the trend")
    residuals: int = Field(ge=0, description="Past forecasts at this horizon behind the interval")
    seasonal_naive: float | None = Field(
        description="The baseline: people in the same quarter hour a week before"
    )
    last_slot: float | None = Field(
        default=None,
        description="People in today's last complete quarter hour, the anchor (null: none known, "
        "the point is profile x trend alone)",
    )
    last_slot_usual: float | None = Field(
        default=None, description="That quarter hour's profile x trend (null with last_slot)"
    )
    anchor_weight: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of last_slot - last_slot_usual carried to the target, learnt from "
        "the site's past forecasts: point = profile x trend + anchor_weight x (last_slot - "
        "last_slot_usual)",
    )


class HorizonForecastOut(_Out):
    horizon_min: int = Field(description="Minutes ahead of now")
    start: datetime = Field(description="Start of the forecast quarter hour, site time")
    end: datetime = Field(description="End of that quarter hour, site time")
    status: Literal["ok", "unknown"]
    point: float | None = Field(description="Mean people expected in that quarter hour")
    low: float | None = Field(description="Lower end of the interval, people")
    high: float | None = Field(description="Upper end of the interval, people")
    coverage: float = Field(gt=0, lt=1, description="Nominal share of outcomes in [low, high]")
    reason: str | None = Field(description="Why unknown; null when known")
    basis: ForecastBasisOut | None


class ForecastOut(_Out):
    at: datetime = Field(description="When the forecast was made, site time")
    timezone: str = Field(description="IANA time zone of the site, which every time is in")
    zones: list[str] = Field(description="Zones whose counts are summed and forecast")
    horizons: list[HorizonForecastOut]


class PassOut(_Out):
    """One diversion pass asked of the manager and what followed it."""

    alert_id: str
    rule: str | None = Field(description="The alert's rule (null: the alert is gone)")
    number: int = Field(ge=1, description="1 for the raise, 2 for the first re-ask...")
    asked_at: str = _site_time()
    accepted_at: str | None = _site_time()
    accepted_by: str | None
    done_at: str | None = _site_time()
    done_by: str | None
    count_before: float | None = Field(description="People in the alert's zones at the accept")
    count_after: float | None = Field(description="People effect_after_s after the pass was done")
    count_change: float | None = Field(
        description="count_after - count_before: negative when the pass shortened the line"
    )
    wait_before_minutes: float | None = Field(description="Estimated wait at the accept")
    wait_after_minutes: float | None = Field(description="Estimated wait when measured after")
    wait_change_minutes: float | None = Field(description="wait_after - wait_before, minutes")
    kiosks_in_use_after: float | None = Field(description="Kiosks in use when measured after")
    kiosks_capacity: int | None = Field(description="Kiosks there are (the zones' capacity)")
    measured_at: str | None = _site_time()


class PassesOut(_Out):
    start: date = Field(description="First day, in the site's time zone")
    end: date = Field(description="Last day (included)")
    timezone: str = Field(description="IANA time zone of the site, which every time is in")
    passes: list[PassOut] = Field(description="Passes asked in those days, oldest first")


class DayOut(_Out):
    day: date = Field(description="The day, in the site's time zone")
    alerts_raised: int = Field(ge=0, description="Diversion alerts raised that day")
    passes_asked: int = Field(ge=0, description="Passes asked that day (raises and re-asks)")
    passes_accepted: int = Field(ge=0, description="Of those, accepted")
    passes_done: int = Field(ge=0, description="Of those, reported done")
    passes_measured: int = Field(ge=0, description="Of those, with an effect measured")
    mean_count_change: float | None = Field(
        description="Mean count_change of the passes measured (people); null: none measured"
    )
    mean_wait_change_minutes: float | None = Field(
        description="Mean wait change of the passes measured with both waits; null: none"
    )
    minutes_alert_open: float = Field(
        ge=0,
        description="Minutes of the day with a diversion alert open (time above threshold; "
        "overlapping alerts count once; up to now for an alert still open)",
    )
    peak_wait_minutes: float | None = Field(
        description="The highest wait among that day's passes (before or after); null: none known"
    )


class DailyOut(_Out):
    start: date = Field(description="First day, in the site's time zone")
    end: date = Field(description="Last day (included)")
    timezone: str = Field(description="IANA time zone of the site")
    days: list[DayOut] = Field(description="One row per day, every day of the range")


class TicketsAccepted(_Out):
    accepted: int = Field(ge=0, description="Events stored")


class QueueOut(BaseModel):
    """The queue snapshot the edge publishes (docs/queueing.md), with how old it is. Only
    `status` "live" carries figures: a snapshot older than a minute is not the lobby now."""

    model_config = ConfigDict(frozen=True, extra="allow")

    status: Literal["live", "unknown"] = Field(
        description="live: a snapshot at most 60 s old; unknown: none, or older (never 0s)"
    )
    reason: str | None = Field(None, description="Why unknown; null when live")
    at: datetime | None = Field(None, description="When the latest snapshot was taken (UTC)")
    age_s: float | None = Field(None, description="Seconds since then; null: no snapshot")
    site: str | None = None
    line_zones: list[str] | None = None
    wait: dict[str, Any] | None = Field(None, description="Minutes, range, confidence, method")
    forecast: dict[str, Any] | None = Field(None, description="By horizon in minutes (15, 30)")
    kiosks: list[dict[str, Any]] | None = None
    counters: list[dict[str, Any]] | None = None
    arrivals_5min: float | None = None
    arrivals_expected_5min: float | None = None
    dwell: dict[str, Any] | None = None


class UsualSlot(_Out):
    time: str = Field(description="The local quarter hour's start, HH:MM in the site's time zone")
    median: float | None = Field(
        description="People: the median of this quarter hour's 15m means over the past same "
        "weekdays; null with fewer than 3 of them known (never 0 for unknown)"
    )
    weeks: int = Field(ge=0, description="How many past same weekdays had this quarter hour")


class UsualZone(_Out):
    zone_id: str
    slots: list[UsualSlot] = Field(description="The day's 96 local quarter hours, from 00:00")


class UsualDayOut(_Out):
    weekday: WeekdayName
    day: date = Field(
        description="The day it is the usual for: today or the next such weekday (site time "
        "zone); the weeks before it are the ones looked at"
    )
    weeks: int = Field(description="Past same weekdays looked at (holidays left out)")
    timezone: str = Field(description="IANA time zone of the site, which every time is in")
    zones: list[UsualZone]


# --- hand counts for calibration (docs/ui.md 6) ----------------------------------------------

#: Heads one frame may have clicked: far above any lobby, low enough to bound a request.
MAX_HEADS = 500
HeadPoint = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]


class HandCountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = Field(
        ge=1,
        le=2**53,
        description="The frame counted: the snapshot's X-Lobbywatch-Seq. It must still be held by "
        "the service (the last 16 frames), so the detector's boxes of that very frame are kept",
    )
    heads: list[HeadPoint] = Field(
        max_length=MAX_HEADS,
        description="Each person's head, clicked on the frame: [x, y] normalized 0-1 (0, 0 the "
        "top left). Empty: nobody in view",
    )


class HandCountOut(_Out):
    id: int = Field(description="Its number: DELETE .../hand-counts/{id} drops it")
    camera_id: str
    at: datetime = Field(description="When the frame was captured (UTC)")
    seq: int = Field(description="The frame's number in the service when it was counted")
    width: int = Field(description="Frame width in pixels")
    height: int
    heads: list[tuple[float, float]] = Field(description="The heads clicked, normalized 0-1")
    heads_per_zone: dict[str, int] = Field(
        description="The heads counted per zone as the current zones place them (the hand count)"
    )
    detected: dict[str, int] = Field(
        description="People the detector counted in each zone in that frame, uncalibrated, "
        "without people held through a miss"
    )
    boxes: int = Field(description="Boxes the detector found and the scene kept (stored)")
    saved_by: str = Field(description="The admin's key id")
    saved_at: datetime


class HandCountsOut(_Out):
    camera_id: str
    hand_counts: list[HandCountOut] = Field(description="Oldest first; no images, ever")
    advised: int = Field(
        description="Hand counts advised for `lobbywatch calibrate --from-store` (fewer: rough)"
    )
