"""A short simulated day through the product's own board, rules and store, a manager reacting."""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.lobbysim.engine import EngineController, EngineRig, Manager, site_config
from bench.lobbysim.run import run_day
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
