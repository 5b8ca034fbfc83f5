"""Keeps bench/scenes.py (the multi-scene accuracy benchmark of issue #11) from rotting.

Not the benchmark: two images per scene, enough to see that every scene loads its truth, runs
through the detector and pipeline and is summarized, and that the Mall scene counts exactly as
`lobbywatch count` does on the same frames (the benchmark must measure the product's path).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench import scenes
from edge.cli import app

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shape", [(288, 384), (480, 640), (640, 360)])
def test_the_overlay_changes_only_what_it_reports_and_its_clock_ticks(shape):
    image = np.full((*shape, 3), 90, dtype=np.uint8)
    first, rects = scenes.burn_overlay(image, 0)
    second, _ = scenes.burn_overlay(image, 1)
    outside = np.ones(shape, dtype=bool)
    for x1, y1, x2, y2 in rects:
        assert 0 <= x1 < x2 <= shape[1] and 0 <= y1 < y2 <= shape[0]
        outside[y1:y2, x1:x2] = False
    assert (first != image).any()
    assert (first[outside] == image[outside]).all()
    assert (first != second).any()  # the clock's last digit moved
    assert (image == 90).all()  # drawn on a copy


def test_every_scene_runs_on_two_images(tmp_path, data_dir, models_dir, monkeypatch):
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    out = tmp_path / "scenes.json"
    code = scenes.main(["--limit", "2", "--data", str(data_dir), "--out", str(out), "--json"])
    assert code == 0
    report = json.loads(out.read_text())
    assert list(report["scenes"]) == ["mall", "mall-overlay", "brt", "brt-overlay", "photos"]
    for name, result in report["scenes"].items():
        assert result["frames"] == 2, name
        assert all(math.isfinite(result[k]) for k in ("mae", "bias", "rmse", "detector_ms"))
        assert ("vs_clean" in result) == name.endswith("-overlay")
    assert [p["truth"] for p in report["scenes"]["photos"]["per_frame"]] == [4, 2]
    table = scenes.markdown(report["scenes"])
    assert len(table.splitlines()) == 2 + 5


def test_the_mall_scene_counts_as_lobbywatch_count_does(
    tmp_path, data_dir, models_dir, monkeypatch
):
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    # Every 4th frame, so the presence hold spans 2 s of source time as in the default run.
    monkeypatch.setenv("LOBBYWATCH_CAMERAS__MALL__SOURCE_FPS", "2")
    monkeypatch.setenv("LOBBYWATCH_CAMERAS__MALL__FPS", "0.5")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(1, 10):
        shutil.copy(data_dir / "mall" / "frames" / f"seq_{i:06d}.jpg", frames / f"seq_{i:06d}.jpg")
    out = tmp_path / "counts.jsonl"
    result = CliRunner().invoke(
        app,
        ["count", "--config", str(REPO / "configs" / "mall.yaml"), "--out", str(out),
         "--source", str(frames / "seq_%06d.jpg"), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    by_cli = [json.loads(line) for line in out.read_text().splitlines()]

    config = scenes.load(str(REPO / "configs" / "mall.yaml"), [], str(data_dir))
    mall = scenes.mall_scene(data_dir, every=4)
    mall = dataclasses.replace(mall, stills=mall.stills[:3])
    detector = scenes.build_detector(config.detector)
    by_bench = scenes.run_scene(mall, config, detector).records

    assert [r["frame"] for r in by_bench] == [r["frame"] for r in by_cli] == [0, 4, 8]
    assert [r["zones"][scenes.ZONE] for r in by_bench] == [r["zones"]["floor"] for r in by_cli]
    assert [r["occupancy"][scenes.ZONE] for r in by_bench] == [
        r["occupancy"]["floor"] for r in by_cli
    ]
