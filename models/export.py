"""`lobbywatch models export`: an Ultralytics model to ONNX, OpenVINO IR or a TensorRT engine.

Ultralytics (AGPL-3.0, pulls torch) is an optional extra installed in its own virtualenv
(`make install-export`), never on the edge runtime path: this module imports it only inside
`export_model`. The steps:

1. refuse what cannot work here, before loading anything (a TensorRT engine without a CUDA GPU,
   INT8 without a calibration dataset, FP16 ONNX on a CPU);
2. export in a scratch directory inside the destination, with ultralytics kept offline (no
   update checks, no pip installs at run time, no telemetry; OpenVINO's telemetry too);
3. run the original PyTorch model and the exported one on the same sample frames, letterboxed
   exactly as the edge runtime does, and compare the raw outputs (boxes normalized by the input
   size, scores as they are): an export whose largest difference exceeds the tolerance is
   rejected and deleted. Raw tensors, not detections, so a model with random weights (built from
   its YAML, as the tests do) is checked as strictly as a trained one;
4. load the ONNX or OpenVINO file in the edge runtime (`edge.detect.create_detector`);
5. move it to `<models dir>/exports/<name>/` and record it, sha256-pinned, in
   `<models dir>/exports.yaml` (models/exports.py), where `resolve_model` finds it by name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.detect.letterbox import letterbox_into
from models.exports import (
    EXPORTS_SUBDIR,
    ExportCheck,
    ExportedModel,
    ExportFormat,
    ExportInfo,
    Precision,
    load_exports,
    record_export,
)
from models.manifest import ClassMap, ModelError, ModelFile, load_manifest
from models.store import cache_dir, sha256_file

FORMATS: tuple[ExportFormat, ...] = ("onnx", "openvino", "engine")
# Largest accepted difference of the normalized raw output (boxes / input size, scores as is):
# fp32 within 0.1% (0.3 px at 320), reduced precision within what its rounding costs.
DEFAULT_TOLERANCE: dict[Precision, float] = {"fp32": 1e-3, "fp16": 2e-2, "int8": 1e-1}
# Ultralytics reads these when it is imported: no DNS probe, no pip install at run time, no
# analytics (it is also what keeps an offline device from waiting on network timeouts).
OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False"}
SAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_SAMPLES_PER_DIR = 8

Image = npt.NDArray[np.uint8]
Tensor = npt.NDArray[np.float32]


class ExportError(ModelError):
    """An export was refused, failed, or did not match the original model."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how. `source`: a .pt checkpoint or a model YAML (random weights)."""

    source: str
    format: ExportFormat
    dest: Path
    imgsz: int = 640
    half: bool = False
    int8: bool = False
    data: Path | None = None
    name: str | None = None
    opset: int | None = None
    samples: tuple[Path, ...] = ()
    tolerance: float | None = None
    license: str = "AGPL-3.0"
    shippable: bool = False
    force: bool = False

    @property
    def precision(self) -> Precision:
        return "int8" if self.int8 else "fp16" if self.half else "fp32"


@dataclass(frozen=True)
class Sample:
    label: str
    image: Image


@dataclass
class Environment:
    """What the machine offers; injected so the refusals are tested without a GPU or ultralytics."""

    cuda: Callable[[], bool] = field(default=lambda: _torch_cuda())
    has_module: Callable[[str], bool] = field(
        default=lambda name: importlib.util.find_spec(name) is not None
    )


# --- checks before anything heavy is loaded --------------------------------------------------


