"""bench/capacity.py: the real service with a replayed camera, measured and scored.

Two short runs of the real `lobbywatch run` (real models, one camera for a few seconds: a Mall
one bare, a BRT one with the broker, the alert probe and the API polled), then the pure pieces
that decide what a camera shows, which ground truth it is scored on, which frame decided an
alert and what the latency figures are.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from bench.capacity import (
    REPO,
    WHOLE_FRAME,
    CameraSpec,
    Footage,
    camera_rules,
    camera_specs,
    camera_truth,
    cpu_seconds,
    link_frames,
    load_footage,
    main,
    parse_runs,
    process_tree,
    run_name,
    run_specs,
    site_config,
)
from bench.capacity_probes import (
    Handoff,
    Poll,
    Received,
    alert_report,
    endpoint_reports,
    latency,
    parse_alert,
    probe_rules,
)
from edge.alerts.engine import RuleEngine
from edge.config import AlertRuleConfig, ScheduleConfig, read_config
from edge.schedule import Schedule


def test_one_replayed_camera_through_the_service_fills_every_field_of_the_report(
    tmp_path: Path, data_dir: Path, models_dir: Path
) -> None:
    out = tmp_path / "capacity.json"
    lines: list[str] = []
    report = main(
        ["--runs", "busy1", "--seconds", "3", "--warmup", "0", "--no-mqtt", "--no-api",
         "--data", str(data_dir), "--models", str(models_dir), "--json", str(out)],
        say=lines.append,
    )  # fmt: skip
    assert json.loads(out.read_text()) == report
    (run,) = report["runs"]
    assert run["name"] == "busy1" and run["cameras"] == 1
    assert run["exit_code"] == 0  # SIGTERM gave a clean stop
    assert run["cpu_pct"] > 0 and run["cpu_ms_per_frame"] > 0
    assert 0 < run["machine_busy_pct"] <= 100  # the service itself keeps the box busy
    assert run["peak_rss_mib"] > 50  # two detectors loaded: far more than an idle interpreter
    (camera,) = run["per_camera"]
    assert camera["frames_in_window"] >= 1 and camera["frames_scored"] >= camera["frames_in_window"]
    # realtime replay at the asked rate: capture never hands out more than the source's frames
    assert 0 < camera["achieved_fps"] <= 2 * camera["asked_fps"]
    assert camera["service_fps"] is not None  # read back from the service's state file
    assert camera["detector_ms"] > 0
    # Mall frames hold 13-53 people; a count scored against the wrong frames or a broken
    # detector misses by far more than the shipped config's few people
    assert 0 <= camera["raw_mae"] < 12 and math.isfinite(camera["raw_bias"])
    assert report["idle_vs_busy"] is None  # no still run asked for
    assert lines and lines[0].startswith("busy1: 1 camera(s)")
    assert run["alerts"] is None and run["api"] is None  # no broker, no API: nothing measured


def test_a_brt_camera_with_the_alert_probe_and_the_api_polled_reports_alerts_and_api(
    tmp_path: Path, data_dir: Path, models_dir: Path
) -> None:
    lines: list[str] = []
    report = main(
        ["--runs", "brt1", "--seconds", "3", "--warmup", "0", "--alert-probe",
         "--alert-grace-s", "1", "--data", str(data_dir), "--models", str(models_dir)],
        say=lines.append,
    )  # fmt: skip
    (run,) = report["runs"]
    assert run["exit_code"] == 0 and report["alert_probe"] == 1 and report["api_poll"]
    (camera,) = run["per_camera"]
    assert camera["kind"] == "brt" and camera["frames_scored"] >= 1
    # BRT stills hold 1-64 people (7-14 at the start): scored on the wrong truth or a broken
    # zone, the error would be far larger
    assert 0 <= camera["raw_mae"] < 10
    alerts = run["alerts"]
    # the first frame's count raises every probe rule up to it, decided before the window;
    # every alert is joined to a frame of its camera, and none arrived before that frame
    assert alerts["received"] >= 1 and alerts["unmatched"] == 0
    assert alerts["missing"] is not None  # the service's outbox was read
    assert alerts["in_window"] == sum(alerts["kinds"].values())
    if alerts["in_window"]:
        assert alerts["latency"]["count"] == alerts["in_window"]
        assert 0 < alerts["latency"]["p50_ms"] <= alerts["latency"]["max_ms"]
    api = {e["endpoint"]: e for e in run["api"]}
    assert set(api) == {"/v1/occupancy", "/v1/health", "/metrics"}
    # the run's viewer key opens the key-protected routes (without one they answer 503)
    for endpoint in ("/v1/occupancy", "/metrics"):
        assert api[endpoint]["polls"] >= 1 and api[endpoint]["statuses"].get("200", 0) >= 1
    assert "\n  alerts: " in lines[0] and "\n  API GET /metrics: " in lines[0]


@pytest.mark.parametrize(
    ("text", "runs"),
    [
        ("busy1", [(("busy", 1),)]),
        ("busy1,busy4,still1", [(("busy", 1),), (("busy", 4),), (("still", 1),)]),
        (" empty2 ", [(("empty", 2),)]),
        ("busy3+brt1,brt2", [(("busy", 3), ("brt", 1)), (("brt", 2),)]),
    ],
)
def test_runs_are_named_kind_and_camera_count(
    text: str, runs: list[tuple[tuple[str, int], ...]]
) -> None:
    assert parse_runs(text) == runs
    assert ",".join(run_name(r) for r in runs) == text.strip()


@pytest.mark.parametrize("text", ["busy", "busy0", "idle1", "4busy", "busy1,", "busy1+", "+brt1"])
def test_a_run_without_a_known_kind_and_a_count_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_runs(text)


def test_a_mixed_run_numbers_its_cameras_in_order_and_probes_the_first_ones() -> None:
    footage = {"mall": Footage([Path("m")] * 1600, [0] * 1600),
               "brt": Footage([Path("b")] * 767, [0] * 767)}  # fmt: skip
    (run,) = parse_runs("busy2+brt2")
    specs = run_specs(run, footage, True, 800, probes=1)
    assert [(s.id, s.kind, s.offset, s.probe) for s in specs] == [
        ("cam1", "busy", 0, True),
        ("cam2", "busy", 800, False),
        ("cam3", "brt", 0, False),
        ("cam4", "brt", 383, False),  # spread over the 767 stills, not the Mall's 1600
    ]


def test_the_brt_footage_is_every_still_in_order_with_its_head_count(data_dir: Path) -> None:
    brt = load_footage(data_dir, "brt")
    with (data_dir / "brt_cam1" / "gt_counts.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [p.name for p in brt.frames] == [r["frame"] for r in rows]
    assert brt.truth == [int(r["count"]) for r in rows] and len(brt.truth) == 767


def test_spread_cameras_start_evenly_through_the_sequence_and_same_ones_at_zero() -> None:
    assert [s.offset for s in camera_specs("busy", 4, 1600, True, 800)] == [0, 400, 800, 1200]
    assert [s.offset for s in camera_specs("busy", 4, 1600, False, 800)] == [0, 0, 0, 0]
    assert {s.offset for s in camera_specs("still", 2, 1600, True, 800)} == {800}


def test_each_camera_frame_is_scored_on_the_mall_frame_it_shows(tmp_path: Path) -> None:
    frames = [tmp_path / f"m{i}.jpg" for i in range(5)]
    truth = [10, 11, 12, 13, 14]
    busy, still = CameraSpec("a", "busy", 3), CameraSpec("b", "still", 1)
    link_frames(busy, frames, tmp_path / "a", None)
    link_frames(still, frames, tmp_path / "b", None)
    shown = [os.readlink(tmp_path / "a" / f"seq_{j + 1:06d}.jpg") for j in range(5)]
    assert shown == [str(frames[k]) for k in (3, 4, 0, 1, 2)]
    assert [camera_truth(busy, j, truth) for j in range(5)] == [13, 14, 10, 11, 12]
    assert {os.readlink(p) for p in (tmp_path / "b").iterdir()} == {str(frames[1])}
    assert [camera_truth(still, j, truth) for j in range(3)] == [11, 11, 11]
    assert camera_truth(CameraSpec("c", "empty", 0), 7, truth) == 0
    brt = CameraSpec("d", "brt", 4)  # a sequence of stills, like a busy camera
    link_frames(brt, frames, tmp_path / "d", None)
    assert os.readlink(tmp_path / "d" / "seq_000002.jpg") == str(frames[0])
    assert [camera_truth(brt, j, truth) for j in range(2)] == [14, 10]


def test_the_process_tree_meter_reads_this_process() -> None:
    pid = os.getpid()
    assert pid in process_tree(pid)
    sum(range(200_000))  # some CPU of our own
    used = cpu_seconds(pid)
    assert used is not None and used > 0
    assert cpu_seconds(2**22 + 1) is None  # above pid_max: no such process


def test_the_site_config_gives_each_camera_its_own_zones_and_rules(tmp_path: Path) -> None:
    base = yaml.safe_load((REPO / "configs" / "mall.yaml").read_text())
    specs = camera_specs("busy", 2, 1600, True, 800)
    config = site_config(base, specs, tmp_path, 2.0, mqtt_port=None, api_port=None)
    assert [c["id"] for c in config["cameras"]] == ["cam1", "cam2"]
    assert [[z["id"] for z in c["zones"]] for c in config["cameras"]] == [
        ["cam1-floor"],
        ["cam2-floor"],
    ]
    assert [(r["id"], r["zones"]) for r in config["alerts"]["rules"]] == [
        ("cam1-waiting-full", ["cam1-floor"]),
        ("cam2-waiting-full", ["cam2-floor"]),
    ]
    assert config["cameras"][1]["source"] == str(tmp_path / "cam2" / "seq_%06d.jpg")
    assert config["storage"]["path"] == str(tmp_path / "lobbywatch.db")
    assert config["mqtt"] == {"enabled": False}
    # what the service will be given parses: the product's own validation
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(config))
    parsed, _ = read_config(tmp_path / "site.yaml")
    assert len(parsed.cameras) == 2 and not parsed.mqtt.enabled
    assert parsed.api.keys == []  # the API unpolled: no key, as a site without one


def test_a_brt_camera_watches_the_whole_frame_and_a_probed_one_gets_the_ladder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = yaml.safe_load((REPO / "configs" / "mall.yaml").read_text())
    specs = [CameraSpec("cam1", "busy", 0, probe=True), CameraSpec("cam2", "brt", 0)]
    config = site_config(base, specs, tmp_path, 2.0, mqtt_port=1883, api_port=8123,
                         api_key_env="BENCH_KEY")  # fmt: skip
    (brt_zone,) = config["cameras"][1]["zones"]
    assert brt_zone["id"] == "cam2-floor" and brt_zone["polygon"] == WHOLE_FRAME
    owners = {rule["id"]: spec.id for spec, rule in camera_rules(config, specs)}
    probes = [r for r in owners if "-probe-" in r]
    assert len(probes) == 64 and {owners[r] for r in probes} == {"cam1"}
    assert owners["cam2-waiting-full"] == "cam2"
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("BENCH_KEY", "k" * 32)
    parsed, _ = read_config(tmp_path / "site.yaml")  # the ladder passes the product's checks
    assert [(k.role, k.env) for k in parsed.api.keys] == [("viewer", "BENCH_KEY")]
    assert parsed.api.enabled and parsed.api.port == 8123
    assert len(parsed.alerts.rules) == 66


def test_the_probe_ladder_raises_or_clears_one_rule_per_person_the_count_moves() -> None:
    schedule = Schedule(ScheduleConfig(), "UTC")
    engines = [RuleEngine(AlertRuleConfig(**r), schedule) for r in probe_rules("c", "z", top=10)]
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    events = []
    for step, count in enumerate([3.0, 3.0, 4.0, 3.5, 5.0, 5.0, 2.5]):
        now = float(step)  # no sustain, no cooldown: each frame is decided on its own
        frame = [e for g in engines for e in g.step(count, now, start + timedelta(seconds=now))]
        events.append(sorted((type(e).__name__, e.rule) for e in frame))
    assert events == [
        [("Raised", "c-probe-1"), ("Raised", "c-probe-2"), ("Raised", "c-probe-3")],
        [],  # the same count: nothing
        [("Raised", "c-probe-4")],
        [("Cleared", "c-probe-4")],  # 3.5 is at or below 4 - 0.5
        [("Raised", "c-probe-4"), ("Raised", "c-probe-5")],  # raised again at once
        [],
        [("Cleared", f"c-probe-{k}") for k in (3, 4, 5)],
    ]


def test_an_alert_is_timed_from_the_last_hand_off_of_its_camera_before_it_was_made() -> None:
    handoffs = [
        Handoff("cam1", t=10.0, wall=1000.0),
        Handoff("cam2", t=10.2, wall=1000.2),
        Handoff("cam1", t=10.5, wall=1000.5),
        Handoff("cam1", t=30.0, wall=1020.0),  # after the window
    ]
    rules = {"cam1-probe-3": "cam1", "cam2-probe-7": "cam2"}
    received = [
        Received("a:raised", "raised", "cam1-probe-3", at=1000.51, t=10.530),  # frame 10.5
        Received("b:raised", "raised", "cam2-probe-7", at=1000.6, t=10.250),  # cam2's 10.2
        Received("a:cleared", "cleared", "cam1-probe-3", at=1020.0, t=30.010),  # out of window
        Received("c:raised", "raised", "cam1-probe-3", at=999.0, t=9.0),  # before any frame
        Received("d:raised", "raised", "other-rule", at=1000.6, t=10.6),  # no camera known
    ]
    nan = float("nan")
    made = [
        *received[:3],
        Received("e:raised", "raised", "cam2-probe-7", at=1000.3, t=nan),  # in the window, lost
        Received("f:raised", "raised", "cam1-probe-3", at=1021.0, t=nan),  # lost, after it
    ]
    report = alert_report(received, handoffs, rules, window=(10.0, 20.0), made=made)
    assert (report.received, report.in_window, report.unmatched) == (5, 2, 2)
    assert report.kinds == {"raised": 2}
    assert report.latency is not None
    assert (report.latency.count, report.latency.max_ms) == (2, 50.0)
    assert report.missing == 1
    assert alert_report(received, handoffs, rules, (10.0, 20.0)).missing is None


def test_an_alert_payload_gives_its_wall_time_and_others_are_skipped() -> None:
    payload = {"message_id": "x:raised", "kind": "raised", "rule": "r",
               "at": "2026-12-01T09:00:00.250000Z"}  # fmt: skip
    alert = parse_alert(json.dumps(payload).encode(), t=5.0)
    assert alert is not None and alert.kind == "raised" and alert.rule == "r"
    assert alert.at == datetime(2026, 12, 1, 9, 0, 0, 250000, tzinfo=timezone.utc).timestamp()
    assert parse_alert(b"", 5.0) is None and parse_alert(b'{"kind": "raised"}', 5.0) is None


def test_latency_percentiles_are_nearest_rank_and_none_without_values() -> None:
    stats = latency([float(v) for v in range(1, 201)])  # 1..200 ms
    assert stats is not None
    assert (stats.count, stats.p50_ms, stats.p90_ms, stats.p99_ms, stats.max_ms) == (
        200, 101.0, 181.0, 199.0, 200.0,
    )  # fmt: skip
    assert latency([]) is None


def test_api_polls_count_every_answer_but_200_and_no_answer_as_errors() -> None:
    polls = [Poll("/a", 2.0, 200), Poll("/a", 4.0, 503), Poll("/a", 5000.0, None),
             Poll("/b", 1.0, 200)]  # fmt: skip
    a, b, c = endpoint_reports(polls, ["/a", "/b", "/c"])
    assert (a.polls, a.errors, a.statuses) == (3, 2, {"200": 1, "503": 1, "none": 1})
    assert a.latency is not None and a.latency.max_ms == 4.0  # a timeout is no latency
    assert (b.errors, c.polls, c.latency) == (0, 0, None)
