#!/usr/bin/env python3
"""Tracks and dwell on the Mall frames (issue #13): id switches, track lengths, cost per frame.

Offline, over the boxes a `lobbywatch count` run wrote (JSON lines with `boxes`, e.g. from
`bench/mall_accuracy.py --out`), at the Mall's 2 Hz or every Nth frame. The Mall has no
identities, so a reference is made from its annotated head points: heads linked frame to frame
(Hungarian on distance, gated at 0.6 of the local person height, fitted from the boxes matched
to heads) into head tracks. Each frame's boxes are matched to heads (the head-in-upper-half rule
of bench/accuracy.py, kept only where a head is in one box and a box holds one head), and along
a head track every change of the tracker id it is matched to is an id switch; "still" and
"moving" split them by whether the head moved under 0.1 person heights since the last frame.
"held by one id": of a head track's matched head-frames, the share its most frequent tracker id
has (IDF1-like: no id, or a new id each frame, scores low). Switches per person-minute: switches / minutes of head tracks that had an id.
The head linker errs too (in the dense middle of the floor), so this is an estimate, the same
for every tracker compared.

Trackers: the product's FootTracker (edge/tracking/tracks.py) as configured and without its
velocity; with --bytetrack also supervision's ByteTrack (IoU), in an environment that has
supervision (not the product's: it is not a dependency):

    python bench/track_dwell.py COUNT.jsonl [--every 2] [--strict] [--gate 1.0] [--lost 10] [--bytetrack]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

REPO = Path(__file__).resolve().parents[1]

import sys  # noqa: E402

sys.path.insert(0, str(REPO))

from edge.tracking.dwell import DwellBook, DwellSettings  # noqa: E402
from edge.tracking.tracks import FootTracker, TrackerSettings  # noqa: E402

Ids = Callable[[np.ndarray, float], list[int | None]]
LINK = 0.6  # person heights a head may move between frames and stay one head track
STILL = 0.1  # person heights between frames under which a head counts as still (seated, waiting)


def head_pairs(boxes: np.ndarray, heads: np.ndarray) -> dict[int, int]:
    """Head index -> box index, one to one, by bench/accuracy.py's matching rule, where plain."""
    if not len(boxes) or not len(heads):
        return {}
    x1, y1, x2, y2 = (boxes[:, k][None] for k in range(4))
    w, h = x2 - x1, y2 - y1
    hx, hy = heads[:, :1], heads[:, 1:2]
    inside = (
        (x1 - 0.15 * w <= hx) & (hx <= x2 + 0.15 * w) & (y1 - 0.15 * h <= hy) & (hy <= y1 + 0.5 * h)
    )
    cost = ((hx - (x1 + x2) / 2) / w) ** 2 + ((hy - (y1 + 0.12 * h)) / h) ** 2
    cost = np.where(inside, cost, 1e6)
    rows, cols = linear_sum_assignment(cost)
    # Only heads inside one box's upper half, and boxes holding one head: where boxes overlap,
    # the match flips between neighbours from frame to frame, which is no fault of a tracker.
    plain = (inside.sum(axis=1)[:, None] == 1) & (inside.sum(axis=0)[None] == 1)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if plain[r, c]}


def height_at(frames: list[np.ndarray], heads: list[np.ndarray]) -> Callable[[np.ndarray], Any]:
    """Person height in pixels as a linear function of the head's row, fitted on matched pairs."""
    ys, hs = [], []
    for boxes, hd in zip(frames, heads, strict=True):
        for i, j in head_pairs(boxes, hd).items():
            ys.append(hd[i, 1])
            hs.append(boxes[j, 3] - boxes[j, 1])
    a, b = np.polyfit(ys, hs, 1)
    return lambda y: np.maximum(a * y + b, 10.0)


