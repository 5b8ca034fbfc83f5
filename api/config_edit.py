"""The zone editor's save (docs/ui.md 5): a camera's zones and ignore masks written into the site's
config file, through the same validation as the file, without losing what the installer wrote.

The file is the truth the service runs from and the one a person edits by hand, with comments
that say why a zone is where it is. So the edit is a splice: only the lines of the camera's
`zones` (and `ignore`) value are replaced, by ruamel.yaml's round-trip rendering of the new
sequence (a zone that keeps its id is its old map edited in place: its other keys, such as
`capacity` or `counter`, and its comments stay); every other byte stays as it was. A whole-file
round-trip dump would re-indent and re-wrap the rest (ruamel does not keep a multi-line flow
sequence's breaks nor every comment's column).

The new text must load with the service's own loader (edge.config.parse_config, with the file's
directory and the environment) before anything is written; then the old file is kept as
`<file>.bak-<UTC yyyymmddThhmmssZ>` (the newest KEEP_BACKUPS), and the new one written atomically
(a temp file in the same directory, fsync, rename), with the old file's mode and owner.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from edge.config import MAX_CONFIG_BYTES, ConfigError, ConfigIssue, LobbyConfig, parse_config

#: Backups kept beside the file; older ones are removed after each save.
KEEP_BACKUPS = 10
#: Decimals a point is written with: 1e-4 of the frame, a fifth of a pixel at 1920 wide.
DECIMALS = 4
#: Polygons with more points are written one point a line.
FLOW_POINTS = 8


class EditError(Exception):
    """A save refused for a reason other than the config's validity; `status` is the HTTP one."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ConfigInvalid(Exception):
    """The edited text does not load: the loader's issues, and which camera was edited."""

    def __init__(self, error: ConfigError, camera_index: int) -> None:
        super().__init__(str(error))
        self.issues = error.issues
        self.camera_index = camera_index

    def details(self) -> list[dict[str, Any]]:
        """FastAPI's 422 list shape, one item per issue (docs/ui.md 5, as built)."""
        return [issue_detail(issue, self.camera_index) for issue in self.issues]


def issue_detail(issue: ConfigIssue, camera_index: int) -> dict[str, Any]:
    """`loc` is the issue's path translated to the body where it points into this camera's
    zones or ignore masks (the body's lists are the file's, in order), else under "config"."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in issue.path.split(".") if p]
    prefix: list[str | int] = ["cameras", camera_index]
    if parts[:2] == prefix and len(parts) > 2 and parts[2] in ("zones", "ignore"):
        loc: list[str | int] = ["body", *parts[2:]]
    else:
        loc = ["config", *parts]
    return {"type": "config", "loc": loc, "path": issue.path, "line": issue.line,
            "msg": issue.message}  # fmt: skip


def etag_of(data: bytes) -> str:
    """The file's version: the hex sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def matches(if_match: str, etag: str) -> bool:
    """Whether an If-Match header names `etag` (quoted or bare, one of a list; never `*`)."""
    for tag in if_match.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):  # a weak tag never matches for a write (RFC 9110 13.1.1)
            continue
        if tag.strip('"') == etag:
            return True
    return False


@dataclass(frozen=True)
class FileVersion:
    """The config file as read once: its bytes, their ETag, and their text."""

    data: bytes
    etag: str
    text: str


# --- the edit: pure, text in, text out ----------------------------------------------------------


def replace_geometry(
    text: str,
    camera_id: str,
    zones: Sequence[Mapping[str, Any]],
    ignore: Sequence[Mapping[str, Any]],
) -> tuple[str, int]:
    """The file's text with camera `camera_id`'s zones and ignore masks replaced, and the
    camera's index in `cameras`. zones: {id, name, role, priority, polygon}; ignore: {id,
    reason, polygon}; polygons as (x, y) fractions. Raises EditError (404: no such camera)."""
    try:
        doc = _rt().load(text)
    except RuamelError as exc:
        raise EditError(422, f"the config file is not YAML this editor can edit: {exc}") from None
    cameras = doc.get("cameras") if isinstance(doc, CommentedMap) else None
    index = next(
        (i for i, c in enumerate(cameras or []) if isinstance(c, CommentedMap)
         and str(c.get("id")) == camera_id),
        None,
    ) if isinstance(cameras, CommentedSeq) else None  # fmt: skip
    if index is None or not isinstance(cameras, CommentedSeq):
        raise EditError(404, f"no camera {camera_id!r} in the config file")
    camera = cameras[index]
    new_zones = _zone_seq(camera.get("zones"), zones)
    new_ignore = _mask_seq(camera.get("ignore"), ignore)
    lines = text.splitlines(keepends=True)
    if camera.fa.flow_style() or "zones" not in camera:
        edited = _whole_dump(doc, camera, new_zones, new_ignore, bool(ignore))
    else:
        edited = _splice(lines, doc, cameras, index, new_zones, new_ignore, bool(ignore))
    _check_came_out(edited, index, zones, ignore)
    return edited, index


