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
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.accuracy import (  # noqa: E402
    add_scene_arguments,
    detection_quality,
    load_heads,
    metrics,
    set_overrides,
)


def load_truth(data_dir: Path) -> tuple[list[int], list[list[list[float]]]]:
    """Ground-truth people and head points per frame, index 0 = seq_000001.jpg."""
    heads = load_heads(data_dir / "mall" / "gt_heads.json")
    return [count for count, _ in heads.values()], [points for _, points in heads.values()]


def plot(
    path: Path,
    frames: list[int],
    truth: list[int],
    raw: list[float],
    smooth: list[float],
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    ax.plot(frames, truth, color="black", linewidth=1.2, label="ground truth (heads)")
    ax.plot(frames, raw, color="tab:blue", linewidth=0.6, alpha=0.6, label="raw per-frame count")
    ax.plot(frames, smooth, color="tab:orange", linewidth=1.0, label="smoothed occupancy")
    ax.set_xlabel("frame")
    ax.set_ylabel("people in the floor zone")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def env_overrides(sets: list[str], every: int, camera: str) -> dict[str, str]:
    env = set_overrides(sets)
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
    add_scene_arguments(parser, REPO)
    parser.add_argument("--out", help="keep the JSON lines here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", help="write predicted vs true count over the sequence (PNG)")
    parser.add_argument(
        "--calibrate", type=int, default=0, metavar="N",
        help="fit `lobbywatch calibrate` on N evenly spaced hand-counted frames first; "
        "those frames are then left out of the evaluation",
    )  # fmt: skip
    args = parser.parse_args()

    truth, heads = load_truth(Path(args.data))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "count.jsonl"
    env = {
        **os.environ,
        "LOBBYWATCH_DATA": args.data,
        **env_overrides(args.set, args.every, args.camera),
    }
    env.setdefault("LOBBYWATCH_MODELS", str(REPO.parent / "shared" / "models"))
    fit_frames: set[int] = set()
    if args.calibrate:
        fit_frames = {round(i * len(truth) / args.calibrate) for i in range(args.calibrate)}
        counts_csv = out.parent / "hand_counts.csv"
        counts_csv.write_text(
            "frame,zone,count\n"
            + "".join(f"{i},{args.zone},{truth[i]}\n" for i in sorted(fit_frames))
        )
        calibration = out.parent / "calibration.yaml"
        fit = subprocess.run(
            [sys.executable, "-m", "edge.cli", "calibrate", "--config", args.config,
             "--camera", args.camera, "--counts", str(counts_csv), "--out", str(calibration)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if fit.returncode != 0:
            sys.stderr.write(fit.stderr)
            return fit.returncode
        print(fit.stdout.strip().splitlines()[0])
        env[f"LOBBYWATCH_CAMERAS__{args.camera.upper()}__CALIBRATION"] = str(calibration)
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
    lines = [rec for rec in lines if rec["frame"] not in fit_frames]
    frames = [rec["frame"] for rec in lines]
    ref = [truth[i] for i in frames]
    raw = metrics([rec["zones"][args.zone] for rec in lines], ref)
    smooth = metrics([rec["occupancy"][args.zone] for rec in lines], ref)
    infer_ms = sum(rec["inference_ms"] for rec in lines) / len(lines)
    quality = detection_quality(lines, heads, args.zone)
    if args.plot:
        raw_counts = [rec["zones"][args.zone] for rec in lines]
        smooth_counts = [rec["occupancy"][args.zone] for rec in lines]
        title = f"Mall, {len(lines)} frames: smoothed MAE {smooth['mae']:.2f}, settings {args.set or 'config'}"
        plot(Path(args.plot), frames, ref, raw_counts, smooth_counts, title)
    # The CLI's own summary line times the frame loop without start-up (model load).
    summary = proc.stderr.strip().splitlines()[-1]
    loop_fps = float(summary.split("(")[1].split(" fps")[0])
    result = {
        "settings": args.set,
        "calibration_frames": len(fit_frames),
        "every": args.every,
        "frames": len(lines),
        "raw": raw,
        "smoothed": smooth,
        "heads": quality,
        "fps_end_to_end": loop_fps,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "detector_ms": infer_ms,
        "process_wall_s": wall,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"frames {len(lines)} (every {args.every}), settings {args.set or 'config defaults'}"
            + (f", calibrated on {len(fit_frames)} other frames" if fit_frames else "")
        )
        for name, m in (("raw", raw), ("smoothed", smooth)):
            print(
                f"  {name:9s} MAE {m['mae']:.2f}  bias {m['bias']:+.2f}  MAPE {m['mape_pct']:.1f}%  RMSE {m['rmse']:.2f}"
            )
        print(f"  heads     precision {quality['precision']:.3f}  recall {quality['recall']:.3f}")
        print(
            f"  speed     {loop_fps:.2f} fps end to end, detector {infer_ms:.1f} ms/frame, "
            f"process wall {wall:.1f} s (incl. start-up), peak RSS {result['peak_rss_mib']:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
