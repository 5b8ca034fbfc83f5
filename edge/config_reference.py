"""The config reference (docs/config.md) and JSON Schema (docs/config.schema.json), generated.

Both come from the models in edge/config.py, so the documented keys, types, defaults and bounds
are the ones the loader enforces; `lobbywatch config reference` rewrites them and a test fails
when the committed files differ (tests/test_config_reference.py). Pure: returns text, and only
`write_reference` touches the disk.
"""

from __future__ import annotations

import inspect
import json
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from edge.config import ID_PATTERN, LobbyConfig, TimeRange

#: Patterns of named string types, shown by name rather than as a regular expression.
NAMED_PATTERNS = {
    ID_PATTERN: "id",
    get_args(TimeRange)[1].metadata[0].pattern: "time range `HH:MM-HH:MM`",
}
SCHEMA_FILE = "config.schema.json"
REFERENCE_FILE = "config.md"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
TITLE = "lobbywatch site configuration"
#: The raw file on the project's repository would do too; a relative path works offline.
SCHEMA_COMMENT = f"# yaml-language-server: $schema=../docs/{SCHEMA_FILE}"

INTRO = f"""\
# Configuration reference

<!-- Generated from edge/config.py by `lobbywatch config reference`: edit the models, not this
file. tests/test_config_reference.py fails when it is out of date. -->

One YAML file per site (`/etc/lobbywatch/lobbywatch.yaml`, or `--config FILE`), checked by
`lobbywatch validate-config FILE`. Unknown keys are refused, every error names its path and
line. Any value can be overridden from the environment as
`LOBBYWATCH_<SECTION>__<KEY>[__<KEY>...]=<yaml value>`, list items by index or by their `id`
(`LOBBYWATCH_CAMERAS__LOBBY__SOURCE=rtsp://...`), and strings may refer to variables as
`${{NAME}}` or `${{NAME:-default}}`. Relative paths are taken from the config file's folder.
Secrets (keys, passwords, channel URLs) are never written in the file: they come from an
environment variable or a file the config names.

**In an editor**: [`{SCHEMA_FILE}`]({SCHEMA_FILE}) is the same reference as a JSON Schema.
With the YAML language server (VS Code's YAML extension, Neovim, Helix, ...) a first line as in

```yaml
{SCHEMA_COMMENT}
```

(configs/mall.yaml's; the path is relative to the config file) completes keys, shows these descriptions and marks
mistakes as you type. A value written as `${{VAR}}` is a string to the editor, so it may flag one
where a number is due; the loader accepts it.

Polygons (zones, ignore masks, motion masks) are lists of at least 3 points `[x, y]` as
fractions of the frame, not pixels: x / width, y / height, from the top left corner, x right,
y down. In a 640x480 frame the pixel (120, 300) is `[0.1875, 0.625]`.

Bounds: `>= a` and `<= b` include the bound, `> a` and `< b` exclude it. A section not in the
file takes the defaults of all its keys.
"""


@dataclass(frozen=True)
class _Section:
    """A model, where it sits in the file (`cameras[].zones[]`) and how it got there."""

    path: str
    model: type[BaseModel]
    is_list: bool
    description: str


def json_schema() -> dict[str, Any]:
    """LobbyConfig's JSON Schema, with the dialect and a title an editor shows."""
    schema = LobbyConfig.model_json_schema()
    schema.pop("title", None)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": TITLE,
        "description": "A lobbywatch site config (YAML); see docs/config.md.",
        **schema,
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def reference_markdown() -> str:
    """docs/config.md: every section in the models' order, a table of its keys each."""
    schema = json_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    root = _Section("", LobbyConfig, False, "")
    parts = [INTRO, "## Sections\n"]
    for name, field in LobbyConfig.model_fields.items():
        required = " (required)" if field.is_required() else ""
        child = _child_section("", name, field)
        kind = "list of sections" if child and child.is_list else "section"
        link = f"[`{name}`](#{_anchor(name)})"
        about = _prose(_first_sentence(_section_text(field)))
        parts.append(f"- {link}: {kind}{required}. {about}")
    parts.append("")
    for section in _sections(root):
        parts.append(_section_markdown(section, _schema_of(section.model, schema, defs), defs))
    return "\n".join(parts).rstrip() + "\n"


