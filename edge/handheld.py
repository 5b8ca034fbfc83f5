"""The reference handheld: the lobby manager's side of the MQTT contract.

Subscribes to the site's alerts with a persistent session (the broker keeps QoS 1 alerts while
the handheld is off, and MQTT v5 expiry drops the ones that went stale), shows each message once
(de-duplicated on message_id: a redelivery after a broker or device restart is not a new order),
and publishes acknowledgements. Both the demo terminal client and the client the tests use.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig
from edge.mqtt import Topics, connect_persistent, make_client

log = logging.getLogger("lobbywatch.handheld")

Alert = dict[str, Any]


class Handheld:
    def __init__(
        self,
        config: MqttConfig,
        site_id: str,
        name: str,
        *,
        topics: tuple[str, ...] = ("alerts",),
        on_alert: Callable[[Alert], None] = lambda _alert: None,
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
        self.client = make_client(config, f"handheld-{site_id}-{name}")
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = lambda *_args: self.connected.clear()
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
            return
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()

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
