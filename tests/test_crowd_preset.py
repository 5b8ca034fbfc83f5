"""The crowd preset (issue 11, item 2): opt-in, bytetrack_nano_mot17 at the frame's own size,
refused until the config acknowledges the model's non-commercial training data, and shown by
`doctor` whenever a config runs it. The default detector stays what it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.config import (
    CROWD_ACKNOWLEDGEMENT,
    CROWD_MODEL,
    PRESETS,
    ConfigError,
    load_config,
    parse_config,
    read_config,
)
from edge.detect import Normalization
from edge.doctor import Status, check_model
from edge.pipeline import build_detector, detector_settings
from edge.tools.preflight import check_runnable
from models.manifest import load_manifest
from tests.test_config_runnable import sequence_site

REPO = Path(__file__).resolve().parents[1]
ACK = "non-commercial-training-data"
runner = CliRunner()

SITE = """\
site: {id: branch-1}
cameras:
  - id: queue
    source: SOURCE
    zones: [{id: queue, role: queue, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}]
mqtt: {enabled: false}
"""


def parse(detector: str, environ: dict[str, str] | None = None) -> Any:
    text = SITE.replace("SOURCE", "rtsp://10.0.0.5/stream1") + detector
    return parse_config(text, source="site.yaml", environ=environ or {})


def errors_of(detector: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(detector, environ)
    return [str(issue) for issue in info.value.issues]


@pytest.fixture
def site(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site whose source is three frames of an image sequence, with the real models."""
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    return sequence_site(tmp_path, SITE)


def with_detector(site: Path, detector: str) -> Path:
    site.write_text(site.read_text() + detector)
    return site


# --- the config ------------------------------------------------------------------------------


def test_the_preset_is_never_the_default() -> None:
    detector = parse("").detector
    assert detector.preset is None and detector.model == "yolox_nano"
    assert detector.fusion.models[0].model == "person-detection-retail-0013"
    assert load_config(REPO / "configs" / "mall.yaml", environ={}).detector.preset is None


def test_the_preset_refuses_to_load_without_the_acknowledgement_naming_what_to_write() -> None:
    (error,) = errors_of("detector: {preset: crowd}\n")
    assert error.startswith("detector (line 7): ")
    assert f"set detector.licence_acknowledged: {ACK}" in error
    assert "non-commercial" in error and "MOT17" in error


@pytest.mark.parametrize("given", ["yes-i-agree", "non-commercial"])
def test_another_acknowledgement_is_refused_and_quoted(given: str) -> None:
    (error,) = errors_of(f"detector: {{preset: crowd, licence_acknowledged: {given}}}\n")
    assert f"(it is {given!r})" in error and f"licence_acknowledged: {ACK}" in error


def test_the_acknowledged_preset_runs_bytetrack_alone_at_the_frames_size() -> None:
    detector = parse(f"detector:\n  preset: crowd\n  licence_acknowledged: {ACK}\n").detector
    assert detector.preset == "crowd" and detector.licence_acknowledged == ACK
    assert (detector.model, detector.input_size) == ("bytetrack_nano_mot17", "frame")
    assert detector.confidence == 0.15
    assert not detector.tiling.enabled and detector.fusion.models == []


def test_the_acknowledgement_may_come_from_the_environment() -> None:
    environ = {"LOBBYWATCH_DETECTOR__LICENCE_ACKNOWLEDGED": ACK}
    assert parse("detector: {preset: crowd}\n", environ).detector.licence_acknowledged == ACK


def test_keys_the_preset_sets_may_not_be_set_beside_it() -> None:
    (error,) = errors_of(
        f"detector: {{preset: crowd, licence_acknowledged: {ACK}, model: yolox_nano, "
        "tiling: {enabled: true}, threads: 2}\n"
    )
    assert "remove detector.model, detector.tiling" in error
    # What the preset leaves alone stays free.
    free = parse(f"detector: {{preset: crowd, licence_acknowledged: {ACK}, threads: 2}}\n")
    assert free.detector.threads == 2


def test_an_unknown_preset_lists_the_known_one() -> None:
    (error,) = errors_of("detector: {preset: crowded}\n")
    assert error.startswith("detector.preset") and "'crowd'" in error


def test_the_presets_model_and_acknowledgement_are_the_manifests() -> None:
    entry = load_manifest().get(CROWD_MODEL)
    assert PRESETS["crowd"]["model"] == CROWD_MODEL
    assert (
        entry.license_note is not None and entry.license_note.acknowledge == CROWD_ACKNOWLEDGEMENT
    )


def test_the_sample_crowd_config_does_not_run_until_the_site_acknowledges() -> None:
    path = REPO / "configs" / "crowd.yaml"
    with pytest.raises(ConfigError, match=f"licence_acknowledged: {ACK}"):
        load_config(path, environ={})
    environ = {"LOBBYWATCH_DETECTOR__LICENCE_ACKNOWLEDGED": ACK}
    assert load_config(path, environ=environ).detector.model == CROWD_MODEL