def _rt() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # ruamel breaks a long flow sequence mid-point ("[\n 0.25, 0.5]"): never
    return y


def _scalar(value: str, old: object = None) -> Any:
    """A string as it must be written for PyYAML (the loader) to read it back as that string:
    plain where it does, double-quoted where plain text would turn into something else (on,
    yes, 1:20, null, a leading # or -...). An unchanged value keeps its old style."""
    if isinstance(old, str) and old == value:
        return old
    try:
        plain = yaml.safe_load(value) == value and "\n" not in value
    except yaml.YAMLError:
        plain = False
    return value if plain else DoubleQuotedScalarString(value)


def _polygon(points: Sequence[Sequence[float]], old: object, in_flow: bool) -> Any:
    """Up to FLOW_POINTS points on the zone's line; more as one point a line (a diff then
    shows the point that moved), unless the zone is itself written on one line."""
    rounded = [[round(float(x), DECIMALS), round(float(y), DECIMALS)] for x, y in points]
    if isinstance(old, list) and _same_points(old, rounded):
        return old  # unchanged: its layout (a polygon written over two lines) stays
    seq = CommentedSeq()
    for x, y in rounded:
        point = CommentedSeq([x, y])
        point.fa.set_flow_style()
        seq.append(point)
    if in_flow or len(rounded) <= FLOW_POINTS:
        seq.fa.set_flow_style()
    return seq


def _same_points(old: list[Any], new: list[list[float]]) -> bool:
    try:
        return len(old) == len(new) and all(
            len(p) == 2 and [round(float(p[0]), DECIMALS), round(float(p[1]), DECIMALS)] == q
            for p, q in zip(old, new, strict=True)
        )
    except (TypeError, ValueError):
        return False


def _olds(seq: object) -> dict[str, CommentedMap]:
    if not isinstance(seq, list):
        return {}
    return {str(m["id"]): m for m in seq if isinstance(m, CommentedMap) and "id" in m}


def _new_map(olds: Mapping[str, CommentedMap]) -> CommentedMap:
    """A new zone or mask, in the style of the others (the test configs write each on one line)."""
    m = CommentedMap()
    if olds and all(o.fa.flow_style() for o in olds.values()):
        m.fa.set_flow_style()
    return m


def _set(m: CommentedMap, key: str, value: Any, default: Any) -> None:
    """Write `key` unless it is the default and the file did not have it (no `priority: 0`
    added to every zone); a key the file had stays, even at the default."""
    if key in m or value != default:
        m[key] = value


def _zone_seq(old: object, zones: Sequence[Mapping[str, Any]]) -> CommentedSeq:
    olds = _olds(old)
    seq = CommentedSeq()
    for zone in zones:
        m = olds.get(zone["id"]) or _new_map(olds)
        m["id"] = _scalar(zone["id"], m.get("id"))
        _set(m, "name", _scalar(zone["name"], m.get("name")), "")
        m["role"] = _scalar(zone["role"], m.get("role"))
        _set(m, "priority", zone["priority"], 0)
        m["polygon"] = _polygon(zone["polygon"], m.get("polygon"), m.fa.flow_style())
        seq.append(m)
    return seq


def _mask_seq(old: object, masks: Sequence[Mapping[str, Any]]) -> CommentedSeq:
    olds = _olds(old)
    seq = CommentedSeq()
    for mask in masks:
        m = olds.get(mask["id"]) or _new_map(olds)
        m["id"] = _scalar(mask["id"], m.get("id"))
        m["polygon"] = _polygon(mask["polygon"], m.get("polygon"), m.fa.flow_style())
        _set(m, "reason", _scalar(mask["reason"], m.get("reason")), "")
        seq.append(m)
    return seq


