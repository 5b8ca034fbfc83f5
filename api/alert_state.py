"""The alert state as the API serves it: the open set, changed alerts and the zones' counts, read
from the store and built with the service's own builder (edge/alerts/state.py), so a state is
the same through the API as on MQTT. Synchronous: the stream calls it in a worker thread.

`count_now` is the only part that differs: it is the zones' live count when the state is
read, here from the live table (the service reads its own board).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.deps import ApiContext
from api.live import zone_states
from edge.alerts.delivery import lifecycle
from edge.alerts.state import AlertState, SiteNames, build_state
from edge.store import AlertRecord

Zones = list[dict[str, Any]]


class AlertFeed:
    def __init__(self, context: ApiContext) -> None:
        self.context = context
        self.names = SiteNames.of(context.config)

    def version(self) -> int:
        return self.context.store.store().alerts_version()

    def zones(self) -> Zones:
        """Each zone's waiting count now: null when unknown (camera down, report stale), never
        0 for that. No time stamps: the streams send it again only when a count changes."""
        states = zone_states(self.context.config, self.context.store.store(), self.context.clock())
        return [
            {
                "id": z.zone_id,
                "name": z.name or z.zone_id,
                "role": z.role,
                "camera_id": z.camera_id,
                "count": z.count,
                "stale": z.stale,
                "camera_status": z.camera_status,
            }
            for z in states
        ]

    def state(self, record: AlertRecord, zones: Zones | None = None) -> AlertState:
        if zones is None:
            zones = self.zones()
        deliveries = lifecycle(self.context.store.store().query, record.alert_id, self.names)
        return build_state(record, self.names, count_in(zones, record.zones), deliveries)

    def open_set(self, zones: Zones | None = None) -> dict[str, Any]:
        """{"version", "timezone", "alerts"}: every open alert, oldest raised first."""
        store = self.context.store.store()
        version = store.alerts_version()  # first: a change after it is sent again, not lost
        records = store.open_alerts()
        if zones is None:
            zones = self.zones()
        return {
            "version": max([version, *(r.version for r in records)]),
            "timezone": self.names.timezone,
            "alerts": [self.state(r, zones).as_dict() for r in records],
        }

    def changed_since(
        self, version: int, limit: int, zones: Zones | None = None
    ) -> list[AlertState] | None:
        """States of the alerts changed after `version`, oldest change first; None when more
        than `limit` changed (send the whole open set instead)."""
        records = self.context.store.store().alerts_changed_since(version, limit + 1)
        if len(records) > limit:
            return None
        if records and zones is None:
            zones = self.zones()
        return [self.state(r, zones) for r in records]

    def local_now(self) -> str | None:
        return self.names.local(self.context.clock())


def count_in(zones: Zones, zone_ids: Sequence[str]) -> float | None:
    """The alert's zones' total now; None when any of them is unknown."""
    counts = {z["id"]: z["count"] for z in zones}
    total = 0.0
    for zone_id in zone_ids:
        count = counts.get(zone_id)
        if count is None:
            return None
        total += count
    return total