def check_options(options: ExportOptions, env: Environment | None = None) -> None:
    """Raise ExportError for a request that cannot work here, naming what to do instead."""
    env = env or Environment()
    if options.format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {options.format!r}")
    if options.half and options.int8:
        raise ExportError("choose --half or --int8, not both")
    if options.imgsz < 32 or options.imgsz % 32:
        raise ExportError(
            f"--imgsz must be a multiple of 32 (the model's stride), got {options.imgsz}"
        )
    if options.name is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", options.name):
        raise ExportError(f"--name {options.name!r}: use lower-case letters, digits, _ . -")
    if options.int8 and options.data is None:
        raise ExportError(
            "--int8 calibrates on real images: give --data DATASET.yaml (an Ultralytics dataset "
            "file whose val images are frames of your cameras); nothing is downloaded"
        )
    if options.data is not None and not options.data.is_file():
        raise ExportError(f"--data {options.data}: no such file")
    if not env.has_module("ultralytics"):
        raise ExportError(
            "ultralytics is not installed: exports run in their own virtualenv "
            "(`make install-export`, or pip install 'lobbywatch[export]' beside torch); "
            "never install it on the edge runtime"
        )
    if options.format == "engine":
        if not env.cuda():
            raise ExportError(
                "--format engine builds a TensorRT engine, which needs an NVIDIA GPU with CUDA and "
                "TensorRT, and this machine has none. Engines are tied to the GPU and the TensorRT "
                "version that built them: run the export on the Jetson itself, or export ONNX here "
                "and let the edge runtime build and cache the engine (detector.provider: tensorrt)"
            )
        if not env.has_module("tensorrt"):
            raise ExportError(
                "--format engine needs TensorRT's Python package (on a Jetson: JetPack's "
                "python3-libnvinfer, visible in the export venv with --system-site-packages)"
            )
    elif options.half and options.format == "onnx":
        raise ExportError(
            "--half ONNX needs a CUDA export and a float16 input the edge runtime does not feed; "
            "use --format openvino --half (FP16 IR) on Intel, or --format engine --half on a Jetson"
        )
    if options.source in load_manifest().names:
        raise ExportError(
            f"{options.source!r} is an exported model of the manifest already; export from the "
            "Ultralytics checkpoint (.pt) or a model YAML"
        )
    if not options.source.endswith((".yaml", ".yml")) and not Path(options.source).is_file():
        # Ultralytics would try to download a missing "yolo11n.pt" from GitHub: never here.
        raise ExportError(
            f"{options.source}: no such file; give a .pt checkpoint on disk (copy it from a "
            "connected machine) or a model YAML such as yolo11n.yaml"
        )
    if options.source.endswith((".yaml", ".yml")) and options.shippable:
        raise ExportError("a model built from its YAML has random weights: never shippable")


def default_name(options: ExportOptions) -> str:
    """e.g. yolo11n_320_openvino_fp16: source stem, input size, format, precision if not fp32."""
    stem = Path(options.source).stem.lower()
    stem = re.sub(r"[^a-z0-9_.-]+", "_", stem).strip("_.-") or "model"
    parts = [stem, str(options.imgsz), options.format]
    if options.precision != "fp32":
        parts.append(options.precision)
    return "_".join(parts)


# --- sample frames ------------------------------------------------------------------------


def load_samples(paths: Sequence[Path], *, seed: int = 0) -> list[Sample]:
    """Frames to compare on: the given images (a directory gives its first few), else synthetic.

    Synthetic frames (noise, gradients, boxes; fixed seed) exercise every output; frames of the
    site's own cameras are better and are what the README asks for.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
            files.extend(found[:MAX_SAMPLES_PER_DIR])
        elif path.is_file():
            files.append(path)
        else:
            raise ExportError(f"sample {path}: no such file or directory")
    samples = []
    for file in files:
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise ExportError(f"sample {file}: not an image OpenCV can read")
        frame: Image = np.asarray(image, dtype=np.uint8)
        samples.append(Sample(file.name, frame))
    if paths and not samples:
        raise ExportError(f"no images found in {', '.join(map(str, paths))}")
    return samples or synthetic_samples(seed)


def synthetic_samples(seed: int = 0, count: int = 4) -> list[Sample]:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        height, width = (480, 640) if i % 2 == 0 else (720, 400)
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        image: Image = np.empty((height, width, 3), dtype=np.uint8)
        image[...] = rng.integers(0, 64, (height, width, 3)) + ramp * 0.7
        for _ in range(6):
            x, y = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 80))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.rectangle(image, (x, y), (x + 40, y + 80), colour, -1)
        samples.append(Sample(f"synthetic-{i}", image))
    return samples


def to_tensor(image: Image, imgsz: int) -> Tensor:
    """(1, 3, imgsz, imgsz) float32 RGB 0-1, centred letterbox: the edge runtime's input."""
    canvas = np.empty((imgsz, imgsz, 3), dtype=np.uint8)
    letterbox_into(image, canvas, centred=True)
    rgb = canvas[:, :, ::-1].transpose(2, 0, 1)
    tensor: Tensor = np.ascontiguousarray(rgb[None], dtype=np.float32)
    tensor /= np.float32(255.0)
    return tensor


# --- comparison ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    max_abs_diff: float
    max_rel_diff: float


