"""On-site calibration: fitting, applying, the file, and the command on real frames."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edge.calibration import (
    IDENTITY,
    MIN_FRAMES,
    MODELS,
    OFFSET_BOUNDS,
    SCALE_BOUNDS,
    ZoneCalibration,
    fit_zone,
    head_units,
    heads_per_zone,
    load,
    read_head_points,
    save,
)
from edge.cli import app
from edge.replay import frame_indices
from edge.zones import Zone


def test_a_detector_that_misses_a_quarter_is_scaled_back():
    detected = [15, 22, 30, 9, 18, 26, 12, 20, 33, 24]
    truth = [round(d / 0.75) for d in detected]
    fitted = fit_zone(detected, truth)
    assert fitted.model == "scale"  # the simplest that fits: no offset needed
    assert fitted.scale == pytest.approx(1 / 0.75, abs=0.05)
    assert fitted.mae_after is not None and fitted.mae_before is not None
    assert fitted.mae_after < 0.6 < fitted.mae_before


@pytest.mark.parametrize("seed", range(8))
def test_on_pure_detector_noise_no_correction_is_chosen_and_the_fit_refused(seed):
    """The detector is right on average (truth + zero-mean noise): a correction only adds noise."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 40, size=30)
    detected = np.maximum(0, truth + rng.integers(-3, 4, size=30))
    fitted = fit_zone(detected.tolist(), truth.tolist())
    assert fitted.refused and fitted.model == "none"
    assert (fitted.scale, fitted.offset) == (1.0, 0.0)
    assert "no correction beat" in fitted.reason
    assert [fitted.apply(n) for n in (0, 7, 30)] == [0, 7, 30]


@pytest.mark.parametrize(("scale", "offset"), [(1.5, 3.0), (0.75, -2.0), (1.25, 5.0)])
def test_on_a_clean_linear_relation_scale_and_offset_is_chosen(scale, offset):
    """Exact whole counts (multiples of 4): least squares and Theil-Sen tie, the simpler wins."""
    detected = list(range(4, 84, 4))
    truth = [scale * d + offset for d in detected]
    fitted = fit_zone(detected, truth)
    assert fitted.model == "scale+offset", fitted.candidates
    assert fitted.scale == pytest.approx(scale, abs=0.03)
    assert fitted.offset == pytest.approx(offset, abs=0.5)
    assert fitted.cv_mae is not None and fitted.cv_mae < 0.6
    assert not fitted.warning


def test_the_expected_error_interval_covers_the_error_on_new_frames():
    """95% nominal; frames are independent here, so most of 40 fits must cover the truth."""
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        true_counts = rng.integers(2, 40, size=2040)
        detected = np.maximum(0, np.round((true_counts - 2) / 1.3 + rng.normal(0, 2, 2040)))
        fitted = fit_zone(detected[:40].astype(int).tolist(), true_counts[:40].tolist())
        new_mae = np.mean(
            [
                abs(fitted.apply(int(d)) - t)
                for d, t in zip(detected[40:], true_counts[40:], strict=True)
            ]
        )
        assert fitted.cv_mae_ci is not None
        covered += fitted.cv_mae_ci[0] <= new_mae <= fitted.cv_mae_ci[1]
    assert covered >= 32, covered


@pytest.mark.parametrize(
    ("frames", "warned"), [(1, True), (2, True), (MIN_FRAMES - 1, True), (MIN_FRAMES, False)]
)
def test_few_frames_are_warned_about_and_still_give_a_valid_calibration(frames, warned):
    detected = [10 + i for i in range(frames)]
    fitted = fit_zone(detected, [round(1.2 * d) for d in detected])
    assert bool(fitted.warning) == warned
    assert SCALE_BOUNDS[0] <= fitted.scale <= SCALE_BOUNDS[1]
    assert fitted.frames == frames


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 200)), min_size=1, max_size=30))
def test_any_choice_is_bounded_and_never_worse_than_none_on_held_out_frames(pairs):
    detected, truth = [d for d, _ in pairs], [t for _, t in pairs]
    fitted = fit_zone(detected, truth)
    assert SCALE_BOUNDS[0] <= fitted.scale <= SCALE_BOUNDS[1]
    assert OFFSET_BOUNDS[0] <= fitted.offset <= OFFSET_BOUNDS[1]
    assert fitted.model in MODELS
    scores = dict(fitted.candidates)
    if not fitted.refused:
        assert scores[fitted.model] < scores["none"]
    else:
        assert (fitted.scale, fitted.offset) == (1.0, 0.0)


