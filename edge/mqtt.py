"""The device's MQTT connection (paho, MQTT v5): the contract in docs/mqtt.md made concrete.

Last will before connect, availability and retained state republished on every connect,
subscriptions renewed in on_connect, bounded reconnect backoff (paho's own, with loop_start),
TLS and credentials from config or environment, never logged. The persistent session
(clean_start=False plus a session expiry) lets the broker keep acknowledgements a handheld sends
while the device is briefly away.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig
from edge.logsafe import LogThrottle, shorten

log = logging.getLogger("lobbywatch.mqtt")

SESSION_EXPIRY_S = 86400
#: While the broker stays unreachable, repeat the reason at most this often (the first failure,
#: and any change of reason, are logged at once).
REPEAT_FAILURE_S = 60.0

#: What an alert id can look like (a rule or camera id, a time, a suffix: see new_alert_id):
#: anything else in an ack topic is not ours and goes nowhere near the store or the log.
_ALERT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,159}")

LinkStateName = Literal["connecting", "connected", "disconnected", "refused", "stopped"]


@dataclass(frozen=True)
class LinkState:
    """The broker connection as the device sees it. `since` (UTC) is when this state began;
    `reason` says why it is not connected; `attempts` counts failed connects since then."""

    state: LinkStateName
    since: datetime
    reason: str | None = None
    attempts: int = 0


class Client(mqtt.Client):
    """paho's client, keeping why the last connection attempt failed: paho's on_connect_fail
    is told nothing, and "not connected" without a reason sends IT looking in the wrong place."""

    last_connect_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            result = super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return result


def describe_connect_error(exc: OSError | None) -> str:
    """A reason IT can act on: "connection refused", "name or service not known"..."""
    if exc is None:
        return "connection failed"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[0].lower() + text[1:] if text else type(exc).__name__


@dataclass(frozen=True)
class Topics:
    """Every topic is under <prefix>/<site id>/."""

    prefix: str
    site: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def alerts(self) -> str:
        return f"{self.base}/alerts"

    @property
    def supervisor_alerts(self) -> str:
        return f"{self.base}/supervisor/alerts"

    @property
    def it_alerts(self) -> str:
        return f"{self.base}/it/alerts"

    @property
    def ack_filter(self) -> str:
        return f"{self.base}/alerts/+/ack"

    @property
    def state_filter(self) -> str:
        return f"{self.base}/alerts/+/state"

    @property
    def alerts_open(self) -> str:
        """The retained index of open alerts (docs/handheld.md)."""
        return f"{self.base}/alerts/open"

    @property
    def queue(self) -> str:
        """The retained queue state: wait, forecast, kiosks, counters (docs/queueing.md)."""
        return f"{self.base}/queue"

    @property
    def ticket_events(self) -> str:
        """Where the branch's ticket machine sends its events (docs/queueing.md)."""
        return f"{self.base}/tickets/events"

    def alert_state(self, alert_id: str) -> str:
        """An alert's retained state (docs/handheld.md)."""
        return f"{self.base}/alerts/{alert_id}/state"

    def camera_status(self, camera_id: str) -> str:
        return f"{self.base}/camera/{camera_id}/status"

    def zone_occupancy(self, zone_id: str) -> str:
        return f"{self.base}/zone/{zone_id}/occupancy"

    def rule_state(self, rule_id: str) -> str:
        """ON while an alert of the rule is open, else OFF (retained; Home Assistant's binary
        sensor per rule reads it)."""
        return f"{self.base}/rule/{rule_id}/state"

    def ack(self, alert_id: str) -> str:
        return f"{self.base}/alerts/{alert_id}/ack"

    def alert_id_of_ack(self, topic: str) -> str | None:
        """The alert id in an ack topic, or None when the topic is not one."""
        return self._alert_id_in(topic, "/ack")

    def alert_id_of_state(self, topic: str) -> str | None:
        """The alert id in a state topic, or None when the topic is not one."""
        return self._alert_id_in(topic, "/state")

    def _alert_id_in(self, topic: str, tail: str) -> str | None:
        head = f"{self.base}/alerts/"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        alert_id = topic[len(head) : -len(tail)]
        return alert_id if _ALERT_ID.fullmatch(alert_id) else None


