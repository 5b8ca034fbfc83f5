#!/usr/bin/env python3
"""Count accuracy on several scenes with the shipped settings (issue #11): does a count hold on
a camera nobody tuned for?

Every scene goes through the product's counting path in process: the detector the config builds
(`build_detector`), then `CameraPipeline` (zones, presence hold, calibration left empty) for a
camera made from the config's first camera with the scene's zone in place of its own. Nothing is tuned on these scenes: the settings are the config's (default
`configs/mall.yaml`, whose detector and occupancy sections are the shipped defaults) plus any
`--set` the user gives.

Scenes:
  mall          Mall frames (640x480 video, 2 Hz), floor ROI zone; every 4th frame by default
                (--every), one pipeline over the sequence so the presence hold works as live.
  brt           Beijing BRT camera 1 (360x640 stills, dense overhead queue), the authors' test
                split (--split), whole frame as the zone. Stills seconds to minutes apart, not a
                video: one pipeline (one camera) with the presence hold off, so no one is held
                from an unrelated frame.
  mall-overlay  the same frames with a burned-in clock that changes every frame, a camera name
  brt-overlay   and a static logo (CCTV style, drawn in memory); reported against the truth and
                against the clean scene (change of the mean count per frame; target < 0.1).
  photos        bus.jpg (4 people, one cut off at the left) and zidane.jpg (2), whole frame;
                two cameras, so a fresh pipeline for each.

    python bench/scenes.py [--scenes mall,brt,mall-overlay,brt-overlay,photos] [--every 4]
        [--set detector.confidence=0.2] [--config configs/mall.yaml] [--json]

Prints a markdown table per run (one row per scene). Not a test: run it and record the numbers
(BENCHMARKS.md, "Scenes (issue #11)").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.accuracy import (  # noqa: E402
    add_scene_arguments,
    detection_quality,
    load_heads,
    metrics,
    set_overrides,
)
from edge.config import CameraConfig, LobbyConfig, ZoneConfig, load_config  # noqa: E402
from edge.detect import Detector  # noqa: E402
from edge.pipeline import CameraPipeline, build_detector  # noqa: E402
from edge.replay import result_line  # noqa: E402
from edge.types import Frame  # noqa: E402

Image = npt.NDArray[np.uint8]
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels

# The Mall floor ROI (../shared/README.md), the zone of configs/mall.yaml.
MALL_FLOOR = [[0.0, 0.3021], [0.0, 0.9979], [0.9984, 0.9979], [0.9984, 0.3625],
              [0.8469, 0.0854], [0.7438, 0.0333], [0.1734, 0.0333], [0.1781, 0.1312]]  # fmt: skip
WHOLE_FRAME = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
ZONE = "scene"
SCENES = ("mall", "brt", "mall-overlay", "brt-overlay", "photos")
OVERLAY = "-overlay"
PHOTOS = {"bus.jpg": 4, "zidane.jpg": 2}
CLOCK_START = datetime(2026, 12, 1, 9, 12, 33)
EPOCH = datetime(2026, 12, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Still:
    """One image of a scene and its truth. index: the frame's position in its dataset (Mall
    seq_000001 = 0), so frame numbers mean the same as in `lobbywatch count`."""

    index: int
    path: Path
    truth: int
    heads: list[list[float]] | None = None


@dataclass(frozen=True)
class Scene:
    """name, a line saying what it is, its images, its zone (normalized polygon).

    kind: "video", consecutive frames of one camera at source_fps, through one pipeline (the
    presence hold carries people between them); "stills", unrelated moments of one camera,
    through one pipeline with the hold off; "photos", each image from another camera, each
    through a fresh pipeline. overlay: burn in the CCTV clock, name and logo first.
    """

    name: str
    what: str
    stills: tuple[Still, ...]
    polygon: list[list[float]]
    kind: Literal["video", "stills", "photos"] = "photos"
    source_fps: float = 2.0
    overlay: bool = False

    def limited(self, limit: int | None) -> Scene:
        """At most `limit` images, evenly spread (quick checks and the test)."""
        if not limit or limit >= len(self.stills):
            return self
        step = len(self.stills) / limit
        return replace(self, stills=tuple(self.stills[int(i * step)] for i in range(limit)))


def mall_scene(data: Path, every: int) -> Scene:
    heads = load_heads(data / "mall" / "gt_heads.json")
    stills = tuple(
        Still(i, data / "mall" / "frames" / name, count, points)
        for i, (name, (count, points)) in enumerate(heads.items())
        if i % every == 0
    )
    what = f"Mall, 640x480 video at 2 Hz, floor ROI; {len(stills)} of 1600 frames (every {every})"
    # Source time = index / 2 Hz, as `lobbywatch count` decimating with fps = 2 / every.
    return Scene("mall", what, stills, MALL_FLOOR, "video", source_fps=2.0)


def brt_scene(data: Path, split: str) -> Scene:
    root = data / "brt_cam1"
    heads = load_heads(root / "gt_heads.json")
    with (root / "gt_counts.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    stills = tuple(
        Still(i, root / "frames" / row["frame"], int(row["count"]), heads[row["frame"]][1])
        for i, row in enumerate(rows)
        if split == "all" or row["official_split"] == split
    )
    what = (
        f"BRT cam1, 360x640 overhead stills of a dense queue, whole frame; split {split}; "
        "stills, so the presence hold is off"
    )
    return Scene("brt", what, stills, WHOLE_FRAME, "stills")


def photos_scene(data: Path) -> Scene:
    stills = tuple(
        Still(i, data / "photos" / name, count) for i, (name, count) in enumerate(PHOTOS.items())
    )
    return Scene("photos", "bus.jpg (4, one cut off) and zidane.jpg (2), whole frame", stills,
                 WHOLE_FRAME, "photos")  # fmt: skip


def with_overlay(scene: Scene) -> Scene:
    return replace(
        scene,
        name=scene.name + OVERLAY,
        what=f"{scene.name} with a burned-in clock (+1 s a frame), camera name and logo",
        overlay=True,
    )


def burn_overlay(image: Image, tick: int) -> tuple[Image, list[Rect]]:
    """A copy of `image` with a CCTV overlay, and the rectangles it covers (pixels).

    A clock `2026-12-01 09:12:33` + tick seconds at the top left, `CAM 03 LOBBY` at the bottom
    left, a logo (filled disc and `NORDBANK`) at the top right: white with a dark outline, digits
    10 px high on a 384x288 picture, scaled with the frame's shorter side relative to that.
    """
    out = image.copy()
    h, w = out.shape[:2]
    s = min(w / 384, h / 288)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, digit_h), _ = cv2.getTextSize("0", font, 1.0, 1)
    scale = 10 * s / digit_h
    thick = max(1, round(s))
    margin = max(2, round(4 * s))
    rects: list[Rect] = []

    def covered(draw: Callable[[Image, bool], None]) -> None:
        # Drawn once more, all in one ink, on a blank mask: the rectangle then holds the outline
        # and the anti-aliased edge.
        draw(out, False)
        mask = np.zeros((h, w, 3), dtype=np.uint8)
        draw(mask, True)
        x, y, rw, rh = cv2.boundingRect(mask[:, :, 0])
        rects.append((x, y, x + rw, y + rh))

    def text(label: str, x: int, y_base: int) -> None:
        def draw(canvas: Image, ink: bool) -> None:
            for colour, t in (((0, 0, 0), thick + 2), ((255, 255, 255), thick)):
                colour = (255, 255, 255) if ink else colour
                cv2.putText(canvas, label, (x, y_base), font, scale, colour, t, cv2.LINE_AA)

        covered(draw)

    def disc(centre: tuple[int, int], r: int) -> None:
        def draw(canvas: Image, ink: bool) -> None:
            for colour, radius in (((0, 0, 0), r + 1), ((0, 140, 255), r)):
                colour = (255, 255, 255) if ink else colour
                cv2.circle(canvas, centre, radius, colour, -1, cv2.LINE_AA)

        covered(draw)

    clock = (CLOCK_START + timedelta(seconds=tick)).strftime("%Y-%m-%d %H:%M:%S")
    top = margin + round(10 * s)
    text(clock, margin, top)
    text("CAM 03 LOBBY", margin, h - margin - round(2 * s))
    logo = "NORDBANK"
    (tw, _), _ = cv2.getTextSize(logo, font, scale, thick)
    x_text = w - margin - tw
    r = round(6 * s)
    disc((x_text - r - margin, top - round(5 * s)), r)
    text(logo, x_text, top)
    return out, rects


def on_overlay(box: Sequence[float], rects: Iterable[Rect]) -> bool:
    """Whether half of a box or more lies on the overlay (a box that is mostly text)."""
    x1, y1, x2, y2 = box
    area = max((x2 - x1) * (y2 - y1), 1e-6)
    covered = sum(
        max(0.0, min(x2, rx2) - max(x1, rx1)) * max(0.0, min(y2, ry2) - max(y1, ry1))
        for rx1, ry1, rx2, ry2 in rects
    )
    return covered / area >= 0.5


@dataclass
class SceneRun:
    """What a scene's run gave: one record per image (as `lobbywatch count` writes them)."""

    scene: Scene
    records: list[dict[str, Any]] = field(default_factory=list)
    on_overlay: list[int] = field(default_factory=list)  # counted boxes mostly on the overlay
    wall_s: float = 0.0
    learned: str = ""  # what the scene's pipeline learned (describe_scene), photos: none


