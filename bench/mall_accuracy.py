#!/usr/bin/env python3
"""Count accuracy and end-to-end speed on the Mall frames, through the real `lobbywatch count`.

Runs the CLI in a subprocess (what a user runs: capture, decode, detect, zones, smoothing, JSON
output), then compares the per-frame count of one zone (the floor ROI) with the authors' head
annotations. Prints MAE, bias, MAPE and RMSE for the raw per-frame count and for the smoothed
occupancy, and frames per second end to end. Not a test: run it, and record the numbers.

    python bench/mall_accuracy.py --config configs/mall.yaml [--every 10] [--set detector.confidence=0.2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_truth(data_dir: Path) -> list[int]:
    """Ground-truth people per frame, index 0 = seq_000001.jpg."""
    heads = json.loads((data_dir / "mall" / "gt_heads.json").read_text())
    names = sorted(heads)
    return [int(heads[name]["count"]) for name in names]


def metrics(pred: list[float], truth: list[int]) -> dict[str, float]:
    errors = [p - t for p, t in zip(pred, truth, strict=True)]
    n = len(errors)
    return {
        "frames": n,
        "mae": sum(abs(e) for e in errors) / n,
        "bias": sum(errors) / n,
        "mape_pct": 100 * sum(abs(e) / t for e, t in zip(errors, truth, strict=True) if t) / n,
        "rmse": math.sqrt(sum(e * e for e in errors) / n),
    }


def env_overrides(sets: list[str], every: int, camera: str) -> dict[str, str]:
    env = {}
    for item in sets:
        key, _, value = item.partition("=")
        env["LOBBYWATCH_" + key.upper().replace(".", "__")] = value
    if every > 1:
        # Decimate through the product's own setting: source 2 fps, process 2/every fps.
        env[f"LOBBYWATCH_CAMERAS__{camera.upper()}__SOURCE_FPS"] = "2"
        env[f"LOBBYWATCH_CAMERAS__{camera.upper()}__FPS"] = str(2 / every)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "configs" / "mall.yaml"))
    parser.add_argument("--camera", default="mall")
    parser.add_argument("--zone", default="floor")
    parser.add_argument("--every", type=int, default=1, help="process every Nth frame")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override, e.g. detector.confidence=0.2 (repeatable)",
    )
    parser.add_argument(
        "--data", default=os.environ.get("LOBBYWATCH_DATA", str(REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--out", help="keep the JSON lines here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    truth = load_truth(Path(args.data))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "count.jsonl"
    env = {
        **os.environ,
        "LOBBYWATCH_DATA": args.data,
        **env_overrides(args.set, args.every, args.camera),
    }
    env.setdefault("LOBBYWATCH_MODELS", str(REPO.parent / "shared" / "models"))
    command = [
        sys.executable,
        "-m",
        "edge.cli",
        "count",
        "--config",
        args.config,
        "--camera",
        args.camera,
        "--out",
        str(out),
        "--no-progress",
    ]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return proc.returncode
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    frames = [rec["frame"] for rec in lines]
    ref = [truth[i] for i in frames]
    raw = metrics([rec["zones"][args.zone] for rec in lines], ref)
    smooth = metrics([rec["occupancy"][args.zone] for rec in lines], ref)
    infer_ms = sum(rec["inference_ms"] for rec in lines) / len(lines)
    # The CLI's own summary line times the frame loop without start-up (model load).
    summary = proc.stderr.strip().splitlines()[-1]
    loop_fps = float(summary.split("(")[1].split(" fps")[0])
    result = {
        "settings": args.set,
        "every": args.every,
        "frames": len(lines),
        "raw": raw,
        "smoothed": smooth,
        "fps_end_to_end": loop_fps,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "detector_ms": infer_ms,
        "process_wall_s": wall,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"frames {len(lines)} (every {args.every}), settings {args.set or 'config defaults'}")
        for name, m in (("raw", raw), ("smoothed", smooth)):
            print(
                f"  {name:9s} MAE {m['mae']:.2f}  bias {m['bias']:+.2f}  MAPE {m['mape_pct']:.1f}%  RMSE {m['rmse']:.2f}"
            )
        print(
            f"  speed     {loop_fps:.2f} fps end to end, detector {infer_ms:.1f} ms/frame, "
            f"process wall {wall:.1f} s (incl. start-up), peak RSS {result['peak_rss_mib']:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
