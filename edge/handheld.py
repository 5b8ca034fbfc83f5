"""The reference handheld: the lobby manager's side of the MQTT contract.

It knows alerts, not messages: each alert's retained state (docs/handheld.md) and the retained
index of the open set tell it what is open now, whenever it connects, and who accepted what; the
alert messages (de-duplicated on message_id) still count for a device that publishes no states.
Alerts are numbered as they appear and keep their number, so `a 2` means one alert, never a
cleared one. Acks are answered from the state that comes back: "accepted", or "already accepted
by mgr-1 at 10:02". Both the terminal client (`lobbywatch handheld`) and the client the tests use.

The connection is never silent: every change between connected and not connected (and of the
reason: connection refused, a failed DNS lookup, a refused login, TLS, a port where no MQTT
broker answers) goes to on_status, while paho keeps retrying with its bounded backoff.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig
from edge.mqtt import Topics, connect_persistent, make_client, no_mqtt_answer

log = logging.getLogger("lobbywatch.handheld")

Alert = dict[str, Any]


@dataclass(frozen=True)
class LinkStatus:
    """The handheld's broker connection as its user must see it. reason: why it is not
    connected (or "connected"); failures: failed attempts since the last connection."""

    connected: bool
    reason: str
    failures: int = 0


def describe_connect_error(exc: BaseException | None, host: str, port: int) -> str:
    """Why a TCP/TLS connection to the broker failed, in words a lobby manager can pass on."""
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup of {host} failed ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {host}:{port} (no broker listening there?)"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return f"no answer from {host}:{port} (timed out)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the broker's TLS certificate was not accepted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {host}:{port} failed ({exc.reason or exc})"
    if isinstance(exc, OSError):
        return f"cannot connect to {host}:{port} ({exc.strerror or exc})"
    return f"cannot connect to {host}:{port}"


# --- what the handheld knows of each alert (pure) ---------------------------------------------

ChangeKind = Literal[
    "raised", "escalated", "reasked", "accepted", "pass_done", "effect", "cleared"
]
AckStatus = Literal["accepted", "pass_done"]


@dataclass
class Entry:
    """One alert as the handheld knows it: its number here, its latest state (the device's,
    or one made from its messages while no state came: `version` None)."""

    number: int
    state: Alert
    version: int | None = None

    @property
    def alert_id(self) -> str:
        return str(self.state["alert_id"])

    @property
    def status(self) -> str:
        return str(self.state.get("status", "raised"))

    @property
    def open(self) -> bool:
        return self.status != "cleared"


@dataclass(frozen=True)
class Change:
    """What changed, with the alert's state as it was then (the entry moves on)."""

    kind: ChangeKind
    entry: Entry
    state: Alert