def camera_for(scene: Scene, config: LobbyConfig) -> CameraConfig:
    """The config's first camera (its per-camera settings, `--set` ones included) with the
    scene's zone and no ignore masks."""
    zone = ZoneConfig(id=ZONE, name=scene.name, role="waiting", polygon=scene.polygon)
    return config.cameras[0].model_copy(
        update={"id": scene.name.replace("-", "_"), "zones": [zone], "ignore": []}
    )


def run_scene(scene: Scene, config: LobbyConfig, detector: Detector) -> SceneRun:
    camera = camera_for(scene, config)
    occupancy = config.occupancy
    if scene.kind == "stills":
        # As tests/test_accuracy_regression.py does: the hold would match people across
        # unrelated frames. What a pipeline learns of its camera's scene still carries over.
        occupancy = occupancy.model_copy(update={"hold_frames": 0})

    def pipeline() -> CameraPipeline:
        # Uncalibrated on purpose: the question is how a camera nobody tuned for counts.
        return CameraPipeline(camera, detector, occupancy, calibrations={})

    run = SceneRun(scene)
    shared = pipeline() if scene.kind != "photos" else None
    started = time.perf_counter()
    for still in scene.stills:
        decoded = cv2.imread(str(still.path), cv2.IMREAD_COLOR)  # as the image sequence source
        if decoded is None:
            raise SystemExit(f"cannot read {still.path}")
        image: Image = np.asarray(decoded, dtype=np.uint8)
        # On the clean image the same rectangles say how many people stand there anyway.
        burned, rects = burn_overlay(image, still.index)
        if scene.overlay:
            image = burned
        now = still.index / scene.source_fps
        frame = Frame(camera.id, still.index, image, EPOCH + timedelta(seconds=now), now)
        result = (shared if shared is not None else pipeline()).process(frame, now)
        record = json.loads(result_line(result))
        run.records.append(record)
        run.on_overlay.append(
            sum(1 for b in record["boxes"] if b[5] == ZONE and on_overlay(b[:4], rects))
        )
    run.wall_s = time.perf_counter() - started
    run.learned = shared.describe_scene() if shared is not None else ""
    return run


