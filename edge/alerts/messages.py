"""Alert message texts from templates, per site language (English, Simplified Chinese)."""

from __future__ import annotations

import math
import string
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

KEYS = ("raised", "escalated", "cleared", "camera_offline", "camera_online", "unknown_count")
FIELDS = {"rule", "count", "threshold", "zones", "since", "minutes", "number", "camera", "horizon"}
# Rule texts for a wait, forecast, arrivals or entrance rule and for a re-ask (the alert
# service): optional, a templates_dir without them takes the shipped ones of its language (a
# language not shipped: its own "raised" text).
RULE_KEYS = (
    "raised_wait",
    "raised_forecast_wait",
    "raised_forecast_count",
    "raised_arrivals",
    "raised_entrance",
    "reasked",
)

# The texts of the advice an alert carries (edge/alerts/advice.py), under `advice:`. One key
# per advice kind; a kind whose wording depends on who reads it or what names the zone has a
# variant key (the greeter at the entrance is told where to send people, the waiting-area
# manager what to do; a counter without a number is named by its zone).
ADVICE_KEYS = (
    "kiosks_free",
    "kiosks_full",
    "kiosks_free_entrance",
    "kiosks_full_entrance",
    "counter_unstaffed",
    "counter_unstaffed_named",
    "open_counter",
    "entrance_surge",
    "wait_rising",
)
ADVICE_FIELDS = {
    "in_use",
    "capacity",
    "counter",
    "name",
    "minutes",
    "horizon",
    "arrivals",
    "expected",
}


class MessageCatalog:
    """Templates for one language; `templates_dir` may override the shipped ones.

    A templates_dir written before advice existed keeps working: advice keys its file lacks
    are taken from the shipped templates of the same language.
    """

    def __init__(self, language: str, templates_dir: Path | None = None) -> None:
        self.language = language
        if templates_dir is not None:
            shipped = _shipped(language, missing_ok=True)
            source = str(templates_dir / f"{language}.yaml")
            templates = _load((templates_dir / f"{language}.yaml").read_text(encoding="utf-8"))
        else:
            shipped = _shipped(language)
            source = f"shipped {language}.yaml"
            templates = shipped
        missing = [k for k in KEYS if k not in templates]
        if missing:
            raise ValueError(f"message templates ({language}) lack: {', '.join(missing)}")
        for key in KEYS:
            _check(str(templates[key]), FIELDS, f"template {language}.{key}")
        self._templates: dict[str, str] = {k: str(templates[k]) for k in KEYS}
        for key in RULE_KEYS:
            text = str(templates.get(key, shipped.get(key, templates["raised"])))
            _check(text, FIELDS, f"template {language}.{key}")
            self._templates[key] = text
        advice = _advice_map(templates, source)
        fallback = _advice_map(shipped, f"shipped {language}.yaml")
        self._advice: dict[str, str] = {k: advice.get(k, fallback.get(k, "")) for k in ADVICE_KEYS}
        lacking = [k for k, v in self._advice.items() if not v]
        if lacking:  # only a language we do not ship can get here
            raise ValueError(f"advice templates ({language}) lack: {', '.join(lacking)}")
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

    def render_advice(self, kind: str, **values: Any) -> str:
        """The text of one advice. Numbers are shown as people read them: whole minutes and
        whole people (a smoothed 8.6 arrivals is "9"), rounded half up; None as "unknown"."""
        if kind not in self._advice:
            raise KeyError(f"no advice template {kind!r}; known: {', '.join(ADVICE_KEYS)}")
        shown = {name: self._shown(value) for name, value in values.items()}
        defaults = dict.fromkeys(ADVICE_FIELDS, "")
        return self._advice[kind].format(**{**defaults, **shown})

    def _shown(self, value: Any) -> Any:
        if value is None:
            return self._templates["unknown_count"]
        if isinstance(value, float) and math.isfinite(value):
            return people_round(value)
        return value


def people_round(value: float) -> int:
    """Half up, not Python's half-to-even: 2.5 minutes is shown as 3, like a person would."""
    return math.floor(value + 0.5)


def _shipped(language: str, *, missing_ok: bool = False) -> dict[str, Any]:
    path = resources.files("edge.alerts") / "templates" / f"{language}.yaml"
    if missing_ok and not path.is_file():
        return {}  # a language only the templates_dir has: it must bring all advice keys
    return _load(path.read_text(encoding="utf-8"))


def _load(text: str) -> dict[str, Any]:
    templates = yaml.safe_load(text)
    if not isinstance(templates, dict):
        raise ValueError("message templates must be a mapping of key: text")
    return templates


def _advice_map(templates: dict[str, Any], source: str) -> dict[str, str]:
    """The `advice:` map of one templates file, checked: known keys, known fields."""
    advice = templates.get("advice")
    if advice is None:
        return {}
    if not isinstance(advice, dict):
        raise ValueError(f"{source}: advice must be a mapping of advice kind: text")
    out: dict[str, str] = {}
    for key, text in advice.items():
        if key not in ADVICE_KEYS:
            raise ValueError(
                f"{source}: advice.{key} is not an advice key; known: {', '.join(ADVICE_KEYS)}"
            )
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{source}: advice.{key} must be a non-empty text")
        where = f"{source}: advice.{key}"
        _check(text, ADVICE_FIELDS, where, known=True)
        # What render_advice passes: whole numbers, the "unknown" text, a counter's label. A
        # format spec that fails on one of them ({in_use:d} with "unknown") is refused now,
        # not when an alert is being sent.
        for sample in (1, "unknown"):
            try:
                text.format(**dict.fromkeys(ADVICE_FIELDS, sample))
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                raise ValueError(f"{where} cannot be filled in ({exc}): {text!r}") from None
        out[key] = text
    return out


def _check(text: str, allowed: set[str], where: str, *, known: bool = False) -> None:
    """Refuse a template with a field render does not fill: an unknown name, a positional
    `{}` (named "{}" here) or an unbalanced brace, which would raise when the alert is sent."""
    try:
        unknown = _fields(text) - allowed
    except ValueError as exc:  # "Single '{' encountered in format string"
        raise ValueError(f"{where} is not a valid template ({exc}): {text!r}") from None
    if unknown:
        listed = f"; known: {', '.join(sorted(allowed))}" if known else ""
        raise ValueError(f"{where} uses unknown field(s) {sorted(unknown)}{listed}")


def _fields(template: str) -> set[str]:
    return {
        name or "{}" for _, name, _, _ in string.Formatter().parse(template) if name is not None
    }
