"""Find model files on disk and check them against the manifest.

Weights are never committed or shipped inside the wheel, so a model is looked up in a few
directories in a fixed order (see `search_dirs`). The order lets a deployment pin a directory
with `LOBBYWATCH_MODELS` while a developer machine falls back to the per-user cache that
`lobbywatch models fetch` fills.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from models.exports import ExportedModel, load_exports
from models.manifest import Family, Manifest, ModelEntry, ModelError, load_manifest

ENV_VAR = "LOBBYWATCH_MODELS"
CHUNK_BYTES = 1 << 20  # 1 MiB: hashing a model costs a few MiB of reads, not its whole size in RAM.


class ModelNotFoundError(ModelError):
    """No directory holds every file of the model."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model located on disk.

    `entry` is None when a plain file that the manifest does not know was given; then
    `family` and `input_size` are None too and the caller must supply them.
    """

    name: str
    entry: ModelEntry | None
    files: tuple[Path, ...]  # absolute, primary file first (ONNX model or OpenVINO .xml)
    family: Family | None
    input_size: tuple[int, int] | None  # network input (width, height) in pixels

    @property
    def path(self) -> Path:
        """The file a runtime loads."""
        return self.files[0]


def cache_dir() -> Path:
    """Per-user download cache: `$XDG_CACHE_HOME/lobbywatch/models`, else ~/.cache/...."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative value: it would depend on the working directory.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "lobbywatch" / "models"


def env_dirs() -> list[Path]:
    """Directories in `$LOBBYWATCH_MODELS` (os.pathsep-separated, so one var can list several)."""
    raw = os.environ.get(ENV_VAR, "")
    return [Path(p).expanduser().absolute() for p in raw.split(os.pathsep) if p]


def search_dirs(models_dir: Path | str | None = None) -> list[Path]:
    """Directories searched for a model by name, in order, without duplicates."""
    dirs = env_dirs()
    if models_dir is not None:
        dirs.append(Path(models_dir).expanduser().absolute())
    dirs.append(cache_dir())
    return list(dict.fromkeys(dirs))


def default_dest_dir() -> Path:
    """Where `fetch` puts files by default: the first `$LOBBYWATCH_MODELS` dir, else the cache."""
    dirs = env_dirs()
    return dirs[0] if dirs else cache_dir()


def resolve_model(
    name_or_path: str | Path,
    *,
    models_dir: Path | str | None = None,
    manifest: Manifest | None = None,
) -> ResolvedModel:
    """Locate a model by manifest name or by an explicit file path.

    Order: an explicit path that exists; then each of `search_dirs(models_dir)`, where a
    directory counts only if it holds every file of the entry (an OpenVINO .xml without its
    .bin cannot be loaded); a name the manifest lacks is looked up in the `exports.yaml` of
    those directories (models exported on this machine, models/exports.py). An explicit file whose name matches a manifest file gets that
    entry (so family and input size are known); its sibling files are expected beside it.
    """
    manifest = manifest or load_manifest()
    explicit = Path(name_or_path).expanduser()
    if explicit.is_file():
        return _from_explicit(explicit.absolute(), manifest)

    name = str(name_or_path)
    if name not in manifest.names:
        exported = _resolve_export(name, models_dir)
        if exported is not None:
            return exported
        raise ModelNotFoundError(
            f"{name!r} is neither an existing file nor a model in the manifest "
            f"({', '.join(manifest.names)}) or in an exports.yaml of the models directories"
        )
    entry = manifest.get(name)
    searched: list[str] = []
    for directory in search_dirs(models_dir):
        files = tuple(directory / f.path for f in entry.files)
        missing = [f.path for f, p in zip(entry.files, files, strict=True) if not p.is_file()]
        if not missing:
            return ResolvedModel(name, entry, files, entry.family, entry.input_size)
        note = f" (incomplete: missing {', '.join(missing)})" if len(missing) < len(files) else ""
        searched.append(f"  {directory}{note}")
    raise ModelNotFoundError(
        f"model {name!r} not found; searched:\n" + "\n".join(searched) + "\n"
        f"Run `lobbywatch models fetch {name}` on a connected machine, "
        f"or set {ENV_VAR} to a directory that holds {entry.primary.path}."
    )


def exported_models(models_dir: Path | str | None = None) -> list[tuple[Path, ExportedModel]]:
    """(models directory, entry) of every export recorded in the searched directories.

    A name recorded in several directories is listed once, from the first (the one
    `resolve_model` uses).
    """
    found: dict[str, tuple[Path, ExportedModel]] = {}
    for directory in search_dirs(models_dir):
        for entry in load_exports(directory).models:
            found.setdefault(entry.name, (directory, entry))
    return list(found.values())


def _resolve_export(name: str, models_dir: Path | str | None) -> ResolvedModel | None:
    """A model exported by `lobbywatch models export`, recorded in a searched directory."""
    incomplete: list[str] = []
    for directory in search_dirs(models_dir):
        entry = load_exports(directory).get(name)
        if entry is None:
            continue
        files = tuple(directory / f.path for f in entry.files)
        missing = [str(p) for p in files if not p.is_file()]
        if not missing:
            return ResolvedModel(name, entry, files, entry.family, entry.input_size)
        incomplete.append(f"  {directory}: missing {', '.join(missing)}")
    if incomplete:
        raise ModelNotFoundError(
            f"exported model {name!r} is recorded but incomplete:\n" + "\n".join(incomplete)
        )
    return None


def _from_explicit(path: Path, manifest: Manifest) -> ResolvedModel:
    for entry in manifest.models:
        if Path(entry.primary.path).name == path.name:
            others = tuple(path.parent / Path(f.path).name for f in entry.files[1:])
            return ResolvedModel(entry.name, entry, (path, *others), entry.family, entry.input_size)
    return ResolvedModel(path.stem, None, (path,), None, None)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed so a large model never sits in memory at once."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify(resolved: ResolvedModel) -> list[str]:
    """Problems with the files of a resolved model; empty means every sha256 matches.

    A plain file without a manifest entry has nothing to compare against and yields no
    problems; it is the caller's file.
    """
    if resolved.entry is None:
        return []
    problems: list[str] = []
    for spec, path in zip(resolved.entry.files, resolved.files, strict=True):
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        actual = sha256_file(path)
        if actual != spec.sha256:
            problems.append(f"{path}: sha256 {actual}, expected {spec.sha256}")
    return problems