def compare_outputs(
    reference: Sequence[Tensor], exported: Sequence[Tensor], imgsz: int
) -> Comparison:
    """Largest difference between raw (1, 4 + classes, boxes) outputs.

    Relative: boxes divided by the input size, scores (already 0-1) as they are, so one number
    bounds both a box's shift as a fraction of the image and a score's change.
    """
    if len(reference) != len(exported):
        raise ExportError(f"{len(exported)} exported outputs for {len(reference)} frames")
    max_abs = max_rel = 0.0
    for ref, out in zip(reference, exported, strict=True):
        if ref.shape != out.shape:
            raise ExportError(
                f"exported output shape {out.shape} differs from the original {ref.shape}"
            )
        diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        max_abs = max(max_abs, float(diff.max()))
        scale = np.ones((1, ref.shape[1], 1))
        scale[:, :4] = imgsz
        max_rel = max(max_rel, float((diff / scale).max()))
    return Comparison(max_abs, max_rel)


def check_output_layout(output: Tensor, classes: int) -> None:
    """The edge runtime decodes (1, 4 + classes, boxes) outputs, the Ultralytics v8/11 layout."""
    if output.ndim != 3 or output.shape[0] != 1 or output.shape[1] != 4 + classes:
        raise ExportError(
            f"the model's output is {output.shape}, not (1, {4 + classes}, boxes): the edge "
            "runtime decodes YOLOv8/YOLO11 detection heads (NMS-free end-to-end heads and other "
            "tasks are not supported)"
        )


def class_map(names: dict[int, str]) -> ClassMap:
    """Which class is a person. A model built from its YAML has names '0'..'79': COCO order."""
    values = [names[i] for i in sorted(names)]
    if len(values) == 80 and (values[0] == "person" or values == [str(i) for i in range(80)]):
        return ClassMap(set="coco80", person=0)
    if len(values) == 1:
        return ClassMap(set="person_only", person=0)
    raise ExportError(
        f"cannot tell the person class of a model with {len(values)} classes ({values[:5]}...): "
        "lobbywatch runs COCO-80 models and single-class person models"
    )


# --- runtimes -----------------------------------------------------------------------------


def run_onnx(path: Path, tensors: Sequence[Tensor]) -> list[Tensor]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [np.asarray(session.run(None, {name: t})[0], dtype=np.float32) for t in tensors]


def run_openvino(path: Path, tensors: Sequence[Tensor], device: str = "CPU") -> list[Tensor]:
    import openvino as ov

    core = ov.Core()
    # Compare what was exported: no bf16 down-conversion on CPUs that support it.
    config = {"INFERENCE_PRECISION_HINT": "f32"} if device == "CPU" else {}
    compiled = core.compile_model(core.read_model(str(path)), device, config)
    request = compiled.create_infer_request()
    outputs = []
    for t in tensors:
        request.infer({0: t})
        outputs.append(np.array(request.get_output_tensor(0).data, dtype=np.float32))
    return outputs


def run_engine(
    path: Path, tensors: Sequence[Tensor], half: bool
) -> list[Tensor]:  # pragma: no cover
    """A TensorRT engine through ultralytics' AutoBackend (GPU machines only)."""
    import torch
    from ultralytics.nn.autobackend import AutoBackend

    device = torch.device("cuda:0")
    backend = AutoBackend(str(path), device=device, fp16=half, verbose=False)
    outputs = []
    for t in tensors:
        x = torch.from_numpy(t).to(device)
        y = backend(x.half() if half else x)
        y = y[0] if isinstance(y, (list, tuple)) else y
        outputs.append(y.float().cpu().numpy())
    return outputs


def run_torch(model: Any, tensors: Sequence[Tensor], device: str = "cpu") -> list[Tensor]:
    import torch

    module = model.model.to(device).eval()
    outputs = []
    with torch.no_grad():
        for t in tensors:
            y = module(torch.from_numpy(t).to(device))
            y = y[0] if isinstance(y, (list, tuple)) else y
            outputs.append(y.float().cpu().numpy())
    return outputs


# --- the export ---------------------------------------------------------------------------


