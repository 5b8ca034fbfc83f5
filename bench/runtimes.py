#!/usr/bin/env python3
"""Runtimes for YOLOX-Nano on an Intel CPU (issue #14, "Runtimes"): what each costs, what it counts.

The default detector (configs/mall.yaml: YOLOX-Nano 2x2 tiles + full frame, 5 passes of 416x416,
fused with person-detection-retail-0013 on OpenVINO) with its YOLOX run four ways, ONE thread per
model (what `threads: 0` gives each model on the 2-core box):

  ort       ONNX Runtime CPU execution provider (today's default)
  ov-f32    the same ONNX file on the OpenVINO runtime, CPU, inference precision f32
  ov        the same on OpenVINO with the CPU plugin's own precision: bf16 where the CPU has
            AMX or AVX512-BF16 (this Xeon), f32 elsewhere (a NUC's Core i5)
  ov-int8   an int8 YOLOX-Nano made here (quantize_yolox: FakeQuantize on every convolution's
            input and weights, ranges calibrated on Mall, BRT and the photos, none of the frames
            scored), on OpenVINO, the rest of the graph at the plugin's precision

retail-0013 is the same in every row (OpenVINO, CPU, its plugin's precision). Measured in one
run, the variants taking turns call by call so a shared machine slows them alike:

  pass      one YOLOX pass (letterbox, tensor, inference, decode) on a whole Mall frame
  frame     the whole default detector on a frame (Mall 640x480 and BRT 360x640)
  accuracy  per-frame count MAE through the product's counting path (bench/scenes.py), the
            presence hold off so the counts are the detector's: Mall every --mall-every frame
            (floor ROI), BRT cam1 test stills (--brt spread over the split, whole frame)
  decode    JPEG decode of the Mall frames, full size and IMREAD_REDUCED_COLOR_2 (the largest
            magnification of any pass says whether a reduced decode would lose pixels)

    python bench/runtimes.py [--variants ort,ov-f32,ov,ov-int8] [--mall-every 8] [--brt 200]
        [--rounds 3] [--timing-frames 10] [--cache DIR] [--json out.json]

The int8 model is written under --cache (default the per-user model cache, never the repository)
and reused while its source's sha256 is the same. Not a test: run it, record it (BENCHMARKS.md,
"Runtimes (issue #14)").
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scenes import brt_scene, mall_scene, run_scene, summarize  # noqa: E402
from edge.config import LobbyConfig, load_config  # noqa: E402
from edge.detect import Detector, DetectorSettings, OnnxDetector, create_detector  # noqa: E402
from edge.detect.fusion import FusedDetector  # noqa: E402
from edge.detect.letterbox import letterbox_into  # noqa: E402
from edge.detect.openvino_yolox import OpenVinoYoloxDetector  # noqa: E402
from edge.detect.settings import letterboxes  # noqa: E402
from edge.detect.tensor import fill_tensor  # noqa: E402
from edge.detect.tiling import ModelInput, detect_tiled, fit_grid, tile_windows  # noqa: E402
from edge.pipeline import detector_settings, fusion_settings  # noqa: E402
from edge.types import Detections  # noqa: E402
from models.store import cache_dir, sha256_file  # noqa: E402

Image = npt.NDArray[np.uint8]
VARIANTS = ("ort", "ov-f32", "ov", "ov-int8")
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
CONVOLUTIONS = ("Convolution", "GroupConvolution")


def read(path: Path) -> Image:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return np.asarray(image, dtype=np.uint8)


def calibration_paths(data: Path, per_set: int = 16) -> list[Path]:
    """Images for the int8 ranges, from three kinds of scene so no one camera sets them: Mall
    frames 50, 150, ... (never a multiple of 8, so none of the frames scored at --mall-every 8
    or 4), BRT train stills (the test split is scored) and the two photos."""
    mall = [data / "mall" / "frames" / f"seq_{51 + 100 * i:06d}.jpg" for i in range(per_set)]
    with (data / "brt_cam1" / "gt_counts.csv").open(newline="") as fh:
        train = [r["frame"] for r in csv.DictReader(fh) if r["official_split"] == "train"]
    step = max(1, len(train) // per_set)
    brt = [data / "brt_cam1" / "frames" / name for name in train[::step][:per_set]]
    photos = sorted((data / "photos").glob("*.jpg"))
    return [p for p in [*mall, *brt, *photos] if p.is_file()]


def model_inputs(image: Image, settings: DetectorSettings) -> list[npt.NDArray[np.float32]]:
    """The input tensors the detector gives the model for `image`: every tile and the whole
    frame, letterboxed and normalized as OnnxDetector does (what int8 ranges must cover)."""
    width, height = settings.input_size
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    tensors: list[npt.NDArray[np.float32]] = []

    def record(part: Image) -> Detections:
        letterbox_into(part, canvas, centred=False)
        tensor = np.empty((1, 3, height, width), dtype=np.float32)
        fill_tensor(canvas, tensor, settings.pixels)
        tensors.append(tensor)
        return Detections()

    if settings.tiling is None:
        record(image)
    else:
        fitted = ModelInput(settings.input_size, letterboxed=True)
        detect_tiled(image, record, settings.tiling, settings.nms_iou, fitted)
    return tensors


def quantize_yolox(
    source: Path, out: Path, tensors: Sequence[npt.NDArray[np.float32]]
) -> dict[str, Any]:
    """Write an int8 OpenVINO IR of the YOLOX at `source` to `out` (.xml and .bin).

    Static post-training quantization without NNCF (whose dependencies are far larger than the
    gain): a FakeQuantize on each convolution's input, its range the min and max seen over
    `tensors` (unsigned where never negative, else symmetric signed), and one on its weights,
    symmetric per output channel. OpenVINO's CPU plugin runs such convolutions in int8 (VNNI,
    AMX). Returns what was made, for the report.
    """
    import openvino as ov
    import openvino.opset13 as ops

    core = ov.Core()
    model = core.read_model(str(source))
    probe = core.read_model(str(source))
    probe_convs = [op for op in probe.get_ordered_ops() if op.get_type_name() in CONVOLUTIONS]
    keys: list[tuple[str, int]] = []
    outputs = []
    for conv in probe_convs:
        value = conv.input_value(0)
        key = (value.get_node().get_friendly_name(), value.get_index())
        if key not in keys:  # add_outputs keeps one output per tensor
            keys.append(key)
            outputs.append(value)
    probe.add_outputs(outputs)
    request = core.compile_model(probe, "CPU", F32).create_infer_request()
    low = np.full(len(keys), np.inf)
    high = np.full(len(keys), -np.inf)
    for tensor in tensors:
        request.infer({0: tensor})
        for i in range(len(keys)):
            seen = request.get_output_tensor(i + 1).data
            low[i] = min(low[i], float(seen.min()))
            high[i] = max(high[i], float(seen.max()))
    convs = [op for op in model.get_ordered_ops() if op.get_type_name() in CONVOLUTIONS]
    kept = 0
    for conv, probed in zip(convs, probe_convs, strict=True):
        if not _feeds_a_convolution(conv):
            kept += 1  # a prediction layer: its logits and box offsets stay in float
            continue
        value = probed.input_value(0)
        i = keys.index((value.get_node().get_friendly_name(), value.get_index()))
        _quantize_input(conv, ops, float(low[i]), float(high[i]))
        _quantize_weights(conv, ops)
    model.validate_nodes_and_infer_types()
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out), compress_to_fp16=False)
    return {
        "convolutions": len(convs),
        "kept_float": kept,
        "calibration_tensors": len(tensors),
        "path": str(out),
    }


def _feeds_a_convolution(op: Any) -> bool:
    """Whether another convolution lies downstream of `op` (not so for the head's last layers)."""
    seen: set[str] = set()
    todo = [t.get_node() for out in op.outputs() for t in out.get_target_inputs()]
    while todo:
        node = todo.pop()
        if node.get_type_name() in CONVOLUTIONS:
            return True
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(t.get_node() for out in node.outputs() for t in out.get_target_inputs())
    return False


def _quantize_input(conv: Any, ops: Any, low: float, high: float) -> None:
    if low >= 0:
        lo, hi = 0.0, high
    else:  # signed: symmetric around 0, as int8 has one more negative step
        bound = max(-low, high)
        lo, hi = -bound * 128 / 127, bound
    limits = [ops.constant(np.float32(v)) for v in (lo, hi, lo, hi)]
    fq = ops.fake_quantize(conv.input_value(0), *limits, 256)
    conv.input(0).replace_source_output(fq.output(0))


def _quantize_weights(conv: Any, ops: Any) -> None:
    source = conv.input_value(1)
    node = source.get_node()
    if node.get_type_name() == "Reshape" and node.input_value(0).get_node().get_type_name() == (
        "Constant"
    ):  # depthwise weights come reshaped to (groups, 1, 1, kh, kw): fold the reshape
        weights = node.input_value(0).get_node().get_data().reshape(list(source.get_shape()))
        source = ops.constant(np.asarray(weights, dtype=np.float32)).output(0)
    elif node.get_type_name() == "Constant":
        weights = node.get_data()
    else:
        raise ValueError(f"{conv.get_friendly_name()}: weights from {node.get_type_name()}")
    grouped = conv.get_type_name() == "GroupConvolution"
    axes = tuple(range(2 if grouped else 1, weights.ndim))
    bound = np.abs(weights).max(axis=axes, keepdims=True).astype(np.float32)
    bound[bound == 0] = 1e-8
    fq = ops.fake_quantize(
        source, ops.constant(-bound), ops.constant(bound), ops.constant(-bound),
        ops.constant(bound), 255,
    )  # fmt: skip
    conv.input(1).replace_source_output(fq.output(0))


def int8_model(
    settings: DetectorSettings, data: Path, cache: Path, per_set: int = 16
) -> tuple[Path, dict[str, Any]]:
    """The int8 IR for settings' YOLOX, made once per source file and calibration size and kept
    under `cache`."""
    digest = sha256_file(settings.model_path)[:12]
    out = cache / "runtimes" / f"{settings.model_path.stem}-int8-{digest}-c{per_set}.xml"
    info: dict[str, Any] = {"path": str(out), "cached": out.is_file()}
    if not out.is_file():
        paths = calibration_paths(data, per_set)
        tensors = [t for p in paths for t in model_inputs(read(p), settings)]
        info.update(quantize_yolox(settings.model_path, out, tensors))
    return out, info


def yolox_detectors(
    settings: DetectorSettings, variants: Sequence[str], int8: Path | None
) -> dict[str, OnnxDetector | OpenVinoYoloxDetector]:
    """The YOLOX detector of each variant, tiled as configured, on the CPU."""
    cpu = dataclasses.replace(settings, provider="cpu")
    made: dict[str, OnnxDetector | OpenVinoYoloxDetector] = {}
    for name in variants:
        if name == "ort":
            made[name] = OnnxDetector(cpu)
        elif name == "ov-f32":
            made[name] = OpenVinoYoloxDetector(cpu, F32)
        elif name == "ov":
            made[name] = OpenVinoYoloxDetector(cpu)
        elif name == "ov-int8" and int8 is not None:
            made[name] = OpenVinoYoloxDetector(dataclasses.replace(cpu, model_path=int8))
        else:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return made


def interleaved(
    calls: Mapping[str, Callable[[Image], object]], images: Sequence[Image], rounds: int
) -> dict[str, list[float]]:
    """Milliseconds of each call on each image, the calls taking turns image by image; the first
    call of each (which may compile or allocate) is left out."""
    for call in calls.values():
        call(images[0])
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for image in images:
            for name, call in calls.items():
                started = time.perf_counter()
                call(image)
                times[name].append(1000 * (time.perf_counter() - started))
    return times


def decode_costs(paths: Sequence[Path], rounds: int) -> dict[str, float]:
    """Median ms to decode the JPEG bytes (read once, so the disk is not timed) at full size and
    at half size (IMREAD_REDUCED_COLOR_2), taking turns."""
    blobs = [np.fromfile(str(p), dtype=np.uint8) for p in paths]
    flags = {"full": cv2.IMREAD_COLOR, "reduced_2": cv2.IMREAD_REDUCED_COLOR_2}
    times: dict[str, list[float]] = {name: [] for name in flags}
    for _ in range(rounds):
        for blob in blobs:
            for name, flag in flags.items():
                started = time.perf_counter()
                cv2.imdecode(blob, flag)
                times[name].append(1000 * (time.perf_counter() - started))
    return {name: float(np.median(ms)) for name, ms in times.items()}


def largest_magnification(
    frame: tuple[int, int], yolox: DetectorSettings, others: Sequence[DetectorSettings]
) -> float:
    """The largest scale from frame pixels to model pixels over every pass of the detector: a
    decode at 1/2 size loses nothing only if this is at most 0.5."""
    width, height = frame
    scales = []
    for s in (yolox, *others):
        letterboxed = letterboxes(s.family)
        windows = [(width, height)]
        if s.tiling is not None:
            fitted = ModelInput(s.input_size, letterboxed)
            grid = fit_grid(frame, s.tiling.grid, s.tiling.overlap, fitted)
            if grid != (1, 1):
                tiles = tile_windows(width, height, grid, s.tiling.overlap)
                windows = [(w.x1 - w.x0, w.y1 - w.y0) for w in tiles]
                if s.tiling.full_frame:
                    windows.append((width, height))
        for w, h in windows:
            # A letterbox scales both sides alike; a stretch scales each to the input's side.
            sx, sy = s.input_size[0] / w, s.input_size[1] / h
            scales.append(min(sx, sy) if letterboxed else max(sx, sy))
    return max(scales)


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values)))


