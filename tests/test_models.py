"""Model manifest, lookup, download and CLI.

The machine running CI has no internet, so the real download code is exercised against a
real HTTP server on loopback and against file:// URLs; the shipped manifest is checked
against the real weights in ../shared/models (or $LOBBYWATCH_MODELS).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from models.cli import app
from models.fetch import (
    ChecksumMismatchError,
    DownloadError,
    LicenseNotAcceptedError,
    fetch,
)
from models.manifest import (
    Manifest,
    ManifestError,
    ModelEntry,
    UnknownModelError,
    load_manifest,
    parse_manifest,
)
from models.store import ModelNotFoundError, resolve_model, verify

REPO = Path(__file__).resolve().parents[1]
_env_models = os.environ.get("LOBBYWATCH_MODELS", "").split(os.pathsep)[0]
SHARED_MODELS = Path(_env_models) if _env_models else REPO.parent / "shared" / "models"
needs_shared = pytest.mark.skipif(
    not (SHARED_MODELS / "yolox_nano.onnx").is_file(),
    reason=f"real model files not found in {SHARED_MODELS} (set LOBBYWATCH_MODELS)",
)
REQUIRED = {
    "yolox_nano",
    "person-detection-retail-0013",
    "person-vehicle-bike-detection-2004",
    "bytetrack_nano_mot17",
    "yolov8n_int8_dynamic",
    "yolo11n_int8_dynamic_320",
}


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No test may see the developer's $LOBBYWATCH_MODELS or ~/.cache; returns the cache dir."""
    monkeypatch.delenv("LOBBYWATCH_MODELS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "lobbywatch" / "models"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_entry(
    files: list[tuple[str, bytes, str]],
    *,
    name: str = "tiny",
    license: str = "Apache-2.0",
    shippable: bool = True,
) -> ModelEntry:
    """A manifest entry for generated files: (relative path, bytes, url) each."""
    return ModelEntry.model_validate(
        {
            "name": name,
            "family": "yolox",
            "description": "generated test model",
            "input_size": [32, 32],
            "classes": {"set": "coco80", "person": 0},
            "files": [
                {"path": p, "sha256": sha(data), "url": url, "size": len(data)}
                for p, data, url in files
            ],
            "license": license,
            "shippable": shippable,
            "source": "tests",
            "upstream": "https://example.invalid/",
        }
    )