# --- before a run: preflight, the detector, the CLI ------------------------------------------


def test_naming_the_model_without_the_preset_needs_the_acknowledgement_too(site: Path) -> None:
    with_detector(site, "detector: {model: bytetrack_nano_mot17, fusion: {models: []}}\n")
    config, source = read_config(site, environ={})
    (issue,) = check_runnable(config, source, {})
    assert issue.path == "detector.licence_acknowledged"
    assert f"set detector.licence_acknowledged: {ACK}" in issue.message
    with pytest.raises(ValueError, match=f"licence_acknowledged: {ACK}"):
        build_detector(config.detector)


def test_a_fused_model_with_a_note_needs_it_as_well(site: Path) -> None:
    with_detector(site, "detector: {fusion: {models: [{model: bytetrack_nano_mot17}]}}\n")
    config, source = read_config(site, environ={})
    assert [i.path for i in check_runnable(config, source, {})] == ["detector.licence_acknowledged"]


def test_frame_input_size_needs_a_model_the_manifest_sizes(site: Path, models_dir: Path) -> None:
    path = models_dir / "yolox_nano.onnx"
    copy = site.parent / "mine.onnx"
    copy.write_bytes(path.read_bytes())
    with_detector(
        site,
        f"detector: {{model: {copy}, family: yolox, input_size: frame, fusion: {{models: []}}}}\n",
    )
    config, source = read_config(site, environ={})
    issues = [str(i) for i in check_runnable(config, source, {})]
    assert any(i.startswith("detector.input_size") and "give the input size" in i for i in issues)


def test_the_preset_builds_bytetrack_with_its_normalization_at_the_frames_size(
    site: Path,
) -> None:
    with_detector(site, f"detector: {{preset: crowd, licence_acknowledged: {ACK}}}\n")
    config, source = read_config(site, environ={})
    assert check_runnable(config, source, {}) == []
    settings = detector_settings(config.detector)
    assert settings.model_path.name == "bytetrack_nano.onnx"
    assert settings.frame_sized and settings.input_size == (1088, 608)  # the cap
    assert settings.normalization == Normalization(
        "rgb", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    )
    assert (settings.confidence, settings.tiling, settings.person_class_id) == (0.15, None, 0)
    assert build_detector(config.detector).provider.startswith("OpenVINO:")


def test_the_default_detector_settings_are_unchanged(site: Path) -> None:
    config, _ = read_config(site, environ={})
    settings = detector_settings(config.detector)
    assert settings.model_path.name == "yolox_nano.onnx"
    assert (settings.normalization, settings.frame_sized) == (None, False)
    assert settings.input_size == (416, 416) and settings.tiling is not None


def test_validate_config_and_count_refuse_an_unacknowledged_model(site: Path) -> None:
    with_detector(site, "detector: {model: bytetrack_nano_mot17, fusion: {models: []}}\n")
    validated = runner.invoke(app, ["validate-config", str(site)])
    assert validated.exit_code == 1
    assert "detector.licence_acknowledged (line 7): bytetrack_nano_mot17: " in validated.output
    counted = runner.invoke(
        app, ["count", "--config", str(site), "--out", str(site.parent / "o.jsonl")]
    )
    assert counted.exit_code == 1 and f"licence_acknowledged: {ACK}" in counted.output
    assert "Traceback" not in counted.output


def test_run_refuses_the_unacknowledged_preset_before_starting(site: Path) -> None:
    with_detector(site, "detector: {preset: crowd}\n")
    result = runner.invoke(app, ["run", "--config", str(site)])
    assert result.exit_code == 1
    assert f"detector.licence_acknowledged: {ACK}" in result.output


# --- doctor ----------------------------------------------------------------------------------


def test_doctor_says_the_running_config_uses_a_noted_model_and_that_it_was_acknowledged(
    site: Path,
) -> None:
    with_detector(site, f"detector: {{preset: crowd, licence_acknowledged: {ACK}}}\n")
    model, licence = check_model(load_config(site, environ={}).detector)
    assert model.status is Status.OK and "sha256 ok" in model.summary
    assert licence.check == "licence" and licence.status is Status.OK
    assert "bytetrack_nano_mot17 (detector.preset: crowd) has a licence note" in licence.summary
    assert f"acknowledged by this config (detector.licence_acknowledged: {ACK})" in licence.summary
    assert any("non-commercial" in d for d in licence.details)


def test_doctor_fails_a_noted_model_the_config_did_not_acknowledge(site: Path) -> None:
    detector = parse("detector: {model: bytetrack_nano_mot17, fusion: {models: []}}\n").detector
    _, licence = check_model(detector)
    assert licence.status is Status.FAIL and "refuses to start" in licence.summary
    assert f"set detector.licence_acknowledged: {ACK}" in licence.fix


def test_doctor_shows_no_note_for_the_default_models(site: Path) -> None:
    results = check_model(load_config(site, environ={}).detector)
    assert [r.check for r in results] == ["model", "model"]
