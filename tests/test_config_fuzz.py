"""Every hostile file in tests/fuzz/config/, and random mutations of valid ones, gives a clean
result: OK, or `path (line N): message` lines and exit 1, never a traceback, within 5 s.

Each corpus file's first line says what it must give (`# expect: <text in the output>`); files
too large to keep (50 000-deep nesting, 2 MiB) are generated here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edge.cli import app
from edge.config import ConfigError, LobbyConfig, load_config, parse_config
from edge.tools.preflight import check_runnable

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "fuzz" / "config"
FILES = sorted(CORPUS.glob("*.yaml"))
SHARED_MODELS = Path(os.environ.get("LOBBYWATCH_MODELS") or REPO.parent / "shared" / "models")
TIME_BOUND_S = 5.0


def expectation(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name}: first line must say what it gives"
    return first.removeprefix("# expect: ")


def check_clean(path: Path, output: str, exit_code: int) -> None:
    """OK on one line, or the error header and one line per error; nothing else."""
    assert "Traceback" not in output, output
    lines = output.splitlines()
    if exit_code == 0:
        assert lines == [next(x for x in lines if x.startswith(f"{path}: OK"))], output
        return
    assert exit_code == 1, output
    assert lines[0].startswith(f"{path}: ") and lines[0].endswith("error(s) in configuration")
    assert lines[1:] and all(line.startswith("  - ") for line in lines[1:]), output


@pytest.fixture
def models_env(monkeypatch: pytest.MonkeyPatch) -> bool:
    """Real models when present, so the valid corpus files can pass the preflight too."""
    monkeypatch.delenv("LOBBYWATCH_FUZZ_UNSET_KEY", raising=False)
    if SHARED_MODELS.is_dir():
        monkeypatch.setenv("LOBBYWATCH_MODELS", str(SHARED_MODELS))
        return True
    return False


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_corpus_file_gives_its_expected_clean_result(path: Path, models_env: bool):
    expected = expectation(path)
    if expected == "OK" and not models_env:
        pytest.skip(f"no models at {SHARED_MODELS} for the preflight of a valid config")
    started = time.monotonic()
    result = CliRunner().invoke(app, ["validate-config", str(path)])
    elapsed = time.monotonic() - started

    assert elapsed < TIME_BOUND_S, f"{path.name} took {elapsed:.1f} s"
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    check_clean(path, result.output, result.exit_code)
    assert expected in result.output, result.output


def _deep(opening: str, closing: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "deep.yaml"
        path.write_text("site: " + opening * 50_000 + closing * 50_000 + "\n")
        return path

    return make


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo.yaml")
    return tmp / "fifo.yaml"


def _big(tmp: Path) -> Path:
    path = tmp / "big.yaml"
    path.write_text("site: {id: x}\n" + "# padding\n" * 220_000)
    return path


GENERATED = [
    ("50 000-deep list", _deep("[", "]"), "nested deeper than 64 levels"),
    ("50 000-deep map", _deep("{a: ", "}"), "nested deeper than 64 levels"),
    ("2 MiB file", _big, "larger than 1024 KiB"),
    ("FIFO as the config", _fifo, "not a regular file"),
    ("/dev/zero as the config", lambda tmp: Path("/dev/zero"), "not a regular file"),
]


@pytest.mark.parametrize(("case", "make", "expected"), GENERATED, ids=[g[0] for g in GENERATED])
def test_generated_hostile_files_give_a_clean_error(tmp_path, case, make, expected):
    path = make(tmp_path)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["validate-config", str(path)])
    assert time.monotonic() - started < TIME_BOUND_S
    check_clean(path, result.output, result.exit_code)
    assert result.exit_code == 1 and expected in result.output, result.output


def test_the_console_command_gives_one_line_errors_in_a_real_process(tmp_path):
    """A few of the worst, through `python -m edge.cli` as an installer would meet them."""
    deep = _deep("[", "]")(tmp_path)
    for path in (CORPUS / "billion_laughs.yaml", CORPUS / "binary.yaml", deep):
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "edge.cli", "validate-config", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=REPO,
        )
        assert time.monotonic() - started < TIME_BOUND_S + 5  # + interpreter start-up
        assert result.stdout == ""
        check_clean(path, result.stderr, result.returncode)
        assert result.returncode == 1


# --- properties: mutations of valid configs ----------------------------------------------------

SEED = (CORPUS / "valid_full.yaml").read_text()
SEED_DATA: dict[str, Any] = yaml.safe_load(SEED)
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def loads_cleanly(text: str, environ: dict[str, str] | None = None) -> LobbyConfig | None:
    """The loader's only failure is ConfigError; a config it accepts passes the preflight's
    checks without raising either."""
    try:
        config = parse_config(
            text, source="fuzz.yaml", base_dir=Path("/srv"), environ=environ or {}
        )
    except ConfigError as exc:
        assert all(str(issue).isprintable() for issue in exc.issues), exc.issues
        return None
    assert isinstance(check_runnable(config, environ={}), list)
    return config


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(SEED.encode())), st.integers(0, 8), st.binary(max_size=8)),
        min_size=1,
        max_size=6,
    )
)
def test_random_byte_edits_only_ever_raise_config_error(edits):
    data = bytearray(SEED.encode())
    for at, cut, new in edits:
        data[at : at + cut] = new
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.yaml"
        path.write_bytes(bytes(data))
        with contextlib.suppress(ConfigError):
            load_config(path, environ={})


YAML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["1e999", "-inf", "${X}", "${X:-1}", "usb:0", "rtsp://h:99999/", "\0"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


SEED_PATHS = _paths(SEED_DATA)[1:]


@FUZZ
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(SEED_PATHS), YAML_VALUES, st.text(max_size=8)),
        min_size=1,
        max_size=4,
    )
)
def test_random_values_and_keys_only_ever_raise_config_error(changes):
    data = yaml.safe_load(SEED)
    for path, value, new_key in changes:
        parent: Any = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = value
            if new_key and isinstance(parent, dict):
                parent[new_key] = value  # an unknown (or duplicate-looking) key
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced a parent of this path
    loads_cleanly(yaml.safe_dump(data, allow_unicode=True), environ={"X": "2"})


ENV_KEYS = st.sampled_from(
    ["SITE", "ID", "CAMERAS", "LOBBY_CAM", "LOBBY-CAM", "0", "7", "ZONES", "POLYGON", "FPS",
     "ALERTS", "RULES", "WAITING_FULL", "RAISE_AT", "MQTT", "PORT", "TLS", "", "X"]
)  # fmt: skip


@FUZZ
@given(
    overrides=st.dictionaries(
        st.lists(ENV_KEYS, min_size=1, max_size=5).map(lambda ks: "LOBBYWATCH_" + "__".join(ks)),
        st.text(max_size=16) | st.sampled_from(["true", ".inf", "[1, [2, [3]]]", "&a [*a]", "{"]),
        max_size=4,
    )
)
def test_random_environment_overrides_only_ever_raise_config_error(overrides):
    loads_cleanly(SEED, environ=overrides)
