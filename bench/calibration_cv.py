#!/usr/bin/env python3
"""Calibration on held-out frames (issue #11): no correction, the old least-squares fit, and the
cross-validated choice of edge/calibration.py, fitted on a few labelled frames and judged on others.

Detected counts come from the product's own `lobbywatch count` (run once per scene, cached as
JSON lines); the corrections are applied as `cameras[].calibration` applies them
(ZoneCalibration.apply on the per-frame count), so no second detector run is needed.

    python bench/calibration_cv.py brt  --counts /tmp/cal11/brt.jsonl    # fit: 50 train frames, eval: test split
    python bench/calibration_cv.py mall --counts /tmp/cal11/mall.jsonl   # fit: 20 spaced frames, eval: the rest

Make the JSON lines with (brt: a whole-frame zone, presence hold off: the stills are unrelated)
    lobbywatch count --config CONFIG --out FILE --no-progress
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.mall_accuracy import metrics  # noqa: E402
from edge.calibration import OFFSET_BOUNDS, SCALE_BOUNDS, ZoneCalibration, fit_zone  # noqa: E402


def old_fit(detected: list[int], truth: list[float]) -> ZoneCalibration:
    """The fit before issue #11: least squares, scale + offset from 8 frames, always applied."""
    x, y = np.asarray(detected, float), np.asarray(truth, float)
    if len(x) >= 8 and np.ptp(x) > 0:
        scale, offset = np.polyfit(x, y, 1)
    else:
        scale, offset = (y.sum() / x.sum() if x.sum() > 0 else 1.0), 0.0
    return ZoneCalibration(
        float(np.clip(scale, *SCALE_BOUNDS)), float(np.clip(offset, *OFFSET_BOUNDS)), len(x)
    )


def split(
    scene: str, data: Path, n_frames: int, fit_n: int
) -> tuple[list[int], list[int], list[int]]:
    """Fit frames, evaluation frames (0-based source indices) and the truth per index."""
    if scene == "brt":
        rows = list(csv.DictReader((data / "brt_cam1" / "gt_counts.csv").open()))
        truth = [int(r["count"]) for r in rows]  # row i = cam1_{i+1:06d}.jpg = source index i
        train = [i for i, r in enumerate(rows) if r["official_split"] == "train"]
        test = [i for i, r in enumerate(rows) if r["official_split"] == "test"]
        fit = (
            [train[round(k * len(train) / fit_n)] for k in range(fit_n)]
            if fit_n < len(train)
            else train
        )
        return fit, test, truth
    heads = json.loads((data / "mall" / "gt_heads.json").read_text())
    truth = [int(heads[n]["count"]) for n in sorted(heads)]
    fit = sorted(
        {round(k * n_frames / fit_n) for k in range(fit_n)}
    )  # as mall_accuracy --calibrate
    return fit, [i for i in range(n_frames) if i not in set(fit)], truth


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scene", choices=["brt", "mall"])
    parser.add_argument("--counts", required=True, help="JSON lines from `lobbywatch count`")
    parser.add_argument("--zone", default="floor")
    parser.add_argument("--fit", type=int, help="labelled frames (brt: 50 from train, mall: 20)")
    parser.add_argument(
        "--data", default=os.environ.get("LOBBYWATCH_DATA", str(REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--metric", choices=["mae", "mape"], default="mae")
    args = parser.parse_args()
    records = {r["frame"]: r for r in map(json.loads, Path(args.counts).read_text().splitlines())}
    fit_n = args.fit or (50 if args.scene == "brt" else 20)
    fit, test, truth = split(args.scene, Path(args.data), len(records), fit_n)
    detected = {i: records[i]["zones"][args.zone] for i in records}
    x, y = [detected[i] for i in fit], [truth[i] for i in fit]
    chosen = fit_zone(x, y, metric=args.metric)
    rows = [
        ("none", ZoneCalibration(model="none")),
        ("old fit", old_fit(x, y)),
        ("new: " + chosen.model, chosen),
    ]
    print(
        f"{args.scene}: fit on {len(fit)} frames, evaluated on {len(test)} others, by {args.metric}"
    )
    print(f"  chosen: {chosen.reason}")
    print("  candidates (CV MAE): " + ", ".join(f"{m} {v:.2f}" for m, v in chosen.candidates))
    if chosen.cv_mae_ci and chosen.cv_mape_ci:
        print(
            f"  expected (CV): MAE {chosen.cv_mae:.2f} [{chosen.cv_mae_ci[0]:.2f}, {chosen.cv_mae_ci[1]:.2f}],"
            f" MAPE {chosen.cv_mape:.1f}% [{chosen.cv_mape_ci[0]:.1f}, {chosen.cv_mape_ci[1]:.1f}]"
        )
    print("  | correction | scale | offset | test MAE | bias | MAPE |")
    for name, cal in rows:
        m = metrics([cal.apply(detected[i]) for i in test], [truth[i] for i in test])
        print(
            f"  | {name} | {cal.scale:.3f} | {cal.offset:+.2f} | {m['mae']:.2f} | {m['bias']:+.2f} | {m['mape_pct']:.1f}% |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