def _is_filler(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _region(lines: list[str], doc: CommentedMap, cameras: CommentedSeq, index: int,
            key: str) -> tuple[int, int, int]:  # fmt: skip
    """(first line, end line, column) of `key` and its value in camera `index`: to the line of
    what follows it in the file, less the blank and comment lines before that (kept)."""
    camera = cameras[index]
    line, column = camera.lc.key(key)
    keys = list(camera.keys())
    after = keys[keys.index(key) + 1 :]
    if after:
        end = camera.lc.key(after[0])[0]
    elif index + 1 < len(cameras):
        end = cameras.lc.item(index + 1)[0]
    else:
        top = list(doc.keys())
        later = top[top.index("cameras") + 1 :]
        end = doc.lc.key(later[0])[0] if later else len(lines)
    while end - 1 > line and _is_filler(lines[end - 1]):
        end -= 1
    return line, end, column


def _render(key: str, seq: CommentedSeq, column: int, offset: int, first_line: str) -> str:
    """`key:` and its sequence as block YAML at `column`; `first_line` is the original key
    line up to the key (indentation, or the `- ` of a camera that starts with it), and its
    comment, if it had one, is kept."""
    comment = ""
    match = re.match(rf"^.{{{column}}}{re.escape(key)}\s*:(\s*#.*)?$", first_line.rstrip("\n"))
    if match and match.group(1):
        comment = match.group(1)
    head = first_line[:column]
    if not seq:
        return f"{head}{key}: []{comment}\n"
    # Dumped nested under column // 2 one-key maps, so that it comes out at its column: ruamel
    # keeps each comment's column as it was in the file, which padding afterwards would shift.
    depth, pad = divmod(column, 2)
    wrapped: Any = {key: seq}
    for _ in range(depth):
        wrapped = {"_": wrapped}
    y = _rt()
    y.indent(mapping=2, sequence=offset + 2, offset=offset)
    out = io.StringIO()
    y.dump(wrapped, out)
    body = out.getvalue().splitlines(keepends=True)[depth + 1 :]
    while body and _is_filler(body[-1]):  # comments kept after the region are not repeated
        body.pop()
    return f"{head}{key}:{comment}\n" + "".join(" " * pad + b if b.strip() else b for b in body)


def _offset(seq: object, column: int) -> int:
    """How far the file indents a sequence's dashes under its key (2 for `  - id:` under
    `zones:`); 2 when it cannot tell."""
    if isinstance(seq, CommentedSeq) and len(seq) and not seq.fa.flow_style():
        dash = int(seq.lc.item(0)[1]) - 2
        if dash >= column:
            return dash - column
    return 2


def _splice(
    lines: list[str],
    doc: CommentedMap,
    cameras: CommentedSeq,
    index: int,
    zones: CommentedSeq,
    ignore: CommentedSeq,
    any_ignore: bool,
) -> str:
    camera = cameras[index]
    z_first, z_end, column = _region(lines, doc, cameras, index, "zones")
    offset = _offset(camera["zones"], column)
    edits: list[tuple[int, int, str]] = [
        (z_first, z_end, _render("zones", zones, column, offset, lines[z_first]))
    ]
    if "ignore" in camera:
        i_first, i_end, i_column = _region(lines, doc, cameras, index, "ignore")
        edits.append((i_first, i_end, _render("ignore", ignore, i_column, offset, lines[i_first])))
    elif any_ignore:  # added right after the zones, at their column
        edits.append((z_end, z_end, _render("ignore", ignore, column, offset, " " * column)))
    out = list(lines)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    for first, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        out[first:end] = [new]
    return "".join(out)


def _whole_dump(
    doc: CommentedMap,
    camera: CommentedMap,
    zones: CommentedSeq,
    ignore: CommentedSeq,
    any_ignore: bool,
) -> str:
    """A camera written as one flow mapping has no lines of its own to splice: the whole
    document is dumped (its layout may change; its content and comments stay)."""
    camera["zones"] = zones
    if "ignore" in camera or any_ignore:
        camera["ignore"] = ignore
    y = _rt()
    y.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _check_came_out(
    text: str, index: int, zones: Sequence[Mapping[str, Any]], ignore: Sequence[Mapping[str, Any]]
) -> None:
    """The edited text, read as the loader reads YAML, holds exactly the asked zones and masks
    (a wrong splice would otherwise be found only by luck)."""
    try:
        camera = yaml.safe_load(text)["cameras"][index]
        got = (
            [(z["id"], z["polygon"]) for z in camera["zones"]],
            [(m["id"], m["polygon"]) for m in camera.get("ignore") or []],
        )
    except (yaml.YAMLError, KeyError, TypeError, IndexError) as exc:
        raise EditError(
            500, f"the edit did not come out as asked ({exc!r}): nothing written"
        ) from None

    def points(polygon: Any) -> list[list[float]]:
        return [[round(float(x), DECIMALS), round(float(y), DECIMALS)] for x, y in polygon]

    try:
        same = [(str(i), points(p)) for i, p in got[0]] == [
            (z["id"], points(z["polygon"])) for z in zones
        ] and [(str(i), points(p)) for i, p in got[1]] == [
            (m["id"], points(m["polygon"])) for m in ignore
        ]
    except (TypeError, ValueError):
        same = False
    if not same:
        raise EditError(500, "the edit did not come out as asked: nothing written")


# --- the file --------------------------------------------------------------------------------


class ConfigFile:
    """The config file the API was started with, read and saved whole.

    A symlinked file is written where the link points (the link stays). Saves in this process
    take turns (a lock); a save from elsewhere between a client's read and its save shows as a
    changed ETag.
    """

    def __init__(
        self, path: Path, environ: Mapping[str, str], clock: Callable[[], datetime]
    ) -> None:
        self.path = Path(path)
        self.environ = environ
        self.clock = clock  # UTC wall time, for the backup's name
        self._lock = threading.Lock()

    def read(self) -> FileVersion:
        try:
            target = self.path.resolve()
            if not stat.S_ISREG(target.stat().st_mode):
                raise EditError(503, f"the config file {self.path} is not a regular file")
            with target.open("rb") as fh:
                data = fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise EditError(503, f"cannot read the config file {self.path}: "
                                 f"{exc.strerror or exc}") from None  # fmt: skip
        if len(data) > MAX_CONFIG_BYTES:
            raise EditError(503, f"the config file {self.path} is over {MAX_CONFIG_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise EditError(503, f"the config file {self.path} is not UTF-8 text") from None
        return FileVersion(data, etag_of(data), text)

    def load(self, version: FileVersion) -> LobbyConfig:
        """The version's config, with the service's loader (raises ConfigError)."""
        return parse_config(
            version.text,
            source=str(self.path),
            base_dir=self.path.parent,
            environ=self.environ,
        )

    def save_geometry(
        self,
        camera_id: str,
        zones: Sequence[Mapping[str, Any]],
        ignore: Sequence[Mapping[str, Any]],
        if_match: str | None,
    ) -> tuple[FileVersion, LobbyConfig]:
        """Write the camera's new zones and masks; the file's new version and config.
        Raises EditError (428, 409, 404, 503) or ConfigInvalid (nothing written)."""
        if not if_match or if_match.strip() == "*":
            raise EditError(428, "send If-Match with the ETag of GET .../geometry: a save "
                                 "must say which version of the config file it edits")  # fmt: skip
        with self._lock:
            current = self.read()
            if not matches(if_match, current.etag):
                raise EditError(409, "the config file changed since it was read (someone else "
                                     "saved, or it was edited by hand): load it again")  # fmt: skip
            text, index = replace_geometry(current.text, camera_id, zones, ignore)
            new = FileVersion(text.encode("utf-8"), etag_of(text.encode("utf-8")), text)
            try:
                config = self.load(new)
            except ConfigError as exc:
                raise ConfigInvalid(exc, index) from None
            target = self.path.resolve()
            try:
                backup(target, current.data, self.clock())
                write_atomic(target, new.data)
            except OSError as exc:
                raise EditError(503, f"cannot write the config file {self.path} "
                                     f"({exc.strerror or exc}): is it on a read-only "
                                     "mount? Nothing was changed.") from None  # fmt: skip
            return new, config


def backup(target: Path, data: bytes, now: datetime) -> Path:
    """Keep `data` (the file before the save) as `<file>.bak-<UTC stamp>` beside it, with the
    file's mode; then remove all but the newest KEEP_BACKUPS."""
    stamp = f"{target.name}.bak-{now:%Y%m%dT%H%M%SZ}"
    mode = stat.S_IMODE(target.stat().st_mode)
    for n in range(1, 1000):
        path = target.with_name(stamp if n == 1 else f"{stamp}-{n}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        break
    else:
        raise FileExistsError(f"{stamp}: a thousand backups this second")
    for old in backups(target)[:-KEEP_BACKUPS]:
        old.unlink(missing_ok=True)
    return path


def backups(target: Path) -> list[Path]:
    """The file's backups, oldest first."""
    pattern = re.compile(rf"^{re.escape(target.name)}\.bak-(\d{{8}}T\d{{6}}Z)(?:-(\d+))?$")
    found = []
    for path in target.parent.iterdir():
        match = pattern.match(path.name)
        if match:
            found.append((match.group(1), int(match.group(2) or 1), path))
    return [path for *_, path in sorted(found)]


def write_atomic(target: Path, data: bytes) -> None:
    """Replace `target` with `data` so a reader (the service's watch) sees the old file or the
    new one, never half of it, and a power cut leaves one of them: a temp file in the same
    directory, fsync, rename, fsync of the directory. The mode and owner stay the old file's."""
    info = target.stat()
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), stat.S_IMODE(info.st_mode))
            if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
                # Only root may give a file away; the mode still says who may read it.
                with contextlib.suppress(PermissionError):
                    os.fchown(fh.fileno(), info.st_uid, info.st_gid)
            os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
