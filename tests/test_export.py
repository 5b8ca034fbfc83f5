"""`lobbywatch models export`: refusals, the output check, exports.yaml, and real exports.

The pure parts run everywhere. The real exports need ultralytics and torch, which live in their
own virtualenv (`make test-export`, which CI runs): there a YOLOv8n is built from its YAML
definition (random weights, nothing downloaded, the network blocked), exported to ONNX and
OpenVINO at 320 px, checked against the PyTorch model on real frames, recorded, and loaded by
name in the edge runtime. TensorRT (`--format engine`) needs an NVIDIA GPU: here it must refuse;
deploy/gpu-check.sh runs it on a GPU machine.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from models.export import (
    Environment,
    ExportError,
    ExportOptions,
    check_options,
    class_map,
    compare_outputs,
    default_name,
    load_samples,
    to_tensor,
)
from models.exports import load_exports
from models.store import ModelNotFoundError, resolve_model, verify

HAS_ULTRALYTICS = importlib.util.find_spec("ultralytics") is not None
needs_ultralytics = pytest.mark.skipif(
    not HAS_ULTRALYTICS,
    reason="ultralytics is not installed here; `make test-export` runs these in .venv-export",
)

GPU_LESS = Environment(cuda=lambda: False, has_module=lambda name: name != "tensorrt")


def options(**kw: Any) -> ExportOptions:
    base: dict[str, Any] = {"source": "yolov8n.yaml", "format": "onnx", "dest": Path("/tmp/x")}
    base.update(kw)
    return ExportOptions(**base)


# --- refusals, before anything heavy is loaded ----------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"format": "engine"}, "needs an NVIDIA GPU"),
        ({"format": "tflite"}, "format must be one of"),
        ({"half": True, "int8": True}, "not both"),
        ({"imgsz": 300}, "multiple of 32"),
        ({"int8": True, "format": "openvino"}, "give --data"),
        ({"half": True}, "--half ONNX"),
        ({"name": "Bad Name"}, "lower-case"),
        ({"shippable": True}, "random weights"),
        ({"source": "yolov8n_int8_dynamic"}, "export from the Ultralytics checkpoint"),
        ({"source": "yolo11n.pt"}, "no such file"),  # would be a download
    ],
)
def test_requests_that_cannot_work_here_are_refused(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        check_options(options(**kw), GPU_LESS)


def test_engine_with_a_gpu_but_without_tensorrt_names_the_package() -> None:
    env = Environment(cuda=lambda: True, has_module=lambda name: name != "tensorrt")
    with pytest.raises(ExportError, match="TensorRT's Python package"):
        check_options(options(format="engine", half=True), env)


def test_without_ultralytics_the_message_says_where_it_belongs() -> None:
    env = Environment(cuda=lambda: False, has_module=lambda name: False)
    with pytest.raises(ExportError, match="make install-export"):
        check_options(options(), env)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, "yolov8n_320_onnx"),
        ({"format": "openvino", "half": True}, "yolov8n_320_openvino_fp16"),
        ({"source": "/w/My Model.pt", "imgsz": 640}, "my_model_640_onnx"),
    ],
)
def test_default_name(kw: dict[str, Any], expected: str) -> None:
    assert default_name(options(**{"imgsz": 320, **kw})) == expected


# --- the check ----------------------------------------------------------------------------


def test_compare_normalizes_boxes_by_the_input_size() -> None:
    ref = np.zeros((1, 84, 10), dtype=np.float32)
    out = ref.copy()
    out[0, 0, 3] = 3.2  # a box edge 3.2 px off at 320 px
    out[0, 10, 5] = 0.004  # a score 0.004 off
    result = compare_outputs([ref], [out], imgsz=320)
    assert result.max_abs_diff == pytest.approx(3.2)
    assert result.max_rel_diff == pytest.approx(0.01)


def test_compare_refuses_a_different_shape() -> None:
    with pytest.raises(ExportError, match="shape"):
        compare_outputs(
            [np.zeros((1, 84, 10), np.float32)], [np.zeros((1, 6, 300), np.float32)], 320
        )


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({i: str(i) for i in range(80)}, ("coco80", 0)),
        ({0: "person", **{i: f"c{i}" for i in range(1, 80)}}, ("coco80", 0)),
        ({0: "person"}, ("person_only", 0)),
    ],
)
def test_class_map(names: dict[int, str], expected: tuple[str, int]) -> None:
    cmap = class_map(names)
    assert (cmap.set, cmap.person) == expected


def test_class_map_refuses_an_unknown_layout() -> None:
    with pytest.raises(ExportError, match="person class"):
        class_map({0: "car", 1: "bus"})


def test_to_tensor_matches_the_edge_runtime_letterbox() -> None:
    image = np.full((100, 200, 3), (0, 0, 255), dtype=np.uint8)  # red, BGR
    tensor = to_tensor(image, 64)
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert tensor[0, 0, 32, 32] == pytest.approx(1.0)  # R channel first
    assert tensor[0, 0, 0, 32] == pytest.approx(114 / 255)  # centred grey padding


def test_samples_default_to_synthetic_frames_and_reject_missing_paths(tmp_path: Path) -> None:
    assert [s.label for s in load_samples([])][:2] == ["synthetic-0", "synthetic-1"]
    with pytest.raises(ExportError, match="no such file"):
        load_samples([tmp_path / "missing.jpg"])


def test_engine_export_refuses_on_this_machine_from_the_cli(tmp_path: Path) -> None:
    from models.cli import app

    if HAS_ULTRALYTICS and Environment().cuda():
        pytest.skip("this machine has a CUDA GPU")
    result = CliRunner().invoke(
        app, ["export", "yolov8n.yaml", "--format", "engine", "--dest", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "error:" in result.output
    assert not (tmp_path / "exports.yaml").exists()


# --- real exports (ultralytics) -------------------------------------------------------------


@dataclass
class Exported:
    models_dir: Path
    samples: tuple[Path, ...]
    lookups: list[str]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    if not HAS_ULTRALYTICS:
        pytest.skip("ultralytics is not installed here; `make test-export` runs these")
    from models.export import export_model
    from tests.conftest import _shared_dir

    data = _shared_dir("LOBBYWATCH_DATA", "data")
    bus = data / "photos" / "bus.jpg"
    mall = data / "mall" / "frames"
    if not bus.exists() or not mall.exists():
        pytest.skip(f"sample frames not found under {data}")
    frames = tmp_path_factory.mktemp("frames")
    for i in (1, 400, 800):
        shutil.copy(mall / f"seq_{i:06d}.jpg", frames / f"seq_{i:06d}.jpg")
    samples = (bus, frames)
    models_dir = tmp_path_factory.mktemp("models")
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def offline_getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            lookups.append(str(host))
            raise socket.gaierror(f"test is offline: {host}")
        return real_getaddrinfo(host, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", offline_getaddrinfo)
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        for fmt in ("onnx", "openvino"):
            export_model(
                ExportOptions(
                    source="yolov8n.yaml", format=fmt, dest=models_dir, imgsz=320, samples=samples
                ),
                log=lambda _line: None,
            )
    yield Exported(models_dir, samples, lookups)


@needs_ultralytics
def test_export_makes_no_network_lookups(exported: Exported) -> None:
    assert exported.lookups == []


@needs_ultralytics
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_is_recorded_with_its_check(exported: Exported, fmt: str) -> None:
    entry = load_exports(exported.models_dir).get(f"yolov8n_320_{fmt}")
    assert entry is not None
    assert entry.family == "ultralytics" and entry.input_size == (320, 320)
    assert entry.license == "AGPL-3.0" and entry.shippable is False
    check = entry.export.check
    assert check.frames == 4  # bus.jpg and three Mall frames
    assert check.max_rel_diff <= check.tolerance == 1e-3
    primary = entry.primary.path
    assert primary.endswith(".onnx" if fmt == "onnx" else ".xml")


@needs_ultralytics
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_exported_model_resolves_by_name_and_verifies(
    exported: Exported, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(exported.models_dir))
    resolved = resolve_model(f"yolov8n_320_{fmt}")
    assert resolved.family == "ultralytics" and resolved.input_size == (320, 320)
    assert verify(resolved) == []
    if fmt == "openvino":
        assert resolved.path.suffix == ".xml"  # the file a runtime loads comes first
        assert sorted(p.suffix for p in resolved.files[1:]) == [".bin", ".yaml"]


@needs_ultralytics
def test_exported_onnx_and_openvino_give_the_same_raw_output_in_the_edge_runtime(
    exported: Exported, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2
    import onnxruntime as ort

    from edge.detect import DetectorSettings, create_detector
    from edge.detect.openvino_ultralytics import OpenVinoUltralyticsDetector

    monkeypatch.setenv("LOBBYWATCH_MODELS", str(exported.models_dir))
    image = cv2.imread(str(exported.samples[0]))
    onnx_path = resolve_model("yolov8n_320_onnx").path
    xml_path = resolve_model("yolov8n_320_openvino").path

    ov_detector = create_detector(
        DetectorSettings(
            model_path=xml_path, family="ultralytics", input_size=(320, 320), provider="cpu"
        )
    )
    assert isinstance(ov_detector, OpenVinoUltralyticsDetector)
    assert ov_detector.provider == "OpenVINO:CPU"
    onnx_detector = create_detector(
        DetectorSettings(
            model_path=onnx_path, family="ultralytics", input_size=(320, 320), provider="cpu"
        )
    )
    assert onnx_detector.provider == "CPUExecutionProvider"
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_raw = session.run(None, {session.get_inputs()[0].name: to_tensor(image, 320)})[0]
    ov_raw = ov_detector.raw(image)
    assert ov_raw.shape == onnx_raw.shape == (1, 84, 2100)
    assert compare_outputs([onnx_raw], [ov_raw], 320).max_rel_diff < 1e-3
    # Random weights find no real people, but both detectors run the whole path (letterbox,
    # decode, NMS) and agree up to boxes whose score sits on the threshold.
    n_ov, n_onnx = len(ov_detector.detect(image)), len(onnx_detector.detect(image))
    assert abs(n_ov - n_onnx) <= max(2, n_onnx // 20)


@needs_ultralytics
def test_the_pipeline_loads_an_export_named_in_the_config(
    exported: Exported, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.config import DetectorConfig
    from edge.pipeline import build_detector

    monkeypatch.setenv("LOBBYWATCH_MODELS", str(exported.models_dir))
    config = DetectorConfig(model="yolov8n_320_openvino", provider="cpu", fusion={"models": []})
    detector = build_detector(config)
    assert detector.provider.startswith("OpenVINO:")


@needs_ultralytics
def test_an_export_outside_tolerance_is_rejected_and_not_recorded(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.export import export_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ExportError, match="rejected"):
        export_model(
            ExportOptions(
                source="yolov8n.yaml",
                format="onnx",
                dest=tmp_path,
                imgsz=320,
                tolerance=1e-12,
                samples=exported.samples[:1],
            ),
            log=lambda _line: None,
        )
    assert load_exports(tmp_path).models == ()
    assert [p.name for p in (tmp_path / "exports").iterdir()] == []
    with pytest.raises(ModelNotFoundError):
        resolve_model("yolov8n_320_onnx", models_dir=tmp_path)


@needs_ultralytics
def test_models_list_shows_exports(exported: Exported, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.cli import app

    monkeypatch.setenv("LOBBYWATCH_MODELS", str(exported.models_dir))
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert "yolov8n_320_openvino" in result.output and "exported openvino" in result.output
    verified = CliRunner().invoke(app, ["verify"])
    assert "yolov8n_320_onnx: ok" in verified.output


def test_cli_app_is_a_typer_app() -> None:
    from models.cli import app

    assert isinstance(app, typer.Typer)


# --- the OpenVINO detector for Ultralytics IR, on real weights (no ultralytics needed) -----------


def test_openvino_ir_of_an_ultralytics_model_finds_the_people_onnx_finds(
    models_dir: Path, photos_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest's YOLO11n ONNX converted to OpenVINO IR: same people on bus.jpg, on the CPU."""
    import sys

    import cv2

    ov = pytest.importorskip("openvino")
    from edge.detect import DetectorSettings, create_detector
    from edge.detect.openvino_ultralytics import OpenVinoUltralyticsDetector

    onnx_path = models_dir / "agpl" / "yolo11n_int8_dynamic_320.onnx"
    if not onnx_path.exists():
        pytest.skip(f"{onnx_path} not present")
    monkeypatch.setitem(sys.modules, "openvino_telemetry", None)  # the converter's telemetry
    xml = tmp_path / "yolo11n_320.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml))

    def detector(path: Path) -> Any:
        return create_detector(
            DetectorSettings(
                model_path=path, family="ultralytics", input_size=(320, 320), provider="cpu"
            )
        )

    image = cv2.imread(str(photos_dir / "bus.jpg"))
    ov_detector = detector(xml)
    assert isinstance(ov_detector, OpenVinoUltralyticsDetector)
    found_ov, found_onnx = ov_detector.detect(image), detector(onnx_path).detect(image)
    assert len(found_onnx) >= 3  # people at the bus
    assert len(found_ov) == len(found_onnx)
    for box in found_onnx.xyxy:
        ious = [_iou(box, other) for other in found_ov.xyxy]
        assert max(ious) > 0.9
    np.testing.assert_allclose(
        np.sort(found_ov.confidence), np.sort(found_onnx.confidence), atol=0.03
    )


def _iou(a: Any, b: Any) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


@pytest.mark.parametrize(
    ("provider", "env", "device"),
    [
        ("cpu", {"LOBBYWATCH_OPENVINO_DEVICE": "GPU"}, "CPU"),
        ("auto", {}, "AUTO"),
        ("openvino", {"LOBBYWATCH_OPENVINO_DEVICE": "NPU"}, "NPU"),
    ],
)
def test_openvino_device_choice(provider: str, env: dict[str, str], device: str) -> None:
    from edge.detect.openvino import openvino_device

    assert openvino_device(provider, env) == device


def test_ultralytics_ir_refuses_gpu_only_providers() -> None:
    from edge.detect import DetectorSettings

    with pytest.raises(ValueError, match="cannot run an OpenVINO model"):
        DetectorSettings(
            model_path=Path("m.xml"),
            family="ultralytics",
            input_size=(320, 320),
            provider="tensorrt",
        )
