"""`lobbywatch count`: offline replay of a source, one JSON line per processed frame.

For evaluation: every kept frame is processed (no real-time pacing, no dropped frames) and the
smoothing window runs on source time (frame index / source fps), so the result does not depend
on how fast this machine is.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from edge.calibration import (
    MIN_FRAMES,
    CalibrationFrame,
    HeadPoints,
    ZoneCalibration,
    camera_geometry,
    fit_camera,
    head_labelled,
    head_units,
    zones_key,
)
from edge.capture import Camera, decimation_stride
from edge.capture.sources import first_sequence_number
from edge.config import LobbyConfig
from edge.detect import Detector
from edge.pipeline import CameraPipeline, FrameResult, build_detector
from edge.service import capture_settings
from edge.store import HandCount, Store
from edge.types import Detections, Frame
from edge.zones import Zone, assign_zones, tally

Polygon = Sequence[tuple[float, float]]


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
        camera_config,
        detector or build_detector(config.detector),
        config.occupancy,
        tracking=config.tracking,
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


def frame_indices(keys: Iterable[str], source: str) -> dict[str, int]:
    """Source frame index (0-based) of each labelled frame key: a number, or a file name of the
    image sequence `source` (cam1_000001.jpg of "frames/cam1_%06d.jpg" is its first frame when
    numbering starts at 1)."""
    pattern = re.fullmatch(r"(.*?)%0?(\d*)d(.*)", os.path.basename(source))
    first = first_sequence_number(source) if pattern and "%" in source else None
    result = {}
    for key in keys:
        if key.isdigit():
            result[key] = int(key)
            continue
        match = pattern and re.fullmatch(
            re.escape(pattern[1]) + r"(\d+)" + re.escape(pattern[3]), os.path.basename(key)
        )
        if not match or first is None:
            raise ValueError(
                f"frame {key!r}: neither a frame number nor a file of the image sequence {source!r}"
            )
        result[key] = int(match[1]) - first
    return result


def calibrate_camera(
    config: LobbyConfig,
    hand_counts: dict[int, dict[str, float]] | None = None,
    camera_id: str | None = None,
    *,
    heads: Mapping[str, HeadPoints] | None = None,
    source: str | None = None,
    stills: bool = False,
    metric: Literal["mae", "mape"] = "mae",
    detector: Detector | None = None,
) -> dict[str, ZoneCalibration]:
    """Choose each zone's correction on the labelled frames of one camera's source.

    Labels are per-zone hand counts, or hand-clicked head points (preferred: they are counted in
    each zone here, and kept with the frame for fits that need them, see CalibrationFrame).
    source: read these frames instead of the camera's (the JPEGs `lobbywatch snapshot` wrote).
    stills: the frames are unrelated (snapshots seconds apart, a data set): no presence hold.

    Every frame is read (skipping nothing, so frame numbers mean the same as in `count`). The
    correction applies to the per-frame count with people held through misses, which needs the
    frames before each counted one: with the hold on, the frames `count` processes (the
    camera's `fps`) up to the last counted one go through the detector, and the counted ones;
    otherwise only the counted ones.
    """
    camera_config = config.camera(camera_id) if camera_id else config.cameras[0]
    if source is not None:
        camera_config = camera_config.model_copy(update={"source": source})
    if (hand_counts is None) == (heads is None):
        raise ValueError("give hand counts or head points, one of them")
    zone_ids = {z.id for z in camera_config.zones}
    head_frames: dict[int, HeadPoints] = {}
    units = "pixels"
    if heads is not None:
        indices = frame_indices(heads, camera_config.source)
        head_frames = {indices[k]: h for k, h in heads.items()}
        units = head_units(heads)
        hand_counts = {i: {} for i in head_frames}
    assert hand_counts is not None
    unknown = {z for per_frame in hand_counts.values() for z in per_frame} - zone_ids
    if unknown:
        raise ValueError(
            f"hand counts name zone(s) not on camera {camera_config.id}: {sorted(unknown)}"
        )
    every_frame = camera_config.model_copy(
        update={"fps": 240.0, "source_fps": camera_config.source_fps or 240.0}
    )
    camera = Camera(capture_settings(every_frame, realtime=False, loop=False))
    occupancy = config.occupancy.model_copy(update={"hold_frames": 0}) if stills else None
    pipeline = CameraPipeline(
        camera_config,
        detector or build_detector(config.detector),
        occupancy or config.occupancy,
        calibrations={},
    )
    labelled: list[CalibrationFrame] = []
    last = max(hand_counts)
    hold = pipeline.holds_people
    stride = 0
    for frame in camera.iter_frames():
        if not stride:  # the source's rate is known once it is open
            stride = decimation_stride(camera.source_fps or 0.0, camera_config.fps)
        if frame.index in hand_counts or (hold and frame.index % stride == 0):
            result = pipeline.process(frame, _source_time(frame, camera))
        if frame.index in hand_counts:
            # uncalibrated here: calibrations={}
            if frame.index in head_frames:
                height, width = frame.image.shape[:2]
                xy = head_frames[frame.index].xy
                if units == "pixels":
                    xy = xy / np.array([width, height], dtype=np.float64)
                labelled.append(head_labelled(frame.index, result.raw, xy, result.detections,
                                              pipeline.zones, pipeline.ignore))  # fmt: skip
            else:
                truth = dict(hand_counts[frame.index])
                labelled.append(
                    CalibrationFrame(frame.index, dict(result.raw), truth, result.detections)
                )
        if frame.index >= last:
            camera.stop()
            break
    missing = sorted(set(hand_counts) - {f.index for f in labelled})
    if missing:
        raise ValueError(f"frames not in the source: {missing[:10]}")
    return fit_camera(labelled, metric=metric)


#: Hand counts a fit from the store needs at the least: cross-validation fits on some frames
#: and judges on others, so one frame cannot choose anything (MIN_FRAMES are advised).
MIN_STORED_FRAMES = 2


def stored_frames(
    counts: Sequence[HandCount], zones: Sequence[Zone], ignore: Sequence[Polygon]
) -> tuple[list[CalibrationFrame], list[int]]:
    """The store's hand counts as labelled frames, counted as calibrate_camera counts head
    points (head_labelled), no frame read and no detector run: the boxes are stored. A count
    made with other zones or masks than these has its boxes placed again with these (their
    feet, as the pipeline places them); the second list names those counts."""
    key = zones_key(zones, ignore)
    zone_ids = [z.id for z in zones]
    frames, recounted = [], []
    for count in counts:
        detections = Detections(
            np.array([b.xyxy for b in count.boxes], np.float32).reshape(-1, 4),
            np.array([b.score for b in count.boxes], np.float32),
            np.zeros(len(count.boxes), np.int32),
        )
        detected = {z: count.detected.get(z, 0) for z in zone_ids}
        if count.zones_key != key:
            anchors = np.array([b.anchor for b in count.boxes], np.float32).reshape(-1, 2)
            detected = tally(assign_zones(anchors, zones, ignore), zone_ids)
            recounted.append(count.id)
        xy = np.array(count.heads, np.float64).reshape(-1, 2)
        frames.append(head_labelled(count.id, detected, xy, detections, zones, ignore))
    return frames, recounted


def calibrate_from_store(
    config: LobbyConfig,
    store: Store,
    camera_id: str | None = None,
    *,
    metric: Literal["mae", "mape"] = "mae",
) -> tuple[dict[str, ZoneCalibration], list[int]]:
    """Each zone's correction from the hand counts /debug kept in the store for one camera
    (docs/ui.md 6), through the same fit as calibrate_camera's head points; with the ids of
    the counts recounted for changed zones. ValueError when there are too few."""
    camera_config = config.camera(camera_id) if camera_id else config.cameras[0]
    counts = store.hand_counts(camera_config.id)
    if len(counts) < MIN_STORED_FRAMES:
        raise ValueError(
            f"camera {camera_config.id} has {len(counts)} hand count(s) in the store "
            f"{store.path}; a fit needs at least {MIN_STORED_FRAMES} ({MIN_FRAMES} advised): "
            'count heads on more snapshots in /debug ("Count heads", then Save)'
        )
    zones, ignore = camera_geometry(camera_config)
    frames, recounted = stored_frames(counts, zones, ignore)
    return fit_camera(frames, metric=metric), recounted