def read_password(config: MqttConfig) -> str | None:
    if config.password is not None:
        return config.password.get_secret_value()
    if config.password_file is not None:
        lines = config.password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    return None


def make_client(config: MqttConfig, client_id: str) -> Client:
    """A configured, not yet connected paho client (credentials, TLS, backoff)."""
    client = Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    if config.username is not None:
        client.username_pw_set(config.username, read_password(config))
    if config.tls.enabled:
        client.tls_set(
            ca_certs=str(config.tls.ca_file) if config.tls.ca_file else None,
            certfile=str(config.tls.cert_file) if config.tls.cert_file else None,
            keyfile=str(config.tls.key_file) if config.tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        client.tls_insecure_set(config.tls.insecure)
    client.reconnect_delay_set(
        min_delay=max(1, round(config.reconnect_min_s)), max_delay=round(config.reconnect_max_s)
    )
    # A bug in a callback must not end paho's network thread (and with it every alert): paho
    # then reports it through on_log and goes on. Only that is logged: paho's other errors
    # ("Client is not connected" on every retry) repeat what the link says once, with a reason.
    client.suppress_exceptions = True
    client.on_log = _paho_log
    return client


def _paho_log(_client: mqtt.Client, _userdata: Any, _level: int, text: str) -> None:
    if text.startswith("Caught exception"):
        log.error("paho: %s", text)


def connect_persistent(client: mqtt.Client, config: MqttConfig) -> None:
    """Connect in the background with a persistent session (clean start off, session expiry),
    so the broker keeps QoS 1 messages for this client while it is away; paho reconnects."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    client.connect_async(
        config.host, config.port, keepalive=config.keepalive_s, clean_start=False, properties=props
    )
    client.loop_start()


def no_mqtt_answer(reason_code: ReasonCode | int) -> str:
    """Why a connection that reached the port got no CONNACK, from paho's disconnect reason:
    "keep alive timeout" (the server said nothing) or an error (it closed or sent non-MQTT)."""
    if "keep alive" in str(reason_code).lower():
        return "no MQTT answer from the server on that port (not the broker's MQTT port, or TLS?)"
    return "the server on that port closed the connection without an MQTT answer (not the broker's MQTT port? a WebSocket or TLS listener?)"


def publish_properties(expiry_s: int | None) -> Properties | None:
    if expiry_s is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = max(1, int(expiry_s))
    return props


class MqttLink:
    """The device's one connection to the broker.

    on_connected runs in paho's thread after each (re)connect, once availability is online and
    subscriptions are renewed: republish retained state there. on_ack gets (alert id, payload)
    of each ack message; on_retained_state gets the alert id of each retained alert state the
    broker holds for this site, as the broker sends them on every (re)connect (the alert state
    publisher removes those that are no longer open). PUBACKs arrive in `acked` as (mid, ok,
    monotonic time it came) for the outbox publisher, and on_acked is called at once so the
    publisher records them without waiting for its tick (the time is taken here so the alert
    latency it measures does not include the wait for the publisher's thread).
    on_ticket_events gets the payload of each message on the ticket machine's topic.
    `state` says whether the broker is reachable, and why not; failures are logged with their
    reason at once and then at most every REPEAT_FAILURE_S.
    """

    def __init__(
        self,
        config: MqttConfig,
        site_id: str,
        *,
        on_connected: Callable[[], None] = lambda: None,
        on_connection_change: Callable[[bool], None] = lambda _up: None,
        on_ack: Callable[[str, bytes], object] = lambda _id, _payload: None,
        on_retained_state: Callable[[str], None] = lambda _id: None,
        on_acked: Callable[[], None] = lambda: None,
        on_ticket_events: Callable[[bytes], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix, site_id)
        self.client_id = config.client_id or f"lobbywatch-{site_id}"
        self._on_connected = on_connected
        self._on_connection_change = on_connection_change
        self._on_ack = on_ack
        self._on_retained_state = on_retained_state
        self._on_acked = on_acked
        self._on_ticket_events = on_ticket_events
        #: Other topic filters to subscribe to on every connect, and who gets their messages.
        self._watches: list[tuple[str, Callable[[str, bytes, bool], None]]] = []
        #: Successful connects so far: who publishes once per connection compares it.
        self.connections = 0
        self._answered = False  # a CONNACK came for the current attempt
        self._clock = clock
        self._wall = wall_clock
        self.connected = threading.Event()
        self._stopping = False
        self._state_lock = threading.Lock()
        self._state = LinkState("connecting", wall_clock())
        self._last_failure_log = -REPEAT_FAILURE_S
        self._unexpected = LogThrottle(log, clock=clock)
        self.acked: queue.SimpleQueue[tuple[int, bool, float]] = queue.SimpleQueue()
        self.client = make_client(config, self.client_id)
        # The will is registered before connecting: a crash or a cut cable says "offline".
        self.client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        self.client.on_connect = self._handle_connect
        self.client.on_connect_fail = self._handle_connect_fail
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_publish = self._handle_publish
        self.client.on_message = self._handle_message

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.config.tls.enabled else "mqtt"
        return f"{scheme}://{self.config.host}:{self.config.port}"

    @property
    def state(self) -> LinkState:
        with self._state_lock:
            return self._state

    def start(self) -> None:
        # A broker from deploy/mosquitto keys the session by the username, not this client id.
        who = f"user {self.config.username}" if self.config.username else self.client_id
        log.info("connecting to %s as %s", self.url, who)
        connect_persistent(self.client, self.config)

    def stop(self, timeout: float = 3.0, *, clean: bool = True, announce: bool = True) -> None:
        """Say "stopped" for a stop on purpose, "offline" (what the will says) when the service
        is going down on an error, and disconnect. announce=False (a config reload, whose next
        link says "online" again at once): say nothing; the clean DISCONNECT makes the broker
        drop the will, so availability stays "online" in between."""
        self._stopping = True
        if self.connected.is_set():
            if announce:
                payload = "stopped" if clean else "offline"
                info = self.client.publish(self.topics.availability, payload, qos=1, retain=True)
                with contextlib.suppress(RuntimeError, ValueError):  # not connected after all
                    info.wait_for_publish(timeout)
            self.client.disconnect()
        self.client.loop_stop()
        self._set_state(LinkState("stopped", self._wall()))

    def watch(self, topic_filter: str, handler: Callable[[str, bytes, bool], None]) -> None:
        """Subscribe to `topic_filter` on every connect (register before start); its messages
        go to handler(topic, payload, retained) in paho's thread."""
        self._watches.append((topic_filter, handler))

    def publish(
        self,
        topic: str,
        payload: str,
        *,
        qos: int = 1,
        retain: bool = False,
        expiry_s: int | None = None,
    ) -> mqtt.MQTTMessageInfo:
        """Hand a message to paho, which keeps QoS 1 messages until PUBACK, across reconnects."""
        return self.client.publish(
            topic, payload, qos=qos, retain=retain, properties=publish_properties(expiry_s)
        )

    def publish_state(self, topic: str, payload: str) -> bool:
        """Retained state, only while connected: a reconnect republishes the latest anyway, and
        queueing every frame's state through an outage would only fill memory."""
        if not self.connected.is_set():
            return False
        info = self.publish(topic, payload, qos=1, retain=True)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    # --- connection state -----------------------------------------------------------------

    def _set_state(self, state: LinkState) -> None:
        with self._state_lock:
            self._state = state

    def _failure(self, state: LinkStateName, reason: str) -> None:
        """A failed attempt: logged at once when the reason is new, else every REPEAT_FAILURE_S."""
        with self._state_lock:
            previous = self._state
            same = previous.state == state and previous.reason == reason
            since = previous.since if same else self._wall()
            self._state = LinkState(state, since, reason, previous.attempts + 1 if same else 1)
            attempts = self._state.attempts
            now = self._clock()
            due = not same or now - self._last_failure_log >= REPEAT_FAILURE_S
            if due:
                self._last_failure_log = now
        if not due:
            return
        backoff = f"retrying every {self.config.reconnect_min_s:g}-{self.config.reconnect_max_s:g} s"
        if state == "refused":
            log.error("the broker at %s refused the connection as %s: %s; %s (%d attempts)",
                      self.url, self.client_id, reason, backoff, attempts)  # fmt: skip
        else:
            log.error("cannot reach the broker at %s: %s; %s (%d attempts since %s)",
                      self.url, reason, backoff, attempts, since.isoformat(timespec="seconds"))  # fmt: skip

    # --- paho callbacks (paho's network thread) -------------------------------------------

    def _handle_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self._answered = True
        if reason_code.is_failure:
            self._failure("refused", str(reason_code))
            return
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        client.subscribe(self.topics.ack_filter, qos=1)
        # The broker answers with the alert states it retains for this site: stale ones are
        # removed (see edge/alerts/retained.py).
        client.subscribe(self.topics.state_filter, qos=1)
        if self._on_ticket_events is not None:
            client.subscribe(self.topics.ticket_events, qos=1)
        for topic_filter, _handler in self._watches:
            client.subscribe(topic_filter, qos=1)
        self.connections += 1
        self.connected.set()
        self._set_state(LinkState("connected", self._wall()))
        log.info("connected to the broker at %s", self.url)
        self._on_connection_change(True)
        try:
            self._on_connected()
        except Exception:
            log.exception("republishing state after connect failed")

    def _handle_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        error = client.last_connect_error if isinstance(client, Client) else None
        self._failure("disconnected", describe_connect_error(error))

    def _handle_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self.connected.is_set()
        answered, self._answered = self._answered, False
        self.connected.clear()
        if was_connected and not self._stopping:
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)
            self._set_state(LinkState("disconnected", self._wall(), str(reason_code)))
            self._on_connection_change(False)
        elif not was_connected and not answered and not self._stopping:
            # The TCP connection was made but no MQTT answer came: something else listens on
            # that port (a WebSocket or TLS listener, a web server), which paho reports nowhere.
            self._failure("disconnected", no_mqtt_answer(reason_code))

    def _handle_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        # Called with paho's message lock held: only hand the fact over, do no work here.
        self.acked.put((mid, not reason_code.is_failure, self._clock()))
        self._on_acked()

    def _handle_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        for topic_filter, handler in self._watches:
            if mqtt.topic_matches_sub(topic_filter, msg.topic):
                try:
                    handler(msg.topic, bytes(msg.payload), bool(msg.retain))
                except Exception:
                    log.exception("handling a message on %s failed", shorten(msg.topic))
                return
        state_of = self.topics.alert_id_of_state(msg.topic)
        if state_of is not None:
            # Only what the broker retains matters here (our own live publishes come back too).
            if msg.retain and msg.payload:
                self._on_retained_state(state_of)
            return
        if msg.topic == self.topics.ticket_events and self._on_ticket_events is not None:
            try:
                self._on_ticket_events(bytes(msg.payload))
            except Exception as exc:  # rate-limited: a flood hitting a bug logs no flood
                self._unexpected.warning("ticket-handler", "handling ticket events failed: %r",
                                         exc)  # fmt: skip
                log.debug("handling ticket events failed", exc_info=True)
            return
        alert_id = self.topics.alert_id_of_ack(msg.topic)
        if alert_id is None:
            self._unexpected.warning(
                "unexpected-topic", "ignoring a message on unexpected topic %s", shorten(msg.topic)
            )
            return
        try:
            self._on_ack(alert_id, bytes(msg.payload))
        except Exception:
            log.exception("handling an ack for %s failed", shorten(alert_id))