def timing_frames(data: Path, n: int) -> dict[str, list[Image]]:
    with (data / "brt_cam1" / "gt_counts.csv").open(newline="") as fh:
        test = [r["frame"] for r in csv.DictReader(fh) if r["official_split"] == "test"]
    step = max(1, len(test) // n)
    return {
        "mall": [read(data / "mall" / "frames" / f"seq_{1 + 160 * i:06d}.jpg") for i in range(n)],
        "brt": [read(data / "brt_cam1" / "frames" / name) for name in test[::step][:n]],
    }


def load(data: Path) -> LobbyConfig:
    config = load_config(
        REPO / "configs" / "mall.yaml", {**os.environ, "LOBBYWATCH_DATA": str(data)}
    )
    # One thread per model, what `threads: 0` gives each model on the 2-core box.
    detector = config.detector.model_copy(update={"threads": 1})
    return config.model_copy(update={"detector": detector})


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    data = Path(args.data)
    config = load(data)
    yolox = detector_settings(config.detector)
    others = fusion_settings(config.detector)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    int8: Path | None = None
    report: dict[str, Any] = {"variants": variants, "threads_per_model": 1}
    if "ov-int8" in variants:
        int8, report["int8"] = int8_model(yolox, data, Path(args.cache), args.calibration)
    mains = yolox_detectors(yolox, variants, int8)
    fused: dict[str, Detector] = {
        name: FusedDetector(
            [main, *(create_detector(s) for s in others)],
            config.detector.fusion.iou,
            config.detector.confidence,
        )
        for name, main in mains.items()
    }
    report["providers"] = {name: d.provider for name, d in fused.items()}
    frames = timing_frames(data, args.timing_frames)
    once = {name: d.detect_once for name, d in mains.items()}
    passes = interleaved(once, frames["mall"], args.rounds * 5)
    report["pass_ms"] = {name: median(ms) for name, ms in passes.items()}
    report["frame_ms"] = {}
    for where, images in frames.items():
        calls = {name: d.detect for name, d in fused.items()}
        per = interleaved(calls, images, args.rounds)
        report["frame_ms"][where] = {name: median(ms) for name, ms in per.items()}
    say("timings done")
    # The detector's own counts: the presence hold off on the Mall too (frames 4 s apart at
    # --mall-every 8 are no video to carry people through).
    mall = dataclasses.replace(mall_scene(data, args.mall_every), kind="stills")
    scenes = [mall, brt_scene(data, "test").limited(args.brt)]
    report["accuracy"] = {}
    counts: dict[tuple[str, str], list[float]] = {}
    for scene in scenes:
        rows: dict[str, Any] = {}
        for name, detector in fused.items():
            summary = summarize(run_scene(scene, config, detector), None)
            counts[(scene.name, name)] = [float(p["count"]) for p in summary["per_frame"]]
            rows[name] = {k: summary[k] for k in ("frames", "mae", "bias", "rmse")}
            base = counts.get((scene.name, variants[0]))
            if base is not None:
                here = counts[(scene.name, name)]
                rows[name]["vs_first_mean_abs"] = sum(
                    abs(a - b) for a, b in zip(here, base, strict=True)
                ) / len(base)
                rows[name]["vs_first_frames_changed"] = sum(
                    1 for a, b in zip(here, base, strict=True) if a != b
                )
        report["accuracy"][scene.name] = rows
        say(f"accuracy {scene.name} done")
    mall_paths = [s.path for s in scenes[0].stills][: max(2, args.timing_frames)]
    report["decode_ms"] = decode_costs(mall_paths, args.rounds * 5)
    report["decode_largest_magnification"] = largest_magnification((640, 480), yolox, others)
    report["load_average"] = os.getloadavg()[0]
    return report


def markdown(report: dict[str, Any]) -> str:
    variants: list[str] = report["variants"]
    first = variants[0]
    lines = [
        "| YOLOX runtime | ms / pass | Mall ms / frame | BRT ms / frame | Mall MAE | BRT MAE | "
        f"Mall frames ≠ {first} | BRT frames ≠ {first} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    acc = report["accuracy"]
    for name in variants:
        mall, brt = acc["mall"][name], acc["brt"][name]
        lines.append(
            f"| {name} | {report['pass_ms'][name]:.1f} | {report['frame_ms']['mall'][name]:.1f} | "
            f"{report['frame_ms']['brt'][name]:.1f} | {mall['mae']:.3f} | {brt['mae']:.3f} | "
            f"{mall['vs_first_frames_changed']}/{mall['frames']} | "
            f"{brt['vs_first_frames_changed']}/{brt['frames']} |"
        )
    decode = report["decode_ms"]
    lines.append(
        f"\nJPEG decode, Mall 640x480: {decode['full']:.2f} ms full, {decode['reduced_2']:.2f} ms "
        f"at 1/2; the largest magnification of any pass is "
        f"{report['decode_largest_magnification']:.2f} (1/2 loses nothing only at <= 0.5)"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--mall-every", type=int, default=8, help="score every Nth Mall frame")
    parser.add_argument("--brt", type=int, default=200, help="BRT test stills scored (spread)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timing-frames", type=int, default=10, help="frames per scene timed")
    parser.add_argument(
        "--data", default=os.environ.get("LOBBYWATCH_DATA", str(REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--cache", default=str(cache_dir()), help="where the int8 model is kept")
    parser.add_argument(
        "--calibration", type=int, default=16, help="int8 calibration images per Mall and BRT"
    )
    parser.add_argument("--json", default=None, help="also write the report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("LOBBYWATCH_MODELS", str(REPO.parent / "shared" / "models"))
    report = run(args, lambda line: print(line, file=sys.stderr))
    say(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
