"""Offline checks that a valid config can run on this machine, before anything is started.

The schema (edge/config.py) is pure: it says whether a file is a config. This says whether
that config can run here: its models resolve and match their sha256, the files it names exist
and are regular files of a sane size, the frames of a recorded source are there, and the
environment variables it refers to are set. No network, no camera, no broker (that is the
doctor's). `validate-config` and `run` both call `check_runnable`, so a service that would fail
on start is refused with the same messages, each at the line of the value at fault.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from edge.capture.settings import SourceKind, classify_source
from edge.config import (
    ApiConfig,
    CameraConfig,
    ConfigIssue,
    ConfigSource,
    DetectorConfig,
    FusionModelConfig,
    LobbyConfig,
    suggest,
)
from models.manifest import ModelError, load_manifest
from models.store import ModelNotFoundError, exported_models, resolve_model, search_dirs, verify

# Password, certificate, calibration and template files are a few KiB; more is not one of them
# (and /dev/zero or a FIFO would never finish reading).
MAX_FILE_BYTES = 1 << 20
_MODEL_SUFFIXES = (".onnx", ".xml", ".bin", ".engine")

Problem = tuple[tuple[str | int, ...], str]
"""(path in the config, message)."""


def check_runnable(
    config: LobbyConfig,
    source: ConfigSource | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[ConfigIssue]:
    """Everything that stops `config` from running here, each located in the config file."""
    where = source if source is not None else ConfigSource("", {}, {})
    environ = os.environ if environ is None else environ
    problems = [
        *check_models(config.detector),
        *_check_cameras(config.cameras),
        *_check_files(config),
        *_check_api_keys(config.api, environ),
        *_check_channels(config, environ),
    ]
    return [where.issue(loc, message) for loc, message in problems]


def file_problem(path: Path) -> str | None:
    """Why `path` is not a readable regular file of at most MAX_FILE_BYTES, or None."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{path}: no such file"
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror or exc})"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file (a device, directory or pipe cannot be read as one)"
    if info.st_size > MAX_FILE_BYTES:
        return f"{path} is {info.st_size} bytes, over {MAX_FILE_BYTES // 1024} KiB"
    if not os.access(path, os.R_OK):
        return f"{path}: not readable by this user"
    return None


# --- models ------------------------------------------------------------------------------


def check_models(detector: DetectorConfig) -> list[Problem]:
    """The main model and every fused one resolve (manifest, exports, file) and match sha256,
    and the section acknowledges the licence note of any that has one."""
    try:
        manifest = load_manifest()
        known = [*manifest.names, *(e.name for _, e in exported_models())]
    except ModelError as exc:
        return [(("detector", "model"), _flat(str(exc)))]
    refs: list[tuple[tuple[str | int, ...], DetectorConfig | FusionModelConfig]] = [
        (("detector",), detector),
        *((("detector", "fusion", "models", i), m) for i, m in enumerate(detector.fusion.models)),
    ]
    problems: list[Problem] = []
    for loc, ref in refs:
        where = (*loc, "model")
        try:
            resolved = resolve_model(ref.model, manifest=manifest)
        except ModelNotFoundError as exc:
            problems.append((where, _missing_model(ref.model, known, exc)))
            continue
        except (ModelError, OSError) as exc:
            problems.append((where, _flat(str(exc))))
            continue
        try:
            mismatches = verify(resolved)
        except OSError as exc:
            mismatches = [f"{resolved.path}: cannot read ({exc.strerror or exc})"]
        problems += [(where, f"{m}; fetch or export {resolved.name} again") for m in mismatches]
        family = ref.family or resolved.family
        if family is None or (ref.input_size or resolved.input_size) is None:
            problems.append(
                (where, f"{ref.model!r} is not in the model manifest: set family and input_size")
            )
        elif ref.input_size == "frame" and resolved.input_size is None:
            problems.append(
                (
                    (*loc, "input_size"),
                    f"input_size frame takes its longest side from the manifest, which does not "
                    f"list {ref.model!r}: give the input size",
                )
            )
        if resolved.entry is not None:
            problem = resolved.entry.acknowledgement_problem(detector.licence_acknowledged)
            if problem:
                problems.append((("detector", "licence_acknowledged"), problem))
    return problems


def _missing_model(name: str, known: list[str], exc: ModelNotFoundError) -> str:
    if name in known:  # a known model whose files are not in any models directory
        dirs = ", ".join(str(d) for d in search_dirs())
        return (
            f"model {name!r} not found in {dirs}: run `lobbywatch models fetch {name}` on a "
            f"connected machine, or set LOBBYWATCH_MODELS to the directory holding it"
            if "incomplete" not in str(exc)
            else _flat(str(exc))
        )
    if "/" in name or name.endswith(_MODEL_SUFFIXES):
        return f"no model file {name}"
    return (
        f"unknown model {name!r}{suggest(name, known)}; known: {', '.join(known)} "
        "(or give the path of a model file)"
    )