def test_corrected_counts_are_whole_people_never_negative():
    c = ZoneCalibration(scale=1.1, offset=-2.0)
    assert [c.apply(n) for n in (0, 1, 10)] == [0, 0, 9]


def test_the_file_round_trips_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "cal.yaml"
    fitted = fit_zone(list(range(2, 42, 2)), [round(1.4 * d + 3) for d in range(2, 42, 2)])
    save(path, {"waiting": fitted, "desk": IDENTITY})
    loaded = load(path)
    assert loaded["waiting"] == dataclasses.replace(
        fitted,
        scale=round(fitted.scale, 4),
        offset=round(fitted.offset, 3),
        **{
            f: pytest.approx(getattr(fitted, f), abs=1e-2)
            for f in ("mae_before", "mae_after", "cv_mae", "cv_mape", "mape_before")
        },
        cv_mae_ci=pytest.approx(fitted.cv_mae_ci, abs=1e-3),
        cv_mape_ci=pytest.approx(fitted.cv_mape_ci, abs=1e-3),
        candidates=loaded["waiting"].candidates,
    )
    assert [m for m, _ in loaded["waiting"].candidates] == [m for m, _ in fitted.candidates]
    assert [v for _, v in loaded["waiting"].candidates] == pytest.approx(
        [v for _, v in fitted.candidates], abs=1e-3
    )
    assert loaded["desk"].refused and loaded["desk"].apply(7) == 7
    path.write_text("waiting: {scale: 40}\n")
    with pytest.raises(ValueError, match="outside"):
        load(path)
    path.write_text("waiting: {scale: 1.2, model: none}\n")
    with pytest.raises(ValueError, match="model none"):
        load(path)
    path.write_text("waiting: {scale: 1.2, model: quadratic}\n")
    with pytest.raises(ValueError, match="not one of"):
        load(path)


OLD_FILE = """\
# Written by `lobbywatch calibrate`: true ~= scale * detected + offset per zone.
floor:
  frames: 20
  mae_before: 2.9
  mae_after: 2.1
  offset: 1.25
  scale: 1.1
queue:
  scale: 0.9
"""


def test_a_file_written_before_the_cross_validated_choice_still_loads(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(OLD_FILE)
    loaded = load(path)
    assert loaded["floor"].model == "scale+offset" and not loaded["floor"].refused
    assert (loaded["floor"].scale, loaded["floor"].offset, loaded["floor"].frames) == (
        1.1,
        1.25,
        20,
    )
    assert loaded["floor"].apply(10) == 12
    assert loaded["queue"].apply(10) == 9 and loaded["queue"].cv_mae is None


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([], {"left": 0, "right": 0, "door": 0}),
        ([[0.2, 0.5], [0.3, 0.9], [0.7, 0.5]], {"left": 2, "right": 1, "door": 0}),
        # the door overlaps the right half and has the higher priority: each head counts once
        ([[0.9, 0.1], [0.9, 0.6]], {"left": 0, "right": 1, "door": 1}),
        # pixels clipped into the frame by the caller are still in a zone: never lost
        ([[0.0, 0.0], [1.0, 1.0]], {"left": 1, "right": 1, "door": 0}),
    ],
)
def test_head_points_are_counted_once_per_zone(points, expected):
    zones = [
        Zone("left", ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))),
        Zone("right", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))),
        Zone("door", ((0.8, 0.0), (1.0, 0.0), (1.0, 0.3), (0.8, 0.3)), priority=1),
    ]
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    assert heads_per_zone(xy, zones) == expected


