"""A camera's learned scene (edge/counting/scene.py) kept across restarts, beside the database.

One small JSON file per camera, `perspective-<camera>.json`, written to a temporary file and
renamed over the old one, so a power cut leaves the old state or the new, never half of one.
A file that cannot be read or parsed is set aside and learning starts afresh: what it held is
relearned in minutes, and a service that will not start over it would count nothing.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("lobbywatch.scene")

MAX_BYTES = 4 * 1024 * 1024  # a state is ~100 kB; anything far larger is not ours


def scene_path(directory: Path, camera_id: str) -> Path:
    """camera_id is a config Id (letters, digits, _ . -), safe in a file name."""
    return directory / f"perspective-{camera_id}.json"


class SceneFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._warned = False

    def load(self) -> dict[str, Any] | None:
        try:
            if self.path.stat().st_size > MAX_BYTES:
                raise ValueError("too large")
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(state, dict):
                raise ValueError("not an object")
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("scene file %s unreadable (%s): learning afresh", self.path, exc)
            return None
        return state

    def save(self, state: dict[str, Any]) -> bool:
        data = json.dumps(state, separators=(",", ":"))
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
        except OSError as exc:
            if not self._warned:
                log.error("scene file %s cannot be written (%s)", self.path, exc)
                self._warned = True
            return False
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        self._warned = False
        return True

    def remove(self) -> None:
        """`reset`: the next start learns afresh."""
        self.path.unlink(missing_ok=True)
