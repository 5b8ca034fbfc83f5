"""Alert state on the broker: a retained message per open alert and a retained index of the open
set (docs/handheld.md), kept equal to the store, so a handheld that connects at any time sees
what is open now.

The store is the record. Each alert row carries the site version of its latest change, so
"what changed since I last looked" is one indexed query, whoever made the change: the rules, a
handheld's ack over MQTT, or the API's ack from its own process (found within one notifier tick).
A cleared alert's state is published once, not retained (subscribers see it clear), and then its
retained message is removed with an empty retained payload.

Nothing here needs a durable queue of its own: the latest state is all a retained topic holds.
On every (re)connect all open states and the index are published again, and the device's own
retained states on the broker (the link subscribes to them) are swept: one the store does not
hold open (its removal lost to a crash, or left by a store that was replaced) is removed. The
same happens when the store, run on memory while its disk was full, lands in its file.

Beside the index, each configured rule's `rule/<rule id>/state` says ON while an alert of the
rule is open and OFF otherwise (retained, published when it changes and on every connect): the
index names alerts, not rules, and a client such as Home Assistant's binary sensor per rule
(edge/integrations/homeassistant.py) can only read one topic.
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Callable, Sequence

from paho.mqtt.enums import MQTTErrorCode

from edge.alerts.delivery import lifecycle
from edge.alerts.state import SiteNames, build_state
from edge.mqtt import MqttLink
from edge.store import AlertRecord, Store

log = logging.getLogger("lobbywatch.alerts")


class AlertStatePublisher:
    """Publishes the alerts' states; call `pump` from one thread (the notifier's)."""

    def __init__(
        self,
        store: Store,
        link: MqttLink,
        names: SiteNames,
        count_now: Callable[[Sequence[str]], float | None],
        *,
        cleared_expiry_s: int | None = None,
    ) -> None:
        self.store = store
        self.link = link
        self.topics = link.topics
        self.names = names
        self._count_now = count_now
        self._cleared_expiry_s = cleared_expiry_s
        self._seen = 0  # the site version published up to
        self._resync = True  # publish everything open (set on every connect)
        self._generation = store.generation  # the store's database the versions are of
        self._index: str | None = None  # the index payload last handed to the broker
        self._rule_states: dict[str, str] = {}  # rule id -> ON/OFF last handed to the broker
        self._found: queue.SimpleQueue[str] = queue.SimpleQueue()

    def on_connected(self) -> None:
        """After each (re)connect (paho's thread): publish it all again on the next pump."""
        self._resync = True

    def on_retained(self, alert_id: str) -> None:
        """A retained state of ours the broker holds (paho's thread): checked on the next pump."""
        self._found.put(alert_id)

    def pump(self) -> int:
        """Publish what changed (everything open after a connect); returns how many states."""
        if not self.link.connected.is_set():
            return 0
        generation = self.store.generation
        if generation != self._generation:
            # The store moved from its in-memory stand-in onto its file: the alerts open there,
            # and its versions, are not those published from memory. All again, as on a connect.
            self._generation, self._resync = generation, True
        if self._resync:
            self._resync, self._index = False, None
            self._rule_states = {}
            version = self.store.alerts_version()
            records = self.store.open_alerts()
            self._seen = version
        else:
            records = self.store.alerts_changed_since(self._seen)
        published = 0
        for record in records:
            if not self._publish(record):
                self._resync = True  # the link went down: all again after the reconnect
                return published
            self._seen = max(self._seen, record.version)
            published += 1
        if records or self._index is None:
            self._publish_index()
        self._sweep()
        return published

    def _publish(self, record: AlertRecord) -> bool:
        state = build_state(
            record,
            self.names,
            self._count_now(record.zones),
            lifecycle(self.store.query, record.alert_id, self.names),
        )
        topic = self.topics.alert_state(record.alert_id)
        if state.open:
            return self._ok(self.link.publish(topic, state.to_json(), qos=1, retain=True).rc)
        # Seen cleared by those subscribed now, then gone for those who connect later.
        shown = self.link.publish(topic, state.to_json(), expiry_s=self._cleared_expiry_s)
        return self._ok(shown.rc) and self._remove(record.alert_id)

    def _publish_index(self) -> None:
        open_alerts = self.store.open_alerts()
        self._publish_rule_states({a.rule for a in open_alerts})
        ids = [a.alert_id for a in open_alerts]
        payload = json.dumps({"version": self._seen, "alerts": ids}, separators=(",", ":"))
        if payload == self._index:
            return
        info = self.link.publish(self.topics.alerts_open, payload, qos=1, retain=True)
        if self._ok(info.rc):
            self._index = payload
        else:
            self._resync = True

    def _publish_rule_states(self, open_rules: set[str]) -> None:
        """ON / OFF per configured rule, where it changed (all after a connect)."""
        for rule in self.names.rules:
            state = "ON" if rule in open_rules else "OFF"
            if self._rule_states.get(rule) == state:
                continue
            info = self.link.publish(self.topics.rule_state(rule), state, qos=1, retain=True)
            if self._ok(info.rc):
                self._rule_states[rule] = state
            else:
                self._resync = True
                return

    def _sweep(self) -> None:
        while True:
            try:
                alert_id = self._found.get_nowait()
            except queue.Empty:
                return
            record = self.store.alert(alert_id)
            if record is None or record.cleared_at is not None:
                log.info("removing the retained state of alert %s: it is not open", alert_id)
                if not self._remove(alert_id):
                    self._found.put(alert_id)
                    return

    def _remove(self, alert_id: str) -> bool:
        info = self.link.publish(self.topics.alert_state(alert_id), "", qos=1, retain=True)
        return self._ok(info.rc)

    @staticmethod
    def _ok(rc: MQTTErrorCode) -> bool:
        return rc == MQTTErrorCode.MQTT_ERR_SUCCESS