def summarize(run: SceneRun, clean: SceneRun | None) -> dict[str, Any]:
    records, stills = run.records, run.scene.stills
    counts = [float(r["zones"][ZONE]) for r in records]
    truth = [s.truth for s in stills]
    n = len(records)
    out: dict[str, Any] = {
        "what": run.scene.what,
        **metrics(counts, truth),
        "mean_count": sum(counts) / n,
        "mean_truth": sum(truth) / n,
        "detector_ms": sum(r["inference_ms"] for r in records) / n,
        "wall_s": run.wall_s,
        "on_overlay_per_frame": sum(run.on_overlay) / n,
        "learned": run.learned,
    }
    if all(s.heads is not None for s in stills):
        heads = {s.index: s.heads for s in stills}
        out["heads"] = detection_quality(records, heads, ZONE)
    if run.scene.kind == "video":
        smoothed = [float(r["occupancy"][ZONE]) for r in records]
        out["smoothed"] = metrics(smoothed, truth)
    if clean is not None:
        base = [float(r["zones"][ZONE]) for r in clean.records]
        out["vs_clean"] = {
            "mean_count_change": out["mean_count"] - sum(base) / n,
            "mean_abs_change": sum(abs(a - b) for a, b in zip(counts, base, strict=True)) / n,
            "frames_changed": sum(1 for a, b in zip(counts, base, strict=True) if a != b),
        }
    out["per_frame"] = [
        {"frame": s.index, "file": s.path.name, "truth": s.truth, "count": c}
        for s, c in zip(stills, counts, strict=True)
    ]
    return out


