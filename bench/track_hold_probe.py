#!/usr/bin/env python3
"""Probe: would holding people through one missed detection help the count? (issue #5)

Offline, over the boxes a `lobbywatch count` run wrote (JSON lines with `boxes`): people are
associated frame to frame by the distance between their feet (Hungarian, scipy), measured in
box heights, and a person not found in a frame is still counted for `hold` more frames. Prints
MAE and bias of the resulting per-frame count against the Mall head annotations. A probe to
choose a tracker's settings before building one into the pipeline, not a product feature.

    python bench/track_hold_probe.py COUNT.jsonl [--zone floor] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

REPO = Path(__file__).resolve().parents[1]


def feet(boxes: np.ndarray) -> np.ndarray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)


def held_counts(records: list[dict], zone: str, hold: int, gate: float) -> list[int]:
    tracks: list[tuple[np.ndarray, int]] = []  # (box, frames missed)
    counts = []
    for rec in records:
        boxes = np.array([b[:4] for b in rec["boxes"] if b[5] == zone], dtype=float).reshape(-1, 4)
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        if tracks and len(boxes):
            previous = np.array([t[0] for t in tracks])
            heights = (previous[:, 3] - previous[:, 1])[:, None]
            dist = np.linalg.norm(feet(previous)[:, None] - feet(boxes)[None], axis=2) / heights
            for i, j in zip(*linear_sum_assignment(dist), strict=True):
                if dist[i, j] <= gate:
                    tracks[i] = (boxes[j], 0)
                    matched_t.add(i)
                    matched_d.add(j)
        kept = [t if i in matched_t else (t[0], t[1] + 1) for i, t in enumerate(tracks)]
        tracks = [t for t in kept if t[1] <= hold]
        tracks += [(boxes[j], 0) for j in range(len(boxes)) if j not in matched_d]
        counts.append(len(tracks))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("counts", type=Path)
    parser.add_argument("--zone", default="floor")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    heads = json.loads((args.data / "mall" / "gt_heads.json").read_text())
    names = sorted(heads)
    records = [json.loads(line) for line in args.counts.read_text().splitlines()]
    truth = np.array([heads[names[r["frame"]]]["count"] for r in records])
    for hold in (0, 1, 2):
        for gate in (0.3, 0.6, 1.0):
            errors = np.array(held_counts(records, args.zone, hold, gate)) - truth
            print(
                f"hold {hold} gate {gate:.1f} box heights: MAE {np.abs(errors).mean():.2f} bias {errors.mean():+.2f}"
            )


if __name__ == "__main__":
    main()