def leftovers(directory: Path) -> list[str]:
    """Every file under `directory`, relative: catches stray temp files."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


# --- the shipped manifest -------------------------------------------------------------------


def test_shipped_manifest_loads_with_the_required_models() -> None:
    manifest = load_manifest()
    assert set(manifest.names) >= REQUIRED
    assert {m.name for m in manifest.models if not m.shippable} == {
        "yolov8n_int8_dynamic",
        "yolo11n_int8_dynamic_320",
    }
    assert all(m.license == "AGPL-3.0" for m in manifest.models if not m.shippable)
    assert len(load_manifest().get("person-detection-retail-0013").files) == 2


def test_bytetrack_carries_its_normalization_and_a_note_a_site_must_acknowledge() -> None:
    entry = load_manifest().get("bytetrack_nano_mot17")
    assert (entry.family, entry.input_size, entry.license) == ("yolox", (1088, 608), "MIT")
    assert entry.preprocess is not None and entry.preprocess.channels == "rgb"
    assert entry.preprocess.mean == pytest.approx((0.485 * 255, 0.456 * 255, 0.406 * 255))
    assert entry.preprocess.std == pytest.approx((0.229 * 255, 0.224 * 255, 0.225 * 255))
    assert entry.license_note is not None
    assert "non-commercial" in entry.license_note.text and "MOT17" in entry.license_note.text
    assert entry.license_note.acknowledge == "non-commercial-training-data"
    # Every other model runs without one.
    assert [m.name for m in load_manifest().models if m.license_note] == ["bytetrack_nano_mot17"]


def test_person_vehicle_bike_is_an_openvino_boxes_ir_whose_person_label_is_1() -> None:
    entry = load_manifest().get("person-vehicle-bike-detection-2004")
    assert (entry.family, entry.input_size, entry.license) == (
        "openvino_boxes",
        (448, 256),
        "Apache-2.0",
    )
    assert (entry.classes.set, entry.classes.person) == ("person_vehicle_bike", 1)
    assert [Path(f.path).suffix for f in entry.files] == [".xml", ".bin"]
    assert entry.preprocess is None and entry.license_note is None


@pytest.mark.parametrize(
    ("acknowledged", "problem"),
    [
        (None, "set detector.licence_acknowledged: non-commercial-training-data"),
        ("yes", "(it is 'yes')"),
        ("non-commercial-training-data", None),
    ],
)
def test_a_noted_model_needs_its_acknowledgement_and_a_plain_one_none(
    acknowledged: str | None, problem: str | None
) -> None:
    manifest = load_manifest()
    found = manifest.get("bytetrack_nano_mot17").acknowledgement_problem(acknowledged)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and "non-commercial" in found
    assert manifest.get("yolox_nano").acknowledgement_problem(acknowledged) is None


def test_shipped_urls_are_pinned_to_a_commit_not_a_branch() -> None:
    for entry in load_manifest().models:
        assert entry.upstream.startswith("https://")
        for spec in entry.files:
            assert spec.url.startswith("https://raw.githubusercontent.com/")
            ref = spec.url.split("/")[5]
            assert len(ref) >= 8 and all(c in "0123456789abcdef" for c in ref), spec.url


@needs_shared
@pytest.mark.parametrize(
    "path", [f.path for m in load_manifest().models for f in m.files], ids=lambda p: p
)
def test_shipped_sha256_matches_the_real_file(path: str) -> None:
    spec = next(f for m in load_manifest().models for f in m.files if f.path == path)
    data = (SHARED_MODELS / path).read_bytes()
    assert sha(data) == spec.sha256
    assert len(data) == spec.size


@needs_shared
def test_every_shipped_model_resolves_and_verifies_in_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(SHARED_MODELS))
    for name in REQUIRED:
        resolved = resolve_model(name)
        assert resolved.path.is_absolute()
        assert verify(resolved) == []


# --- manifest validation --------------------------------------------------------------------

GOOD_YAML = """\
version: 1
models:
  - name: tiny
    family: yolox
    description: d
    input_size: [416, 416]
    classes: {set: coco80, person: 0}
    files:
      - path: tiny.onnx
        sha256: %s
        url: https://example.invalid/tiny.onnx
    license: Apache-2.0
    shippable: true
    source: s
    upstream: https://example.invalid/
