"""`lobbywatch count`: offline replay of a source, one JSON line per processed frame.

For evaluation: every kept frame is processed (no real-time pacing, no dropped frames) and the
smoothing window runs on source time (frame index / source fps), so the result does not depend
on how fast this machine is.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edge.calibration import ZoneCalibration, fit_zone
from edge.capture import Camera, decimation_stride
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
            "detected": dict(result.detected),
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


def read_hand_counts(path: Path) -> dict[int, dict[str, float]]:
    """A CSV with columns frame,zone,count (frame: 0-based index in the camera's source)."""
    counts: dict[int, dict[str, float]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"frame", "zone", "count"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                frame, count = int(row["frame"]), float(row["count"])
            except ValueError:
                raise ValueError(f"{path}:{line}: frame and count must be numbers") from None
            if frame < 0 or count < 0:
                raise ValueError(f"{path}:{line}: frame and count must not be negative")
            counts.setdefault(frame, {})[row["zone"]] = count
    if not counts:
        raise ValueError(f"{path}: no hand counts")
    return counts


def calibrate_camera(
    config: LobbyConfig,
    hand_counts: dict[int, dict[str, float]],
    camera_id: str | None = None,
    *,
    detector: Detector | None = None,
) -> dict[str, ZoneCalibration]:
    """Fit each zone's correction to the hand-counted frames of one camera's source.

    Every frame is read (skipping nothing, so frame numbers mean the same as in `count`). The
    correction applies to the per-frame count with people held through misses, which needs the
    frames before each counted one: with the hold on, the frames `count` processes (the
    camera's `fps`) up to the last counted one go through the detector, and the counted ones;
    otherwise only the counted ones.
    """
    camera_config = config.camera(camera_id) if camera_id else config.cameras[0]
    zone_ids = {z.id for z in camera_config.zones}
    unknown = {z for per_frame in hand_counts.values() for z in per_frame} - zone_ids
    if unknown:
        raise ValueError(
            f"hand counts name zone(s) not on camera {camera_config.id}: {sorted(unknown)}"
        )
    every_frame = camera_config.model_copy(
        update={"fps": 240.0, "source_fps": camera_config.source_fps or 240.0}
    )
    camera = Camera(capture_settings(every_frame, realtime=False, loop=False))
    pipeline = CameraPipeline(
        camera_config,
        detector or build_detector(config.detector),
        config.occupancy,
        calibrations={},
    )
    detected: dict[str, list[int]] = {z: [] for z in zone_ids}
    truth: dict[str, list[float]] = {z: [] for z in zone_ids}
    last = max(hand_counts)
    seen: set[int] = set()
    hold = pipeline.holds_people
    stride = 0
    for frame in camera.iter_frames():
        if not stride:  # the source's rate is known once it is open
            stride = decimation_stride(camera.source_fps or 0.0, camera_config.fps)
        if frame.index in hand_counts or (hold and frame.index % stride == 0):
            result = pipeline.process(frame, _source_time(frame, camera))
        if frame.index in hand_counts:
            seen.add(frame.index)
            for zone, count in hand_counts[frame.index].items():
                detected[zone].append(result.raw[zone])  # uncalibrated here: calibrations={}
                truth[zone].append(count)
        if frame.index >= last:
            camera.stop()
            break
    missing = sorted(set(hand_counts) - seen)
    if missing:
        raise ValueError(f"frames not in the source: {missing[:10]}")
    return {z: fit_zone(detected[z], truth[z]) for z in zone_ids if detected[z]}
