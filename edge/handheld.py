"""The reference handheld: the lobby manager's side of the MQTT contract.

Subscribes to the site's alerts with a persistent session (the broker keeps QoS 1 alerts while
the handheld is off, and MQTT v5 expiry drops the ones that went stale), shows each message once
(de-duplicated on message_id: a redelivery after a broker or device restart is not a new order),
and publishes acknowledgements. Both the demo terminal client and the client the tests use.

The connection is never silent: every change between connected and not connected (and of the
reason: connection refused, a failed DNS lookup, a refused login, TLS) goes to on_status, while
paho keeps retrying with its bounded backoff.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig
from edge.mqtt import Topics, connect_persistent, make_client

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


class Handheld:
    def __init__(
        self,
        config: MqttConfig,
        site_id: str,
        name: str,
        *,
        topics: tuple[str, ...] = ("alerts",),
        on_alert: Callable[[Alert], None] = lambda _alert: None,
        on_status: Callable[[LinkStatus], None] = lambda _status: None,
    ) -> None:
        self.name = name
        self.topics = Topics(config.topic_prefix, site_id)
        self._subscriptions = [f"{self.topics.base}/{t}" for t in topics]
        self._on_alert = on_alert
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self.received: list[Alert] = []  # unique messages, in arrival order
        self.deliveries = 0  # every delivery, duplicates included
        self.connected = threading.Event()
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

    def ack(self, alert_id: str, status: str = "accepted", timeout: float = 5.0) -> bool:
        """Publish an acknowledgement; True once the broker has it."""
        payload = json.dumps({"by": self.name, "status": status})
        info = self.client.publish(self.topics.ack(alert_id), payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def alerts(self) -> list[Alert]:
        with self._lock:
            return list(self.received)

    def _handle_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason_code: ReasonCode, _p: Any
    ) -> None:
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
        self.connected.clear()
        if was_connected and reason_code != 0:  # 0: our own disconnect()
            self._report(False, f"lost the broker connection ({reason_code})")

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
        self._on_alert(alert)


def format_alert(number: int, alert: Alert) -> str:
    count = "?" if alert.get("count") is None else f"{alert['count']:g}"
    return (
        f"#{number} [{alert.get('kind')}] {alert.get('at', '')[11:19]} {alert.get('alert_id')}"
        f" ({count} people)\n    {alert.get('message')}"
    )