def head_tracks(
    heads: list[np.ndarray], height: Callable[[np.ndarray], Any], ratio: float = 0.0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame, the head track of each head, and how far it moved since the last frame (in
    person heights; nan for a track's first head). Heads are linked to the previous frame by
    Hungarian assignment within LINK person heights; with `ratio`, only where the next nearest
    head on either side is `ratio` times as far. The Mall's heads are clicked afresh in each
    frame, and in its crowd the plain linker joins neighbours (switches it counts are partly its
    own) while the ratio test leaves head tracks of two frames (too short to see many): the two
    bound the tracker's switch rate from above and below."""
    labels: list[np.ndarray] = []
    moved: list[np.ndarray] = []
    next_label = 0
    for k, hd in enumerate(heads):
        label = np.full(len(hd), -1)
        step = np.full(len(hd), np.nan)
        if k and len(hd) and len(heads[k - 1]):
            prev = heads[k - 1]
            d = np.linalg.norm(prev[:, None] - hd[None], axis=2) / height(prev[:, 1])[:, None]
            rows, cols = linear_sum_assignment(np.where(d <= LINK, d, 1e6))
            for r, c in zip(rows, cols, strict=True):
                rest = np.concatenate([np.delete(d[r], c), np.delete(d[:, c], r), [np.inf]])
                if d[r, c] <= LINK and rest.min() >= ratio * d[r, c]:
                    label[c] = labels[-1][r]
                    step[c] = d[r, c]
        for c in np.flatnonzero(label < 0):
            label[c] = next_label
            next_label += 1
        labels.append(label)
        moved.append(step)
    return labels, moved


def foot(settings: TrackerSettings) -> Ids:
    tracker = FootTracker(settings)
    return lambda boxes, now: list(tracker.update(boxes.astype(np.float32), now).ids)


def bytetrack(fps: float, lost_s: float) -> Ids:
    import supervision as sv

    tracker = sv.ByteTrack(
        track_activation_threshold=0.15,
        lost_track_buffer=round(lost_s * fps),
        frame_rate=round(fps),
        minimum_consecutive_frames=2,
    )

    def ids(boxes: np.ndarray, now: float) -> list[int | None]:
        n = len(boxes)
        found = tracker.update_with_detections(
            sv.Detections(
                xyxy=boxes.astype(np.float32), confidence=np.full(n, 0.9), class_id=np.zeros(n, int)
            )
        )
        out: list[int | None] = [None] * n
        for box, tid in zip(found.xyxy, found.tracker_id, strict=True):
            j = int(np.argmin(np.abs(boxes - box).sum(axis=1)))
            out[j] = int(tid)
        return out

    return ids


def evaluate(
    ids_of: Ids,
    frames: list[np.ndarray],
    heads: list[np.ndarray],
    labels: list[np.ndarray],
    moved: list[np.ndarray],
    dt: float,
) -> dict[str, float]:
    last_id: dict[int, int] = {}  # head track -> tracker id last matched
    switches = {True: 0, False: 0}  # still (moved < STILL heights since the last frame) or not
    with_id = {True: 0, False: 0}  # head-frames with a tracker id
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    cost = []
    book = DwellBook(["floor"], settings=DwellSettings(window_s=1e9))  # keep every visit
    held: dict[int, Counter[int | None]] = {}  # head track -> tracker ids its heads had
    for k, (boxes, hd) in enumerate(zip(frames, heads, strict=True)):
        now = k * dt
        started = time.perf_counter()
        ids = ids_of(boxes, now)
        book.update(tracked_ids_of(ids), now)
        cost.append(time.perf_counter() - started)
        for i in ids:
            if i is not None:
                first.setdefault(i, now)
                last[i] = now
        for h, j in head_pairs(boxes, hd).items():
            tid = ids[j]
            held.setdefault(int(labels[k][h]), Counter())[tid] += 1
            if tid is None:
                continue
            still = bool(moved[k][h] < STILL)  # a track's first head (nan) counts as moving
            with_id[still] += 1
            label = int(labels[k][h])
            if label in last_id and last_id[label] != tid:
                switches[still] += 1
            last_id[label] = tid
    book.update({}, len(frames) * dt + 3600)  # every visit ends
    lengths = np.array([last[i] - first[i] for i in first])
    dwell = np.array([v.dwell_s for v in book.finished("floor")])
    minutes = {still: n * dt / 60 for still, n in with_id.items()}
    # Of the head-frames of each head track, those that had its most frequent id (IDF1-like:
    # a tracker that gives no id, or a new id each frame, scores low; one id throughout, 1).
    one_id = sum(max((n for t, n in c.items() if t is not None), default=0) for c in held.values())
    return {
        "switches / person-min": sum(switches.values()) / sum(minutes.values()),
        "still": switches[True] / minutes[True],
        "moving": switches[False] / minutes[False],
        "held by one id": one_id / sum(sum(c.values()) for c in held.values()),
        "tracks": float(len(lengths)),
        "track p50 s": float(np.percentile(lengths, 50)),
        "track p90 s": float(np.percentile(lengths, 90)),
        "heads with id": sum(with_id.values()) / sum(len(h) for h in heads),
        "visit p50 s": float(np.percentile(dwell, 50)),
        "visit p90 s": float(np.percentile(dwell, 90)),
        "ms / frame": 1000 * float(np.mean(cost)),
        "ms p99": 1000 * float(np.percentile(cost, 99)),
    }


def tracked_ids_of(ids: list[int | None]) -> dict[int, str | None]:
    return {i: "floor" for i in ids if i is not None}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("counts", type=Path)
    parser.add_argument("--zone", default="floor")
    parser.add_argument("--every", type=int, default=1, help="every Nth frame (2 Hz / N)")
    parser.add_argument("--bytetrack", action="store_true")
    parser.add_argument("--gate", type=float, default=TrackerSettings().gate)
    parser.add_argument("--lost", type=float, default=TrackerSettings().lost_s, help="lost_s")
    parser.add_argument(
        "--strict", action="store_true", help="link heads only where plain (ratio test 2.0)"
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    truth = json.loads((args.data / "mall" / "gt_heads.json").read_text())
    names = sorted(truth)
    records = [json.loads(line) for line in args.counts.read_text().splitlines()]
    records = records[:: args.every]
    frames = [
        np.array([b[:4] for b in r["boxes"] if b[5] == args.zone], float).reshape(-1, 4)
        for r in records
    ]
    heads = [np.array(truth[names[r["frame"]]]["heads_xy"], float).reshape(-1, 2) for r in records]
    labels, moved = head_tracks(heads, height_at(frames, heads), 2.0 if args.strict else 0.0)
    dt = args.every / 2.0
    shipped = TrackerSettings(gate=args.gate, lost_s=args.lost)
    trackers: dict[str, Ids] = {
        f"FootTracker (gate {args.gate:g}, lost_s {args.lost:g})": foot(shipped),
        "same, no velocity": foot(replace(shipped, predict_s=0.0)),
    }
    if args.bytetrack:
        trackers["supervision ByteTrack (IoU)"] = bytetrack(1 / dt, args.lost)
    rows = {name: evaluate(ids, frames, heads, labels, moved, dt) for name, ids in trackers.items()}
    header = list(next(iter(rows.values())))
    print(
        f"{len(frames)} frames at {1 / dt:g} Hz, {len({int(x) for lb in labels for x in lb})} head tracks"
    )
    print("| tracker | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    for name, row in rows.items():
        cells = [f"{v:.0f}" if k == "tracks" else f"{v:.2f}" for k, v in row.items()]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