class AlertBook:
    """The alerts a handheld knows, numbered in the order they appeared (a number is never
    reused). States replace what messages said, a newer version an older one; each change
    (raised, escalated n, accepted, pass done, effect, cleared) is reported once, whichever
    topics brought it and however often."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._numbers: dict[int, str] = {}

    def get(self, alert_id: str) -> Entry | None:
        return self._entries.get(alert_id)

    def number(self, n: int) -> Entry | None:
        alert_id = self._numbers.get(n)
        return None if alert_id is None else self._entries[alert_id]

    def entries(self, *, only_open: bool = False) -> list[Entry]:
        found = sorted(self._entries.values(), key=lambda e: e.number)
        return [e for e in found if e.open] if only_open else found

    def apply_state(self, alert_id: str, state: Alert | None) -> list[Change]:
        """A retained state (None: its retained message was removed: it is not open)."""
        entry = self._entries.get(alert_id)
        if state is None:
            if entry is None or not entry.open:
                return []
            return self._update(entry, {**entry.state, "status": "cleared"}, entry.version)
        version = _int(state.get("version"))
        if entry is not None and entry.version is not None and (version or 0) < entry.version:
            return []  # an older state, redelivered late
        return self._update(entry, {**state, "alert_id": alert_id}, version)

    def apply_index(self, index: Alert) -> list[Change]:
        """The open set at a version: an alert not in it whose state is no newer is gone."""
        version, open_ids = _int(index.get("version")), set(index.get("alerts") or ())
        changes: list[Change] = []
        for entry in self.entries(only_open=True):
            newer = entry.version is not None and version is not None and entry.version > version
            if entry.alert_id not in open_ids and not newer:
                changes += self._update(entry, {**entry.state, "status": "cleared"}, entry.version)
        return changes

    def apply_message(self, message: Alert) -> list[Change]:
        """An alert message (raised, escalated, cleared): counts only for what no state said."""
        alert_id = str(message.get("alert_id"))
        entry = self._entries.get(alert_id)
        if entry is not None and entry.version is not None:
            return []  # the device publishes states: they say it all, in order
        kind = message.get("kind")
        state: Alert = dict(entry.state) if entry is not None else _state_of(message)
        if kind == "escalated":
            state["escalations"] = max(
                _whole(state, "escalations"), _int(message.get("escalation")) or 1
            )
            state["last_escalated_at"] = message.get("at")
            if state.get("status") == "raised":
                state["status"] = "escalated"
        elif kind == "cleared":
            state["status"], state["cleared_at"] = "cleared", message.get("at")
        elif kind != "raised":
            return []
        return self._update(entry, state, None)

    def _update(self, entry: Entry | None, state: Alert, version: int | None) -> list[Change]:
        if entry is None:
            if state.get("status") == "cleared":
                return []  # cleared before we ever saw it open: nothing to show
            entry = Entry(len(self._numbers) + 1, state, version)
            self._entries[entry.alert_id] = entry
            self._numbers[entry.number] = entry.alert_id
            return [Change("raised", entry, state)]
        before = entry.state
        entry.state, entry.version = state, version if version is not None else entry.version
        changes: list[Change] = []
        # A done pass asked again (issue 13): the ask is new, so what follows is reported anew.
        # Counts that are no whole number (a state from anyone who can publish) count as 0.
        if _whole(state, "passes") > max(_whole(before, "passes"), 1):
            changes.append(Change("reasked", entry, state))
        if _whole(state, "escalations") > _whole(before, "escalations"):
            changes.append(Change("escalated", entry, state))
        for key, kind in (("accepted_by", "accepted"), ("pass_done_by", "pass_done")):
            if state.get(key) and not before.get(key):
                changes.append(Change(kind, entry, state))  # type: ignore[arg-type]
        if state.get("effect") and not before.get("effect"):
            changes.append(Change("effect", entry, state))
        if state.get("status") == "cleared" and before.get("status") != "cleared":
            changes.append(Change("cleared", entry, state))
        return changes


def _state_of(message: Alert) -> Alert:
    """A state made from an alert message, for a device that publishes none."""
    return {
        "alert_id": message.get("alert_id"),
        "rule": message.get("rule"),
        "kind": "camera" if message.get("audience") == "it" else "diversion",
        "zones": [{"id": z, "name": n} for z, n in
                  zip(message.get("zones") or [], message.get("zone_names") or [], strict=False)],
        "threshold": message.get("threshold"),
        "count_at_raise": message.get("count"),
        "status": "raised",
        "since": message.get("since"),
        "raised_at": message.get("at"),
        "message": message.get("message"),
        "escalations": 0,
    }  # fmt: skip


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _whole(state: Alert, key: str) -> int:
    return _int(state.get(key)) or 0


def _pass_of(state: Alert) -> int | None:
    """The pass a state shows (1 for a raise, 2 once asked again...); None where it shows none:
    a camera alert (0), a device before issue 13, a state made from messages."""
    number = _int(state.get("passes"))
    return number if number is not None and number >= 1 else None


# --- the client --------------------------------------------------------------------------


@dataclass(frozen=True)
class AckAnswer:
    """What became of an ack: result accepted / pass_done (this one counted), already (an
    earlier one stands), cleared, unknown, not_sent, no_answer; `message` says it to a person."""

    result: str
    message: str


class Handheld:
    def __init__(
        self,
        config: MqttConfig,
        site_id: str,
        name: str,
        *,
        topics: tuple[str, ...] = ("alerts",),
        timezone: str = "UTC",
        on_alert: Callable[[Alert], None] = lambda _alert: None,
        on_change: Callable[[Change], None] = lambda _change: None,
        on_status: Callable[[LinkStatus], None] = lambda _status: None,
    ) -> None:
        self.name = name
        self.topics = Topics(config.topic_prefix, site_id)
        self.tz = ZoneInfo(timezone)
        # The alert states and the open index first: a handheld that connects late sees what is
        # open now from them; the message topics follow.
        self._subscriptions = [self.topics.state_filter, self.topics.alerts_open] + [
            f"{self.topics.base}/{t}" for t in topics
        ]
        self._on_alert = on_alert
        self._on_change = on_change
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seen: set[str] = set()
        self.book = AlertBook()
        self.received: list[Alert] = []  # unique messages, in arrival order
        self.deliveries = 0  # every delivery, duplicates included
        self.connected = threading.Event()
        self._answered = False  # a CONNACK came for the current attempt
        self._on_status = on_status
        self.status = LinkStatus(False, "not connected yet")
        # The broker (deploy/mosquitto) replaces this id by the username: one session per account.
        self.client = make_client(config, f"handheld-{site_id}-{name}")
        self.client.on_connect = self._handle_connect
        self.client.on_connect_fail = self._handle_connect_fail
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_message = self._handle_message
        self._config = config

    def start(self) -> None:
        connect_persistent(self.client, self._config)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def ack(
        self,
        alert_id: str,
        status: str = "accepted",
        timeout: float = 5.0,
        *,
        number: int | None = None,
    ) -> bool:
        """Publish an acknowledgement for pass `number` (None: the latest, as handhelds before
        issue 13 did); True once the broker has it."""
        ack: dict[str, Any] = {"by": self.name, "status": status}
        if number is not None:
            ack["pass"] = number
        payload = json.dumps(ack)
        info = self.client.publish(self.topics.ack(alert_id), payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def request(self, alert_id: str, status: AckStatus, timeout: float = 5.0) -> AckAnswer:
        """Acknowledge an alert and say what became of it, from the state the device publishes
        in answer: "accepted", or "already accepted by mgr-1 at 10:02" when a colleague was
        first. What the state already says (cleared, accepted, pass done) is answered at once,
        without sending: a state only moves forward."""
        with self._lock:
            entry = self.book.get(alert_id)
            early = None if entry is None else self._settled(entry, status)
            # The pass shown: the device takes the ack for no other (a redelivery of pass 1's
            # done, or one sent as pass 2 is asked, must not take pass 2).
            number = None if entry is None else _pass_of(entry.state)
        if early is not None:
            return early
        if not self.ack(alert_id, status, timeout, number=number):
            return AckAnswer("not_sent", "not sent: no broker connection")
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                entry = self.book.get(alert_id)
                answer = None if entry is None else self._settled(entry, status, mine=True)
                if answer is not None:
                    return answer
                now = None if entry is None else _pass_of(entry.state)
                if entry is not None and number is not None and now is not None and now != number:
                    # the device took nothing: it waits for the new pass
                    said = f"#{entry.number} that was pass {number}: pass {now} is asked now"
                    return AckAnswer("already", said)
                left = deadline - time.monotonic()
                if left <= 0:
                    return AckAnswer(
                        "no_answer", "sent; no answer from the device yet (is it running?)"
                    )
                self._changed.wait(left)

    def _settled(self, entry: Entry, status: AckStatus, *, mine: bool = False) -> AckAnswer | None:
        """The answer the state gives, if it gives one (the caller holds the lock). As the
        device answers: a cleared alert takes no ack, whoever had acked it before."""
        state = entry.state
        by_key, at_key = ("accepted_by", "accepted_at") if status == "accepted" else (
            "pass_done_by", "pass_done_at")  # fmt: skip
        by = state.get(by_key)
        when = self.site_time(state.get(at_key))
        if mine and by == self.name:  # ours counted (it may have cleared since)
            done = "accepted" if status == "accepted" else "pass done"
            return AckAnswer(status, f"#{entry.number} {done} by you at {when}")
        # A pass accepted before the alert cleared may be what cleared it: the device takes its
        # pass done, for the effect (docs/queueing.md, Passes and their effect).
        late_pass = status == "pass_done" and state.get("accepted_by") and not by
        if not entry.open and not late_pass:
            cleared = self.site_time(state.get("cleared_at"))
            nothing = "nothing to accept" if status == "accepted" else "no pass to record"
            return AckAnswer("cleared", f"#{entry.number} cleared at {cleared}, {nothing}")
        if by:
            what = "accepted" if status == "accepted" else "marked pass done"
            return AckAnswer("already", f"#{entry.number} already {what} by {by} at {when}")
        return None

    def site_time(self, iso: object) -> str:
        """HH:MM in the site's time zone of an ISO time (a state's site time or a message's
        UTC one)."""
        at = parse_time(iso)
        return "?" if at is None else at.astimezone(self.tz).strftime("%H:%M")

    def alerts(self) -> list[Alert]:
        with self._lock:
            return list(self.received)

    def entries(self, *, only_open: bool = False) -> list[Entry]:
        with self._lock:
            return self.book.entries(only_open=only_open)

    def entry(self, number: int) -> Entry | None:
        """The alert shown as #number."""
        with self._lock:
            return self.book.number(number)

    def _handle_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason_code: ReasonCode, _p: Any
    ) -> None:
        self._answered = True
        if reason_code.is_failure:
            log.error("broker refused the handheld: %s", reason_code)
            self._report(False, f"the broker refused the login ({reason_code})")
            return
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()
        self._report(True, "connected")

    def _handle_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        # paho calls this inside its `except OSError` around the connect attempt: the exception
        # being handled is the reason.
        self._report(
            False,
            describe_connect_error(sys.exc_info()[1], self._config.host, self._config.port),
        )

    def _handle_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason_code: ReasonCode, _p: Any
    ) -> None:
        was_connected = self.connected.is_set()
        answered, self._answered = self._answered, False
        self.connected.clear()
        if was_connected and reason_code != 0:  # 0: our own disconnect()
            self._report(False, f"lost the broker connection ({reason_code})")
        elif not was_connected and not answered:
            # The port took the TCP connection and then said nothing MQTT (a WebSocket or TLS
            # listener, a web server, a silent service): paho reports that nowhere else, and
            # the handheld looked like it was waiting for alerts.
            where = f"{self._config.host}:{self._config.port}"
            self._report(False, f"{where}: {no_mqtt_answer(reason_code)}")

    def _report(self, connected: bool, reason: str) -> None:
        """Record the link's status; tell on_status when it changed (not on every retry)."""
        with self._lock:
            previous = self.status
            failures = 0 if connected else previous.failures + 1
            self.status = LinkStatus(connected, reason, failures)
            changed = (previous.connected, previous.reason) != (connected, reason)
        if changed:
            self._on_status(self.status)

    def _handle_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        state_of = self.topics.alert_id_of_state(msg.topic)
        if state_of is not None or msg.topic == self.topics.alerts_open:
            self._handle_state(msg.topic, state_of, bytes(msg.payload))
            return
        try:
            alert = json.loads(msg.payload)
            key = str(alert["message_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed alert on %s", msg.topic)
            return
        with self._lock:
            self.deliveries += 1
            if key in self._seen:
                return
            self._seen.add(key)
            self.received.append(alert)
            changes = self.book.apply_message(alert)
            self._changed.notify_all()
        self._on_alert(alert)
        self._tell(changes)

    def _handle_state(self, topic: str, alert_id: str | None, payload: bytes) -> None:
        try:
            data = json.loads(payload) if payload else None
            if data is not None and not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            log.warning("ignoring a malformed alert state on %s", topic)
            return
        with self._lock:
            if alert_id is None:
                changes = self.book.apply_index(data) if data is not None else []
            else:
                changes = self.book.apply_state(alert_id, data)
            self._changed.notify_all()
        self._tell(changes)

    def _tell(self, changes: Iterable[Change]) -> None:
        for change in changes:
            try:
                self._on_change(change)
            except Exception:
                log.exception("showing an alert change failed")


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time with an offset or a Z; None when it is none."""
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


# --- what the terminal shows -------------------------------------------------------------


def describe(change: Change, clock: Callable[[object], str]) -> str:
    """One line (two for a new alert) for a change, every time in the site's time zone."""
    entry, state = change.entry, change.state
    n = f"#{entry.number}"
    if change.kind == "raised":  # for a handheld that comes late, what became of it so far
        now = f" - {status_of(state, clock)}" if state.get("status") != "raised" else ""
        return f"{n} {headline(state, clock)}{now}\n    {state.get('message') or ''}".rstrip()
    if change.kind == "escalated":
        at = clock(state.get("last_escalated_at"))
        return f"{n} ESCALATED to the supervisor ({state.get('escalations')}) at {at}: not accepted yet"
    if change.kind == "reasked":
        return (f"{n} ASKED AGAIN: pass {state.get('passes')}, still over the threshold after "
                f"the last one\n    {state.get('message') or ''}").rstrip()  # fmt: skip
    if change.kind == "accepted":
        return f"{n} accepted by {state.get('accepted_by')} at {clock(state.get('accepted_at'))}"
    if change.kind == "pass_done":
        return f"{n} pass done by {state.get('pass_done_by')} at {clock(state.get('pass_done_at'))}"
    if change.kind == "effect":
        effect = state.get("effect") or {}
        return (f"{n} effect of the pass: {_count(effect.get('count_at_pass'))} -> "
                f"{_count(effect.get('count_after'))} waiting")  # fmt: skip
    return f"{n} cleared at {clock(state.get('cleared_at'))}"


def headline(state: Alert, clock: Callable[[object], str]) -> str:
    zones = ", ".join(str(z.get("name") or z.get("id")) for z in state.get("zones") or [])
    kind = "IT" if state.get("kind") == "camera" else "ALERT"
    return (f"{kind} {clock(state.get('raised_at'))} {state.get('rule_name') or state.get('rule')}"
            f" ({_count(state.get('count_at_raise'))} people in {zones or '?'})")  # fmt: skip


def list_lines(entries: list[Entry], clock: Callable[[object], str]) -> list[str]:
    """The open alerts with their state, for `l`."""
    if not entries:
        return ["no open alerts"]
    return [f"#{e.number} {headline(e.state, clock)}: {status_of(e.state, clock)}" for e in entries]


def status_of(state: Alert, clock: Callable[[object], str]) -> str:
    """ "accepted by mgr-1 at 10:02", "escalated (2)", "raised"..."""
    status = str(state.get("status") or "raised")
    text = status.replace("_", " ")
    if status == "pass_done" and state.get("pass_done_by"):
        text += f" by {state['pass_done_by']} at {clock(state.get('pass_done_at'))}"
    elif status == "accepted" and state.get("accepted_by"):
        text += f" by {state['accepted_by']} at {clock(state.get('accepted_at'))}"
    elif status == "escalated":
        text += f" ({state.get('escalations')})"
    elif status == "cleared":
        text += f" at {clock(state.get('cleared_at'))}"
    return text


def _count(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


HELP = "commands: l (list open alerts), a N (accept alert N), d N (pass done), q (quit)"


class Terminal:
    """`lobbywatch handheld`: prints each change as it comes and reads commands from `lines`.

    The handheld's own accept or pass done is said once, by the answer to the command ("#1
    accepted by you at 10:02"); its state change is printed only if that answer came too late.
    """

    def __init__(self, echo: Callable[[str], None], lines: Iterable[str] | None = None) -> None:
        self.echo = echo
        self.lines: Iterable[str] = sys.stdin if lines is None else lines
        self.client: Handheld | None = None
        self._late: set[tuple[str, str]] = set()  # (alert id, status) sent, answer still due

    def show(self, change: Change) -> None:
        client = self.client
        if client is None:
            return
        state = change.state
        if change.kind in ("accepted", "pass_done"):
            mine = state.get(f"{change.kind}_by") == client.name
            if mine and (change.entry.alert_id, change.kind) not in self._late:
                return  # the command's answer says it
        self.echo(describe(change, client.site_time))

    def run(self) -> None:
        assert self.client is not None
        for line in self.lines:
            command, _, arg = line.strip().partition(" ")
            if command == "q":
                return
            if command == "l":
                for text in list_lines(self.client.entries(only_open=True), self.client.site_time):
                    self.echo(text)
            elif command in ("a", "d") and arg.strip().isdigit():
                self.acknowledge(int(arg), "accepted" if command == "a" else "pass_done")
            elif command:
                self.echo(HELP)

    def acknowledge(self, number: int, status: AckStatus) -> None:
        assert self.client is not None
        entry = self.client.entry(number)
        if entry is None:
            self.echo(f"no alert #{number} (l lists the open ones)")
            return
        answer = self.client.request(entry.alert_id, status)
        if answer.result == "no_answer":
            self._late.add((entry.alert_id, status))
        self.echo(answer.message)
