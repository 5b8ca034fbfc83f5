"""`lobbywatch snapshot`: a few frames of a camera saved for counting by hand (calibration).

The only place the product writes camera images: to the folder the user names, nowhere else, and
only when asked. The frames come through the same capture code as counting (decimated by the
camera's own machinery), numbered 0..N-1 so that they form an image sequence that `lobbywatch
calibrate --source` reads back with the same frame numbers the hand labels use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2

from edge.capture import Camera
from edge.config import LobbyConfig
from edge.service import capture_settings


@dataclass(frozen=True)
class Snapshots:
    camera_id: str
    pattern: Path  # printf pattern of the written files, e.g. DIR/lobby_%06d.jpg
    written: tuple[Path, ...]


def take_snapshots(
    config: LobbyConfig, out_dir: Path, count: int, every_s: float, camera_id: str | None = None
) -> Snapshots:
    """Save `count` frames `every_s` seconds apart (source time for files, wall time for live
    cameras) as JPEGs in out_dir. Refuses a folder that already holds this camera's snapshots,
    so that a second run cannot mix two sessions under one numbering."""
    if count < 1 or every_s <= 0:
        raise ValueError("count must be at least 1 and every a positive number of seconds")
    camera_config = config.camera(camera_id) if camera_id else config.cameras[0]
    camera_config = camera_config.model_copy(update={"fps": min(60.0, 1.0 / every_s)})
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # people's faces: owner only
    prefix = f"{camera_config.id}_"
    if any(p.name.startswith(prefix) and p.suffix == ".jpg" for p in out_dir.iterdir()):
        raise ValueError(
            f"{out_dir} already holds snapshots of {camera_config.id}: use a new folder"
        )
    camera = Camera(capture_settings(camera_config, realtime=False, loop=False))
    written: list[Path] = []
    try:
        for frame in camera.iter_frames():
            path = out_dir / f"{prefix}{len(written):06d}.jpg"
            if not cv2.imwrite(str(path), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"cannot write {path}")
            os.chmod(path, 0o600)
            written.append(path)
            if len(written) >= count:
                break
    finally:
        camera.stop()
    return Snapshots(camera_config.id, out_dir / f"{prefix}%06d.jpg", tuple(written))
