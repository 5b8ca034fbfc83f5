"""Alert message texts from templates, per site language (English, Simplified Chinese)."""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

KEYS = ("raised", "escalated", "cleared", "camera_offline", "camera_online", "unknown_count")
FIELDS = {"rule", "count", "threshold", "zones", "since", "minutes", "number", "camera"}


class MessageCatalog:
    """Templates for one language; `templates_dir` may override the shipped ones."""

    def __init__(self, language: str, templates_dir: Path | None = None) -> None:
        self.language = language
        if templates_dir is not None:
            text = (templates_dir / f"{language}.yaml").read_text(encoding="utf-8")
        else:
            text = (resources.files("edge.alerts") / "templates" / f"{language}.yaml").read_text(
                encoding="utf-8"
            )
        templates = yaml.safe_load(text)
        missing = [k for k in KEYS if k not in templates]
        if missing:
            raise ValueError(f"message templates ({language}) lack: {', '.join(missing)}")
        for key in KEYS:
            unknown = _fields(templates[key]) - FIELDS
            if unknown:
                raise ValueError(
                    f"template {language}.{key} uses unknown field(s) {sorted(unknown)}"
                )
        self._templates: dict[str, str] = {k: str(templates[k]) for k in KEYS}
        self.separator = "、" if language.startswith("zh") else ", "

    def render(self, key: str, **values: Any) -> str:
        if values.get("count") is None:
            values["count"] = self._templates["unknown_count"]
        elif isinstance(values["count"], float):
            values["count"] = f"{values['count']:g}"
        if isinstance(values.get("zones"), list | tuple):
            values["zones"] = self.separator.join(values["zones"])
        defaults = dict.fromkeys(FIELDS, "")
        return self._templates[key].format(**{**defaults, **values})


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}