""" % ("a" * 64)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    shippable: true\n", "    shippable: true\n    colour: red\n", "models.0.colour"),
        ("a" * 64, "A" * 64, "models.0.files.0.sha256"),
        ("path: tiny.onnx", "path: /etc/tiny.onnx", "models.0.files.0.path"),
        ("path: tiny.onnx", "path: ../tiny.onnx", "models.0.files.0.path"),
        ("url: https://", "url: ftp://", "models.0.files.0.url"),
        ("family: yolox", "family: detr", "models.0.family"),
        ("person: 0", "person: 3", "models.0.classes"),
        ("input_size: [416, 416]", "input_size: [416, 0]", "models.0.input_size"),
        ("    files:\n", "    files: []\n    x:\n", "models.0.files"),
        ("version: 1", "version: 2", "version"),
        (
            "    shippable: true\n",
            "    shippable: true\n    preprocess: {channels: rgb, std: [58, 0, 57]}\n",
            "models.0.preprocess.std",
        ),
        (
            "    shippable: true\n",
            "    shippable: true\n    preprocess: {channels: hsv}\n",
            "models.0.preprocess.channels",
        ),
        (
            "    shippable: true\n",
            "    shippable: true\n    license_note: {text: t, acknowledge: Yes I do}\n",
            "models.0.license_note.acknowledge",
        ),
        (
            "classes: {set: coco80, person: 0}",
            "classes: {set: person_vehicle_bike, person: 2}",
            "models.0.classes",
        ),
    ],
)
def test_invalid_manifest_names_the_key_and_line(old: str, new: str, expected: str) -> None:
    assert old in GOOD_YAML
    with pytest.raises(ManifestError) as info:
        parse_manifest(GOOD_YAML.replace(old, new), source="m.yaml")
    assert expected in str(info.value)
    assert "m.yaml:" in str(info.value)


def test_preprocess_is_refused_for_an_ir_family_that_defines_its_own_input() -> None:
    text = GOOD_YAML.replace("family: yolox", "family: openvino_ssd").replace(
        "    shippable: true\n", "    shippable: true\n    preprocess: {channels: rgb}\n"
    )
    with pytest.raises(ManifestError, match="preprocess is for yolox and ultralytics"):
        parse_manifest(text, source="m.yaml")


def test_extra_key_error_points_at_its_line() -> None:
    text = GOOD_YAML.replace("    shippable: true\n", "    shippable: true\n    colour: red\n")
    line = text.splitlines().index("    colour: red") + 1
    with pytest.raises(ManifestError, match=rf"m.yaml:{line}: models.0.colour: Extra inputs"):
        parse_manifest(text, source="m.yaml")


def test_duplicate_model_names_are_rejected() -> None:
    models_part = GOOD_YAML.split("models:\n", 1)[1]
    twice = GOOD_YAML + models_part.replace("tiny.onnx", "other.onnx")
    with pytest.raises(ManifestError, match="duplicate model name: tiny"):
        parse_manifest(twice)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(UnknownModelError, match="yolox_nano"):
        load_manifest().get("yolov99")


def test_missing_manifest_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest(tmp_path / "nope.yaml")


# --- fetch over a real HTTP server on loopback ----------------------------------------------


@dataclass
class Server:
    root: Path
    url: str
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A ThreadingHTTPServer on 127.0.0.1, port 0, serving `root`; records every GET path."""
    root = tmp_path / "served"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", hits)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


PAYLOAD = os.urandom((1 << 20) * 2 + 12345)  # spans several 1 MiB chunks


def test_fetch_downloads_verifies_and_is_idempotent(server: Server, tmp_path: Path) -> None:
    (server.root / "w.onnx").write_bytes(PAYLOAD)
    (server.root / "w.bin").write_bytes(b"weights")
    entry = make_entry(
        [
            ("sub/w.onnx", PAYLOAD, f"{server.url}/w.onnx"),
            ("sub/w.bin", b"weights", f"{server.url}/w.bin"),
        ]
    )
    dest = tmp_path / "dest"

    paths = fetch(entry, dest, progress=False)

    assert paths == [dest / "sub/w.onnx", dest / "sub/w.bin"]
    assert paths[0].read_bytes() == PAYLOAD
    assert leftovers(dest) == ["sub/w.bin", "sub/w.onnx"]
    assert len(server.hits) == 2

    assert fetch(entry, dest, progress=False) == paths
    assert len(server.hits) == 2, "a verified file must not be downloaded again"

    fetch(entry, dest, force=True, progress=False)
    assert len(server.hits) == 4


def test_fetch_replaces_a_corrupt_local_file(server: Server, tmp_path: Path) -> None:
    (server.root / "w.onnx").write_bytes(PAYLOAD)
    entry = make_entry([("w.onnx", PAYLOAD, f"{server.url}/w.onnx")])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "w.onnx").write_bytes(b"truncated")

    fetch(entry, dest, progress=False)

    assert (dest / "w.onnx").read_bytes() == PAYLOAD
    assert leftovers(dest) == ["w.onnx"]