@contextlib.contextmanager
def offline_ultralytics(config_dir: Path) -> Iterator[None]:
    """Keep ultralytics (and OpenVINO's converter) from reaching the network or $HOME."""
    saved = {k: os.environ.get(k) for k in (*OFFLINE_ENV, "YOLO_CONFIG_DIR")}
    os.environ.update(OFFLINE_ENV)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    # OpenVINO's model converter sends usage telemetry unless a consent file in $HOME says no;
    # without its telemetry package it uses a built-in stub that sends nothing.
    blocked = "openvino_telemetry" not in sys.modules
    if blocked:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    try:
        from ultralytics import settings

        settings.update({"sync": False})
        yield
    finally:
        if blocked and sys.modules.get("openvino_telemetry", 0) is None:
            del sys.modules["openvino_telemetry"]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    # Ultralytics writes a YAML-built model's export to the working directory (contextlib.chdir
    # is 3.11+; lobbywatch supports 3.10).
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def export_model(
    options: ExportOptions,
    *,
    env: Environment | None = None,
    log: Callable[[str], None] = print,
) -> ExportedModel:
    """Export, check against the original, load in the edge runtime, record. See the module doc."""
    check_options(options, env)
    name = options.name or default_name(options)
    if name in load_manifest().names:
        raise ExportError(f"{name!r} is a model of the shipped manifest: choose another --name")
    dest = options.dest.expanduser().absolute()
    if load_exports(dest).get(name) is not None and not options.force:
        raise ExportError(
            f"{name!r} is already recorded in {dest}/exports.yaml (--force replaces it)"
        )
    samples = load_samples(options.samples)
    tensors = [to_tensor(s.image, options.imgsz) for s in samples]
    exports_dir = dest / EXPORTS_SUBDIR
    exports_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=exports_dir))
    try:
        with offline_ultralytics(cache_dir().parent / "ultralytics"):
            entry = _export_checked(options, name, scratch, samples, tensors, log)
        final = exports_dir / name
        if final.exists():
            shutil.rmtree(final)
        (scratch / "artefact").rename(final)
        record_export(dest, entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"recorded {name} in {dest / 'exports.yaml'}")
    return entry


def _export_checked(
    options: ExportOptions,
    name: str,
    scratch: Path,
    samples: Sequence[Sample],
    tensors: Sequence[Tensor],
    log: Callable[[str], None],
) -> ExportedModel:
    import ultralytics
    from ultralytics import YOLO

    source_path = Path(options.source).expanduser()
    source_sha = sha256_file(source_path) if source_path.is_file() else None
    try:
        if source_path.is_file():
            # Work on a copy: ultralytics writes the export beside the checkpoint.
            local = scratch / source_path.name
            shutil.copy2(source_path, local)
            model = YOLO(str(local))
        else:
            model = YOLO(options.source)  # a model YAML from ultralytics' cfg, or a hub name
    except Exception as exc:  # ultralytics raises many types; the user needs the message
        raise ExportError(
            f"ultralytics cannot load {options.source!r}: {exc} (offline: give a .pt file or a "
            "model YAML such as yolo11n.yaml; nothing is downloaded)"
        ) from exc
    if getattr(model, "task", "detect") != "detect":
        raise ExportError(f"{options.source} is a {model.task} model; lobbywatch needs detect")
    classes = class_map(dict(model.names))
    device = "cuda:0" if options.format == "engine" else "cpu"
    reference = run_torch(model, tensors, device)
    check_output_layout(reference[0], len(model.names))

    log(f"exporting {options.source} to {options.format} ({options.precision}, {options.imgsz} px)")
    with _working_directory(scratch):
        try:
            produced = Path(model.export(**_export_args(options, device)))
        except Exception as exc:
            raise ExportError(f"ultralytics could not export to {options.format}: {exc}") from exc
    if not produced.is_absolute():
        produced = scratch / produced
    artefact = scratch / "artefact"
    artefact.mkdir()
    primary = _collect(options.format, produced, artefact)

    exported, runtime = _run_exported(options, primary, tensors)
    check_output_layout(exported[0], len(model.names))
    comparison = compare_outputs(reference, exported, options.imgsz)
    tolerance = options.tolerance or DEFAULT_TOLERANCE[options.precision]
    log(
        f"check on {len(samples)} frame(s) with {runtime}: max |diff| {comparison.max_abs_diff:.3g}"
        f" (normalized {comparison.max_rel_diff:.3g}, tolerance {tolerance:g})"
    )
    if not comparison.max_rel_diff <= tolerance:
        raise ExportError(
            f"rejected: the exported model differs from the original by {comparison.max_rel_diff:.3g} "
            f"(normalized; tolerance {tolerance:g}) on {len(samples)} frame(s); nothing was recorded"
        )
    if options.format != "engine":
        _load_in_edge_runtime(primary, options.imgsz, samples[0].image, classes.person)

    files = sorted(
        (p for p in artefact.rglob("*") if p.is_file()),
        key=lambda p: (p != primary, p.name),
    )
    return ExportedModel(
        name=name,
        family="ultralytics",
        description=(
            f"{Path(options.source).name} exported by lobbywatch models export to {options.format} "
            f"({options.precision}). Input 1x3x{options.imgsz}x{options.imgsz} RGB 0-1, centred "
            f"letterbox; output {tuple(exported[0].shape)}."
        ),
        input_size=(options.imgsz, options.imgsz),
        classes=classes,
        files=tuple(
            ModelFile(
                path=f"{EXPORTS_SUBDIR}/{name}/{p.relative_to(artefact).as_posix()}",
                sha256=sha256_file(p),
                size=p.stat().st_size or None,
                url=(
                    options.dest.expanduser().absolute()
                    / EXPORTS_SUBDIR
                    / name
                    / p.relative_to(artefact)
                ).as_uri(),
            )
            for p in files
        ),
        license=options.license,
        shippable=options.shippable,
        source=f"exported on this machine from {options.source} with ultralytics {ultralytics.__version__}",
        upstream=options.source,
        export=ExportInfo(
            format=options.format,
            precision=options.precision,
            imgsz=options.imgsz,
            source=options.source,
            source_sha256=source_sha,
            ultralytics=ultralytics.__version__,
            exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            check=ExportCheck(
                frames=len(samples),
                samples=", ".join(s.label for s in samples),
                max_abs_diff=comparison.max_abs_diff,
                max_rel_diff=comparison.max_rel_diff,
                tolerance=tolerance,
                runtime=runtime,
            ),
        ),
    )


