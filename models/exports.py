"""Models exported on this machine: `exports.yaml` in a models directory, beside their files.

The manifest shipped in the package is read-only at run time (it may sit in a read-only
/opt/lobbywatch/<version>), so `lobbywatch models export` records what it made in the models
directory it wrote to, which is writable: `<models dir>/exports.yaml`, with the files under
`<models dir>/exports/<name>/`. Each record is a manifest entry (files pinned by sha256, family,
input size, licence) plus how it was made and how it compared with the original. `resolve_model`
finds exported names in every searched models directory, after the shipped manifest.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from models.manifest import ManifestError, ModelEntry, _Strict

EXPORTS_FILE = "exports.yaml"
EXPORTS_SUBDIR = "exports"

ExportFormat = Literal["onnx", "openvino", "engine"]
Precision = Literal["fp32", "fp16", "int8"]


class ExportCheck(_Strict):
    """How the exported model compared with the original on sample frames."""

    frames: int = Field(ge=1, description="Sample frames compared.")
    samples: str = Field(description="Where the frames came from.")
    max_abs_diff: float = Field(
        ge=0, description="Largest |exported - original| of the raw output."
    )
    max_rel_diff: float = Field(ge=0, description="max_abs_diff / largest |original| value.")
    tolerance: float = Field(gt=0, description="Largest max_rel_diff accepted.")
    runtime: str = Field(description="Runtime that ran the export, e.g. onnxruntime CPU.")


class ExportInfo(_Strict):
    """How an artefact was made."""

    format: ExportFormat
    precision: Precision
    imgsz: int = Field(gt=0, description="Square network input in pixels.")
    source: str = Field(description="The model exported: a .pt file or a model YAML.")
    source_sha256: str | None = Field(None, description="sha256 of the source file, if a file.")
    ultralytics: str = Field(description="Ultralytics version that exported it.")
    exported_at: str = Field(description="UTC time of the export, ISO 8601.")
    check: ExportCheck


class ExportedModel(ModelEntry):
    """A manifest entry for an exported model, with how it was made."""

    export: ExportInfo


class ExportsFile(_Strict):
    version: Literal[1] = 1
    models: tuple[ExportedModel, ...] = ()

    def get(self, name: str) -> ExportedModel | None:
        return next((m for m in self.models if m.name == name), None)


def exports_path(models_dir: Path) -> Path:
    return models_dir / EXPORTS_FILE


def load_exports(models_dir: Path) -> ExportsFile:
    """The exports recorded in `models_dir` (empty when it has no exports.yaml)."""
    path = exports_path(models_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ExportsFile()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return ExportsFile.model_validate(yaml.safe_load(text) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ManifestError(f"invalid exports file {path}: {exc}") from None


def record_export(models_dir: Path, entry: ExportedModel) -> Path:
    """Add or replace `entry` in `models_dir/exports.yaml`, atomically; returns the file."""
    current = load_exports(models_dir)
    models = [m for m in current.models if m.name != entry.name]
    models.append(entry)
    updated = ExportsFile(models=tuple(sorted(models, key=lambda m: m.name)))
    header = (
        "# Models exported on this machine by `lobbywatch models export` (models/exports.py).\n"
        "# Files are relative to this directory and pinned by sha256; "
        "`lobbywatch models verify` checks them.\n"
    )
    text = header + yaml.safe_dump(
        updated.model_dump(mode="json", exclude_none=True), sort_keys=False, width=100
    )
    path = exports_path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".exports.", suffix=".yaml", dir=models_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
