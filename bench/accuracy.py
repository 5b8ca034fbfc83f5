"""Count-error metrics, head matching and `--set` overrides shared by the accuracy benchmarks.

bench/mall_accuracy.py (the Mall through `lobbywatch count`) and bench/scenes.py (several scenes
in process) report the same numbers the same way; keeping them here makes one definition of
MAE, bias, MAPE and of a matched head.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any


def load_heads(path: Path) -> dict[str, tuple[int, list[list[float]]]]:
    """A dataset's gt_heads.json: file name -> (people, head points in source pixels)."""
    heads = json.loads(path.read_text())
    return {name: (int(v["count"]), v["heads_xy"]) for name, v in sorted(heads.items())}


def match_heads(boxes: list[list[float]], heads: list[list[float]]) -> int:
    """How many annotated heads are matched one-to-one to a predicted person box.

    A head matches a box when it lies inside the box's upper half (with 15% slack around it);
    the assignment minimises the distance from each head to where the box's head would be.
    """
    return len(matched_boxes(boxes, heads))


def matched_boxes(boxes: list[list[float]], heads: list[list[float]]) -> list[int]:
    """Indices of the boxes that `match_heads` matches to a head, ascending (each box is a true
    person or not: what a calibration of box scores learns from)."""
    from scipy.optimize import linear_sum_assignment

    if not boxes or not heads:
        return []
    big = 1e6
    cost = [[big] * len(boxes) for _ in heads]
    for i, (hx, hy) in enumerate(heads):
        for j, (x1, y1, x2, y2) in enumerate(boxes):
            w, h = x2 - x1, y2 - y1
            if x1 - 0.15 * w <= hx <= x2 + 0.15 * w and y1 - 0.15 * h <= hy <= y1 + 0.5 * h:
                cost[i][j] = ((hx - (x1 + x2) / 2) / w) ** 2 + ((hy - (y1 + 0.12 * h)) / h) ** 2
    rows, cols = linear_sum_assignment(cost)
    return sorted(int(c) for r, c in zip(rows, cols, strict=True) if cost[r][c] < big)


def detection_quality(lines: list[dict[str, Any]], heads: Any, zone: str) -> dict[str, float]:
    """Precision and recall of matched heads over `lines` (records of `lobbywatch count`).

    heads[rec["frame"]] holds the annotated head points of that record's frame (a list indexed by
    frame, or a dict keyed by it). Only boxes counted in `zone` take part.
    """
    predicted = matched = annotated = 0
    for rec in lines:
        boxes = [b[:4] for b in rec["boxes"] if b[5] == zone]
        predicted += len(boxes)
        annotated += len(heads[rec["frame"]])
        matched += match_heads(boxes, heads[rec["frame"]])
    return {
        "precision": matched / predicted if predicted else 0.0,
        "recall": matched / annotated if annotated else 0.0,
    }


def metrics(pred: list[float], truth: list[int]) -> dict[str, float]:
    """Per-frame count error in people: MAE, bias (mean predicted - true: negative = undercount),
    MAPE in percent (frames with no one count as 0 error there) and RMSE."""
    errors = [p - t for p, t in zip(pred, truth, strict=True)]
    n = len(errors)
    return {
        "frames": n,
        "mae": sum(abs(e) for e in errors) / n,
        "bias": sum(errors) / n,
        "mape_pct": 100 * sum(abs(e) / t for e, t in zip(errors, truth, strict=True) if t) / n,
        "rmse": math.sqrt(sum(e * e for e in errors) / n),
    }


def set_overrides(sets: list[str]) -> dict[str, str]:
    """`--set section.key=value` items as the config's environment overrides
    (LOBBYWATCH_SECTION__KEY=value), so a benchmark tries a setting exactly as a site would."""
    env = {}
    for item in sets:
        key, _, value = item.partition("=")
        env["LOBBYWATCH_" + key.upper().replace(".", "__")] = value
    return env


def add_scene_arguments(parser: argparse.ArgumentParser, repo: Path) -> None:
    """The options every accuracy benchmark takes: config overrides and the data directory."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override, e.g. detector.confidence=0.2 (repeatable)",
    )
    parser.add_argument(
        "--data", default=os.environ.get("LOBBYWATCH_DATA", str(repo.parent / "shared" / "data"))
    )
