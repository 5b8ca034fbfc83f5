"""Home Assistant MQTT discovery (edge/integrations/homeassistant.py) against HA's documented
schema and a real Mosquitto: what HA would find under its prefix, and that the state topics the
configs point to are the ones the device really publishes, in a shape the templates read.

The schema below is written from HA's documentation (home-assistant.io,
source/_integrations/sensor.mqtt.markdown, binary_sensor.mqtt.markdown and mqtt.markdown:
"Discovery topic", "Discovery payload", "Using Availability topics", the device registry and
origin options): the keys each platform takes, their types and the documented cross-rules.
The templates are rendered with Jinja's sandbox as HA renders them (`value`, `value_json`).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from api.auth import hash_key
from edge.config import parse_config
from edge.integrations.homeassistant import discovery_configs, ha_id
from edge.mqtt import Topics
from tests.test_alert_state_mqtt import CONFIG, SITE, Device, feed, make_config
from tests.test_api_support import KEYS
from tests.waiting import wait_for

# --- HA's documented schema -----------------------------------------------------------------

STR, INT, BOOL, LIST, MAP = str, int, bool, list, dict
NULLABLE_STR = (str, type(None))

#: Options every MQTT entity platform documents (availability, device, attributes...).
COMMON: dict[str, Any] = {
    "availability": LIST,
    "availability_mode": STR,
    "availability_template": STR,
    "availability_topic": STR,
    "device": MAP,
    "device_class": NULLABLE_STR,  # "The device_class can be null"
    "enabled_by_default": BOOL,
    "encoding": STR,
    "entity_category": STR,
    "entity_picture": STR,
    "expire_after": INT,
    "force_update": BOOL,
    "icon": STR,
    "json_attributes_template": STR,
    "json_attributes_topic": STR,
    "name": NULLABLE_STR,  # "Can be set to null if only the device name is relevant"
    "object_id": STR,
    "origin": MAP,  # mqtt.markdown: recommended in every discovery payload
    "payload_available": STR,
    "payload_not_available": STR,
    "qos": INT,
    "state_topic": STR,
    "unique_id": STR,
    "value_template": STR,
}
SCHEMA: dict[str, dict[str, Any]] = {
    "sensor": COMMON
    | {
        "last_reset_value_template": STR,
        "options": LIST,
        "suggested_display_precision": INT,
        "state_class": STR,
        "unit_of_measurement": NULLABLE_STR,
    },
    "binary_sensor": COMMON | {"off_delay": INT, "payload_off": STR, "payload_on": STR},
}
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}}
AVAILABILITY_ITEM = {"topic": STR, "payload_available": STR, "payload_not_available": STR,
                     "value_template": STR}  # fmt: skip
DEVICE = {
    "configuration_url": STR, "connections": LIST, "hw_version": STR, "identifiers": (LIST, STR),
    "manufacturer": STR, "model": STR, "model_id": STR, "name": STR, "serial_number": STR,
    "suggested_area": STR, "sw_version": STR, "via_device": STR,
}  # fmt: skip
ORIGIN = {"name": STR, "sw_version": STR, "support_url": STR}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
DISCOVERY_TOPIC = re.compile(
    r"^homeassistant/(sensor|binary_sensor)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$"
)


def _typed(where: str, found: dict[str, Any], allowed: dict[str, Any]) -> list[str]:
    errors = [f"{where}: unknown key {k!r}" for k in found if k not in allowed]
    for key, value in found.items():
        kind = allowed.get(key)
        if kind is None:
            continue
        if not isinstance(value, kind) or (kind is INT and isinstance(value, bool)):
            errors.append(f"{where}: {key} is {type(value).__name__}")
    return errors


def schema_errors(component: str, payload: dict[str, Any]) -> list[str]:
    """What HA's docs would refuse (or ignore) in this discovery payload; [] when none."""
    errors = _typed(component, payload, SCHEMA[component])
    errors += [f"missing {k}" for k in REQUIRED[component] if k not in payload]
    if "availability" in payload and "availability_topic" in payload:
        errors.append("availability and availability_topic must not be used together")
    for item in payload.get("availability", []):
        errors += _typed("availability", item, AVAILABILITY_ITEM)
        errors += [] if "topic" in item else ["availability item without topic"]
    if "device" in payload:
        errors += _typed("device", payload["device"], DEVICE)
        if not ({"identifiers", "connections"} & payload["device"].keys()):
            errors.append("device needs identifiers or connections")
        if "unique_id" not in payload:
            errors.append("device only works when unique_id is set")
    if "origin" in payload:
        errors += _typed("origin", payload["origin"], ORIGIN)
        errors += [] if "name" in payload["origin"] else ["origin without name"]
    if payload.get("qos", 0) not in (0, 1, 2):
        errors.append("qos must be 0, 1 or 2")
    if component == "sensor":
        if "options" in payload and (
            payload.get("device_class") != "enum"
            or {"state_class", "unit_of_measurement"} & payload.keys()
        ):
            errors.append("options needs device_class enum, without state_class or unit")
        if payload.get("entity_category", "diagnostic") != "diagnostic":
            errors.append("a sensor's entity_category must be diagnostic")
        if "state_class" in payload and payload["state_class"] not in STATE_CLASSES:
            errors.append(f"unknown state_class {payload['state_class']}")
    return errors


