"""Home Assistant MQTT discovery (docs/ui.md 4, docs/mqtt.md "Home Assistant"): the site's zones,
alert rules and cameras announced, retained, as entities of one HA device, so a branch that runs
Home Assistant sees the counts without writing YAML.

Built to Home Assistant's own documentation (home-assistant.io, source/_integrations/):
- mqtt.markdown, "MQTT Discovery": the topic is
  `<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`, node_id and object_id only
  of `[a-zA-Z0-9_-]`; the payload is a JSON object checked like YAML (unknown keys ignored,
  required ones must be there); a retained payload is replayed when HA's MQTT integration
  starts; an empty payload on the topic removes the entity; `origin` is recommended for
  single-component discovery; the `device` block ties entities with a `unique_id` to one
  device. Full key names are used, not the abbreviations (which exist for small devices).
- sensor.mqtt.markdown: `state_topic` required; with `unit_of_measurement` or `state_class` set
  a numeric state is expected and a template result of `None` makes the state unknown
  (HA core, components/mqtt/sensor.py compares it with const.PAYLOAD_NONE = "None"), so a count
  of null reads as unknown, never 0. `options` needs `device_class: enum` and excludes
  `state_class` and `unit_of_measurement`.
- binary_sensor.mqtt.markdown: `state_topic` required, `payload_on` / `payload_off` ON / OFF.
- the availability options (mqtt.markdown, "Using Availability topics"): the result of an
  availability `value_template` is compared with `payload_available` and
  `payload_not_available`, and anything else is ignored (core, mqtt/entity.py
  availability_message_received): the device's `stopped` would leave an entity available, so
  the template maps everything that is not `online` to `offline`.

Pure builders (discovery_configs) plus one small publisher, called on every (re)connect.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paho.mqtt.enums import MQTTErrorCode

from edge.config import LobbyConfig
from edge.mqtt import MqttLink, Topics
from edge.version import package_version

log = logging.getLogger("lobbywatch.homeassistant")

#: What HA allows in a discovery topic's node_id and object_id.
_HA_ID = re.compile(r"[A-Za-z0-9_-]+")

#: The device's availability as HA reads it: `online`, and anything else (`offline` from the
#: will or an error exit, `stopped` from a clean stop) unavailable.
AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"

#: A zone's people, from its retained occupancy JSON; null (camera stale or offline, service
#: stopped) becomes HA's "None", which its sensor shows as unknown.
COUNT_TEMPLATE = "{{ value_json.count if value_json.count is not none else 'None' }}"

#: What HA shows beside the count: the raw detections, the camera and its status.
ZONE_ATTRIBUTES_TEMPLATE = (
    "{{ {'raw': value_json.raw, 'camera': value_json.camera,"
    " 'camera_status': value_json.camera_status} | tojson }}"
)

CAMERA_STATES = ("online", "stale", "offline")

#: Entity names the device makes up (zone and rule names come from the config as written).
_CAMERA_STATUS_NAME = {"en": "{camera} status", "zh-CN": "{camera}状态"}


@dataclass(frozen=True)
class DiscoveryConfig:
    """One entity's discovery message: where it goes and what it says."""

    component: str  # sensor | binary_sensor
    topic: str
    payload: Mapping[str, Any]

    def to_json(self) -> str:
        return json.dumps(self.payload, ensure_ascii=False, separators=(",", ":"))


def ha_id(text: str) -> str:
    """`text` as HA allows it in a topic level: unchanged when it already is; else the other
    characters (a `.` in an id) made `_` and a short hash of the original appended, so two ids
    that differ only there (`a.b`, `a_b`) stay two entities, the same on every restart."""
    if _HA_ID.fullmatch(text):
        return text
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', text)}-{digest}"


def config_filter(prefix: str, site_id: str) -> str:
    """Every discovery topic this site's device may have published: swept on connect."""
    return f"{prefix}/+/{ha_id(site_id)}/+/config"


