"""On-site calibration: fitting, applying, the file, and the command on real frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.calibration import SCALE_BOUNDS, ZoneCalibration, fit_zone, load, save
from edge.cli import app


def test_a_detector_that_misses_a_quarter_is_scaled_back():
    detected = [15, 22, 30, 9, 18, 26, 12, 20, 33, 24]
    truth = [round(d / 0.75) for d in detected]
    fitted = fit_zone(detected, truth)
    assert fitted.scale == pytest.approx(1 / 0.75, abs=0.05)
    assert fitted.mae_after is not None and fitted.mae_before is not None
    assert fitted.mae_after < 0.6 < fitted.mae_before


def test_few_frames_fit_a_scale_only():
    fitted = fit_zone([10, 20], [12, 24])
    assert (fitted.scale, fitted.offset, fitted.frames) == (1.2, 0.0, 2)


@pytest.mark.parametrize(
    ("detected", "truth", "scale"),
    [([10, 10, 10], [100, 100, 100], SCALE_BOUNDS[1]), ([10, 10, 10], [1, 1, 1], SCALE_BOUNDS[0])],
)
def test_absurd_corrections_are_bounded(detected, truth, scale):
    assert fit_zone(detected, truth).scale == scale


def test_corrected_counts_are_whole_people_never_negative():
    c = ZoneCalibration(scale=1.1, offset=-2.0)
    assert [c.apply(n) for n in (0, 1, 10)] == [0, 0, 9]


def test_the_file_round_trips_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "cal.yaml"
    save(path, {"waiting": ZoneCalibration(1.25, 0.5, 12, 3.0, 1.0)})
    loaded = load(path)
    assert loaded["waiting"].scale == 1.25 and loaded["waiting"].offset == 0.5
    path.write_text("waiting: {scale: 40}\n")
    with pytest.raises(ValueError, match="outside"):
        load(path)


def test_calibrate_command_fits_on_hand_counted_frames_and_count_applies_it(
    tmp_path, mall_sequence, data_dir
):
    gt = json.loads((data_dir / "mall" / "gt_heads.json").read_text())
    counts = tmp_path / "counts.csv"
    counts.write_text(
        "frame,zone,count\n"
        + "".join(f"{i},floor,{gt[f'seq_{i + 1:06d}.jpg']['count']}\n" for i in (0, 2, 4))
    )
    config = tmp_path / "site.yaml"
    config.write_text(
        f"""site: {{id: s, timezone: UTC}}
detector: {{threads: 2}}
cameras:
  - id: cam
    source: "{mall_sequence}"
    source_fps: 2
    calibration: cal.yaml
    zones: [{{id: floor, role: waiting, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}]
mqtt: {{enabled: false}}
storage: {{path: lw.db}}
occupancy: {{hold_s: 0}}  # so that zones is exactly the calibrated detector count
"""
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "calibrate",
            "--config",
            str(config),
            "--counts",
            str(counts),
            "--out",
            str(tmp_path / "cal.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "on 3 frame(s)" in result.output
    fitted = load(tmp_path / "cal.yaml")["floor"]
    assert fitted.scale >= 1.0  # the detector undercounts the Mall

    out = tmp_path / "counts.jsonl"
    result = runner.invoke(
        app, ["count", "--config", str(config), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    for line in out.read_text().splitlines():
        record = json.loads(line)
        assert record["zones"]["floor"] == fitted.apply(record["detected"]["floor"])


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("frame,count\n1,3\n", "missing column"),
        ("frame,zone,count\nx,floor,3\n", "must be numbers"),
        ("frame,zone,count\n1,lobby,3\n", "not on camera"),
        ("frame,zone,count\n99,floor,3\n", "not in the source"),
    ],
)
def test_bad_hand_counts_are_reported(tmp_path, mall_sequence, csv_text, message):
    counts = tmp_path / "counts.csv"
    counts.write_text(csv_text)
    config = tmp_path / "site.yaml"
    config.write_text(
        f"""site: {{id: s}}
cameras:
  - {{id: cam, source: "{mall_sequence}", source_fps: 2,
      zones: [{{id: floor, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}]}}
"""
    )
    result = CliRunner().invoke(
        app,
        [
            "calibrate",
            "--config",
            str(config),
            "--counts",
            str(counts),
            "--out",
            str(tmp_path / "c.yaml"),
        ],
    )
    assert result.exit_code == 1
    assert message in result.output
    assert not Path(tmp_path / "c.yaml").exists()


def test_calibrate_fits_on_the_same_per_frame_counts_that_count_reports(
    tmp_path, mall_sequence, data_dir
):
    """With the presence hold on (the default), the fit must see held people as `count` does."""
    gt = json.loads((data_dir / "mall" / "gt_heads.json").read_text())
    truth = {i: gt[f"seq_{i + 1:06d}.jpg"]["count"] for i in (1, 3, 5)}
    counts = tmp_path / "counts.csv"
    counts.write_text("frame,zone,count\n" + "".join(f"{i},floor,{n}\n" for i, n in truth.items()))
    config = tmp_path / "site.yaml"
    config.write_text(
        f"""site: {{id: s}}
cameras:
  - {{id: cam, source: "{mall_sequence}", source_fps: 2,
      zones: [{{id: floor, role: waiting, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}]}}
mqtt: {{enabled: false}}
"""
    )
    runner = CliRunner()
    cal = tmp_path / "cal.yaml"
    result = runner.invoke(
        app, ["calibrate", "--config", str(config), "--counts", str(counts), "--out", str(cal)]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "counts.jsonl"
    result = runner.invoke(
        app, ["count", "--config", str(config), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    per_frame = {
        r["frame"]: r["zones"]["floor"] for r in map(json.loads, out.read_text().splitlines())
    }
    expected = sum(abs(per_frame[i] - n) for i, n in truth.items()) / len(truth)
    assert load(cal)["floor"].mae_before == pytest.approx(expected, abs=1e-3)
