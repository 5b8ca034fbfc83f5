#!/usr/bin/env python3
"""Detector milliseconds per frame, several detectors measured in one run (issue #11, item 2).

Times `Detector.detect` (frame in, person boxes out, as the pipeline calls it) for each detector
on the same frames, the detectors taking turns frame by frame, so that a machine shared with
other work slows them alike and the rows compare within the run:

  default          configs/mall.yaml's detector: yolox_nano 2x2 tiles + full frame, fused with
                   person-detection-retail-0013, the tiles fitted to the frame (tiling.fit)
  default-unfitted the same with tiling.fit off, as it ran before (a portrait frame: 5 yolox
                   passes and retail-0013 squashed in one, where fitted it is 3 and 3 windows)
  crowd            configs/crowd.yaml, the crowd preset: bytetrack_nano_mot17 at the frame's own
                   size rounded up to 32, on OpenVINO (the model compiled once per size)
  bytetrack-ort    the same model on ONNX Runtime at its file's static 1088x608, letterboxed
  pvb-2004         person-vehicle-bike-detection-2004 alone, whole frame

    python bench/detector_ms.py [--frames 20] [--rounds 3] [--data ../shared/data]

Frames: the first N of the BRT camera 1 test split (360x640) and every 80th Mall frame
(640x480). Prints the median and the 90th percentile per detector and scene (the first call of
each detector on each scene, which compiles, is left out). Not a test: run it, record it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.config import load_config  # noqa: E402
from edge.detect import Detector, create_detector  # noqa: E402
from edge.pipeline import build_detector, detector_settings  # noqa: E402

ACK = "non-commercial-training-data"


def detectors(data: str) -> dict[str, Detector]:
    environ = {**os.environ, "LOBBYWATCH_DATA": data}
    default = load_config(REPO / "configs" / "mall.yaml", environ).detector
    crowd = load_config(
        REPO / "configs" / "crowd.yaml",
        {**environ, "LOBBYWATCH_DETECTOR__LICENCE_ACKNOWLEDGED": ACK},
    ).detector
    pvb = default.model_copy(
        update={
            "model": "person-vehicle-bike-detection-2004",
            "tiling": default.tiling.model_copy(update={"enabled": False}),
            "fusion": default.fusion.model_copy(update={"models": []}),
        }
    )
    unfitted = default.model_copy(
        update={
            "tiling": default.tiling.model_copy(update={"fit": False}),
            "fusion": default.fusion.model_copy(
                update={
                    "models": [
                        m.model_copy(update={"tiling": m.tiling.model_copy(update={"fit": False})})
                        for m in default.fusion.models
                    ]
                }
            ),
        }
    )
    # ONNX Runtime takes only the file's static 1088x608 input.
    ort_settings = dataclasses.replace(detector_settings(crowd), frame_sized=False)
    return {
        "default": build_detector(default),
        "default-unfitted": build_detector(unfitted),
        "crowd": build_detector(crowd),
        "bytetrack-ort": create_detector(ort_settings),
        "pvb-2004": build_detector(pvb),
    }


def frames(data: Path, n: int) -> dict[str, list[npt.NDArray[np.uint8]]]:
    brt = data / "brt_cam1"
    with (brt / "gt_counts.csv").open() as fh:
        names = [r["frame"] for r in csv.DictReader(fh) if r["official_split"] == "test"]
    mall = [data / "mall" / "frames" / f"seq_{1 + 80 * i:06d}.jpg" for i in range(n)]
    return {
        "brt (360x640)": [read(brt / "frames" / name) for name in names[:n]],
        "mall (640x480)": [read(p) for p in mall],
    }


def read(path: Path) -> npt.NDArray[np.uint8]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return np.asarray(image, dtype=np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--data", default=os.environ.get("LOBBYWATCH_DATA", str(REPO.parent / "shared" / "data"))
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("LOBBYWATCH_MODELS", str(REPO.parent / "shared" / "models"))
    found = detectors(args.data)
    scenes = frames(Path(args.data), args.frames)
    times: dict[tuple[str, str], list[float]] = {}
    for scene, images in scenes.items():
        for detector in found.values():  # warm up: compile for this frame size
            detector.detect(images[0])
        for _ in range(args.rounds):
            for image in images:
                for name, detector in found.items():
                    started = time.perf_counter()
                    detector.detect(image)
                    times.setdefault((name, scene), []).append(time.perf_counter() - started)
    print("| detector | " + " | ".join(f"{s}: median / p90 ms" for s in scenes) + " |")
    print("|---|" + "---|" * len(scenes))
    for name in found:
        cells = []
        for scene in scenes:
            ms = 1000 * np.asarray(times[(name, scene)])
            cells.append(f"{np.median(ms):.1f} / {np.percentile(ms, 90):.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n{args.frames} frames x {args.rounds} rounds per scene; load average at the end: "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
