#!/usr/bin/env python3
"""Change gating's effect on counts and on detector runs, offline (issue #14).

Each clip goes through the real CameraPipeline of the default config (configs/mall.yaml) twice,
with the change gate off and on, the frames at their own times; the detector is the same object
both times, its answers kept per distinct image, so the two runs see identical boxes wherever
they both run the detector and the comparison is the gate's alone. Reported per clip: frames,
detector runs with the gate on (share), and the per-frame MAE of the raw count against the
authors' heads, gate off and on.

Clips:
- mall: --mall-frames consecutive Mall frames from --start (2 fps: the config's source rate);
- still: Mall frame --still-frame repeated --still-count times at 2 fps: nobody moves;
- empty: the per-pixel median of 64 Mall frames (people mostly gone), repeated; truth 0;
- brt: the Beijing BRT stills in time order, each at its own timestamp (seconds apart), with
  a whole-frame zone; truth: the authors' heads.

    python bench/gating.py [--mall-frames 400] [--still-count 120] [--brt 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.accuracy import load_heads  # noqa: E402
from bench.capacity import empty_image  # noqa: E402
from edge.config import CameraConfig, LobbyConfig, load_config  # noqa: E402
from edge.detect import Detector  # noqa: E402
from edge.pipeline import CameraPipeline, build_detector  # noqa: E402
from edge.types import Detections, Frame  # noqa: E402

Image = npt.NDArray[np.uint8]
WHOLE_FRAME = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


class RememberingDetector:
    """The detector's answer per distinct image, so two runs over a clip share detector calls."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.calls = 0
        self._seen: dict[bytes, Detections] = {}

    @property
    def provider(self) -> str:
        return self.inner.provider

    def detect(self, image: Image) -> Detections:
        self.calls += 1
        key = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
        if key not in self._seen:
            self._seen[key] = self.inner.detect(image)
        return self._seen[key]


@dataclass(frozen=True)
class Clip:
    name: str
    camera: CameraConfig
    frames: Callable[[], Iterator[tuple[float, Image, int]]]  # (seconds, image, truth)


@dataclass(frozen=True)
class ClipResult:
    clip: str
    frames: int
    detector_runs: int
    mae_off: float
    mae_on: float
    mean_count_off: float
    mean_count_on: float

    @property
    def run_share(self) -> float:
        return self.detector_runs / self.frames if self.frames else 0.0


def run_clip(clip: Clip, config: LobbyConfig, detector: Detector, gated: bool) -> tuple[list[float], list[int], int]:  # fmt: skip
    camera = clip.camera.model_copy(
        update={"gating": clip.camera.gating.model_copy(update={"enabled": gated})}
    )
    pipeline = CameraPipeline(camera, detector, config.occupancy, {}, tracking=config.tracking)
    counts: list[float] = []
    truth: list[int] = []
    runs = 0
    for index, (at, image, people) in enumerate(clip.frames()):
        frame = Frame(camera.id, index, image, datetime.now(timezone.utc), at)
        result = pipeline.process(frame, at)
        counts.append(float(sum(result.raw.values())))
        truth.append(people)
        runs += result.detector_ran
    return counts, truth, runs


def measure(clip: Clip, config: LobbyConfig, detector: Detector) -> ClipResult:
    off, truth, _ = run_clip(clip, config, detector, gated=False)
    on, _, runs = run_clip(clip, config, detector, gated=True)
    return ClipResult(
        clip.name,
        len(truth),
        runs,
        mae(off, truth),
        mae(on, truth),
        float(np.mean(off)) if off else 0.0,
        float(np.mean(on)) if on else 0.0,
    )


def mae(pred: list[float], truth: list[int]) -> float:
    return float(np.mean(np.abs(np.subtract(pred, truth)))) if truth else 0.0


def read(path: Path) -> Image:
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"cannot read {path}")
    return np.asarray(image, dtype=np.uint8)


def mall_clips(data: Path, camera: CameraConfig, args: argparse.Namespace) -> list[Clip]:
    heads = load_heads(data / "mall" / "gt_heads.json")
    names = list(heads)
    frames_dir = data / "mall" / "frames"
    fps = camera.source_fps or camera.fps

    def mall() -> Iterator[tuple[float, Image, int]]:
        for k in range(args.mall_frames):
            name = names[(args.start + k) % len(names)]
            yield k / fps, read(frames_dir / name), heads[name][0]

    def repeated(image: Image, truth: int) -> Callable[[], Iterator[tuple[float, Image, int]]]:
        def frames() -> Iterator[tuple[float, Image, int]]:
            for k in range(args.still_count):
                yield k / fps, image.copy(), truth

        return frames

    still_name = names[args.still_frame]
    empty = np.asarray(empty_image([frames_dir / n for n in names]), dtype=np.uint8)
    return [
        Clip("mall", camera, mall),
        Clip("still", camera, repeated(read(frames_dir / still_name), heads[still_name][0])),
        Clip("empty", camera, repeated(empty, 0)),
    ]


def brt_clip(data: Path, camera: CameraConfig, count: int) -> Clip:
    root = data / "brt_cam1"
    heads = load_heads(root / "gt_heads.json")
    with (root / "gt_counts.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[:count]
    zone = camera.zones[0].model_copy(update={"polygon": WHOLE_FRAME})
    brt = camera.model_copy(update={"id": "brt", "zones": [zone], "ignore": []})

    def frames() -> Iterator[tuple[float, Image, int]]:
        start = datetime.fromisoformat(rows[0]["timestamp"])
        for row in rows:
            at = (datetime.fromisoformat(row["timestamp"]) - start).total_seconds()
            yield at, read(root / "frames" / row["frame"]), heads[row["frame"]][0]

    return Clip("brt", brt, frames)


def table(results: Iterable[ClipResult]) -> str:
    lines = [
        "| clip | frames | detector runs, gate on | raw MAE, gate off | gate on | mean count off / on |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.clip} | {r.frames} | {r.detector_runs} ({r.run_share:.0%}) | {r.mae_off:.2f}"
            f" | {r.mae_on:.2f} | {r.mean_count_off:.2f} / {r.mean_count_on:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--config", default=str(REPO / "configs" / "mall.yaml"))
    parser.add_argument("--data", default=os.environ.get("LOBBYWATCH_DATA", str(REPO.parent / "shared" / "data")))  # fmt: skip
    parser.add_argument("--clips", default="mall,still,empty,brt")
    parser.add_argument("--mall-frames", type=int, default=400)
    parser.add_argument("--start", type=int, default=0, help="first Mall frame of the mall clip")
    parser.add_argument("--still-frame", type=int, default=800)
    parser.add_argument("--still-count", type=int, default=120)
    parser.add_argument("--brt", type=int, default=200, help="BRT stills, in time order")
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, say: Callable[[str], None] = print) -> list[ClipResult]:
    args = parse_args(argv)
    data = Path(args.data)
    config = load_config(Path(args.config))
    camera = config.cameras[0]
    detector = RememberingDetector(build_detector(config.detector))
    wanted = args.clips.split(",")
    clips = [c for c in mall_clips(data, camera, args) if c.name in wanted]
    if "brt" in wanted:
        clips.append(brt_clip(data, camera, args.brt))
    results = []
    for clip in clips:
        results.append(measure(clip, config, detector))
        say(table(results[-1:]).splitlines()[-1])
    say(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


if __name__ == "__main__":
    main()