def test_fetch_wrong_bytes_raise_and_leave_nothing(server: Server, tmp_path: Path) -> None:
    (server.root / "w.onnx").write_bytes(b"not the model")
    entry = make_entry([("w.onnx", PAYLOAD, f"{server.url}/w.onnx")])
    dest = tmp_path / "dest"

    with pytest.raises(ChecksumMismatchError) as info:
        fetch(entry, dest, progress=False)

    assert info.value.expected == sha(PAYLOAD)
    assert info.value.actual == sha(b"not the model")
    assert sha(PAYLOAD) in str(info.value) and sha(b"not the model") in str(info.value)
    assert leftovers(dest) == []


def test_forced_fetch_of_wrong_bytes_keeps_the_good_file(server: Server, tmp_path: Path) -> None:
    (server.root / "w.onnx").write_bytes(b"tampered")
    entry = make_entry([("w.onnx", PAYLOAD, f"{server.url}/w.onnx")])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "w.onnx").write_bytes(PAYLOAD)

    with pytest.raises(ChecksumMismatchError):
        fetch(entry, dest, force=True, progress=False)

    assert (dest / "w.onnx").read_bytes() == PAYLOAD
    assert leftovers(dest) == ["w.onnx"]


def test_fetch_http_404_is_a_clear_error(server: Server, tmp_path: Path) -> None:
    entry = make_entry([("w.onnx", PAYLOAD, f"{server.url}/gone.onnx")])
    with pytest.raises(DownloadError, match=r"/gone\.onnx: HTTP 404"):
        fetch(entry, tmp_path / "dest", progress=False)
    assert leftovers(tmp_path / "dest") == []


def test_fetch_unreachable_port_fails_quickly_with_advice(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed on exit: nothing listens there any more
    entry = make_entry([("w.onnx", PAYLOAD, f"http://127.0.0.1:{port}/w.onnx")])

    start = time.monotonic()
    with pytest.raises(DownloadError, match="offline") as info:
        fetch(entry, tmp_path / "dest", progress=False, timeout=2.0)

    assert time.monotonic() - start < 5.0
    assert f"127.0.0.1:{port}" in str(info.value)
    assert leftovers(tmp_path / "dest") == []


def test_fetch_accepts_a_manifest_path(server: Server, tmp_path: Path) -> None:
    (server.root / "tiny.onnx").write_bytes(PAYLOAD)
    text = GOOD_YAML.replace("a" * 64, sha(PAYLOAD)).replace(
        "https://example.invalid/tiny.onnx", f"{server.url}/tiny.onnx"
    )
    manifest_path = tmp_path / "manifest.yaml"
    manifest_path.write_text(text)

    paths = fetch("tiny", tmp_path / "dest", manifest=manifest_path, progress=False)

    assert paths[0].read_bytes() == PAYLOAD


@needs_shared
def test_fetch_from_file_url_copies_and_verifies_the_real_model(tmp_path: Path) -> None:
    real = load_manifest().get("yolox_nano")
    local = real.files[0].model_copy(
        update={"url": (SHARED_MODELS / "yolox_nano.onnx").resolve().as_uri()}
    )
    entry = real.model_copy(update={"files": (local,)})

    [path] = fetch(entry, tmp_path, progress=False)

    assert path == tmp_path / "yolox_nano.onnx"
    assert sha(path.read_bytes()) == real.files[0].sha256


def test_fetch_missing_file_url_is_a_clear_error(tmp_path: Path) -> None:
    entry = make_entry([("w.onnx", PAYLOAD, (tmp_path / "absent.onnx").as_uri())])
    with pytest.raises(DownloadError, match="cannot read file://"):
        fetch(entry, tmp_path / "dest", progress=False)


# --- licence ----------------------------------------------------------------------------------


def _no_network(url: str, *, timeout: float) -> Any:
    raise AssertionError(f"refused model must not touch the network: {url}")


@pytest.mark.parametrize("accept", [None, "MIT", "agpl"])
def test_agpl_model_is_refused_without_accepting_its_licence(
    tmp_path: Path, accept: str | None
) -> None:
    with pytest.raises(LicenseNotAcceptedError, match=r"AGPL-3\.0.*tests and benchmarks only"):
        fetch("yolov8n_int8_dynamic", tmp_path, accept_license=accept, opener=_no_network)
    assert leftovers(tmp_path) == []


def test_agpl_model_is_fetched_when_its_licence_is_accepted(tmp_path: Path) -> None:
    source = tmp_path / "src.onnx"
    source.write_bytes(b"agpl weights")
    entry = make_entry(
        [("agpl/x.onnx", b"agpl weights", source.as_uri())], license="AGPL-3.0", shippable=False
    )
    with pytest.raises(LicenseNotAcceptedError):
        fetch(entry, tmp_path / "dest", progress=False)

    [path] = fetch(entry, tmp_path / "dest", accept_license="AGPL-3.0", progress=False)

    assert path.read_bytes() == b"agpl weights"


# --- resolve order ----------------------------------------------------------------------------

TWO_FILES = make_entry(
    [("m/net.xml", b"xml", "file:///x/net.xml"), ("m/net.bin", b"bin", "file:///x/net.bin")],
    name="two",
)
TEST_MANIFEST = Manifest(version=1, models=(TWO_FILES,))


def _install(directory: Path, *, complete: bool = True) -> None:
    (directory / "m").mkdir(parents=True)
    (directory / "m/net.xml").write_bytes(b"xml")
    if complete:
        (directory / "m/net.bin").write_bytes(b"bin")


@pytest.mark.parametrize(
    ("present", "expected"),
    [
        ({"env", "arg", "cache"}, "env"),
        ({"arg", "cache"}, "arg"),
        ({"cache"}, "cache"),
        ({"env", "cache"}, "env"),
    ],
)
def test_resolve_searches_env_then_models_dir_then_cache(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    isolated_env: Path,
    present: set[str],
    expected: str,
) -> None:
    dirs = {"env": tmp_path / "env", "arg": tmp_path / "arg", "cache": isolated_env}
    for key in present:
        _install(dirs[key])
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(dirs["env"]))

    resolved = resolve_model("two", models_dir=dirs["arg"], manifest=TEST_MANIFEST)

    assert resolved.files == (dirs[expected] / "m/net.xml", dirs[expected] / "m/net.bin")
    assert resolved.entry == TWO_FILES
    assert (resolved.family, resolved.input_size) == ("yolox", (32, 32))


