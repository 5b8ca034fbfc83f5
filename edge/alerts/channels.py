"""The channels banks already use (WeCom, DingTalk, Feishu, e-mail, ntfy, a signed webhook):
their secrets, their URLs and what is said on them.

A channel's URL is apprise's (`wecombot://KEY`, `dingtalk://SECRET@TOKEN`, `feishu://TOKEN`,
`mailtos://user:password@smtp.bank.example?to=...`, `ntfys://host/topic`) or, for WeCom, the
webhook address the robot shows; the generic webhook's is a plain https URL. Each holds a key or
a password, so it comes from the environment or a file, and is kept in a `Secret` that neither
`repr` nor a log line shows; `redact` takes every part of it out of a text from outside (an
error from a library that quotes the URL it failed on).

Messages are rendered here when a delivery is planned, in the channel's language, from the
alert's record: the texts the handhelds get (edge/alerts/templates), under a short title.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from edge.alerts.messages import MessageCatalog
from edge.config import ChannelConfig, ChannelEvent, LobbyConfig
from edge.schedule import Schedule
from edge.store import AlertRecord

#: apprise's class for each kind (the webhook is ours: apprise's json:// cannot sign).
APPRISE_CLASSES = {
    "wecom": "NotifyWeComBot",
    "dingtalk": "NotifyDingTalk",
    "feishu": "NotifyFeishu",
    "email": "NotifyEmail",
    "ntfy": "NotifyNtfy",
}
#: The public host each robot service is reached at; `api_base` replaces it.
OFFICIAL_HOSTS = {
    "wecom": "qyapi.weixin.qq.com",
    "dingtalk": "oapi.dingtalk.com",
    "feishu": "open.feishu.cn",
}
#: How the URL of each kind is written, for error messages (never the URL itself).
URL_FORMS = {
    "wecom": "wecombot://KEY or https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY",
    "dingtalk": "dingtalk://TOKEN or dingtalk://SECRET@TOKEN (signed robot)",
    "feishu": "feishu://TOKEN",
    "email": "mailto://[user:password@]host[:port]?to=a@bank.example&from=b@bank.example "
    "(mailtos:// for TLS)",
    "ntfy": "ntfy://[user:password@]host[:port]/topic (ntfys:// for TLS)",
    "webhook": "https://host[:port]/path",
}
MAX_SECRET_BYTES = 4096


class ChannelError(ValueError):
    """A channel that cannot run as configured; the text names the channel, never its secret."""


@dataclass(frozen=True)
class Secret:
    """A value that must not be shown: repr and str say only how long it is."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Secret({len(self.value)} characters)"

    __str__ = __repr__


@dataclass(frozen=True)
class Channel:
    """A configured channel with its secrets read."""

    config: ChannelConfig
    url: Secret
    signing_secret: Secret | None
    language: str

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def kind(self) -> str:
        return self.config.kind

    def secrets(self) -> list[str]:
        """Every part of the URL and secret that could give them away, longest first."""
        values = [self.url.value]
        if self.signing_secret is not None:
            values.append(self.signing_secret.value)
        return secret_parts(values)


def secret_parts(values: Iterable[str]) -> list[str]:
    """The values and the pieces of them that could give a secret away, in raw and %-decoded
    form (a library's error may quote any of them), longest first: the password, the robot
    scheme's host (`wecombot://KEY`), and every user, path segment or query value that looks
    like a token (six characters or more with a digit, or twenty or more). Words such as
    `webhook` or `send` stay readable in errors."""
    parts: set[str] = set()
    for value in values:
        parts.add(value)
        try:
            split = urlsplit(value)
            always = [split.password or ""]
            if split.scheme not in ("http", "https", "mailto", "mailtos", "ntfy", "ntfys"):
                always.append(split.hostname or "")
            maybe = [split.username or "", *split.path.split("/")]
            maybe += [v for _, v in parse_qsl(split.query)]
        except ValueError:
            always, maybe = [], []
        for piece in [*always, *(p for p in maybe if _token_like(p))]:
            if piece:
                parts.update({piece, unquote(piece)})
    return sorted((p for p in parts if len(p) >= 4), key=len, reverse=True)