def write_reference(folder: Path) -> list[Path]:
    """Write both files into `folder` (created if missing); the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((REFERENCE_FILE, reference_markdown()), (SCHEMA_FILE, schema_text())):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# --- walking the models ----------------------------------------------------------------------


def _sections(section: _Section) -> list[_Section]:
    """`section` and every section below it, depth first in field order (as in a file)."""
    found = [section] if section.path else []
    for name, field in section.model.model_fields.items():
        child = _child_section(section.path, name, field)
        if child is not None:
            found.extend(_sections(child))
    return found


def _child_section(parent: str, name: str, field: FieldInfo) -> _Section | None:
    model, is_list = _model_in(field.annotation)
    if model is None:
        return None
    path = f"{parent}.{name}" if parent else name
    return _Section(path + ("[]" if is_list else ""), model, is_list, _section_text(field))


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (itself, optional, or a list of it) and whether it is a list."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _model_in(args[0])
    if origin in (Union, types.UnionType):
        for arg in args:
            model, is_list = _model_in(arg)
            if model is not None:
                return model, is_list
        return None, False
    if origin is list and args:
        model, _ = _model_in(args[0])
        return model, model is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _schema_of(model: type[BaseModel], root: dict[str, Any], defs: dict[str, Any]) -> Any:
    return root if model is LobbyConfig else defs[model.__name__]


def _section_text(field: FieldInfo) -> str:
    """What a section is for: its field's description, else its model's docstring."""
    model, _ = _model_in(field.annotation)
    doc = _docstring(model) if model is not None else ""
    return field.description or doc


def _docstring(model: type[BaseModel]) -> str:
    doc = model.__dict__.get("__doc__")  # not a base class's
    return " ".join(inspect.cleandoc(doc).split()) if doc else ""


def _first_sentence(text: str) -> str:
    head = re.split(r"\.\s+(?=[A-Z])", text, maxsplit=1)[0].rstrip(".")  # not at "e.g. a"
    return f"{head}." if head else ""


# --- rendering ---------------------------------------------------------------------------------


def _section_markdown(section: _Section, schema: dict[str, Any], defs: dict[str, Any]) -> str:
    depth = section.path.count(".") + 2
    heading = "#" * min(depth, 5)
    lines = [f'<a id="{_anchor(section.path)}"></a>', f"{heading} `{section.path}`", ""]
    doc = _docstring(section.model)
    if section.description and section.description != doc:
        lines += [_prose(_sentence(section.description)), ""]
    if doc:
        lines += [_prose(doc), ""]
    if section.is_list:
        item = section.path.rsplit(".", 1)[-1].removesuffix("[]")
        ids = "id" in section.model.model_fields
        lines += [
            f"`{item}` is a list: each item is a mapping with the keys below"
            + (", its `id` unique (environment overrides address an item by it)" if ids else "")
            + ".",
            "",
        ]
    lines += ["| Key | Type | Default | Bounds | Description |", "| --- | --- | --- | --- | --- |"]
    properties: dict[str, Any] = schema.get("properties", {})
    for name, field in section.model.model_fields.items():
        key = field.alias or name
        fragment = properties.get(key, {})
        child = _child_section(section.path, name, field)
        if child is not None:
            link = f"[{'list of sections' if child.is_list else 'section'}](#{_anchor(child.path)})"
            kind, bounds = link, _bounds(fragment) if child.is_list else ""
            default = _default_of(field) if child.is_list else "see section"
            description = _first_sentence(child.description)
        else:
            kind, bounds = _type_of(fragment, defs), _bounds(fragment)
            default = _default_of(field)
            description = field.description or fragment.get("description", "")
        lines.append(
            "| "
            + " | ".join(
                _cell(c)
                for c in (f"`{key}`", kind, default, bounds, _prose(_sentence(description)))
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _anchor(path: str) -> str:
    return path.replace("[]", "").replace(".", "-").replace("_", "-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _prose(text: str) -> str:
    """A description as Markdown: a <word> outside `code` shown, not taken for an HTML tag."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if not text or text.endswith((".", "?", "!")) else text + "."