def test_resolve_prefers_an_explicit_existing_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _install(tmp_path / "env")
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(tmp_path / "env"))
    own = tmp_path / "mine" / "net.xml"
    own.parent.mkdir()
    own.write_bytes(b"xml")

    resolved = resolve_model(own, manifest=TEST_MANIFEST)

    assert resolved.path == own
    assert resolved.entry == TWO_FILES, "a known file name keeps its manifest entry"
    assert resolved.files[1] == own.parent / "net.bin"


def test_resolve_plain_unknown_file_has_no_entry(tmp_path: Path) -> None:
    plain = tmp_path / "custom.onnx"
    plain.write_bytes(b"x")

    resolved = resolve_model(str(plain), manifest=TEST_MANIFEST)

    assert (resolved.entry, resolved.family, resolved.input_size) == (None, None, None)
    assert resolved.files == (plain,)
    assert verify(resolved) == []


def test_missing_model_error_lists_every_directory_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated_env: Path
) -> None:
    _install(tmp_path / "env", complete=False)
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(tmp_path / "env"))

    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("two", models_dir=tmp_path / "arg", manifest=TEST_MANIFEST)

    message = str(info.value)
    for directory in (tmp_path / "env", tmp_path / "arg", isolated_env):
        assert str(directory) in message
    assert "incomplete: missing m/net.bin" in message
    assert "lobbywatch models fetch two" in message
    assert "LOBBYWATCH_MODELS" in message


def test_unknown_name_that_is_not_a_file_is_not_found() -> None:
    with pytest.raises(ModelNotFoundError, match="neither an existing file nor a model"):
        resolve_model("does-not-exist.onnx", manifest=TEST_MANIFEST)


