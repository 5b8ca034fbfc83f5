"""bench/capacity.py: the real service with a replayed camera, measured and scored.

One short run of the real `lobbywatch run` (real models, one Mall camera for a few seconds),
then the pure pieces that decide what a camera shows and which ground truth it is scored on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import pytest
import yaml

from bench.capacity import (
    REPO,
    CameraSpec,
    camera_specs,
    camera_truth,
    cpu_seconds,
    link_frames,
    main,
    parse_runs,
    process_tree,
    site_config,
)
from edge.config import read_config


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


@pytest.mark.parametrize(
    ("text", "runs"),
    [
        ("busy1", [("busy", 1)]),
        ("busy1,busy4,still1", [("busy", 1), ("busy", 4), ("still", 1)]),
        (" empty2 ", [("empty", 2)]),
    ],
)
def test_runs_are_named_kind_and_camera_count(text: str, runs: list[tuple[str, int]]) -> None:
    assert parse_runs(text) == runs


@pytest.mark.parametrize("text", ["busy", "busy0", "idle1", "4busy", "busy1,"])
def test_a_run_without_a_known_kind_and_a_count_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_runs(text)


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
