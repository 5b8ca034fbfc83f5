"""The model manifest: which weights exist, where they come from, and their sha256.

The manifest is outside data (a YAML file someone edits by hand), so it is validated with
pydantic on load: unknown keys are rejected and an error names the file, the key path and the
line, instead of surfacing later as a KeyError deep in the detector.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Family = Literal["yolox", "ultralytics", "openvino_ssd", "openvino_boxes"]
"""Decoder family: decides pre-processing and how the raw output is turned into boxes."""

ACKNOWLEDGE_KEY = "detector.licence_acknowledged"
"""The config key by which a site accepts a model's license_note."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URL_SCHEMES = ("http", "https", "file")


class ModelError(Exception):
    """Base of every error in `models`, so a CLI can report them all without a traceback."""


class ManifestError(ModelError):
    """The manifest file is missing, is not YAML, or breaks the schema."""


class UnknownModelError(ModelError, KeyError):
    """A name that the manifest does not list."""

    def __str__(self) -> str:
        # KeyError.__str__ quotes its argument; this message is meant to be read as is.
        return str(self.args[0]) if self.args else ""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelFile(_Strict):
    """One file of a model, pinned by content."""

    path: str = Field(
        description="POSIX path relative to a models directory, e.g. 'agpl/yolov8n.onnx'."
    )
    sha256: str = Field(description="Lower-case hex sha256 of the exact bytes.")
    url: str = Field(description="Pinned http(s) or file:// download whose bytes match sha256.")
    size: int | None = Field(default=None, gt=0, description="Size in bytes, if known.")

    @field_validator("path")
    @classmethod
    def _relative_inside(cls, value: str) -> str:
        # A path that escapes the models directory would let a manifest overwrite any file.
        p = PurePosixPath(value)
        if not value or p.is_absolute() or ".." in p.parts or "\\" in value:
            raise ValueError("must be a relative POSIX path inside the models directory")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be 64 lower-case hex characters")
        return value

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in _URL_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(_URL_SCHEMES)}")
        return value


class ClassMap(_Strict):
    """Which class id means 'person' in the model's raw output; all lobbywatch counts."""

    set: Literal["coco80", "person_only", "person_vehicle_bike"] = Field(
        description="coco80: the 80 COCO classes in the usual order; person_only: one class; "
        "person_vehicle_bike: Intel's labels 0 vehicle, 1 person, 2 bike."
    )
    person: int = Field(ge=0, description="Class id (or SSD label) of a person.")

    @model_validator(mode="after")
    def _person_id_of_the_set(self) -> ClassMap:
        if self.set == "coco80" and self.person != 0:
            raise ValueError("in coco80 the person class is 0")
        if self.set == "person_vehicle_bike" and self.person != 1:
            raise ValueError("in person_vehicle_bike the person label is 1 (0 vehicle, 2 bike)")
        return self


class Preprocess(_Strict):
    """The input of a model trained otherwise than its family: (pixel - mean) / std per
    channel, pixel 0-255 in `channels` order, mean and std in pixel units in that order (as
    OpenVINO's mean_values / scale_values). Without it a model gets its family's own input."""

    channels: Literal["bgr", "rgb"] = Field(description="Channel order the model expects.")
    mean: tuple[float, float, float] = Field(
        (0.0, 0.0, 0.0), description="Subtracted per channel, in 0-255 pixel units."
    )
    std: tuple[float, float, float] = Field(
        (1.0, 1.0, 1.0), description="Divisor per channel (> 0), in 0-255 pixel units."
    )

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError("every std must be > 0")
        return value


class LicenseNote(_Strict):
    """Terms beyond `license` that a site must be told of and accept before it runs the model
    (weights under a permissive licence, trained on data whose terms are not)."""

    text: str = Field(min_length=1, description="What the site must know, in a few sentences.")
    acknowledge: str = Field(
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
        description=f"The value a config must give in {ACKNOWLEDGE_KEY} to run the model.",
    )


class ModelEntry(_Strict):
    """One model: its files plus what a detector needs to run it."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", description="Name used on the CLI.")
    family: Family
    description: str
    input_size: tuple[int, int] = Field(description="Network input [width, height] in pixels.")
    classes: ClassMap
    files: tuple[ModelFile, ...] = Field(min_length=1, description="Primary file first.")
    license: str = Field(description="SPDX identifier of the weights' licence.")
    shippable: bool = Field(description="False for AGPL weights: tests and benchmarks only.")
    source: str = Field(description="Where the pinned bytes come from, in words.")
    upstream: str = Field(description="Official project page or release of the weights.")
    preprocess: Preprocess | None = Field(
        None, description="Input normalization, where it is not the family's own (yolox only)."
    )
    license_note: LicenseNote | None = Field(
        None, description="Terms a site must acknowledge in its config before running it."
    )

    @field_validator("input_size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) <= 0:
            raise ValueError("width and height must be positive")
        return value

    @model_validator(mode="after")
    def _preprocess_for_letterbox_families(self) -> ModelEntry:
        # The IR families define their input inside the IR; the detector only resizes.
        if self.preprocess is not None and self.family not in ("yolox", "ultralytics"):
            raise ValueError(f"preprocess is for yolox and ultralytics models, not {self.family}")
        return self

    def acknowledgement_problem(self, acknowledged: str | None) -> str | None:
        """Why a config with `acknowledged` (its ACKNOWLEDGE_KEY) may not run this model; None
        when it may: no license_note, or the note's value given."""
        note = self.license_note
        if note is None or acknowledged == note.acknowledge:
            return None
        given = f" (it is {acknowledged!r})" if acknowledged else ""
        return (
            f"{self.name}: {note.text} It runs only where the site has agreed to this: "
            f"set {ACKNOWLEDGE_KEY}: {note.acknowledge}{given}"
        )

    @property
    def primary(self) -> ModelFile:
        """The file a runtime loads (ONNX model, OpenVINO .xml); the others sit beside it."""
        return self.files[0]


class Manifest(_Strict):
    """All known models. Names and file paths are unique so two models never share a file."""

    version: Literal[1]
    models: tuple[ModelEntry, ...]

    @model_validator(mode="after")
    def _unique(self) -> Manifest:
        for what, values in (
            ("model name", [m.name for m in self.models]),
            ("file path", [f.path for m in self.models for f in m.files]),
        ):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
        return self

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def get(self, name: str) -> ModelEntry:
        """Entry by name; an unknown name lists the known ones."""
        for entry in self.models:
            if entry.name == name:
                return entry
        raise UnknownModelError(
            f"unknown model {name!r}; the manifest lists: {', '.join(self.names)}"
        )


def default_manifest_path() -> Path:
    """The manifest shipped as package data next to this module."""
    return Path(str(resources.files("models").joinpath("manifest.yaml")))


def load_manifest(path: Path | str | None = None) -> Manifest:
    """Read and validate a manifest (default: the shipped one)."""
    path = Path(path) if path is not None else default_manifest_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    return parse_manifest(text, source=str(path))


def parse_manifest(text: str, *, source: str = "<manifest>") -> Manifest:
    """Validate manifest YAML text; errors name `source`, the key path and the line."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {exc}") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "<top>"
            line = _line_of(root, err["loc"])
            where = f"{source}:{line}" if line else source
            lines.append(f"  {where}: {loc}: {err['msg']}")
        raise ManifestError(f"invalid manifest {source}:\n" + "\n".join(lines)) from None


def _line_of(node: Any, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML node along `loc` (None when the text is empty)."""
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            children = [v for k, v in node.value if getattr(k, "value", None) == str(key)]
            if not children:
                break
            node = children[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                break
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line
