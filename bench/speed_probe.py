#!/usr/bin/env python3
"""Probe: would static int8 or batching the tiles make yolox_nano faster here? (issue #5)

Needs `onnx` (the export venv: `.venv-export/bin/python bench/speed_probe.py`). Builds, in a
temporary directory:
- a static int8 copy of yolox_nano (QDQ, per-channel weights, calibrated on Mall frames and their
  2x2 tiles, letterboxed as the detector does; the model is first converted to opset 13, which
  per-channel DequantizeLinear needs), and
- a copy whose batch dimension is dynamic, to run the five passes of a tiled frame in one call,
and prints the median latency of each next to the original, on ONNX Runtime's CPU provider with
2 threads. Dynamic int8 is known to wreck detectors (issue #5) and is not tried.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.detect.letterbox import letterbox_into  # noqa: E402
from edge.detect.tiling import tile_windows  # noqa: E402


def model_inputs(frames: list[Path]) -> Iterator[np.ndarray]:
    """The detector's input tensors for each frame and its 2x2 tiles."""
    canvas = np.empty((416, 416, 3), dtype=np.uint8)
    for path in frames:
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        crops = [image] + [
            image[t.y0 : t.y1, t.x0 : t.x1] for t in tile_windows(width, height, (2, 2), 0.2)
        ]
        for crop in crops:
            letterbox_into(np.ascontiguousarray(crop), canvas, centred=False)
            yield canvas.transpose(2, 0, 1)[None].astype(np.float32)


class Calibration(CalibrationDataReader):
    def __init__(self, name: str, frames: list[Path]) -> None:
        self.name = name
        self.inputs = model_inputs(frames)

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor = next(self.inputs, None)
        return None if tensor is None else {self.name: tensor}


def median_ms(path: Path, batch: np.ndarray, runs: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: batch})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, {name: batch})
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    models = Path(os.environ.get("LOBBYWATCH_MODELS", REPO.parent / "shared" / "models"))
    data = Path(os.environ.get("LOBBYWATCH_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--model", type=Path, default=models / "yolox_nano.onnx")
    parser.add_argument("--frames", type=Path, default=data / "mall" / "frames")
    parser.add_argument("--calibration-frames", type=int, default=40)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    frames = sorted(args.frames.glob("*.jpg"))
    frames = frames[:: max(1, len(frames) // args.calibration_frames)]
    one = next(model_inputs(frames[:1]))
    five = np.concatenate(list(model_inputs(frames[:1])))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        opset13 = work / "opset13.onnx"
        onnx.save(version_converter.convert_version(onnx.load(str(args.model)), 13), str(opset13))
        prepared = work / "prepared.onnx"
        quant_pre_process(str(opset13), str(prepared))
        int8 = work / "int8.onnx"
        name = ort.InferenceSession(str(opset13)).get_inputs()[0].name
        quantize_static(
            str(prepared), str(int8), Calibration(name, frames),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
        batched = work / "batched.onnx"
        model = onnx.load(str(args.model))
        for tensor in [*model.graph.input, *model.graph.output]:
            tensor.type.tensor_type.shape.dim[0].dim_param = "N"
        onnx.save(model, str(batched))

        print(f"fp32, one pass:         {median_ms(args.model, one, args.runs):6.1f} ms")
        print(f"static int8, one pass:  {median_ms(int8, one, args.runs):6.1f} ms")
        print(f"fp32, 5 passes one by one: {5 * median_ms(batched, one, args.runs):6.1f} ms")
        print(f"fp32, 5 passes as a batch: {median_ms(batched, five, args.runs):6.1f} ms")


if __name__ == "__main__":
    main()