def _export_args(options: ExportOptions, device: str) -> dict[str, Any]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    args: dict[str, Any] = {
        "format": options.format,
        "imgsz": options.imgsz,
        "device": "0" if device.startswith("cuda") else "cpu",
        "batch": 1,
        "dynamic": False,  # static shapes: NPUs and TensorRT engines want them, and so does NMS-free decoding
        "nms": False,  # the edge runtime does its own NMS on the raw (1, 4 + classes, boxes) output
        "verbose": False,
    }
    if options.format in ("onnx", "engine"):
        args["simplify"] = True
        if options.opset is not None:
            args["opset"] = options.opset
    if options.data is not None:
        args["data"] = str(options.data)
    # Ultralytics 8.4 replaced half/int8 with quantize=16/8; 8.3 knows only the old flags.
    if "quantize" in DEFAULT_CFG_DICT:
        args["quantize"] = {"fp32": None, "fp16": 16, "int8": 8}[options.precision]
    else:
        args["half"], args["int8"] = options.half, options.int8
    return args


def _collect(fmt: ExportFormat, produced: Path, artefact: Path) -> Path:
    """Move what ultralytics wrote into `artefact`; return the file a runtime loads."""
    if fmt == "openvino":
        if not produced.is_dir():
            raise ExportError(f"ultralytics reported {produced}, not an OpenVINO model directory")
        for item in produced.iterdir():
            shutil.move(str(item), artefact / item.name)
        xml = sorted(artefact.glob("*.xml"))
        if len(xml) != 1:
            raise ExportError(f"expected one .xml in {produced}, found {len(xml)}")
        return xml[0]
    if not produced.is_file():
        raise ExportError(f"ultralytics reported {produced}, which does not exist")
    target = artefact / produced.name
    shutil.move(str(produced), target)
    return target


def _run_exported(
    options: ExportOptions, primary: Path, tensors: Sequence[Tensor]
) -> tuple[list[Tensor], str]:
    if options.format == "onnx":
        return run_onnx(primary, tensors), "onnxruntime CPU"
    if options.format == "openvino":
        return run_openvino(primary, tensors), "OpenVINO CPU"
    return run_engine(primary, tensors, options.half), "TensorRT"  # pragma: no cover


def _load_in_edge_runtime(primary: Path, imgsz: int, image: Image, person: int) -> None:
    """The runtime that will run it must load it: the same code path as `lobbywatch run`."""
    from edge.detect import DetectorSettings, create_detector

    settings = DetectorSettings(
        model_path=primary,
        family="ultralytics",
        input_size=(imgsz, imgsz),
        provider="cpu",
        person_class_id=person,
    )
    try:
        create_detector(settings).detect(image)
    except Exception as exc:
        raise ExportError(f"the edge runtime cannot run {primary.name}: {exc}") from exc


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