def test_head_points_files_are_read_in_pixels_or_normalized(tmp_path):
    path = tmp_path / "heads.json"
    path.write_text(json.dumps({"a_000001.jpg": {"count": 2, "heads_xy": [[10, 20], [300, 40]]}}))
    heads = read_head_points(path)
    assert heads["a_000001.jpg"].count == 2 and head_units(heads) == "pixels"
    path.write_text(json.dumps({"0": {"count": 1, "heads_xy": [[0.5, 0.25]]}, "3": {"count": 0,
                                "heads_xy": []}}))  # fmt: skip
    assert head_units(read_head_points(path)) == "normalized"
    path.write_text(json.dumps({"0": {"count": 3, "heads_xy": [[0.5, 0.25]]}}))
    with pytest.raises(ValueError, match="count 3 but 1"):
        read_head_points(path)


def test_frame_keys_are_numbers_or_file_names_of_the_image_sequence(tmp_path):
    for n in (1, 2, 3):
        (tmp_path / f"cam1_{n:06d}.jpg").write_bytes(b"")
    pattern = str(tmp_path / "cam1_%06d.jpg")
    assert frame_indices(["cam1_000001.jpg", "cam1_000003.jpg", "7"], pattern) == {
        "cam1_000001.jpg": 0,
        "cam1_000003.jpg": 2,
        "7": 7,
    }
    with pytest.raises(ValueError, match="neither a frame number"):
        frame_indices(["other_000001.jpg"], pattern)
    with pytest.raises(ValueError, match="neither a frame number"):
        frame_indices(["x.jpg"], "rtsp://camera/stream")


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


def test_calibrate_fits_on_head_points_counted_per_zone(tmp_path, mall_sequence, data_dir):
    gt = json.loads((data_dir / "mall" / "gt_heads.json").read_text())
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({f"seq_{i:06d}.jpg": gt[f"seq_{i:06d}.jpg"] for i in (1, 2, 3)}))
    config = tmp_path / "site.yaml"
    config.write_text(
        f"""site: {{id: s}}
cameras:
  - {{id: cam, source: "{mall_sequence}", source_fps: 2,
      zones: [{{id: left, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}},
              {{id: right, role: waiting, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}}]}}
mqtt: {{enabled: false}}
"""
    )
    cal = tmp_path / "cal.yaml"
    result = CliRunner().invoke(
        app,
        ["calibrate", "--config", str(config), "--heads", str(heads), "--stills", "--out",
         str(cal)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "on 3 frame(s)" in result.output and "warning: only 3 labelled" in result.output
    loaded = load(cal)
    assert set(loaded) == {"left", "right"}
    assert all(c.fitted_from == "heads" and c.frames == 3 for c in loaded.values())


@pytest.mark.parametrize("args", [[], ["--counts", "a.csv", "--heads", "b.json"]])
def test_calibrate_needs_exactly_one_kind_of_label(tmp_path, args):
    result = CliRunner().invoke(app, ["calibrate", "--out", str(tmp_path / "c.yaml"), *args])
    assert result.exit_code == 1 and "--counts or --heads" in result.output


def _synthetic_sequence(directory: Path, frames: int) -> str:
    """Frames whose brightness is 10 x their index, to tell which ones a snapshot kept."""
    directory.mkdir()
    for i in range(frames):
        cv2.imwrite(str(directory / f"f_{i:04d}.png"), np.full((48, 64, 3), 10 * i, np.uint8))
    return str(directory / "f_%04d.png")


def test_snapshot_writes_n_decimated_frames_to_the_folder_only(tmp_path):
    source = _synthetic_sequence(tmp_path / "src", 12)
    config = tmp_path / "site.yaml"
    config.write_text(
        f"""site: {{id: s}}
cameras:
  - {{id: lobby, source: "{source}", source_fps: 4,
      zones: [{{id: floor, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}}]}}
mqtt: {{enabled: false}}
"""
    )
    out = tmp_path / "shots"
    before = set(tmp_path.rglob("*"))
    args = ["snapshot", "--config", str(config), "--camera", "lobby", "--count", "3",
            "--every", "0.5", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = sorted(out.iterdir())
    assert [p.name for p in written] == [f"lobby_{i:06d}.jpg" for i in range(3)]
    # 4 fps source, one frame every 0.5 s: source frames 0, 2, 4
    assert [round(float(cv2.imread(str(p)).mean()) / 10) for p in written] == [0, 2, 4]
    assert set(tmp_path.rglob("*")) - before == {out, *written}  # nothing written elsewhere
    assert str(out / "lobby_%06d.jpg") in result.output and "--heads" in result.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "already holds snapshots" in again.output
