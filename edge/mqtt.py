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
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig

log = logging.getLogger("lobbywatch.mqtt")

SESSION_EXPIRY_S = 86400


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

    def camera_status(self, camera_id: str) -> str:
        return f"{self.base}/camera/{camera_id}/status"

    def zone_occupancy(self, zone_id: str) -> str:
        return f"{self.base}/zone/{zone_id}/occupancy"

    def ack(self, alert_id: str) -> str:
        return f"{self.base}/alerts/{alert_id}/ack"

    def alert_id_of_ack(self, topic: str) -> str | None:
        """The alert id in an ack topic, or None when the topic is not one."""
        head, tail = f"{self.base}/alerts/", "/ack"
        if not (topic.startswith(head) and topic.endswith(tail)):
            return None
        alert_id = topic[len(head) : -len(tail)]
        return alert_id if alert_id and "/" not in alert_id else None


def read_password(config: MqttConfig) -> str | None:
    if config.password is not None:
        return config.password.get_secret_value()
    if config.password_file is not None:
        lines = config.password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    return None


def make_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    """A configured, not yet connected paho client (credentials, TLS, backoff)."""
    client = mqtt.Client(
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
    return client


def connect_persistent(client: mqtt.Client, config: MqttConfig) -> None:
    """Connect in the background with a persistent session (clean start off, session expiry),
    so the broker keeps QoS 1 messages for this client while it is away; paho reconnects."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    client.connect_async(
        config.host, config.port, keepalive=config.keepalive_s, clean_start=False, properties=props
    )
    client.loop_start()


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
    of each ack message. PUBACKs arrive in `acked` as (mid, ok) for the outbox publisher.
    """

    def __init__(
        self,
        config: MqttConfig,
        site_id: str,
        *,
        on_connected: Callable[[], None] = lambda: None,
        on_connection_change: Callable[[bool], None] = lambda _up: None,
        on_ack: Callable[[str, bytes], object] = lambda _id, _payload: None,
    ) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix, site_id)
        self.client_id = config.client_id or f"lobbywatch-{site_id}"
        self._on_connected = on_connected
        self._on_connection_change = on_connection_change
        self._on_ack = on_ack
        self.connected = threading.Event()
        self._stopping = False
        self.acked: queue.SimpleQueue[tuple[int, bool]] = queue.SimpleQueue()
        self.client = make_client(config, self.client_id)
        # The will is registered before connecting: a crash or a cut cable says "offline".
        self.client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_publish = self._handle_publish
        self.client.on_message = self._handle_message

    def start(self) -> None:
        log.info(
            "connecting to mqtt%s://%s:%d as %s",
            "s" if self.config.tls.enabled else "",
            self.config.host,
            self.config.port,
            self.client_id,
        )
        connect_persistent(self.client, self.config)

    def stop(self, timeout: float = 3.0) -> None:
        """Say "stopped" (not the will's "offline": this was on purpose) and disconnect."""
        self._stopping = True
        if self.connected.is_set():
            info = self.client.publish(self.topics.availability, "stopped", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not connected after all
                info.wait_for_publish(timeout)
            self.client.disconnect()
        self.client.loop_stop()

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

    # --- paho callbacks (paho's network thread) -------------------------------------------

    def _handle_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        client.subscribe(self.topics.ack_filter, qos=1)
        self.connected.set()
        log.info("connected to the broker")
        self._on_connection_change(True)
        try:
            self._on_connected()
        except Exception:
            log.exception("republishing state after connect failed")

    def _handle_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and not self._stopping:
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)
            self._on_connection_change(False)

    def _handle_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        # Called with paho's message lock held: only hand the fact over, do no work here.
        self.acked.put((mid, not reason_code.is_failure))

    def _handle_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        alert_id = self.topics.alert_id_of_ack(msg.topic)
        if alert_id is None:
            log.warning("ignoring a message on unexpected topic %r", msg.topic)
            return
        try:
            self._on_ack(alert_id, bytes(msg.payload))
        except Exception:
            log.exception("handling an ack for %s failed", alert_id)