def markdown(results: dict[str, dict[str, Any]]) -> str:
    head = (
        "| scene | frames | MAE | bias | MAPE | RMSE | mean count | mean truth | "
        "Δ mean vs clean | mean abs Δ vs clean | boxes on overlay areas / frame | "
        "head precision | head recall | detector ms/frame |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        vs = r.get("vs_clean")
        heads = r.get("heads")
        lines.append(
            f"| {name} | {r['frames']} | {r['mae']:.2f} | {r['bias']:+.2f} | {r['mape_pct']:.1f}% "
            f"| {r['rmse']:.2f} | {r['mean_count']:.2f} | {r['mean_truth']:.2f} | "
            + (
                f"{vs['mean_count_change']:+.3f} | {vs['mean_abs_change']:.3f} | "
                if vs
                else "— | — | "
            )
            + f"{r['on_overlay_per_frame']:.3f} | "
            + (f"{heads['precision']:.3f} | {heads['recall']:.3f} | " if heads else "— | — | ")
            + f"{r['detector_ms']:.0f} |"
        )
    return "\n".join(lines)


def build_scenes(names: list[str], data: Path, every: int, split: str) -> list[Scene]:
    """The scenes to run, each overlay variant after its clean scene (its reference)."""
    unknown = sorted(set(names) - set(SCENES))
    if unknown:
        raise SystemExit(f"unknown scene(s) {unknown}; choose from {', '.join(SCENES)}")
    wanted = [n for n in SCENES if n in names or n + OVERLAY in names]
    makers = {
        "mall": lambda: mall_scene(data, every),
        "brt": lambda: brt_scene(data, split),
        "photos": lambda: photos_scene(data),
    }
    scenes: list[Scene] = []
    for name in wanted:
        if name.endswith(OVERLAY):
            continue
        clean = makers[name]()
        scenes.append(clean)
        if name + OVERLAY in names:
            scenes.append(with_overlay(clean))
    return scenes


def run_all(
    scenes: list[Scene], config: LobbyConfig, limit: int | None = None
) -> dict[str, dict[str, Any]]:
    """Run every scene with one detector (models load once) and summarize each."""
    detector = build_detector(config.detector)
    runs: dict[str, SceneRun] = {}
    results: dict[str, dict[str, Any]] = {}
    for scene in scenes:
        scene = scene.limited(limit)
        run = runs[scene.name] = run_scene(scene, config, detector)
        clean = runs.get(scene.name.removesuffix(OVERLAY)) if scene.overlay else None
        results[scene.name] = summarize(run, clean)
    return results


def load(config_path: str, sets: list[str], data: str) -> LobbyConfig:
    environ = {**os.environ, "LOBBYWATCH_DATA": data, **set_overrides(sets)}
    return load_config(config_path, environ)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "configs" / "mall.yaml"))
    parser.add_argument(
        "--scenes", default=",".join(SCENES), help=f"comma-separated, from {', '.join(SCENES)}"
    )
    parser.add_argument(
        "--every", type=int, default=4, help="Mall: process every Nth frame (default 4: 400 frames)"
    )
    parser.add_argument(
        "--split", default="test", choices=["test", "train", "all"], help="BRT split (default test)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N",
        help="at most N images per scene, evenly spread (quick checks)",
    )  # fmt: skip
    add_scene_arguments(parser, REPO)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--out", help="also write the JSON report (with per-frame counts) here")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be >= 1")

    os.environ.setdefault("LOBBYWATCH_MODELS", str(REPO.parent / "shared" / "models"))
    config = load(args.config, args.set, args.data)
    scenes = build_scenes([n.strip() for n in args.scenes.split(",") if n.strip()],
                          Path(args.data), args.every, args.split)  # fmt: skip
    started = time.perf_counter()
    results = run_all(scenes, config, args.limit)
    wall = time.perf_counter() - started
    report = {
        "config": args.config,
        "settings": args.set,
        "every": args.every,
        "split": args.split,
        "limit": args.limit,
        "wall_s": wall,
        "scenes": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"settings: {args.config} + {args.set or 'no overrides'}; zone counts per frame "
        "(detected + held), uncalibrated"
    )
    print()
    print(markdown(results))
    print()
    for name, r in results.items():
        extra = ""
        if "smoothed" in r:
            m = r["smoothed"]
            extra = f"; smoothed occupancy MAE {m['mae']:.2f}, bias {m['bias']:+.2f}"
        print(f"- {name}: {r['what']}{extra}")
        if r["learned"]:
            print(f"  - learned: {r['learned']}")
        if name.startswith("photos"):
            for p in r["per_frame"]:
                print(f"  - {p['file']}: {p['count']:g} counted, {p['truth']} true")
    print(f"\nwall {wall:.0f} s (models load once, included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
