"""docs/config.md and docs/config.schema.json: generated from the config models, never stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edge.cli import app
from edge.config import LobbyConfig
from edge.config_reference import (
    JSON_SCHEMA_DIALECT,
    SCHEMA_COMMENT,
    _child_section,
    _Section,
    _sections,
)

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    result = CliRunner().invoke(app, ["config", "reference", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"written {out / 'config.md'}" in result.output
    return out


@pytest.mark.parametrize("name", ["config.md", "config.schema.json"])
def test_the_committed_reference_is_what_the_models_generate(generated, name):
    committed = (DOCS / name).read_text(encoding="utf-8")
    assert committed == (generated / name).read_text(encoding="utf-8"), (
        f"docs/{name} is out of date: run `lobbywatch config reference` to update it"
    )


def every_section() -> list[_Section]:
    return _sections(_Section("", LobbyConfig, False, ""))


def test_every_section_has_a_heading_and_every_key_a_row_in_the_models_order():
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    sections = every_section()
    assert {"cameras[]", "cameras[].zones[]", "cameras[].gating.masks[]", "alerts.rules[]"} <= {
        s.path for s in sections
    }
    position = 0
    for section in sections:
        heading = f"# `{section.path}`\n"
        assert heading in text, section.path
        start = text.index(heading)
        end = text.find("\n<a id=", start)
        body = text[start : end if end != -1 else len(text)]
        assert start > position, f"{section.path} out of the models' order"
        position = start
        rows = [line.split(" | ")[0][2:] for line in body.splitlines() if line.startswith("| `")]
        keys = [f"`{f.alias or n}`" for n, f in section.model.model_fields.items()]
        assert rows == keys, section.path
        if section.is_list:
            assert "is a list: each item is a mapping with the keys below" in body


@pytest.mark.parametrize(
    "row",
    [
        # type, default, bounds and description, each from the model
        "| `fps` | number | `2.0` | > 0, <= 60 | Frames per second to process (decimation). |",
        "| `id` | id | required |  | Site (branch) identifier, used in topics and records. |",
        "| `zones` | [list of sections](#cameras-zones) | required | at least 1 item |",
        "| `polygon` | list of [number, number] | required | at least 3 items, each >= 0, <= 1 |",
        "| `role` | one of `waiting`, `queue`, `service`, `entrance`, `self_service`, `staff` |"
        " required |",
        "| `session_ttl_s` | integer | `28800` | >= 60, <= 604800 |",
        '| `topic_prefix` | string | `"lobbywatch"` | matches `^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$` |',
        "| `time` | time range `HH:MM-HH:MM` | required |",
        # a <placeholder> in a description stays visible (not taken for an HTML tag)
        "default https://&lt;this machine's name&gt;:&lt;port&gt;. |",
    ],
)
def test_rows_give_type_default_bounds_and_description(row):
    assert row in (DOCS / "config.md").read_text(encoding="utf-8")


def test_every_field_has_a_description_so_the_reference_and_the_editor_explain_it():
    missing = []
    for section in [_Section("", LobbyConfig, False, ""), *every_section()]:
        for name, field in section.model.model_fields.items():
            child = _child_section(section.path, name, field)
            described = child.description if child is not None else field.description
            # an id's type says what an id is
            if not described and name != "id":
                missing.append(f"{section.path or '(top)'}.{name}")
    assert missing == []


def test_the_schema_names_its_dialect_and_title_and_editors_are_told_how_to_use_it():
    schema = json.loads((DOCS / "config.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == JSON_SCHEMA_DIALECT
    assert schema["title"] == "lobbywatch site configuration"
    assert schema["additionalProperties"] is False
    reference = (DOCS / "config.md").read_text(encoding="utf-8")
    assert SCHEMA_COMMENT in reference
    sample = (REPO / "configs" / "mall.yaml").read_text(encoding="utf-8")
    assert sample.splitlines()[0] == SCHEMA_COMMENT
    # the comment's path, relative to the config, is the schema
    target = SCHEMA_COMMENT.split("$schema=")[1]
    assert (REPO / "configs" / target).resolve() == (DOCS / "config.schema.json").resolve()


@pytest.fixture(scope="module")
def validator():
    jsonschema_rs = pytest.importorskip("jsonschema_rs", reason="schemathesis (dev) brings it")
    schema = json.loads((DOCS / "config.schema.json").read_text(encoding="utf-8"))
    return jsonschema_rs.Draft202012Validator(schema)


@pytest.mark.parametrize("name", ["mall.yaml", "crowd.yaml"])
def test_an_editor_finds_no_fault_in_the_shipped_configs(validator, name):
    data = yaml.safe_load((REPO / "configs" / name).read_text(encoding="utf-8"))
    assert [e.message for e in validator.iter_errors(data)] == []


def test_an_editor_marks_a_misspelt_key_and_a_polygon_in_pixels(validator):
    data = yaml.safe_load((REPO / "configs" / "mall.yaml").read_text(encoding="utf-8"))
    data["site"]["tiemzone"] = "Asia/Shanghai"
    data["cameras"][0]["zones"][0]["polygon"][0] = [120, 300]
    paths = sorted(
        "/".join(str(p) for p in error.instance_path) for error in validator.iter_errors(data)
    )
    assert paths == ["cameras/0/zones/0/polygon/0/0", "cameras/0/zones/0/polygon/0/1", "site"]


def test_the_reference_command_says_why_when_it_cannot_write(tmp_path):
    blocker = tmp_path / "docs"
    blocker.write_text("a file, not a folder")
    result = CliRunner().invoke(app, ["config", "reference", "--out", str(blocker)])
    assert result.exit_code == 1
    assert f"error: cannot write to {blocker}" in result.output
