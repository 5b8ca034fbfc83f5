"""`lobbywatch count`: offline replay of a source, one JSON line per processed frame.

For evaluation: every kept frame is processed (no real-time pacing, no dropped frames) and the
smoothing window runs on source time (frame index / source fps), so the result does not depend
on how fast this machine is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edge.capture import Camera
from edge.config import LobbyConfig
from edge.detect import Detector
from edge.pipeline import CameraPipeline, FrameResult, build_detector
from edge.service import capture_settings
from edge.types import Frame


@dataclass(frozen=True)
class ReplaySummary:
    frames: int
    wall_s: float
    inference_s: float

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def replay_camera(
    config: LobbyConfig,
    camera_id: str | None = None,
    source: str | None = None,
    *,
    detector: Detector | None = None,
) -> Iterator[FrameResult]:
    camera_config = config.camera(camera_id) if camera_id else config.cameras[0]
    if source is not None:
        camera_config = camera_config.model_copy(update={"source": source})
    camera = Camera(capture_settings(camera_config, realtime=False, loop=False))
    pipeline = CameraPipeline(
        camera_config, detector or build_detector(config.detector), config.occupancy
    )
    # Set up (model load) happens here, eagerly; the generator below only processes frames.
    return (pipeline.process(f, _source_time(f, camera)) for f in camera.iter_frames())


def _source_time(frame: Frame, camera: Camera) -> float:
    """Seconds into the source: the smoothing window then spans the same footage on any machine."""
    fps = camera.source_fps
    return frame.index / fps if fps else frame.monotonic


def result_line(result: FrameResult) -> str:
    return json.dumps(
        {
            "frame": result.frame_index,
            "zones": dict(result.raw),
            "occupancy": dict(result.occupancy),
            "people": len(result.detections),
            "inference_ms": round(result.inference_s * 1000, 2),
            # Person boxes in source pixels with score and zone, for evaluation (bench/).
            "boxes": [
                [*(round(float(v), 1) for v in box), round(float(score), 3), zone]
                for box, score, zone in zip(
                    result.detections.xyxy,
                    result.detections.confidence,
                    result.zone_of,
                    strict=True,
                )
            ],
        },
        separators=(",", ":"),
    )


def write_jsonl(results: Iterator[FrameResult], out: IO[str]) -> ReplaySummary:
    started = time.perf_counter()
    frames, inference_s = 0, 0.0
    for result in results:
        out.write(result_line(result) + "\n")
        frames += 1
        inference_s += result.inference_s
    return ReplaySummary(frames, time.perf_counter() - started, inference_s)


def replay_to_file(
    config: LobbyConfig,
    out_path: Path,
    camera_id: str | None = None,
    source: str | None = None,
    *,
    progress: bool = True,
) -> ReplaySummary:
    results = replay_camera(config, camera_id, source)
    if progress:
        from tqdm import tqdm

        results = iter(tqdm(results, desc="frames", unit="frame", file=None))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as out:
        return write_jsonl(results, out)
