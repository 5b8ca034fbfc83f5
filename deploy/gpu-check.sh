#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, which CI cannot run: run on a Jetson (JetPack 6) or a CUDA
# machine with TensorRT, from the repository root, with a Python that has lobbywatch, torch,
# ultralytics, tensorrt and onnxruntime-gpu (on a Jetson: the export venv made with
# --system-site-packages so JetPack's tensorrt is visible; see deploy/README.md).
#
#   PYTHON=.venv-export/bin/python deploy/gpu-check.sh [OUT_DIR]
#
# Each check prints PASS, FAIL or SKIP (with why); the exit code is 1 if any check failed.
# 1. the GPU is visible (nvidia-smi, or tegrastats on a Jetson), and torch sees CUDA;
# 2. onnxruntime has the TensorRT execution provider;
# 3. `lobbywatch models export yolov8n.yaml --format engine --half` builds a TensorRT engine and
#    its raw output matches the PyTorch model on sample frames (the export's own check);
# 4. the edge runtime runs the ONNX export on the TensorRT provider, writes the engine cache, and
#    agrees with the CPU run; a second detector loads the cached engine;
# 5. Jetson only: OpenCV has GStreamer and the hardware H.264 decoder (nvv4l2decoder) decodes.
# shellcheck disable=SC2317  # the check functions are called through check()
set -uo pipefail

PY=${PYTHON:-python3}
OUT=${1:-${OUT:-$(mktemp -d)}}
SAMPLES=${LOBBYWATCH_DATA:-../shared/data}/photos
mkdir -p "$OUT"
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=False PYTHONUNBUFFERED=1
export XDG_CACHE_HOME="$OUT/cache-home"
FAILED=0

check() { # check NAME COMMAND...: run, report, remember failures
    local name=$1 log
    shift
    log="$OUT/$(echo "$name" | tr -c 'A-Za-z0-9' '_').log"
    if "$@" >"$log" 2>&1; then
        echo "PASS  $name"
    elif grep -q '^SKIP:' "$log"; then
        echo "SKIP  $name: $(grep '^SKIP:' "$log" | head -n1 | cut -d: -f2-)"
    else
        echo "FAIL  $name (log: $log)"
        tail -n 15 "$log" | sed 's/^/      /'
        FAILED=1
    fi
}

gpu_visible() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    elif [[ -f /etc/nv_tegra_release ]]; then
        cat /etc/nv_tegra_release
    else
        echo "no nvidia-smi and not a Jetson"
        return 1
    fi
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA'; print(torch.cuda.get_device_name(0))"
}

ort_tensorrt() {
    "$PY" - <<'EOF'
import onnxruntime as ort
providers = ort.get_available_providers()
print(providers)
assert "TensorrtExecutionProvider" in providers, "this onnxruntime has no TensorRT provider"
EOF
}

engine_export() {
    local samples=()
    [[ -d $SAMPLES ]] && samples=(--samples "$SAMPLES")
    "$PY" -m edge.cli models export yolov8n.yaml --format engine --half --imgsz 320 \
        --dest "$OUT/models" "${samples[@]}" --force
}

ort_engine_cache() {
    "$PY" - "$OUT" <<'EOF'
import sys, time
from pathlib import Path
import numpy as np
from edge.detect import DetectorSettings
from edge.detect.onnx import OnnxDetector
from models.export import ExportOptions, compare_outputs, export_model, synthetic_samples, to_tensor

out = Path(sys.argv[1])
entry = export_model(ExportOptions(source="yolov8n.yaml", format="onnx", dest=out / "models",
                                   imgsz=320, force=True), log=print)
onnx = out / "models" / entry.primary.path
cache = out / "trt-cache"
image = synthetic_samples()[0].image

def detector(provider):
    s = DetectorSettings(model_path=onnx, family="ultralytics", input_size=(320, 320),
                         provider=provider, cache_dir=cache)
    return OnnxDetector(s)

started = time.monotonic()
trt = detector("tensorrt")
trt.detect(image)
print(f"first TensorRT detector (engine build): {time.monotonic() - started:.1f} s, {trt.provider}")
assert trt.provider == "TensorrtExecutionProvider", trt.provider
engines = list(cache.rglob("*.engine"))
assert engines, f"no engine cached in {cache}"
started = time.monotonic()
again = detector("tensorrt")
again.detect(image)
print(f"second detector (cached engine): {time.monotonic() - started:.1f} s")
tensor = to_tensor(image, 320)
raw_trt = trt._session.run(None, {trt._input_name: tensor})[0]
cpu = detector("cpu")
raw_cpu = cpu._session.run(None, {cpu._input_name: tensor})[0]
diff = compare_outputs([raw_cpu], [raw_trt], 320)
print(f"TensorRT vs CPU: normalized max diff {diff.max_rel_diff:.3g}")
assert diff.max_rel_diff < 2e-2
EOF
}

jetson_decode() {
    if [[ ! -f /etc/nv_tegra_release ]]; then
        echo "SKIP: not a Jetson"
        return 1
    fi
    "$PY" -c "import cv2, re; info = cv2.getBuildInformation(); print(re.search(r'GStreamer:.*', info).group(0)); assert 'GStreamer:                   YES' in info or re.search(r'GStreamer:\s+YES', info)"
    gst-launch-1.0 -q videotestsrc num-buffers=60 ! 'video/x-raw,width=1280,height=720' \
        ! nvvidconv ! nvv4l2h264enc ! h264parse ! nvv4l2decoder ! fakesink
}

echo "lobbywatch GPU checks ($(uname -m), python: $PY), logs in $OUT"
check "GPU visible to torch" gpu_visible
check "onnxruntime TensorRT provider" ort_tensorrt
check "ultralytics TensorRT engine export (fp16) matches PyTorch" engine_export
check "edge runtime on TensorRT with engine cache" ort_engine_cache
check "Jetson hardware decoding (GStreamer, nvv4l2decoder)" jetson_decode
exit "$FAILED"