def render(template: str, payload: str) -> str:
    """A template as HA renders it: `value` the payload, `value_json` its JSON when it is JSON."""
    jinja2 = pytest.importorskip("jinja2.sandbox")
    env = jinja2.ImmutableSandboxedEnvironment()
    try:
        value_json = json.loads(payload)
    except ValueError:
        value_json = None
    return str(env.from_string(template).render(value=payload, value_json=value_json)).strip()


def test_the_schema_check_refuses_what_the_docs_refuse():
    """The check can fail: a payload that breaks each documented rule is caught."""
    good = {"state_topic": "t", "unique_id": "u", "device": {"identifiers": ["d"]}}
    assert schema_errors("sensor", good) == []
    bad = [
        {"unique_id": "u"},  # no state_topic
        good | {"colour": "red"},
        good | {"qos": "1"},
        good | {"device": {"name": "no ids"}},
        {"state_topic": "t", "device": {"identifiers": ["d"]}},  # device without unique_id
        good | {"availability": [{"payload_available": "online"}]},
        good | {"availability": [{"topic": "a"}], "availability_topic": "a"},
        good | {"options": ["a"], "device_class": "enum", "state_class": "measurement"},
        good | {"entity_category": "config"},
        good | {"origin": {"sw_version": "1"}},
    ]
    for payload in bad:
        assert schema_errors("sensor", payload), payload
    assert schema_errors("binary_sensor", good | {"unit_of_measurement": "people"})


# --- the payloads, without a broker ---------------------------------------------------------

TWO_SITES = """\
site: {id: branch.7, name: Branch 7, timezone: Asia/Shanghai}
cameras:
  - id: lobby.cam
    name: 大堂
    source: rtsp://127.0.0.1:9/none
    zones:
      - {id: wait.a, name: 等候区, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}
      - {id: wait_a, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}
storage: {path: lw.db}
mqtt: {home_assistant: {enabled: true}}
alerts:
  language: zh-CN
  rules:
    - {id: wait.full, zones: [wait.a], raise_at: 10, clear_at: 5}
"""


def test_ids_with_a_dot_become_ha_topic_ids_that_stay_distinct_and_stable():
    config = parse_config(TWO_SITES, environ={})
    topics = Topics("lobbywatch", config.site.id)
    first = discovery_configs(config, topics, version="1.2.3")
    again = discovery_configs(config, topics, version="1.2.3")
    assert [m.to_json() for m in first] == [m.to_json() for m in again]  # same on every restart
    assert all(DISCOVERY_TOPIC.match(m.topic) for m in first), [m.topic for m in first]
    assert all(m.topic.split("/")[2] == ha_id("branch.7") for m in first)
    unique_ids = [m.payload["unique_id"] for m in first]
    assert len(set(unique_ids)) == len(unique_ids) == 4  # wait.a and wait_a stay two
    assert ha_id("wait_a") == "wait_a" and ha_id("wait.a") != ha_id("wait_a")
    for message in first:
        assert schema_errors(message.component, dict(message.payload)) == [], message.topic


