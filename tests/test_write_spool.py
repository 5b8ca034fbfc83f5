"""Alert decisions on a full disk: taken, kept in order, written once the store takes writes.

A real store on a real, full file system (16 MiB tmpfs); the alert service as the notifier runs
it, with a fake clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from edge.alerts.service import AlertService
from edge.board import OccupancyBoard
from edge.store import Store
from tests.test_alerts import feed, make_config


class Clock:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def test_decisions_on_a_full_disk_are_kept_in_order_and_written_when_space_returns(
    tmp_path, small_disk
):
    config = make_config(tmp_path, 1883, escalate=60)
    config = config.model_copy(
        update={"storage": config.storage.model_copy(update={"path": small_disk.path / "lw.db"})}
    )
    store = Store(config.storage.path, site_id="branch-7")
    board = OccupancyBoard({"lobby": ["waiting", "queue"]})
    clock = Clock()
    alerts = AlertService(
        config, store, board, clock=lambda: clock.mono, wall_clock=lambda: clock.wall
    )
    small_disk.fill()

    feed(board, 30)
    alerts.tick()  # raised: not in the store, but its message is there to publish
    (raised,) = alerts.spool.messages()
    alert_id = raised.alert_id
    assert store.open_alerts() == [] and alerts.spool.record(alert_id) is not None

    record = alerts.handle_ack(alert_id, b'{"by": "mgr-1", "status": "pass_done"}')
    assert record is not None and record.alert_id == alert_id  # the ack is taken too
    clock.advance(2.0)
    for _ in range(5):
        alerts.tick()
        clock.advance(0.5)
    assert len(alerts.spool) == 2  # the raise and the ack, in that order

    small_disk.free()
    assert alerts.spool.flush() == 0
    stored = store.alert(alert_id)
    assert stored is not None and stored.status == "pass_done"
    assert stored.acknowledged_by == "mgr-1"
    assert [m.message_id for m in store.pending_messages()] == [raised.message_id]
    # The pass's effect is measured once the store knows the pass was done.
    feed(board, 12)
    alerts.tick()
    assert store.alert(alert_id).effect_count == 12.0
    store.close()