def _token_like(piece: str) -> bool:
    return len(piece) >= 20 or (len(piece) >= 6 and any(c.isdigit() for c in piece))


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret part replaced by ***."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def read_secret(env: str | None, path: Path | None, environ: Mapping[str, str]) -> str:
    """The value of an environment variable or a file's first line; ChannelError if missing."""
    if env is not None:
        value = environ.get(env, "").strip()
        if not value:
            raise ChannelError(f"environment variable {env} is not set")
        return value
    assert path is not None
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ChannelError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ChannelError(f"{path} is larger than {MAX_SECRET_BYTES} bytes: not a URL or secret")
    lines = data.decode("utf-8", "replace").splitlines()
    value = lines[0].strip() if lines else ""
    if not value:
        raise ChannelError(f"{path} is empty")
    return value


def url_problem(kind: str, url: str) -> str | None:
    """Why `url` is not a channel of `kind`, in words that do not quote it; None if it is."""
    if kind == "webhook":
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return f"not an http(s) URL with a host (expected {URL_FORMS[kind]})"
        return None
    plugin = instantiate(url)
    if plugin is None:
        return f"not a URL apprise can use (expected {URL_FORMS[kind]})"
    if type(plugin).__name__ != APPRISE_CLASSES[kind]:
        return (
            f"a URL for {getattr(plugin, 'service_name', type(plugin).__name__)}, not {kind} "
            f"(expected {URL_FORMS[kind]})"
        )
    return None


def instantiate(url: str) -> Any:
    """apprise's notifier for `url` (None when it cannot parse it), redirects refused."""
    import apprise  # here: only the sender process and the config checks need it

    asset = apprise.AppriseAsset(http_redirects=False, secure_logging=True)
    return apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)


def resolve(config: ChannelConfig, default_language: str, environ: Mapping[str, str]) -> Channel:
    """The channel with its URL and secret read and checked; ChannelError says what is wrong."""
    try:
        url = read_secret(config.url_env, config.url_file, environ)
        secret = None
        if config.kind == "webhook":
            secret = read_secret(config.secret_env, config.secret_file, environ)
    except ChannelError as exc:
        raise ChannelError(f"channel {config.id!r}: {exc}") from None
    problem = url_problem(config.kind, url)
    if problem:
        where = config.url_env or str(config.url_file)
        raise ChannelError(f"channel {config.id!r}: the URL in {where} is {problem}")
    return Channel(
        config=config,
        url=Secret(url),
        signing_secret=None if secret is None else Secret(secret),
        language=config.language or default_language,
    )


def resolve_all(
    config: LobbyConfig, environ: Mapping[str, str]
) -> tuple[list[Channel], dict[str, str]]:
    """The channels that can run, and for each that cannot (by id), why not."""
    channels: list[Channel] = []
    problems: dict[str, str] = {}
    for channel in config.alerts.channels:
        try:
            channels.append(resolve(channel, config.alerts.language, environ))
        except ChannelError as exc:
            problems[channel.id] = str(exc)
    return channels, problems


# --- what is said ---------------------------------------------------------------------------

_TITLES = {
    "en": {
        "raised": "Waiting area busy",
        "escalated": "Not acknowledged ({number})",
        "accepted": "Alert accepted",
        "pass_done": "Diversion pass done",
        "cleared": "Back to normal",
        "camera_raised": "Camera offline",
        "camera_cleared": "Camera back online",
        "digest": "{n} alert updates",
    },
    "zh-CN": {
        "raised": "等候区客流较多",
        "escalated": "尚未确认（第{number}次提醒）",
        "accepted": "已接单",
        "pass_done": "分流已完成",
        "cleared": "已恢复正常",
        "camera_raised": "摄像头离线",
        "camera_cleared": "摄像头已恢复",
        "digest": "{n}条告警更新",
    },
}
_TEXTS = {
    "en": {
        "accepted": "Accepted by {by} at {at}: {count} people in {zones}.",
        "pass_done": "Diversion pass in {zones} done by {by} at {at}.",
        "unknown": "unknown",
    },
    "zh-CN": {
        "accepted": "{by}已于{at}接单：{zones}有{count}人等候。",
        "pass_done": "{by}已于{at}完成{zones}的分流。",
        "unknown": "未知",
    },
}


@dataclass(frozen=True)
class Message:
    """What one delivery says: a title, the text, and the webhook's JSON body."""

    title: str
    body: str
    payload: dict[str, Any]