def test_names_come_from_the_config_and_the_camera_status_speaks_the_site_language():
    config = parse_config(TWO_SITES, environ={})
    names = {
        m.payload["state_topic"]: m.payload["name"]
        for m in discovery_configs(config, Topics("lw", "branch.7"), version="1")
    }
    assert names["lw/branch.7/zone/wait.a/occupancy"] == "等候区"
    assert names["lw/branch.7/zone/wait_a/occupancy"] == "wait_a"  # no name: the id
    assert names["lw/branch.7/camera/lobby.cam/status"] == "大堂状态"
    english = parse_config(TWO_SITES.replace("zh-CN", "en"), environ={})
    names = {
        m.payload["state_topic"]: m.payload["name"]
        for m in discovery_configs(english, Topics("lw", "branch.7"), version="1")
    }
    assert names["lw/branch.7/camera/lobby.cam/status"] == "大堂 status"


@pytest.mark.parametrize(
    ("count", "shown"), [(23.0, "23.0"), (0.0, "0.0"), (None, "None")]
)  # fmt: skip
def test_the_count_template_reads_null_as_unknown_never_0(count, shown):
    """HA's sensor with a unit sets the state unknown for a template result of "None"."""
    (zone, *_) = discovery_configs(
        parse_config(TWO_SITES, environ={}), Topics("lw", "b"), version="1"
    )
    payload = json.dumps({"count": count, "raw": 2, "camera": "c", "camera_status": "stale"})
    assert render(zone.payload["value_template"], payload) == shown
    attributes = json.loads(render(zone.payload["json_attributes_template"], payload))
    assert attributes == {"raw": 2, "camera": "c", "camera_status": "stale"}


@pytest.mark.parametrize(
    ("said", "seen"), [("online", "online"), ("offline", "offline"), ("stopped", "offline")]
)  # fmt: skip
def test_availability_is_online_only_when_the_device_says_online(said, seen):
    (zone, *_) = discovery_configs(
        parse_config(TWO_SITES, environ={}), Topics("lw", "b"), version="1"
    )
    (availability,) = zone.payload["availability"]
    assert render(availability["value_template"], said) == seen
    assert availability["payload_available"] == "online"
    assert availability["payload_not_available"] == "offline"


# --- against a real Mosquitto ---------------------------------------------------------------

HA_ON = "mqtt: {{home_assistant: {{enabled: true}}, "


def ha_config(tmp_path, port: int, enabled: bool = True):
    config = make_config(tmp_path, port)
    if not enabled:
        return config
    text = CONFIG.replace("mqtt: {{", HA_ON, 1)
    return parse_config(
        text.format(db=tmp_path / "lw.db", port=port, escalate=600, sha=hash_key(KEYS["manager"])),
        base_dir=tmp_path,
        environ={},
    )


class Listener:
    """A plain client, as Home Assistant's MQTT integration is one: everything on `filters`."""

    def __init__(self, port: int, filters: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        # One SUBSCRIBE: the broker sends the retained messages of each filter in order.
        self.client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def under(self, prefix: str) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.messages if m[0].startswith(prefix)]

    def latest(self, topic: str) -> bytes | None:
        with self.lock:
            found = [p for t, p, _ in self.messages if t == topic]
        return found[-1] if found else None

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


RULES = ("waiting-full", "queue-full")
ZONES = ("waiting", "queue")
BASE = f"lobbywatch/{SITE}"


@pytest.fixture
def ha_device(tmp_path, broker):
    started = Device(ha_config(tmp_path, broker.port)).start()
    yield started
    started.stop()
    started.store.close()


def settled(port: int) -> None:
    """Wait until the device's connect-time publishing reached the broker: the rule states
    come after the discovery configs on the same connection."""
    probe = Listener(port, [f"{BASE}/rule/+/state"])
    wait_for(lambda: len(probe.under(f"{BASE}/rule/")) == len(RULES), what="rule states")
    probe.stop()


def test_home_assistant_finds_one_retained_config_per_zone_rule_and_camera(ha_device, broker):
    settled(broker.port)
    ha = Listener(broker.port, ["homeassistant/#", f"{BASE}/rule/+/state"])
    wait_for(lambda: len(ha.under(f"{BASE}/rule/")) == len(RULES), what="rule states")
    configs = ha.under("homeassistant/")
    ha.stop()
    assert all(retained for _, _, retained in configs)
    topics = sorted(t for t, _, _ in configs)
    assert topics == sorted(
        [f"homeassistant/sensor/{SITE}/zone_{z}/config" for z in ZONES]
        + [f"homeassistant/binary_sensor/{SITE}/rule_{r}/config" for r in RULES]
        + [f"homeassistant/sensor/{SITE}/camera_lobby/config"]
    )
    devices = set()
    for topic, payload, _ in configs:
        config = json.loads(payload)
        assert schema_errors(topic.split("/")[1], config) == [], topic
        assert config["availability"][0]["topic"] == f"{BASE}/availability"
        devices.add(json.dumps(config["device"], sort_keys=True))
    (device,) = devices  # one HA device for the site, shared by every entity
    assert json.loads(device)["manufacturer"] == "lobbywatch"
    assert json.loads(device)["sw_version"]


