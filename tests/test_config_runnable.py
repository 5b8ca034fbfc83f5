"""validate-config and run refuse what cannot run here: models, files, frames and variables
(issue 10, item 7); `models verify` fails on a needed model that is missing; overrides reach
list items whose id has a `-`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.config import read_config
from edge.tools.preflight import check_runnable

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

SITE = """\
site: {id: branch-1}
detector:
  model: yolox_nano
cameras:
  - id: lobby
    source: SOURCE
    zones:
      - {id: waiting, role: waiting, polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]}
      - {id: queue, role: queue, polygon: [[0, 0], [0.5, 0], [0.5, 0.5]]}
mqtt: {enabled: false}
"""


@pytest.fixture
def site(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config that runs here: real models, three frames of an image sequence."""
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    return sequence_site(tmp_path, SITE)


def sequence_site(tmp_path: Path, text: str) -> Path:
    """`text` as tmp_path/site.yaml, its SOURCE three frames of an image sequence beside it
    (bytes that only look like JPEG files: enough for the checks that do not decode them)."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        (frames / f"seq_{i:06d}.jpg").write_bytes(b"jpeg")
    path = tmp_path / "site.yaml"
    path.write_text(text.replace("SOURCE", "frames/seq_%06d.jpg"))
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    config, source = read_config(path, environ={})
    return [str(p) for p in check_runnable(config, source, environ or {})]


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_config_that_can_run_has_no_problems(site):
    assert problems(site) == []
    result = runner.invoke(app, ["validate-config", str(site)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "model: yolox_nano",
            "model: yolox_nan",
            "detector.model (line 3): unknown model 'yolox_nan' (did you mean 'yolox_nano'?)",
        ),
        (
            "model: yolox_nano",
            "model: models/mine.onnx",
            "detector.model (line 3): no model file models/mine.onnx",
        ),
        (
            "frames/seq_%06d.jpg",
            "elsewhere/seq_%06d.jpg",
            "cameras.0.source (line 6): image sequence directory ",
        ),
        (
            "frames/seq_%06d.jpg",
            "frames/img_%04d.png",
            "cameras.0.source (line 6): no frame in ",
        ),
        (
            "frames/seq_%06d.jpg",
            "lobby.mp4",
            "cameras.0.source (line 6): video file ",
        ),
        (
            "mqtt: {enabled: false}",
            "mqtt: {enabled: false}\napi: {keys: [{id: tv, role: viewer, env: LW_TV_KEY}]}",
            "api.keys.0.env (line 11): environment variable LW_TV_KEY is not set",
        ),
        (
            "    zones:",
            "    calibration: /dev/zero\n    zones:",
            "cameras.0.calibration (line 7): /dev/zero is not a regular file",
        ),
        (
            "mqtt: {enabled: false}",
            "mqtt: {enabled: false, password_file: missing.pw}",
            "mqtt.password_file (line 10): missing.pw: no such file",
        ),
    ],
)
def test_what_cannot_run_is_reported_at_its_line(site, old, new, expected):
    found = problems(edit(site, old, new))
    assert any(expected in p for p in found), found


def test_a_missing_and_a_damaged_model_are_told_apart(site, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(empty))
    (missing,) = problems(edit(site, "detector:", "detector:\n  fusion: {models: []}"))
    assert missing.startswith(f"detector.model (line 4): model 'yolox_nano' not found in {empty}")
    assert "run `lobbywatch models fetch yolox_nano` on a connected machine" in missing
    (empty / "yolox_nano.onnx").write_bytes(b"not the model")
    (damaged,) = problems(site)
    assert damaged.startswith(f"detector.model (line 4): {empty / 'yolox_nano.onnx'}: sha256 ")
    assert "expected 695e750a" in damaged and damaged.endswith("fetch or export yolox_nano again")


def test_an_environment_variable_set_makes_the_key_problem_go(site):
    edit(site, "mqtt: {enabled: false}", "api: {keys: [{id: tv, role: viewer, env: LW_TV_KEY}]}")
    assert problems(site, {"LW_TV_KEY": "s3cret-key"}) == []


def test_run_refuses_to_start_with_the_same_messages(site):
    edit(site, "model: yolox_nano", "model: yolox_nan")
    checked = runner.invoke(app, ["validate-config", str(site)])
    started = runner.invoke(app, ["run", "--config", str(site)])
    assert checked.exit_code == started.exit_code == 1
    assert "did you mean 'yolox_nano'?" in checked.output
    assert started.output == checked.output


def test_schema_only_skips_what_this_machine_has(site):
    edit(site, "model: yolox_nano", "model: yolox_nan")
    result = runner.invoke(app, ["validate-config", "--schema-only", str(site)])
    assert result.exit_code == 0, result.output


def test_an_unknown_zone_in_a_rule_is_reported_at_its_item_with_a_suggestion(site):
    rules = "alerts:\n  rules:\n    - id: full\n      zones:\n        - waiting\n        - queu\n"
    site.write_text(site.read_text() + rules + "      raise_at: 5\n      clear_at: 2\n")
    result = runner.invoke(app, ["validate-config", str(site)])
    assert result.exit_code == 1
    assert (
        "alerts.rules.0.zones.1 (line 16): alert rule 'full' watches unknown zone 'queu' "
        "(did you mean 'queue'?) (zones: waiting, queue)"
    ) in result.output


# --- models verify ---------------------------------------------------------------------------


def test_models_verify_fails_when_a_needed_model_is_missing(tmp_path, monkeypatch, models_dir):
    only_yolox = tmp_path / "models"
    only_yolox.mkdir()
    (only_yolox / "yolox_nano.onnx").symlink_to(models_dir / "yolox_nano.onnx")
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(only_yolox))
    fused = tmp_path / "fused.yaml"
    fused.write_text(SITE.replace("SOURCE", "rtsp://10.0.0.5/s"))
    alone = tmp_path / "alone.yaml"
    alone.write_text(SITE.replace("SOURCE", "rtsp://10.0.0.5/s").replace(
        "  model: yolox_nano", "  model: yolox_nano\n  fusion: {models: []}"
    ))  # fmt: skip

    everything = runner.invoke(app, ["models", "verify"])  # no config: the manifest's models
    with_fusion = runner.invoke(app, ["models", "verify", "--config", str(fused)])
    without = runner.invoke(app, ["models", "verify", "--config", str(alone)])

    assert everything.exit_code == 1 and "yolov8n_int8_dynamic: MISSING" in everything.stdout
    assert with_fusion.exit_code == 1
    assert "person-detection-retail-0013: MISSING" in with_fusion.stdout
    assert "error: person-detection-retail-0013 not found in" in with_fusion.stderr
    assert without.exit_code == 0, without.output
    assert "yolox_nano: ok" in without.stdout and "MISSING" not in without.stdout


def test_models_verify_with_every_model_present_passes(monkeypatch, models_dir):
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    result = runner.invoke(app, ["models", "verify"])
    assert result.exit_code == 0, result.output


# --- overrides of ids with a `-` ------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("LOBBYWATCH_ALERTS__RULES__WAITING_FULL__RAISE_AT", "40.0"),  # - written as _
        ("LOBBYWATCH_ALERTS__RULES__WAITING-FULL__RAISE_AT", "40.0"),  # exact id (env only)
        ("LOBBYWATCH_ALERTS__RULES__0__RAISE_AT", "40.0"),
        (
            "LOBBYWATCH_ALERTS__RULES__WAITNG_FULL__RAISE_AT",
            "no list item with index or id 'waitng_full' (did you mean 'WAITING_FULL'?)",
        ),
    ],
)
def test_an_override_reaches_a_rule_whose_id_has_a_dash_in_a_real_process(variable, expected):
    if shutil.which("env") is None:
        pytest.skip("no env(1)")
    script = (
        "from edge.config import ConfigError, load_config\n"
        "try:\n    print(load_config('configs/mall.yaml').alerts.rules[0].raise_at)\n"
        "except ConfigError as e:\n    print(e)\n"
    )
    result = subprocess.run(
        ["env", f"{variable}=40", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("LOBBYWATCH_ALERTS")},
    )
    assert expected in result.stdout, result.stdout + result.stderr


def test_an_override_matching_two_ids_is_an_error_not_a_guess(tmp_path):
    rules = (
        "alerts:\n  rules:\n"
        "    - {id: hall-full, zones: [waiting], raise_at: 5, clear_at: 2}\n"
        "    - {id: hall.full, zones: [waiting], raise_at: 5, clear_at: 2}\n"
    )
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("SOURCE", "rtsp://h/s") + rules)
    from edge.config import ConfigError

    with pytest.raises(ConfigError) as info:
        read_config(path, environ={"LOBBYWATCH_ALERTS__RULES__HALL_FULL__RAISE_AT": "9"})
    assert "'hall_full' matches the ids hall-full, hall.full: address the item by index" in str(
        info.value
    )
