"""Config: the sample is valid; each mistake gives its own message naming the path and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edge.cli import app
from edge.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]

BASE = """\
site:
  id: branch-1
  timezone: Asia/Shanghai
cameras:
  - id: lobby
    source: rtsp://10.0.0.5/stream1
    fps: 2
    zones:
      - id: waiting
        role: waiting
        polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]
      - id: queue
        role: queue
        polygon: [[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]]
storage:
  path: data/lw.db
"""


def parse(text: str, environ: dict[str, str] | None = None):
    return parse_config(text, source="test.yaml", base_dir=Path("/srv/lw"), environ=environ or {})


def errors_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, environ)
    return [str(issue) for issue in info.value.issues]


def test_base_config_is_valid_and_relative_paths_follow_the_config_file():
    config = parse(BASE)
    assert config.site.id == "branch-1"
    assert config.storage.path == Path("/srv/lw/data/lw.db")
    assert config.cameras[0].source == "rtsp://10.0.0.5/stream1"
    assert config.detector.model == "yolox_nano"


def test_shipped_sample_config_is_valid():
    config = load_config(REPO / "configs" / "mall.yaml", environ={})
    assert config.cameras[0].source.endswith("mall/frames/seq_%06d.jpg")
    assert len(config.cameras[0].zones[0].polygon) == 8


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


BAD_CONFIGS = [
    (
        "unknown key",
        edit("  timezone: Asia/Shanghai", "  timezone: Asia/Shanghai\n  tiemzone: x"),
        "site.tiemzone (line 4): unknown key",
    ),
    ("unknown section", BASE + "alarms: {}\n", "alarms (line 17): unknown key"),
    (
        "bad timezone",
        edit("Asia/Shanghai", "Mars/Olympus"),
        "site.timezone (line 3): unknown IANA time zone",
    ),
    (
        "two-point polygon",
        edit("[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]", "[[0.1, 0.1], [0.9, 0.1]]"),
        "cameras.0.zones.0.polygon (line 11): List should have at least 3 items",
    ),
    (
        "point outside image",
        edit("[0.9, 0.9]]", "[1.2, 0.9]]"),
        "cameras.0.zones.0.polygon (line 11): point [1.2, 0.9] lies outside the frame",
    ),
    (
        "flat polygon",
        edit("[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]", "[[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]"),
        "cameras.0.zones.0.polygon (line 11): polygon has no area",
    ),
    (
        "duplicate zone ids",
        edit("- id: queue", "- id: waiting"),
        "cameras.0 (line 5): duplicate zone id(s): waiting",
    ),
    (
        "bad role",
        edit("role: queue", "role: lounge"),
        "cameras.0.zones.1.role (line 13): Input should be",
    ),
    (
        "zero fps",
        edit("fps: 2", "fps: 0"),
        "cameras.0.fps (line 7): Input should be greater than 0",
    ),
    (
        "no zones",
        edit("    zones:", "    zones: []\n    unused:"),
        "cameras.0.zones (line 8): List should have at least 1 item",
    ),
    ("missing site id", edit("  id: branch-1\n", ""), "site.id (line 1): Field required"),
    (
        "bad id characters",
        edit("id: lobby", "id: 'lobby cam/1'"),
        "cameras.0.id (line 5): String should match pattern",
    ),
    (
        "stale after offline",
        edit("fps: 2", "fps: 2\n    stale_after_s: 60\n    offline_after_s: 30"),
        "cameras.0 (line 5): offline_after_s must be greater than stale_after_s",
    ),
    ("not a mapping", "- just\n- a list\n", "(top level): the file must be a YAML mapping"),
    ("broken yaml", "site: {id: [\n", "not valid YAML"),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_each_mistake_gives_its_own_message(case, text, expected):
    errors = errors_of(text)
    assert any(expected in e for e in errors), errors


def test_duplicate_zone_ids_across_cameras_are_rejected():
    second = yaml.safe_load(BASE)
    second["cameras"].append({**second["cameras"][0], "id": "door"})
    errors = errors_of(yaml.safe_dump(second))
    assert any("duplicate zone id(s): queue, waiting" in e for e in errors), errors


def test_every_error_is_reported_not_just_the_first():
    text = edit("fps: 2", "fps: -1").replace("role: queue", "role: lounge")
    assert len(errors_of(text)) == 2


@pytest.mark.parametrize(
    ("var", "value", "check"),
    [
        ("LOBBYWATCH_DETECTOR__CONFIDENCE", "0.4", lambda c: c.detector.confidence == 0.4),
        (
            "LOBBYWATCH_STORAGE__PATH",
            "/var/lib/x.db",
            lambda c: c.storage.path == Path("/var/lib/x.db"),
        ),
        ("LOBBYWATCH_CAMERAS__LOBBY__SOURCE", "usb:0", lambda c: c.cameras[0].source == "usb:0"),
        ("LOBBYWATCH_CAMERAS__0__FPS", "5", lambda c: c.cameras[0].fps == 5.0),
        ("LOBBYWATCH_DETECTOR__TILING__GRID", "[3, 2]", lambda c: c.detector.tiling.grid == (3, 2)),
        (
            "LOBBYWATCH_MODELS",
            "/opt/models",
            lambda c: c.detector.model == "yolox_nano",
        ),  # not an override
    ],
)
def test_environment_overrides_any_value(var, value, check):
    assert check(parse(BASE, {var: value}))


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"LOBBYWATCH_DETECTOR__CONFIDENCE": "7"},
            "detector.confidence (from environment LOBBYWATCH_DETECTOR__CONFIDENCE): Input should be less",
        ),
        (
            {"LOBBYWATCH_CAMERAS__NOPE__FPS": "5"},
            "cameras.nope.fps (from environment LOBBYWATCH_CAMERAS__NOPE__FPS): no list item",
        ),
        (
            {"LOBBYWATCH_SITE__COLOUR": "red"},
            "site.colour (from environment LOBBYWATCH_SITE__COLOUR): unknown key",
        ),
    ],
)
def test_bad_environment_overrides_name_the_variable(environ, expected):
    errors = errors_of(BASE, environ)
    assert any(expected in e for e in errors), errors


def test_env_references_in_strings_expand_with_defaults():
    text = edit("rtsp://10.0.0.5/stream1", "${CAM_URL:-rtsp://fallback/1}")
    assert parse(text).cameras[0].source == "rtsp://fallback/1"
    assert parse(text, {"CAM_URL": "rtsp://set/2"}).cameras[0].source == "rtsp://set/2"
    missing = edit("rtsp://10.0.0.5/stream1", "${CAM_URL}")
    assert any("CAM_URL is not set" in e for e in errors_of(missing))


def test_validate_config_command_exit_codes(tmp_path, models_dir, monkeypatch):
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))  # it also checks the models
    runner = CliRunner()
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    result = runner.invoke(app, ["validate-config", str(good)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(edit("fps: 2", "fps: 0").replace("role: queue", "role: lounge"))
    result = runner.invoke(app, ["validate-config", str(bad)])
    assert result.exit_code == 1
    assert "cameras.0.fps (line 7)" in result.output
    assert "cameras.0.zones.1.role (line 13)" in result.output

    result = runner.invoke(app, ["validate-config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert "cannot read file" in result.output


def test_the_head_office_feed_needs_topics_without_dots():
    """NATS drops a client publishing a topic with a '.': a bridge would retry for ever."""
    dotted = BASE.replace("id: branch-1", "id: branch.1")
    assert parse(dotted).site.id == "branch.1"  # fine without the feed
    errors = errors_of(dotted + "central: {enabled: true}\n")
    assert any("'branch.1' (site.id or mqtt.topic_prefix) has one" in e for e in errors), errors
    assert parse(BASE + "central: {enabled: true}\n").central.enabled


def test_the_head_office_feed_needs_a_topic_prefix_of_one_level():
    """The centre reads <prefix>.<site>.history.<kind>: a two-level prefix would not parse."""
    two = BASE + "mqtt: {topic_prefix: bank/lobbywatch}\n"
    assert parse(two).mqtt.topic_prefix == "bank/lobbywatch"  # fine without the feed
    errors = errors_of(two + "central: {enabled: true}\n")
    assert any("'bank/lobbywatch' has more than one level" in e for e in errors), errors
    one = BASE + "mqtt: {topic_prefix: bank1}\ncentral: {enabled: true}\n"
    assert parse(one).central.enabled