def test_the_state_topics_the_configs_name_carry_what_their_templates_read(ha_device, broker):
    feed(ha_device.board, waiting=3, queue=1)
    settled(broker.port)
    ha = Listener(broker.port, ["homeassistant/#"])
    wait_for(lambda: len(ha.under("homeassistant/")) == 5, what="discovery configs")
    configs = {t: json.loads(p) for t, p, _ in ha.under("homeassistant/")}
    ha.stop()
    states = Listener(broker.port, sorted({c["state_topic"] for c in configs.values()}))
    for topic, config in configs.items():
        state_topic = config["state_topic"]
        payload = wait_for(lambda t=state_topic: states.latest(t), what=state_topic)
        text = payload.decode()
        if "/zone_" in topic:
            assert float(render(config["value_template"], text)) >= 0, text
        elif "/camera_" in topic:
            assert text in config["options"]
        else:
            assert text in (config["payload_on"], config["payload_off"])
    states.stop()


def test_a_rule_reads_on_while_its_alert_is_open_and_off_after(ha_device, broker):
    settled(broker.port)
    watcher = Listener(broker.port, [f"{BASE}/rule/+/state"])
    wait_for(lambda: watcher.latest(f"{BASE}/rule/waiting-full/state") == b"OFF", what="OFF")
    ha_device.raise_alert(waiting=15, queue=0)
    wait_for(lambda: watcher.latest(f"{BASE}/rule/waiting-full/state") == b"ON", what="ON")
    assert watcher.latest(f"{BASE}/rule/queue-full/state") == b"OFF"
    feed(ha_device.board, waiting=0, queue=0)
    wait_for(lambda: watcher.latest(f"{BASE}/rule/waiting-full/state") == b"OFF", what="clear")
    watcher.stop()


def test_a_config_of_a_zone_no_longer_in_the_config_is_removed_on_connect(tmp_path, broker):
    gone = f"homeassistant/sensor/{SITE}/zone_lounge/config"
    other = "homeassistant/sensor/another-site/zone_lounge/config"
    seed = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    seed.connect("127.0.0.1", broker.port)
    seed.loop_start()
    for topic in (gone, other):
        seed.publish(topic, '{"state_topic": "x"}', qos=1, retain=True).wait_for_publish(5)
    seed.disconnect()
    seed.loop_stop()
    watcher = Listener(broker.port, [gone])
    wait_for(lambda: watcher.latest(gone), what="the seeded config")
    device = Device(ha_config(tmp_path, broker.port)).start()
    try:
        wait_for(lambda: watcher.latest(gone) == b"", what="the removal")  # seen live
        watcher.stop()
        settled(broker.port)
        late = Listener(broker.port, ["homeassistant/#", f"{BASE}/rule/+/state"])
        wait_for(lambda: len(late.under(f"{BASE}/rule/")) == len(RULES), what="rule states")
        kept = {t for t, _, _ in late.under("homeassistant/")}
        late.stop()
        assert gone not in kept
        assert other in kept  # another site's entities are not ours to remove
        assert len(kept) == 6
    finally:
        device.stop()
        device.store.close()


def test_with_the_switch_off_nothing_is_published_under_the_prefix(tmp_path, broker):
    device = Device(ha_config(tmp_path, broker.port, enabled=False)).start()
    try:
        assert not device.config.mqtt.home_assistant.enabled
        settled(broker.port)
        ha = Listener(broker.port, ["homeassistant/#", f"{BASE}/rule/+/state"])
        # The prefix's retained messages come before the rule states of the same SUBSCRIBE.
        wait_for(lambda: len(ha.under(f"{BASE}/rule/")) == len(RULES), what="rule states")
        assert ha.under("homeassistant/") == []
        ha.stop()
    finally:
        device.stop()
        device.store.close()
