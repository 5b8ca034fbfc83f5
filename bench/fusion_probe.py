#!/usr/bin/env python3
"""Probe: which detectors, fusion and hold settings count the Mall best? (issue #5)

Running the detectors is the slow part, so it is done once: `dump` runs a model on every frame,
one pass per tile (and the whole frame), at a low threshold, and keeps the boxes. `sweep` then
replays them through the product's own tile merge, fusion, zones and presence hold for many
settings in seconds each, and prints MAE and bias of the per-frame count against the head
annotations. A probe to choose defaults; the numbers recorded in BENCHMARKS.md for a chosen
setting come from bench/mall_accuracy.py, which runs the real `lobbywatch count`.

    python bench/fusion_probe.py dump yolox_nano /tmp/yolox.pkl --grids 2x2,3x2
    python bench/fusion_probe.py dump person-detection-retail-0013 /tmp/retail.pkl --grids 2x2
    python bench/fusion_probe.py sweep /tmp/yolox.pkl:full+2x2 /tmp/retail.pkl:full
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.config import DetectorConfig, OccupancyConfig, load_config  # noqa: E402
from edge.detect import create_detector  # noqa: E402
from edge.detect.fusion import fuse  # noqa: E402
from edge.detect.tiling import merge_passes, tile_windows  # noqa: E402
from edge.pipeline import CameraPipeline, detector_settings  # noqa: E402
from edge.types import Detections, Frame  # noqa: E402

CONFIG = REPO / "configs" / "mall.yaml"  # the camera, its floor zone and its frame rate
Passes = list[dict[str, tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]]]


def dump(model: str, out: Path, grids: list[tuple[int, int]], data: Path, floor: float) -> None:
    config = DetectorConfig(
        model=model, confidence=floor, threads=2, tiling={"enabled": False}, fusion={"models": []}
    )
    detector = create_detector(detector_settings(config))
    frames = sorted((data / "mall" / "frames").glob("seq_*.jpg"))
    passes: Passes = []
    started = time.perf_counter()
    for i, path in enumerate(frames):
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        windows = [("full", (0, 0, width, height))]
        for grid in grids:
            tiles = tile_windows(width, height, grid, 0.2)
            windows += [(f"{grid[0]}x{grid[1]}_{k}", tuple(t)) for k, t in enumerate(tiles)]
        found = {}
        for name, (x0, y0, x1, y1) in windows:
            d = detector.detect_once(np.ascontiguousarray(image[y0:y1, x0:x1]))
            shift = np.array([x0, y0, x0, y0], dtype=np.float32)
            found[name] = ((x0, y0, x1, y1), d.xyxy + shift, d.confidence.copy())
        passes.append(found)
        if i % 200 == 0:
            print(f"{i} frames, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    out.write_bytes(pickle.dumps(passes))


def model_detections(passes: Passes, groups: set[str], confidence: float) -> list[Detections]:
    """Per frame: the passes of the named groups ("full", "2x2", ...) merged as the product does."""
    result = []
    for frame in passes:
        parts = []
        for name, (window, xyxy, score) in frame.items():
            if name.split("_")[0] in groups:
                keep = score >= confidence
                parts.append((window, _detections(xyxy[keep], score[keep])))
        result.append(merge_passes(parts, (640, 480), 0.45))
    return result


class Replayed:
    """A detector that hands back stored detections, one frame after another."""

    provider = "replay"

    def __init__(self, frames: list[Detections]) -> None:
        self._frames = iter(frames)

    def detect(self, image: np.ndarray) -> Detections:
        return next(self._frames)


def count(frames: list[Detections], occupancy: OccupancyConfig, every: int = 1) -> list[int]:
    """Per-frame count (`zones` of `lobbywatch count`) of the camera's first zone, through the
    product's pipeline; frames[i] is Mall frame i * every."""
    camera = load_config(CONFIG).cameras[0]
    pipeline = CameraPipeline(camera, Replayed(frames), occupancy, calibrations={})
    blank = np.zeros((480, 640, 3), dtype=np.uint8)  # the Mall's frame size; never looked at
    zone = camera.zones[0].id
    at = datetime.now(timezone.utc)
    period = 1.0 / (camera.source_fps or 2.0)
    return [
        pipeline.process(Frame(camera.id, i * every, blank, at, 0.0), i * every * period).raw[zone]
        for i in range(len(frames))
    ]


def sweep(specs: list[str], data: Path, candidates: float, every: int) -> None:
    heads = json.loads((data / "mall" / "gt_heads.json").read_text())
    truth = np.array([heads[n]["count"] for n in sorted(heads)])[::every]
    models = []
    for spec in specs:
        path, _, groups = spec.partition(":")
        passes = pickle.loads(Path(path).read_bytes())
        models.append(model_detections(passes[::every], set(groups.split("+")), candidates))
    fused = (
        [fuse(list(per_frame), 0.5) for per_frame in zip(*models, strict=True)]
        if len(models) > 1
        else models[0]
    )
    thresholds = (0.12, 0.14, 0.15, 0.16, 0.18) if len(models) > 1 else (0.15, 0.2, 0.25)
    for threshold, (frames, gate, hits) in itertools.product(
        thresholds, [(0, 1.0, 1), (1, 0.6, 1), (1, 1.0, 1), (1, 0.6, 2), (1, 1.0, 2)]
    ):
        kept = [f[np.flatnonzero(f.confidence >= threshold)] for f in fused]
        occupancy = OccupancyConfig(hold_frames=frames, hold_gate=gate, hold_min_hits=hits)
        errors = np.array(count(kept, occupancy, every)) - truth[: len(kept)]
        print(
            f"confidence {threshold:.2f}  hold {frames} frame(s) gate {gate} min_hits {hits}: "
            f"MAE {np.abs(errors).mean():.2f} bias {errors.mean():+.2f}",
            flush=True,
        )


def _detections(xyxy: np.ndarray, score: np.ndarray) -> Detections:
    return Detections(
        xyxy=xyxy.astype(np.float32),
        confidence=score.astype(np.float32),
        class_id=np.zeros(len(score), dtype=np.int32),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("LOBBYWATCH_DATA", REPO.parent / "shared" / "data")),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="run one model on every frame, per pass, at a low threshold")
    d.add_argument("model")
    d.add_argument("out", type=Path)
    d.add_argument("--grids", default="2x2", help="tile grids, e.g. 2x2,3x2")
    d.add_argument("--floor", type=float, default=0.05, help="lowest score kept")
    s = sub.add_parser("sweep", help="count from dumped boxes over a grid of settings")
    s.add_argument("specs", nargs="+", help="DUMP:GROUPS, e.g. yolox.pkl:full+2x2 (2+ = fused)")
    s.add_argument("--candidates", type=float, default=0.1, help="each model's candidate score")
    s.add_argument("--every", type=int, default=1, help="every Nth frame: a camera at 2/N Hz")
    args = parser.parse_args()
    if args.command == "dump":
        grids = [tuple(int(n) for n in g.split("x")) for g in args.grids.split(",")]
        dump(args.model, args.out, grids, args.data, args.floor)  # type: ignore[arg-type]
    else:
        sweep(args.specs, args.data, args.candidates, args.every)


if __name__ == "__main__":
    main()