def test_verify_reports_corrupt_and_missing_files(tmp_path: Path) -> None:
    _install(tmp_path)
    resolved = resolve_model("two", models_dir=tmp_path, manifest=TEST_MANIFEST)
    assert verify(resolved) == []

    (tmp_path / "m/net.xml").write_bytes(b"XML")
    (tmp_path / "m/net.bin").unlink()
    problems = verify(resolved)

    assert problems == [
        f"{tmp_path / 'm/net.xml'}: sha256 {sha(b'XML')}, expected {sha(b'xml')}",
        f"{tmp_path / 'm/net.bin'}: missing",
    ]


# --- CLI (the sub-app the lead mounts as `lobbywatch models`) ---------------------------------

runner = CliRunner()


@pytest.fixture
def models_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """$LOBBYWATCH_MODELS pointing at an empty tmp dir."""
    directory = tmp_path / "models"
    directory.mkdir()
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(directory))
    return directory


def _link_real_yolox(directory: Path) -> Path:
    target = directory / "yolox_nano.onnx"
    target.symlink_to(SHARED_MODELS.resolve() / "yolox_nano.onnx")
    return target


@needs_shared
def test_cli_list_shows_every_model_licence_and_location(models_env: Path) -> None:
    target = _link_real_yolox(models_env)

    result = runner.invoke(app, ["list"])

    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in REQUIRED)
    assert "AGPL-3.0 (tests only)" in result.stdout
    assert str(target) in result.stdout
    assert "missing" in result.stdout


def test_cli_list_shows_a_licence_note_and_the_value_that_acknowledges_it(
    models_env: Path,
) -> None:
    result = runner.invoke(app, ["list"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("bytetrack_nano_mot17 "))
    assert "MIT, see note" in lines[row]
    note = " ".join(line.strip() for line in lines[row + 1 : row + 6])
    assert note.startswith("note: ") and "non-commercial use only" in note
    # The value to write comes out whole on one line, to be copied.
    assert any(line.strip().endswith("non-commercial-training-data") for line in lines)
    assert "detector.licence_acknowledged:" in note
    assert "see note" not in "".join(line for line in lines if line.startswith("yolox_nano "))


@needs_shared
def test_cli_verify_and_path_on_a_good_file(models_env: Path) -> None:
    target = _link_real_yolox(models_env)

    verified = runner.invoke(app, ["verify", "yolox_nano"])
    everything = runner.invoke(app, ["verify"])  # every manifest model is needed without --config
    located = runner.invoke(app, ["path", "yolox_nano"])

    assert verified.exit_code == 0, verified.output
    assert "yolox_nano: ok" in verified.stdout
    assert everything.exit_code == 1
    assert "yolox_nano: ok" in everything.stdout
    assert "yolov8n_int8_dynamic: MISSING" in everything.stdout
    assert located.exit_code == 0
    assert located.stdout.strip() == str(target)


def test_cli_verify_exits_1_on_a_mismatch(models_env: Path) -> None:
    (models_env / "yolox_nano.onnx").write_bytes(b"not yolox")

    result = runner.invoke(app, ["verify", "yolox_nano"])

    assert result.exit_code == 1
    assert "sha256" in result.stderr and "expected 695e750a" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["path", "yolox_nano"], "lobbywatch models fetch yolox_nano"),
        (["verify", "yolox_nano"], "not found"),
        (["fetch", "yolov99"], "unknown model 'yolov99'"),
        (["fetch", "yolov8n_int8_dynamic"], "--accept-license AGPL-3.0"),
    ],
)
def test_cli_errors_exit_1_on_stderr_without_traceback(
    models_env: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, args)

    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@needs_shared
def test_cli_fetch_with_a_verified_copy_needs_no_network(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    shutil.copyfile(SHARED_MODELS / "yolox_nano.onnx", dest / "yolox_nano.onnx")

    result = runner.invoke(app, ["fetch", "yolox_nano", "--dest", str(dest), "--no-progress"])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(dest / "yolox_nano.onnx")