def _flat(text: str) -> str:
    """A multi-line message on one line."""
    return "; ".join(line.strip().rstrip(":") for line in text.splitlines() if line.strip())


# --- cameras, files, environment ------------------------------------------------------------


def _check_cameras(cameras: list[CameraConfig]) -> Iterator[Problem]:
    for i, camera in enumerate(cameras):
        kind = classify_source(camera.source)
        if kind is SourceKind.FILE:
            path = Path(camera.source)
            if not path.is_file():
                yield ("cameras", i, "source"), f"video file {path} not found"
        elif kind is SourceKind.SEQUENCE:
            problem = _sequence_problem(camera.source)
            if problem:
                yield ("cameras", i, "source"), problem
        if camera.calibration is not None:
            problem = file_problem(camera.calibration)
            if problem:
                yield ("cameras", i, "calibration"), problem


def _sequence_problem(pattern: str) -> str | None:
    """Why an image sequence has no frame: its directory is missing or nothing matches."""
    path = Path(pattern)
    if "%" in str(path.parent):  # the number is in a directory name: check what is fixed
        fixed = Path(pattern.split("%", 1)[0]).parent
        return None if fixed.is_dir() else f"image sequence directory {fixed} not found"
    if not path.parent.is_dir():
        return f"image sequence directory {path.parent} not found"
    frame = _frame_names(path.name)
    try:
        with os.scandir(path.parent) as entries:
            if any(frame.fullmatch(e.name) for e in entries):
                return None
    except OSError as exc:
        return f"image sequence directory {path.parent}: cannot list ({exc.strerror or exc})"
    return f"no frame in {path.parent} matches {path.name}"


def _frame_names(pattern: str) -> re.Pattern[str]:
    """seq_%06d.jpg -> seq_\\d+\\.jpg: the file names a printf-style sequence pattern reads."""
    parts = re.split(r"(%%|%0?\d*d)", pattern)  # literal text at even indices, fields at odd
    return re.compile(
        "".join(
            re.escape(part) if i % 2 == 0 else ("%" if part == "%%" else r"\d+")
            for i, part in enumerate(parts)
        )
    )


def _check_files(config: LobbyConfig) -> Iterator[Problem]:
    # Checked even where MQTT or TLS is off: the handheld reads the same section, and a
    # password file that is a device is a mistake whatever reads it.
    mqtt = config.mqtt
    files: list[tuple[tuple[str | int, ...], Path | None]] = [
        (("mqtt", "password_file"), mqtt.password_file),
        (("mqtt", "tls", "ca_file"), mqtt.tls.ca_file),
        (("mqtt", "tls", "cert_file"), mqtt.tls.cert_file),
        (("mqtt", "tls", "key_file"), mqtt.tls.key_file),
        (("api", "tls", "cert_file"), config.api.tls.cert_file),
        (("api", "tls", "key_file"), config.api.tls.key_file),
    ]
    templates = config.alerts.templates_dir
    if templates is not None:
        files.append((("alerts", "templates_dir"), templates / f"{config.alerts.language}.yaml"))
    for loc, path in files:
        problem = file_problem(path) if path is not None else None
        if problem:
            yield loc, problem
    db = config.storage.path
    if db.exists() and not db.is_file():
        yield ("storage", "path"), f"{db} is not a regular file"


def _check_channels(config: LobbyConfig, environ: Mapping[str, str]) -> Iterator[Problem]:
    """Each channel's URL and secret readable and of its kind (never quoting them)."""
    from edge.alerts.channels import ChannelError, resolve  # imports apprise: only with channels

    for i, channel in enumerate(config.alerts.channels):
        try:
            resolve(channel, config.alerts.language, environ)
        except ChannelError as exc:
            field = "url_env" if channel.url_env is not None else "url_file"
            secret = channel.secret_env or (str(channel.secret_file) if channel.secret_file else "")
            if secret and secret in str(exc):
                field = "secret_env" if channel.secret_env is not None else "secret_file"
            yield ("alerts", "channels", i, field), str(exc)


def _check_api_keys(api: ApiConfig, environ: Mapping[str, str]) -> Iterator[Problem]:
    for i, key in enumerate(api.keys):
        if key.env is not None and not environ.get(key.env):
            yield (
                ("api", "keys", i, "env"),
                f"environment variable {key.env} is not set (api key {key.id!r} would be disabled)",
            )
