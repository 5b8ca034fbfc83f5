"""`lobbywatch scene reset`: forget what a camera learned, never under a running service."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from edge.runtime.device_state import StateFile, state_path

CONFIG = """\
site: {{id: b1}}
detector: {{model: {model}}}
cameras:
  - id: hall
    source: rtsp://127.0.0.1:9/none
    zones: [{{id: floor, role: waiting, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}]
  - id: door
    source: rtsp://127.0.0.1:9/none
    zones: [{{id: entry, role: entrance, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}]
storage: {{path: "{db}"}}
mqtt: {{enabled: false}}
"""


def reset(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "scene", "reset", "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip


def test_scene_reset_removes_the_learned_files_and_refuses_while_the_service_runs(
    tmp_path, models_dir
):
    model = models_dir / "yolox_nano.onnx"
    config = tmp_path / "site.yaml"
    config.write_text(CONFIG.format(model=model, db=tmp_path / "lw.db"))
    hall, door = tmp_path / "perspective-hall.json", tmp_path / "perspective-door.json"
    hall.write_text("{}")
    door.write_text("{}")

    state = StateFile(state_path(tmp_path / "lw.db"))
    state.write({"pid": os.getpid(), "at": datetime.now(timezone.utc).isoformat(), "running": True})
    refused = reset(config, "--camera", "hall")
    assert refused.returncode == 1 and "service is running" in refused.stderr and hall.exists()

    state.write(
        {"pid": os.getpid(), "at": datetime.now(timezone.utc).isoformat(), "running": False}
    )
    done = reset(config, "--camera", "hall")
    assert done.returncode == 0, done.stderr
    assert not hall.exists() and door.exists() and "forgot its scene" in done.stdout
    assert reset(config, "--camera", "haal").returncode == 1
    everything = reset(config)
    assert everything.returncode == 0 and not door.exists()
    assert "hall: nothing learned yet" in everything.stdout
    state.close()
