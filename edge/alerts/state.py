"""An alert's state as every handheld sees it (docs/handheld.md): one shape, built from the
store's row, the same on MQTT and through the API.

Pure: the row, the site's names and time zone in, a frozen AlertState out. Times are ISO 8601
in the site's time zone, with its offset, to the second: people read them. Zones carry their
configured names. `version` is the row's: the site's alert version at the alert's latest change.

Issue 13 added, as new fields only (a handheld that knows none of them shows what it did): the
pass asked (`passes`: 2 once a done pass was asked again), and from the alert's details the
advice of the latest ask with the figures behind it (docs/queueing.md, "Advice").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from edge.config import LobbyConfig
from edge.store import AckOutcome, AlertRecord

StateStatus = Literal["raised", "accepted", "pass_done", "escalated", "cleared"]


@dataclass(frozen=True)
class SiteNames:
    """What a state needs of the config: names for ids, the site's time zone and language."""

    timezone: str
    language: str
    zones: Mapping[str, str] = field(default_factory=dict)  # zone id -> name
    rules: Mapping[str, str] = field(default_factory=dict)  # rule id -> name
    cameras: Mapping[str, str] = field(default_factory=dict)  # camera id -> name
    channels: Mapping[str, str] = field(default_factory=dict)  # channel id -> kind

    @classmethod
    def of(cls, config: LobbyConfig) -> SiteNames:
        return cls(
            timezone=config.site.timezone,
            language=config.alerts.language,
            zones={z.id: z.name or z.id for c in config.cameras for z in c.zones},
            rules={r.id: r.name or r.id for r in config.alerts.rules},
            cameras={c.id: c.name or c.id for c in config.cameras},
            channels={c.id: c.kind for c in config.alerts.channels},
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, at: datetime | None) -> str | None:
        """`at` (aware) as ISO 8601 in the site's time zone, to the second."""
        if at is None:
            return None
        return self.site_time(at).isoformat()

    def site_time(self, at: datetime) -> datetime:
        """`at` (aware) in the site's time zone, to the second."""
        return at.astimezone(self.tz).replace(microsecond=0)

    def rule_name(self, rule: str) -> str:
        if rule in self.rules:
            return self.rules[rule]
        camera = rule.removeprefix("camera-")
        return self.cameras.get(camera, rule)


@dataclass(frozen=True)
class ZoneName:
    id: str
    name: str


@dataclass(frozen=True)
class Effect:
    """The measured effect of a pass: people waiting when it was accepted (the pass began),
    and `effect_after_s` after it was reported done."""

    count_at_pass: float | None
    count_after: float | None
    measured_at: str


@dataclass(frozen=True)
class AlertState:
    alert_id: str
    rule: str
    rule_name: str
    kind: str  # diversion | camera
    zones: tuple[ZoneName, ...]
    threshold: float | None
    count_at_raise: float | None
    count_now: float | None  # people in its zones when this state was made; None: unknown
    status: StateStatus
    since: str  # when the condition began
    raised_at: str
    message: str  # the raised message, in the site's language
    accepted_by: str | None
    accepted_at: str | None
    pass_done_by: str | None
    pass_done_at: str | None
    escalations: int
    last_escalated_at: str | None
    cleared_at: str | None
    effect: Effect | None
    deliveries: tuple[dict[str, Any], ...]  # channel deliveries (issue #12 item 3)
    version: int
    # The latest ask (issue 13): which pass (1: the raise; 0: a camera alert, no passes), what
    # the rule measured, where the diversion is, the advice and the figures behind it (null
    # where unknown; all null for an alert raised before advice existed).
    passes: int = 0
    metric: str | None = None
    value: float | None = None
    point: str | None = None
    advice: tuple[dict[str, Any], ...] = ()
    figures: dict[str, Any] | None = None

    @property
    def open(self) -> bool:
        return self.status != "cleared"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["zones"] = list(data["zones"])
        data["deliveries"] = list(data["deliveries"])
        data["advice"] = list(data["advice"])
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))


def status_of(record: AlertRecord) -> StateStatus:
    """raised -> accepted -> pass_done; escalated while raised and not accepted; cleared last."""
    if record.cleared_at is not None:
        return "cleared"
    if record.pass_done_at is not None:
        return "pass_done"
    if record.acknowledged_at is not None:
        return "accepted"
    return "escalated" if record.escalations > 0 else "raised"


