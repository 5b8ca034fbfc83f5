"""Shared test fixtures: where the real model weights and test data live.

They are never part of the repository: $LOBBYWATCH_MODELS (default <repo>/../shared/models) and
$LOBBYWATCH_DATA (default <repo>/../shared/data). Tests that need them skip, naming the missing
path, on a machine without that material.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _shared_dir(variable: str, default: str) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value else REPO_ROOT.parent / "shared" / default


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (set LOBBYWATCH_MODELS / LOBBYWATCH_DATA)")
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Directory with the model weights ($LOBBYWATCH_MODELS); skips the test when absent."""
    return _require(_shared_dir("LOBBYWATCH_MODELS", "models"), "model directory")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Directory with photos and the Mall dataset ($LOBBYWATCH_DATA); skips when absent."""
    return _require(_shared_dir("LOBBYWATCH_DATA", "data"), "data directory")


@pytest.fixture(scope="session")
def photos_dir(data_dir: Path) -> Path:
    """Real photos (bus.jpg, zidane.jpg); skips when absent."""
    return _require(data_dir / "photos", "photo directory")


@pytest.fixture
def broker(tmp_path: Path):
    """A real Mosquitto on a free loopback port, stopped after the test."""
    from tests.mqtt_broker import Broker

    started = Broker(tmp_path / "broker").start()
    yield started
    if started.proc is not None:
        started.kill()


@pytest.fixture
def mall_sequence(
    tmp_path: Path, data_dir: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Six real Mall frames as an image sequence of their own (seq_000001 is frame 0)."""
    frames = data_dir / "mall" / "frames"
    if not frames.exists():
        pytest.skip(f"Mall frames not found at {frames}")
    target = tmp_path / "frames"
    target.mkdir()
    for i in range(1, 7):
        shutil.copy(frames / f"seq_{i:06d}.jpg", target / f"seq_{i:06d}.jpg")
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    return str(target / "seq_%06d.jpg")


class SmallDisk:
    """A real, small file system (tmpfs) that a test can fill up and free again."""

    # Room for a first run's store before the test fills the rest: SQLite lets its write-ahead
    # log grow to about 4 MiB before a checkpoint, which a slow machine reached in 3 MiB.
    def __init__(self, path: Path, size: str = "16m") -> None:
        import subprocess

        path.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        """Take every free byte."""
        with self._filler.open("ab") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        import subprocess

        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MiB tmpfs at tmp_path/disk (skips where tmpfs cannot be mounted: not root)."""
    disk = SmallDisk(tmp_path / "disk")
    yield disk
    disk.unmount()