def discovery_configs(
    config: LobbyConfig, topics: Topics, version: str | None = None
) -> list[DiscoveryConfig]:
    """The discovery messages for `config`: a sensor per zone, a binary sensor per alert rule
    and a sensor per camera's status, all of one device (the site)."""
    version = version or package_version()
    prefix = config.mqtt.home_assistant.prefix
    node = ha_id(config.site.id)
    shared: dict[str, Any] = {
        "availability": [
            {
                "topic": topics.availability,
                "value_template": AVAILABILITY_TEMPLATE,
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "qos": 1,
        "device": {
            "identifiers": [f"lobbywatch_{node}"],
            "name": config.site.name or config.site.id,
            "manufacturer": "lobbywatch",
            "model": "lobbywatch edge lobby monitor",
            "sw_version": version,
        },
        "origin": {"name": "lobbywatch", "sw_version": version},
    }

    def entity(component: str, kind: str, item_id: str, **fields: Any) -> DiscoveryConfig:
        object_id = f"{kind}_{ha_id(item_id)}"
        payload = {"unique_id": f"lobbywatch_{node}_{object_id}", **fields, **shared}
        return DiscoveryConfig(
            component, f"{prefix}/{component}/{node}/{object_id}/config", payload
        )

    found: list[DiscoveryConfig] = []
    for camera in config.cameras:
        for zone in camera.zones:
            state = topics.zone_occupancy(zone.id)
            found.append(
                entity(
                    "sensor", "zone", zone.id,
                    name=zone.name or zone.id,
                    state_topic=state,
                    value_template=COUNT_TEMPLATE,
                    unit_of_measurement="people",
                    state_class="measurement",
                    suggested_display_precision=0,
                    icon="mdi:account-group",
                    json_attributes_topic=state,
                    json_attributes_template=ZONE_ATTRIBUTES_TEMPLATE,
                )
            )  # fmt: skip
    for rule in config.alerts.rules:
        found.append(
            entity(
                "binary_sensor", "rule", rule.id,
                name=rule.name or rule.id,
                state_topic=topics.rule_state(rule.id),
                payload_on="ON",
                payload_off="OFF",
                device_class="problem",
            )
        )  # fmt: skip
    names = _CAMERA_STATUS_NAME[config.alerts.language]
    for camera in config.cameras:
        found.append(
            entity(
                "sensor", "camera", camera.id,
                name=names.format(camera=camera.name or camera.id),
                state_topic=topics.camera_status(camera.id),
                device_class="enum",
                options=list(CAMERA_STATES),
                entity_category="diagnostic",
                icon="mdi:cctv",
            )
        )  # fmt: skip
    return found


class DiscoveryPublisher:
    """Publishes the discovery messages, retained, once per connection, and removes the ones
    of this site the broker still retains but the config no longer has (a zone, rule or camera
    taken out): the link subscribes to this site's discovery topics and hands over what the
    broker retains there, right after each connect."""

    def __init__(self, config: LobbyConfig, link: MqttLink, version: str | None = None) -> None:
        self.link = link
        self.messages = discovery_configs(config, link.topics, version)
        self._wanted = {m.topic for m in self.messages}
        self._published_for = -1  # the link's connection number they were published on
        link.watch(
            config_filter(config.mqtt.home_assistant.prefix, config.site.id), self._on_retained
        )

    def publish_if_new_connection(self) -> bool:
        """All of them, once after each (re)connect; True when they were handed to paho."""
        connection = self.link.connections
        if connection == self._published_for or not self.link.connected.is_set():
            return False
        for message in self.messages:
            if not self.link.publish_state(message.topic, message.to_json()):
                return False  # the link went down: all again after the reconnect
        self._published_for = connection
        return True

    def _on_retained(self, topic: str, payload: bytes, retained: bool) -> None:
        """A discovery config of this site the broker holds (paho's thread)."""
        if not retained or not payload or topic in self._wanted:
            return
        log.info("removing Home Assistant discovery config %s: not in the config any more", topic)
        info = self.link.publish(topic, "", qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("could not remove %s (%s); retried on the next connect", topic, info.rc)