def build_state(
    record: AlertRecord,
    names: SiteNames,
    count_now: float | None,
    deliveries: Sequence[Mapping[str, Any]] = (),
) -> AlertState:
    """The state of `record`; `count_now` is its zones' count now (None: unknown), and
    `deliveries` its channel deliveries as docs/handheld.md lists them (issue #12 item 3)."""
    effect = None
    if record.effect_measured_at is not None:
        measured = names.local(record.effect_measured_at)
        assert measured is not None
        effect = Effect(record.count_at_ack, record.effect_count, measured)
    since, raised = names.local(record.since), names.local(record.raised_at)
    assert since is not None and raised is not None
    details = _details(record.details)
    advice, figures, value = details.get("advice"), details.get("figures"), details.get("value")
    if not isinstance(advice, list):
        advice = []
    return AlertState(
        alert_id=record.alert_id,
        rule=record.rule,
        rule_name=names.rule_name(record.rule),
        kind=record.kind,
        zones=tuple(ZoneName(z, names.zones.get(z, z)) for z in record.zones),
        threshold=record.threshold,
        count_at_raise=record.count_at_raise,
        count_now=count_now,
        status=status_of(record),
        since=since,
        raised_at=raised,
        message=record.message,
        accepted_by=record.acknowledged_by,
        accepted_at=names.local(record.acknowledged_at),
        pass_done_by=record.pass_done_by,
        pass_done_at=names.local(record.pass_done_at),
        escalations=record.escalations,
        last_escalated_at=names.local(record.last_notified_at) if record.escalations else None,
        cleared_at=names.local(record.cleared_at),
        effect=effect,
        deliveries=tuple(dict(d) for d in deliveries),
        version=record.version,
        passes=max(record.passes, 1) if record.kind == "diversion" else record.passes,
        metric=_text(details.get("metric")),
        value=float(value) if isinstance(value, int | float) and math.isfinite(value) else None,
        point=_text(details.get("point")),
        advice=tuple(dict(a) for a in advice if isinstance(a, dict)),
        figures=dict(figures) if isinstance(figures, dict) else None,
    )


def _details(text: str | None) -> dict[str, Any]:
    """The alert's details column (JSON written by the alert service); {} when there are
    none or they do not parse: a state is still shown, without advice. NaN and infinities
    (json.loads takes them) are null: a browser's JSON.parse refuses a state holding one."""
    if not text:
        return {}
    try:
        details = json.loads(text, parse_constant=lambda _c: None, parse_float=_finite_float)
    except ValueError:
        return {}
    return details if isinstance(details, dict) else {}


def _finite_float(text: str) -> float | None:
    value = float(text)  # 1e999 is inf
    return value if math.isfinite(value) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# --- answers to an acknowledgement, for the person who sent it -------------------------------

_ANSWERS = {
    "en": {
        "accepted": "accepted by {by} at {at}",
        "pass_done": "pass done by {by} at {at}",
        "already:accepted": "already accepted by {by} at {at}",
        "already:pass_done": "already marked pass done by {by} at {at}",
        "cleared:accepted": "cleared at {at}, nothing to accept",
        "cleared:pass_done": "cleared at {at}, no pass to record",
    },
    "zh-CN": {
        "accepted": "已由{by}于{at}确认",
        "pass_done": "{by}已于{at}完成疏导",
        "already:accepted": "已由{by}于{at}确认，无需重复",
        "already:pass_done": "{by}已于{at}报告完成疏导，无需重复",
        "cleared:accepted": "已于{at}解除，无需确认",
        "cleared:pass_done": "已于{at}解除，无需记录疏导",
    },
}


def ack_answer(
    outcome: AckOutcome,
    requested: Literal["accepted", "pass_done"],
    state: AlertState,
    language: str = "en",
) -> str:
    """What to tell the person who acknowledged: "already accepted by mgr-1 at 10:02" (site
    time, from the state itself), in `language` (the site's; English where unknown)."""
    texts = _ANSWERS.get(language, _ANSWERS["en"])
    if outcome == "cleared":
        return texts[f"cleared:{requested}"].format(at=_clock(state.cleared_at))
    if outcome == "already":
        key = f"already:{requested}"
    else:
        key = requested = outcome
    if requested == "accepted":
        by, at = state.accepted_by, state.accepted_at
    else:
        by, at = state.pass_done_by, state.pass_done_at
    return texts[key].format(by=by or "?", at=_clock(at))


def _clock(iso: str | None) -> str:
    """HH:MM of an ISO time that is already in the site's time zone."""
    return "?" if iso is None else datetime.fromisoformat(iso).strftime("%H:%M")
