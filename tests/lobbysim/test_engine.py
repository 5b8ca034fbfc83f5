"""A short simulated day through the product's own board, rules and store, a manager reacting."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from bench.lobbysim.engine import EngineController, EngineRig, Manager, site_config
from bench.lobbysim.run import run_day
from bench.lobbysim.tracks import TrackNoise
from tests.lobbysim.support import SHORT

RULE = """\
    - {id: waiting-full, name: Waiting area full, zones: [waiting, queue], raise_at: 6,
       clear_at: 3, raise_after_s: 30, clear_after_s: 60, cooldown_s: 120,
       escalate_after_s: 180, max_escalations: 1, effect_after_s: 120}
"""


def test_a_short_day_raises_an_alert_the_manager_accepts_and_passes(tmp_path):
    params = dataclasses.replace(SHORT, self_serve_share=0.0, kiosk_share=0.5)
    rig = EngineRig(site_config(RULE, tmp_path / "lw.db", "occupancy: {window_s: 2}"))
    controller = EngineController(rig, Manager(np.random.default_rng(0), reaction_s=60.0))
    try:
        day = run_day(1, params, controllers=[controller])
        alerts = rig.store.alerts(kind="diversion")
        history = rig.store.query("SELECT COUNT(*) FROM zone_history")[0][0]
    finally:
        rig.close()
    assert controller.raised and alerts
    first = alerts[0]
    assert first.rule == "waiting-full" and first.count_at_raise is not None
    assert first.count_at_raise >= 6 and first.acknowledged_by == "sim.manager"
    assert first.pass_done_at is not None and first.pass_done_at > first.acknowledged_at
    assert day.passes and sum(moved for _, _, moved in day.passes) > 0
    assert any(c.diverted for c in day.customers)
    assert history > 0  # the day is in zone_history, where a forecast will read it
    alone = run_day(1, params)  # the same customers came, whatever the manager did
    assert [c.arrival for c in alone.customers] == [c.arrival for c in day.customers]
    assert alone.passes == [] and not any(c.diverted for c in alone.customers)


def test_with_tracks_each_ask_carries_the_queue_s_advice_and_the_manager_follows_it(tmp_path):
    # One counter, two kiosks that fill up: the waiting area stays full, so a done pass is
    # asked again; the asks say the kiosks are full, and the manager calls a colleague.
    params = dataclasses.replace(
        SHORT, staff=((0.0, 1),), kiosks=2, kiosk_share=0.6, self_serve_share=0.9
    )
    rule = RULE.replace("effect_after_s: 120}", "effect_after_s: 120, reask_after_s: 120}")
    config = site_config(rule, tmp_path / "lw.db", "occupancy: {window_s: 2}", kiosks=2, counters=2)
    rig = EngineRig(config, tracks=TrackNoise(), seed=1)
    manager = Manager(np.random.default_rng(0), reaction_s=60.0, follow_advice=True)
    controller = EngineController(rig, manager)
    try:
        day = run_day(1, params, controllers=[controller], record_tracks=True)
        alerts = rig.store.alerts(kind="diversion")
        snapshot = rig.monitor.snapshot() if rig.monitor else None
        # Nothing publishes in the simulator: every ask's message is still in the outbox.
        payloads = [json.loads(r[0]) for r in rig.store.query("SELECT payload FROM outbox")]
    finally:
        rig.close()
    assert alerts and max(a.passes for a in alerts) >= 2  # asked again while still full
    asks = [p for p in payloads if p["kind"] in ("raised", "reasked", "escalated")]
    assert asks and all(p["figures"]["kiosks_capacity"] == 2 for p in asks)
    kinds = {a["kind"] for p in asks for a in p["advice"]}
    assert kinds & {"kiosks_full", "counter_unstaffed"}
    assert manager.calls and day.customers  # a colleague was called on that advice
    assert any(c.counter == 1 for c in day.customers)  # ...and served at the second counter
    assert snapshot is not None and snapshot.wait.method != "none"  # tracks reached the estimate