class Renderer:
    """Texts for the site's channels, one message catalog per language used."""

    def __init__(self, config: LobbyConfig) -> None:
        self.config = config
        self.schedule = Schedule(config.alerts.schedule, config.site.timezone)
        self._catalogs: dict[str, MessageCatalog] = {}
        self._zone_names = {z.id: z.name or z.id for c in config.cameras for z in c.zones}
        self._rule_names = {r.id: r.name or r.id for r in config.alerts.rules}
        self.site_name = config.site.name or config.site.id

    def catalog(self, language: str) -> MessageCatalog:
        if language not in self._catalogs:
            self._catalogs[language] = MessageCatalog(language, self.config.alerts.templates_dir)
        return self._catalogs[language]

    def local(self, at: datetime) -> datetime:
        return self.schedule.local(at)

    def render(
        self,
        channel: Channel,
        alert: AlertRecord,
        event: ChannelEvent,
        number: int,
        at: datetime,
        count: float | None,
    ) -> Message:
        """The message for `event` of `alert` on `channel`; `count` is the people in the alert's
        zones at the event (for an escalation, now), `at` when it happened (UTC)."""
        language = channel.language
        catalog = self.catalog(language)
        zones = [self._zone_names.get(z, z) for z in alert.zones]
        since = self.local(alert.since).strftime("%H:%M")
        camera = alert.kind == "camera"
        titles = _TITLES[language]
        if camera:
            camera_id = alert.rule.removeprefix("camera-")
            key = "camera_offline" if event == "raised" else "camera_online"
            body = catalog.render(key, camera=camera_id, since=since)
            title = titles["camera_raised" if event == "raised" else "camera_cleared"]
        elif event in ("raised", "escalated", "cleared"):
            body = catalog.render(
                event, count=count, zones=zones, since=since, number=number,
                rule=self._rule_names.get(alert.rule, alert.rule),
            )  # fmt: skip
            title = titles[event].format(number=number)
        else:
            by = (alert.acknowledged_by if event == "accepted" else alert.pass_done_by) or "?"
            shown = _TEXTS[language]["unknown"] if count is None else f"{count:g}"
            body = _TEXTS[language][event].format(
                by=by, at=self.local(at).strftime("%H:%M"), count=shown,
                zones=catalog.separator.join(zones),
            )  # fmt: skip
            title = titles[event]
        title = f"[{self.site_name}] {title}"
        payload = {
            "event": event,
            "site": {"id": self.config.site.id, "name": self.site_name},
            "alert_id": alert.alert_id,
            "rule": alert.rule,
            "rule_name": self._rule_names.get(alert.rule, alert.rule),
            "kind": alert.kind,
            "zones": [{"id": z, "name": self._zone_names.get(z, z)} for z in alert.zones],
            "threshold": alert.threshold,
            "count": count,
            "escalation": number,
            "by": alert.acknowledged_by if event == "accepted" else
                  alert.pass_done_by if event == "pass_done" else None,
            "at": self.local(at).isoformat(),
            "raised_at": self.local(alert.raised_at).isoformat(),
            "title": title,
            "text": body,
            "language": language,
            "audience": channel.config.audience,
        }  # fmt: skip
        return Message(title=title, body=body, payload=payload)

    def digest(
        self, language: str, titles_and_bodies: Sequence[tuple[str, str]]
    ) -> tuple[str, str]:
        """One message for several held back by a channel's rate limit, oldest first."""
        title = f"[{self.site_name}] " + _TITLES[language]["digest"].format(
            n=len(titles_and_bodies)
        )
        strip = f"[{self.site_name}] "
        body = "\n\n".join(f"{t.removeprefix(strip)}: {b}" for t, b in titles_and_bodies)
        return title, body


# --- the signed webhook ------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Lobbywatch-Signature"
TIMESTAMP_HEADER = "X-Lobbywatch-Timestamp"
DELIVERY_HEADER = "X-Lobbywatch-Delivery"
#: Seconds a receiver should accept between the timestamp and its own clock (docs/handheld.md).
REPLAY_WINDOW_S = 300


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256, keyed with the secret, of `<timestamp>.` and the body:
    the timestamp is signed with the body, so an old request cannot be replayed as a new one."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    window_s: float = REPLAY_WINDOW_S,
) -> str | None:
    """What a receiver checks; None when the request is genuine and fresh, else why not."""
    try:
        timestamp = int(headers.get(TIMESTAMP_HEADER, ""))
    except ValueError:
        return "no timestamp"
    if abs(now - timestamp) > window_s:
        return "timestamp outside the replay window"
    expected = sign_webhook(secret, timestamp, body)
    if not hmac.compare_digest(expected, headers.get(SIGNATURE_HEADER, "")):
        return "signature does not match"
    return None