def _default_of(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    return f"`{_yaml_flow(value)}`"


def _yaml_flow(value: Any) -> str:
    """A default as a YAML flow value: lists of sections without their own defaults."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    elif isinstance(value, list):
        value = [
            v.model_dump(mode="json", exclude_defaults=True) if isinstance(v, BaseModel) else v
            for v in value
        ]
    return json.dumps(to_jsonable_python(value), ensure_ascii=False)


def _type_of(fragment: dict[str, Any], defs: dict[str, Any]) -> str:
    """A field's type in words, from its JSON Schema (what the loader accepts)."""
    if "$ref" in fragment:
        return str(defs.get(fragment["$ref"].rsplit("/", 1)[-1], {}).get("title", "section"))
    if "anyOf" in fragment:
        return " or ".join(_type_of(f, defs) for f in fragment["anyOf"])
    if "enum" in fragment:
        return "one of " + ", ".join(f"`{_enum_value(v)}`" for v in fragment["enum"])
    if "const" in fragment:
        return f"`{_enum_value(fragment['const'])}`"
    kind = fragment.get("type")
    if kind == "array":
        if "prefixItems" in fragment:
            items = [_type_of(f, defs) for f in fragment["prefixItems"]]
            return "[" + ", ".join(items) + "]"
        item = _type_of(fragment.get("items", {}), defs)
        return f"list, each {item}" if item.startswith("one of") else f"list of {_plural(item)}"
    if kind == "object":
        values = fragment.get("additionalProperties")
        keys = fragment.get("propertyNames")
        if isinstance(values, dict):
            key_kind = _type_of(keys, defs) if keys else "string"
            return f"mapping of {key_kind} to {_type_of(values, defs)}"
        return "mapping"
    if kind == "string":
        if fragment.get("pattern") in NAMED_PATTERNS:
            return NAMED_PATTERNS[fragment["pattern"]]
        return {"path": "path", "password": "secret string", "date": "date (YYYY-MM-DD)"}.get(
            fragment.get("format", ""), "string"
        )
    return {"number": "number", "integer": "integer", "boolean": "boolean", "null": "null"}.get(
        kind or "", "any"
    )


def _enum_value(value: Any) -> str:
    """A choice as written in YAML: a plain word unquoted (`waiting`), anything else as JSON."""
    if isinstance(value, str) and value.replace("_", "").replace("-", "").isalnum():
        return value
    return _yaml_flow(value)


def _plural(kind: str) -> str:
    simple = {"number", "integer", "string", "id", "path", "boolean"}
    return kind + "s" if kind in simple else kind


def _bounds(fragment: dict[str, Any]) -> str:
    """Bounds of a value (or of each variant of a union, or of each item of a list)."""
    if "anyOf" in fragment:
        return "; ".join(b for b in (_bounds(f) for f in fragment["anyOf"]) if b)
    found = []
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in fragment:
            found.append(f"{sign} {fragment[key]:g}")
    if "minLength" in fragment or "maxLength" in fragment:
        found.append(_count("characters", fragment.get("minLength"), fragment.get("maxLength")))
    fixed = "prefixItems" in fragment  # a tuple: its length is in its type, [x, y]
    if ("minItems" in fragment or "maxItems" in fragment) and not fixed:
        found.append(_count("items", fragment.get("minItems"), fragment.get("maxItems")))
    pattern = fragment.get("pattern")
    if pattern and pattern not in NAMED_PATTERNS:
        found.append(f"matches `{pattern}`")
    if fragment.get("type") == "array":
        items = fragment.get("prefixItems") or [fragment.get("items", {})]
        inner = {_bounds(item) for item in items} - {""}
        nested = not fixed and items[0].get("type") == "array"  # [x, y] points: "each" once
        if len(inner) == 1:
            found.append(inner.pop() if nested else f"each {inner.pop()}")
        elif inner:
            found.append("; ".join(f"item {i + 1}: {_bounds(f)}" for i, f in enumerate(items)))
    if fragment.get("type") == "object" and isinstance(fragment.get("additionalProperties"), dict):
        inner_bounds = _bounds(fragment["additionalProperties"])
        if inner_bounds:
            found.append(f"each value {inner_bounds}")
    return ", ".join(found)


def _count(what: str, low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{low} to {high} {what}" if low != high else f"{low} {what}"
    if low is not None:
        return f"at least {low} {what[:-1] if low == 1 else what}"
    return f"at most {high} {what}"
