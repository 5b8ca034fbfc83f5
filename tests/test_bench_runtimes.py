"""bench/runtimes.py and the OpenVINO YOLOX at the fixed input size it measures (issue #14).

Not the benchmark: a run on two frames of each scene that fills every field of the report and
keeps the int8 model out of the repository, then the pieces it rests on: OpenVINO at f32 gives
ONNX Runtime's boxes, a YOLOX as IR is run by OpenVINO, the calibration never sees a scored frame,
and a reduced JPEG decode is judged by the largest magnification of any pass.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from bench import runtimes
from edge.detect import DetectorSettings, OnnxDetector, TilingSettings, create_detector
from edge.detect.openvino_yolox import OpenVinoYoloxDetector

ov = pytest.importorskip("openvino", reason="the OpenVINO runtime is what these tests compare")


def _yolox(models_dir: Path, **changes: object) -> DetectorSettings:
    path = models_dir / "yolox_nano.onnx"
    if not path.is_file():
        pytest.skip(f"model not found: {path}")
    settings = DetectorSettings(path, "yolox", (416, 416), confidence=0.15, provider="cpu")
    return dataclasses.replace(settings, threads=1, **changes)  # type: ignore[arg-type]


def _image(path: Path) -> npt.NDArray[np.uint8]:
    if not path.is_file():
        pytest.skip(f"image not found: {path}")
    return np.asarray(cv2.imread(str(path)), dtype=np.uint8)


def test_a_tiny_run_fills_every_field_and_keeps_the_int8_model_in_the_cache(
    tmp_path: Path, data_dir: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    cache, out = tmp_path / "cache", tmp_path / "runtimes.json"
    lines: list[str] = []
    report = runtimes.main(
        ["--variants", "ort,ov-f32,ov-int8", "--mall-every", "800", "--brt", "2", "--rounds", "1",
         "--timing-frames", "2", "--calibration", "1", "--data", str(data_dir),
         "--cache", str(cache), "--json", str(out)],
        say=lines.append,
    )  # fmt: skip
    assert json.loads(out.read_text()) == report
    variants = ["ort", "ov-f32", "ov-int8"]
    for name in variants:
        assert report["pass_ms"][name] > 0
        assert report["frame_ms"]["mall"][name] > 0 and report["frame_ms"]["brt"][name] > 0
        for scene in ("mall", "brt"):
            row = report["accuracy"][scene][name]
            assert row["frames"] == 2 and math.isfinite(row["mae"])
    assert report["accuracy"]["mall"]["ort"]["vs_first_frames_changed"] == 0  # the reference
    assert report["providers"]["ort"].startswith("CPUExecutionProvider + OpenVINO:")
    assert report["providers"]["ov-f32"].startswith("OpenVINO:CPU + OpenVINO:")
    made = Path(report["int8"]["path"])
    assert made.is_file() and made.with_suffix(".bin").is_file()
    assert cache in made.parents and runtimes.REPO not in made.parents
    assert report["int8"]["kept_float"] >= 3  # YOLOX's three prediction heads, at least
    assert report["decode_ms"]["full"] > 0 and report["decode_ms"]["reduced_2"] > 0
    table = lines[0].splitlines()
    assert len(table) == 2 + len(variants) + 2  # header, rule, one row each, blank, decode line


def test_openvino_at_f32_gives_onnx_runtime_s_boxes_tiles_included(
    models_dir: Path, photos_dir: Path, data_dir: Path
) -> None:
    settings = _yolox(models_dir, tiling=TilingSettings())
    ort_detector = OnnxDetector(settings)
    ov_detector = OpenVinoYoloxDetector(settings, runtimes.F32)
    for image in (
        _image(photos_dir / "bus.jpg"),
        _image(data_dir / "mall" / "frames" / "seq_000001.jpg"),
    ):
        a, b = ort_detector.detect(image), ov_detector.detect(image)
        assert len(a) == len(b) > 0
        order_a, order_b = np.lexsort(a.xyxy.T), np.lexsort(b.xyxy.T)
        np.testing.assert_allclose(a.xyxy[order_a], b.xyxy[order_b], atol=0.5)
    assert ov_detector.input_sizes == [(416, 416)]  # every tile letterboxed into the one input


def test_the_fixed_size_refuses_an_input_size_the_static_file_does_not_have(
    models_dir: Path,
) -> None:
    with pytest.raises(ValueError, match="the model input is 416x416"):
        OpenVinoYoloxDetector(_yolox(models_dir, input_size=(320, 320)))


def test_a_yolox_saved_as_openvino_ir_runs_on_openvino(
    tmp_path: Path, models_dir: Path, photos_dir: Path
) -> None:
    onnx = _yolox(models_dir)
    ir = tmp_path / "yolox_nano.xml"
    ov.save_model(ov.Core().read_model(str(onnx.model_path)), str(ir))
    detector = create_detector(dataclasses.replace(onnx, model_path=ir))
    assert isinstance(detector, OpenVinoYoloxDetector)
    assert detector.provider.startswith("OpenVINO:")
    assert len(detector.detect(_image(photos_dir / "bus.jpg"))) >= 3  # three people stand whole


def test_the_calibration_mixes_scenes_and_never_holds_a_scored_frame(data_dir: Path) -> None:
    paths = runtimes.calibration_paths(data_dir, per_set=16)
    folders = {p.parent.parent.name for p in paths}
    assert {"mall", "brt_cam1", "data"} <= folders  # photos/ sits in data/
    mall = [int(p.stem.removeprefix("seq_")) - 1 for p in paths if p.parent.parent.name == "mall"]
    assert len(mall) == 16 and all(i % 4 for i in mall)  # --mall-every 4 and 8 score none
    with (data_dir / "brt_cam1" / "gt_counts.csv").open(newline="") as fh:
        split = {row["frame"]: row["official_split"] for row in csv.DictReader(fh)}
    brt = [p.name for p in paths if p.parent.parent.name == "brt_cam1"]
    assert len(brt) == 16 and {split[name] for name in brt} == {"train"}  # test is scored


@pytest.mark.parametrize(
    ("frame", "tiling", "largest"),
    [
        ((640, 480), TilingSettings(), 416 / 640 * 1.8),  # Mall: the 2x2 tiles enlarge
        ((3840, 2160), None, 320 / 2160),  # a 4K frame, whole: every pass shrinks it
    ],
)
def test_a_reduced_decode_is_judged_by_the_largest_magnification_of_any_pass(
    frame: tuple[int, int], tiling: TilingSettings | None, largest: float
) -> None:
    yolox = DetectorSettings(Path("y.onnx"), "yolox", (416, 416), tiling=tiling)
    retail = DetectorSettings(Path("r.xml"), "openvino_ssd", (544, 320), person_class_id=1)
    assert runtimes.largest_magnification(frame, yolox, [retail]) == pytest.approx(
        largest, rel=0.02
    )
