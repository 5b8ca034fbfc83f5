#!/usr/bin/env python3
"""Per-frame cost of the static-clutter part of the scene (edge/counting/clutter.py), issue #11.

Runs the Mall frames (640x480) through the product's pipeline with the shipped settings and
times only `ClutterModel.update` on each frame (the detector's own boxes, the pipeline's own
scene); then a worst case: `max_sites` places on one Mall frame, all detected and compared in
every frame.

    python bench/clutter_cost.py [--every 4] [--limit N] [--set section.key=value]

Prints the figures; record them in BENCHMARKS.md ("Scenes (issue #11)").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.accuracy import add_scene_arguments  # noqa: E402
from bench.scenes import EPOCH, camera_for, load, mall_scene  # noqa: E402
from edge.counting.clutter import BoolArray, ClutterModel  # noqa: E402
from edge.pipeline import CameraPipeline, build_detector  # noqa: E402
from edge.types import FloatArray, Frame  # noqa: E402

Image = npt.NDArray[np.uint8]


def summary(ms: list[float]) -> str:
    a = np.array(ms)
    return (
        f"median {np.median(a):.2f} ms, mean {a.mean():.2f}, p95 {np.percentile(a, 95):.2f}, "
        f"max {a.max():.2f} ({len(a)} frames)"
    )


class Timed(ClutterModel):
    """The model, timing each update (milliseconds) and counting its boxes."""

    def reset(self) -> None:
        super().reset()
        self.ms: list[float] = []
        self.boxes: list[tuple[FloatArray, BoolArray]] = []

    def update(self, image: Image, xyxy: FloatArray, candidate: BoolArray, now: float) -> BoolArray:
        started = time.perf_counter()
        keep = super().update(image, xyxy, candidate, now)
        self.ms.append((time.perf_counter() - started) * 1e3)
        self.boxes.append((xyxy.copy(), candidate.copy()))
        return keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=4, help="Mall: every Nth frame (default 4)")
    parser.add_argument("--limit", type=int, default=None, help="at most N frames")
    add_scene_arguments(parser, REPO)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOBBYWATCH_MODELS", str(REPO.parent / "shared" / "models"))
    config = load(str(REPO / "configs" / "mall.yaml"), args.set, args.data)
    scene = mall_scene(Path(args.data), args.every).limited(args.limit)
    camera = camera_for(scene, config)
    pipeline = CameraPipeline(camera, build_detector(config.detector), config.occupancy, {})
    if pipeline.scene.clutter is None:
        raise SystemExit("clutter is off in these settings")
    clutter = pipeline.scene.clutter = Timed(pipeline.scene.clutter.settings)
    image: Image | None = None
    for still in scene.stills:
        image = np.asarray(cv2.imread(str(still.path), cv2.IMREAD_COLOR), dtype=np.uint8)
        now = still.index / scene.source_fps
        pipeline.process(Frame(camera.id, still.index, image, EPOCH, now), now)
    per_frame = np.mean([len(xyxy) for xyxy, _ in clutter.boxes])
    print(f"Mall every {args.every}th, {per_frame:.1f} boxes a frame, in the pipeline: "
          f"{summary(clutter.ms)}")  # fmt: skip
    print(f"  learned: {pipeline.describe_scene()}")

    # The same boxes again through a fresh model, nothing else running between the updates.
    alone = ClutterModel(clutter.settings)
    ms = []
    for still, (xyxy, candidate) in zip(scene.stills, clutter.boxes, strict=True):
        frame = np.asarray(cv2.imread(str(still.path), cv2.IMREAD_COLOR), dtype=np.uint8)
        started = time.perf_counter()
        alone.update(frame, xyxy, candidate, still.index / scene.source_fps)
        ms.append((time.perf_counter() - started) * 1e3)
    print(f"  the same boxes, the model alone: {summary(ms)}")

    # Worst case: every place the model keeps, each detected (a pixel of jitter) and compared.
    assert image is not None
    model = ClutterModel(clutter.settings)
    n = model.settings.max_sites
    cols = int(np.ceil(np.sqrt(n)))
    h, w = image.shape[:2]
    cell_w, cell_h = w / cols, h / int(np.ceil(n / cols))
    grid = np.array(
        [[(k % cols) * cell_w + 4, (k // cols) * cell_h + 2,
          (k % cols) * cell_w + 0.6 * cell_w, (k // cols) * cell_h + 0.95 * cell_h]
         for k in range(n)],
        dtype=np.float32,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    worst = []
    for i in range(200):
        jittered = grid + rng.normal(0, 0.7, grid.shape).astype(np.float32)
        started = time.perf_counter()
        model.update(image, jittered, np.ones(n, dtype=bool), 2.0 * i)
        worst.append((time.perf_counter() - started) * 1e3)
    print(f"worst case, {len(model.sites)} places all compared: {summary(worst[5:])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
