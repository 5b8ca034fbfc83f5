#!/usr/bin/env python3
"""Probe: where does the count of a dense overhead queue go wrong? (issue #11, item 2)

On the Beijing BRT stills (360x640 portrait, people shoulder to shoulder under a steep camera)
the detector undercounts, most where the queue is densest. This probe takes it apart offline
to see which part loses the people, and what each lever (window shapes, a third model, soft
counting, NMS) can win back:

  a. head recall / precision of each model and window layout, on the BRT train split (every 3rd
     frame), at candidate scores 0.02, 0.1 and 0.3: does a model find the heads at all?
  b. per-frame count MAE / bias / MAPE of fused combinations on the BRT train split at fused
     thresholds 0.1-0.2, the model passes each spends, the Mall beside it, and the bias per
     crowd size;
  c. soft counting: the expected count as the sum of calibrated box probabilities (one
     probability per score bin, monotone), fitted on one scene and applied to another, beside
     the hard-threshold counts; and two fits on the BRT train split itself (a logistic model with
     a crowd feature, a count regression on score histograms) that bound what any calibration
     of these boxes can reach on the test split;
  d. the default's NMS IoU 0.45 against 0.65, and its window stitching on and off.

Running the models is the slow part, so it is done once: every pass (the whole frame, or one
grid of windows) of every model is run with the product's own detectors (`detect_once` on each
window, as `detect_tiled` calls it) at candidate score 0.02 and kept on disk under --cache, one
file per model, pass layout and NMS IoU (keyed by the model's sha256 too). Everything after that
is the product's code on the cached boxes: `merge_passes` (with `stitch` where no pass sees the
whole frame, as `detect_tiled` does), `fuse`, the combination's layouts from `detector_settings`
/ `fusion_settings` and `fit_grid`, zones from edge/zones.py. A model's NMS keeps a box unless a
higher-scoring box overlaps it, so the boxes >= c among those kept at 0.02 are exactly what the
model keeps at c: the cache replays any candidate threshold from 0.02 up.

Counts are the detector's, in the scene's zone, per frame: no presence hold and none of the
pipeline's scene learning (perspective, text overlays), so the Mall rows are not those of the
Mall benchmark. Data: ../shared/data/brt_cam1 (all 767 stills, the authors' official_split; head
points in gt_heads.json) and every 8th Mall frame (200, floor zone of configs/mall.yaml).

    python bench/crowd_probe.py [--cache /tmp/lobbywatch-crowd-probe] [--threads 2]
    python bench/crowd_probe.py --quick          # 3 frames a set: a smoke run

Prints markdown tables (BENCHMARKS.md, "Dense queues: where the error is"). Delete the cache
after changing a detector's decoding: the key names the model's bytes, not the code.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.accuracy import load_heads, match_heads, matched_boxes, metrics  # noqa: E402
from bench.scenes import MALL_FLOOR  # noqa: E402
from edge.config import DetectorConfig, FusionConfig, FusionModelConfig, TilingConfig  # noqa: E402
from edge.detect import DetectorSettings, create_detector  # noqa: E402
from edge.detect.fusion import fuse  # noqa: E402
from edge.detect.settings import letterboxes  # noqa: E402
from edge.detect.tiling import (  # noqa: E402
    ModelInput,
    Window,
    fit_grid,
    merge_passes,
    tile_windows,
)
from edge.pipeline import detector_settings, fusion_settings  # noqa: E402
from edge.types import Detections, FloatArray  # noqa: E402
from edge.zones import Zone, assign_zones  # noqa: E402
from models.store import resolve_model  # noqa: E402

Image = npt.NDArray[np.uint8]
SceneName = Literal["brt", "mall"]

YOLOX = "yolox_nano"
RETAIL = "person-detection-retail-0013"
PVB = "person-vehicle-bike-detection-2004"
SHORT = {YOLOX: "yolox", RETAIL: "retail", PVB: "pvb"}

FLOOR = 0.02  # the lowest candidate score cached (and the lowest any table uses)
OVERLAP = 0.2  # the tiling's overlap (TilingConfig's default); cached windows assume it
FRAME_SIZE: dict[SceneName, tuple[int, int]] = {"brt": (360, 640), "mall": (640, 480)}
MALL_EVERY = 8
HEADS_EVERY = 3  # table a: every 3rd frame of the BRT train split
CANDIDATE_LEVELS = (0.02, 0.1, 0.3)
THRESHOLDS = (0.1, 0.13, 0.15, 0.2)
CROWD_BINS = ((0, 5), (5, 10), (10, 20), (20, 35), (35, 10**9))
# Score bins of the soft count's calibration (the first edge is FLOOR; the last closes 1.0).
SOFT_EDGES = np.array(
    [0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.01]
)
SOFT_LOWEST = (0.02, 0.04, 0.06, 0.1)
HIST_EDGES = np.array([0.02, 0.05, 0.1, 0.2, 0.4, 1.01])  # the count regression's features
SUBSET = 50  # frames a site might hand-label: the 50-frame fits
CONFIDENT = 0.3  # the logistic model's crowd feature: boxes this sure, per frame


class SinglePass(Protocol):
    """What the probe needs of a product detector: one model call on a whole image."""

    def detect_once(self, image: Image) -> Detections: ...


# --- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Still:
    """One annotated frame. split: BRT's official_split (train/test), "mall" for the Mall."""

    scene: SceneName
    name: str
    path: Path
    truth: int
    heads: tuple[tuple[float, float], ...]
    split: str

    @property
    def key(self) -> str:
        return f"{self.scene}:{self.name}"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return FRAME_SIZE[self.scene]


def load_stills(data: Path, limit: int | None = None) -> dict[str, list[Still]]:
    """The frame sets: brt-train, brt-test, brt-heads (every 3rd train frame), mall (every 8th).

    limit: at most that many frames a set, evenly spread (brt-heads is then brt-train's)."""
    root = data / "brt_cam1"
    heads = load_heads(root / "gt_heads.json")
    with (root / "gt_counts.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    brt = [
        Still("brt", r["frame"], root / "frames" / r["frame"], heads[r["frame"]][0],
              _points(heads[r["frame"]][1]), r["official_split"])
        for r in rows
    ]  # fmt: skip
    mall_heads = load_heads(data / "mall" / "gt_heads.json")
    mall = [
        Still("mall", name, data / "mall" / "frames" / name, count, _points(points), "mall")
        for i, (name, (count, points)) in enumerate(mall_heads.items())
        if i % MALL_EVERY == 0
    ]
    sets = {
        "brt-train": [s for s in brt if s.split == "train"],
        "brt-test": [s for s in brt if s.split == "test"],
        "mall": mall,
    }
    sets = {name: _spread(stills, limit) for name, stills in sets.items()}
    sets["brt-heads"] = sets["brt-train"] if limit else sets["brt-train"][::HEADS_EVERY]
    return sets


def _points(points: list[list[float]]) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in points)


def _spread(stills: list[Still], limit: int | None) -> list[Still]:
    if not limit or limit >= len(stills):
        return stills
    step = len(stills) / limit
    return [stills[int(i * step)] for i in range(limit)]


# --- passes and their cache -------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """One model's passes over a frame: the whole frame, a grid of windows (columns, rows), or
    both. Without a whole-frame pass the windows' pieces are stitched, as detect_tiled does
    (unstitched: not, as before 508b4ba)."""

    full: bool
    grid: tuple[int, int] | None = None
    unstitched: bool = False

    @property
    def parts(self) -> tuple[str, ...]:
        """Cache parts, in detect_tiled's order: the whole frame first, then the windows."""
        whole = ("full",) if self.full else ()
        grid = () if self.grid is None else (f"{self.grid[0]}x{self.grid[1]}",)
        return whole + grid

    @property
    def name(self) -> str:
        return "+".join(self.parts) + (", not stitched" if self.unstitched else "")

    @property
    def passes(self) -> int:
        return int(self.full) + (0 if self.grid is None else self.grid[0] * self.grid[1])

    @property
    def stitch(self) -> bool:
        return not self.full and not self.unstitched


def part_windows(part: str, size: tuple[int, int]) -> list[Window]:
    """The windows of a cache part ("full" or "CxR") on a frame of (width, height) pixels."""
    width, height = size
    if part == "full":
        return [Window(0, 0, width, height)]
    columns, rows = (int(n) for n in part.split("x"))
    return tile_windows(width, height, (columns, rows), OVERLAP)


def layout_of(settings: DetectorSettings, size: tuple[int, int]) -> Layout:
    """The passes the product runs for these settings on a frame of `size` (detect_tiled)."""
    tiling = settings.tiling
    if tiling is None:
        return Layout(full=True)
    if tiling.overlap != OVERLAP:
        raise ValueError(f"the cache holds windows of overlap {OVERLAP}, not {tiling.overlap}")
    grid = tiling.grid
    if tiling.fit:
        fitted = ModelInput(settings.input_size, letterboxes(settings.family))
        grid = fit_grid(size, grid, tiling.overlap, fitted)
    if grid == (1, 1):
        return Layout(full=True)
    return Layout(tiling.full_frame, grid)


class CandidateCache:
    """Each model pass's boxes (frame pixels, score >= FLOOR, after the model's own NMS) per
    frame, in one .npz a (model, part, NMS IoU): rows [x1, y1, x2, y2, score, window]."""

    def __init__(self, root: Path, threads: int) -> None:
        self.root = root
        self.threads = threads
        self.timings: list[str] = []
        self._files: dict[Path, dict[str, FloatArray]] = {}
        self._detectors: dict[tuple[str, float], SinglePass] = {}
        self._digests: dict[str, str] = {}

    def path(self, model: str, part: str, nms: float) -> Path:
        if model not in self._digests:  # resolving reads the manifest: once a model
            resolved = resolve_model(model)
            self._digests[model] = resolved.entry.files[0].sha256[:12] if resolved.entry else "file"
        digest = self._digests[model]
        return self.root / f"{model}-{digest}-{part}-nms{nms:.2f}-min{FLOOR:.2f}.npz"

    def ensure(self, model: str, nms: float, parts: Iterable[str], stills: Sequence[Still]) -> None:
        """Run the model on every window of `parts` of the frames the cache lacks, and save."""
        files = {part: self._load(self.path(model, part, nms)) for part in parts}
        todo = [s for s in stills if any(s.key not in rows for rows in files.values())]
        if not todo:
            return
        detector = self._detector(model, nms)
        started, passes = time.perf_counter(), 0
        for still in todo:
            image = read_image(still)
            for part, rows in files.items():
                if still.key in rows:
                    continue
                found = []
                for k, w in enumerate(part_windows(part, still.size)):
                    got = detector.detect_once(image[w.y0 : w.y1, w.x0 : w.x1])
                    shift = np.array([w.x0, w.y0, w.x0, w.y0], dtype=np.float32)
                    found.append(np.column_stack([got.xyxy + shift, got.confidence,
                                                  np.full(len(got), k)]))  # fmt: skip
                    passes += 1
                rows[still.key] = np.concatenate(found).astype(np.float32).reshape(-1, 6)
        seconds = time.perf_counter() - started
        line = (f"{model} {'+'.join(files)} nms {nms:.2f}: {len(todo)} frames, {passes} passes, "
                f"{seconds:.0f} s ({1000 * seconds / max(passes, 1):.1f} ms a pass)")  # fmt: skip
        self.timings.append(line)
        print("cached " + line, file=sys.stderr, flush=True)
        for part in files:
            self._save(self.path(model, part, nms))

    def passes(
        self, model: str, part: str, nms: float, still: Still
    ) -> list[tuple[Window, Detections]]:
        """The part's passes on `still`, in frame pixels, one per window (empty ones too)."""
        rows = self._load(self.path(model, part, nms))[still.key]
        return [
            (w, _detections(rows[rows[:, 5] == k]))
            for k, w in enumerate(part_windows(part, still.size))
        ]

    def _detector(self, model: str, nms: float) -> SinglePass:
        if (model, nms) not in self._detectors:
            config = DetectorConfig(
                model=model,
                confidence=FLOOR,
                nms_iou=nms,
                threads=self.threads,
                provider="cpu",
                tiling=TilingConfig(enabled=False),
                fusion=FusionConfig(models=[]),
            )
            self._detectors[(model, nms)] = cast(
                SinglePass, create_detector(detector_settings(config))
            )
        return self._detectors[(model, nms)]

    def _load(self, path: Path) -> dict[str, FloatArray]:
        if path not in self._files:
            rows: dict[str, FloatArray] = {}
            if path.is_file():
                with np.load(path, allow_pickle=False) as npz:
                    rows = {k: npz[k] for k in npz.files}
            self._files[path] = rows
        return self._files[path]

    def _save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as f:
            np.savez(f, **cast(dict[str, Any], self._files[path]))
        os.replace(partial, path)


def read_image(still: Still) -> Image:
    decoded = cv2.imread(str(still.path), cv2.IMREAD_COLOR)
    if decoded is None:
        raise SystemExit(f"cannot read {still.path}")
    if (decoded.shape[1], decoded.shape[0]) != still.size:
        raise SystemExit(f"{still.path}: {decoded.shape[1]}x{decoded.shape[0]}, not {still.size}")
    return np.asarray(decoded, dtype=np.uint8)


def _detections(rows: FloatArray) -> Detections:
    return Detections(
        xyxy=np.ascontiguousarray(rows[:, :4], dtype=np.float32),
        confidence=np.ascontiguousarray(rows[:, 4], dtype=np.float32),
        class_id=np.zeros(len(rows), dtype=np.int32),
    )


# --- replaying the product's merge and fusion -------------------------------------------------


@dataclass(frozen=True, eq=False)
class Combo:
    """A detector section and the runtime settings the product makes of it (main model first)."""

    name: str
    config: DetectorConfig
    members: tuple[tuple[str, DetectorSettings], ...]

    def layouts(self, size: tuple[int, int]) -> list[tuple[str, Layout]]:
        return [(model, layout_of(s, size)) for model, s in self.members]

    def describe(self, size: tuple[int, int]) -> str:
        return " · ".join(f"{SHORT.get(m, m)} {lay.name}" for m, lay in self.layouts(size))

    def passes(self, size: tuple[int, int]) -> int:
        return sum(lay.passes for _, lay in self.layouts(size))


def combo(name: str, config: DetectorConfig) -> Combo:
    models = [config.model, *(m.model for m in config.fusion.models)]
    settings = [detector_settings(config), *fusion_settings(config)]
    return Combo(name, config, tuple(zip(models, settings, strict=True)))


def prepare(cache: CandidateCache, combos: Iterable[Combo], stills: Sequence[Still]) -> None:
    """Cache what the combinations need on `stills`."""
    for c in combos:
        for model, settings in c.members:
            for scene in FRAME_SIZE:
                mine = [s for s in stills if s.scene == scene]
                if mine:
                    parts = layout_of(settings, FRAME_SIZE[scene]).parts
                    cache.ensure(model, settings.nms_iou, parts, mine)


def member_boxes(
    cache: CandidateCache,
    model: str,
    layout: Layout,
    nms: float,
    still: Still,
    candidates: float,
    merge_nms: float | None = None,
    stitch: bool | None = None,
) -> Detections:
    """One model's boxes >= candidates on `still`, its passes merged as detect_tiled does.

    nms: the model's own NMS IoU (the cache file); merge_nms / stitch: the merge's, when not
    the product's (the same IoU; stitching where no pass sees the whole frame)."""
    passes = [p for part in layout.parts for p in cache.passes(model, part, nms, still)]
    kept = [(w, d[np.flatnonzero(d.confidence >= candidates)]) for w, d in passes]
    if len(kept) == 1:  # one pass: the model's own output, unmerged
        return kept[0][1]
    return merge_passes(
        kept,
        still.size,
        nms if merge_nms is None else merge_nms,
        stitch=layout.stitch if stitch is None else stitch,
    )


def fused_boxes(
    cache: CandidateCache,
    c: Combo,
    still: Still,
    candidates: float | None = None,
    merge_nms: float | None = None,
    stitch: bool | None = None,
) -> Detections:
    """The combination's boxes on `still` before its threshold, in the scene's zone.

    candidates: each model's lowest score (default: the config's fusion.candidate_confidence)."""
    floor = c.config.fusion.candidate_confidence if candidates is None else candidates
    found = [
        member_boxes(cache, model, layout_of(s, still.size), s.nms_iou, still, floor, merge_nms,
                     stitch)
        for model, s in c.members
    ]  # fmt: skip
    boxes = fuse(found, c.config.fusion.iou) if len(found) > 1 else found[0]
    return in_zone(boxes, still)


MALL_ZONE = Zone("floor", tuple((float(x), float(y)) for x, y in MALL_FLOOR))


def in_zone(found: Detections, still: Still) -> Detections:
    """The boxes standing in the scene's zone (the Mall's floor; BRT: the whole frame)."""
    if still.scene == "brt" or len(found) == 0:
        return found
    width, height = still.size
    assigned = assign_zones(found.anchors(width, height), [MALL_ZONE])
    return found[np.asarray([a is not None for a in assigned], dtype=bool)]


# --- the combinations ------------------------------------------------------------------------


def _fusion(*members: FusionModelConfig) -> FusionConfig:
    return FusionConfig(models=list(members))


def combos() -> list[Combo]:
    """Detector sections compared in table b (the shipped default and the one before fitting
    first). Their layouts follow from the settings and each frame's size, as on a device."""
    unfitted = TilingConfig(enabled=False, fit=False)
    retail, pvb = FusionModelConfig(model=RETAIL), FusionModelConfig(model=PVB)
    return [
        combo("before fitting (508b4ba^ default)", DetectorConfig(
            tiling=TilingConfig(fit=False),
            fusion=_fusion(FusionModelConfig(model=RETAIL, tiling=unfitted)))),
        combo("**fitted default (shipped)**", DetectorConfig()),
        combo("fitted default + pvb", DetectorConfig(fusion=_fusion(retail, pvb))),
        combo("yolox 2x2 unfitted + retail fitted", DetectorConfig(tiling=TilingConfig(fit=False))),
        combo("yolox full + retail", DetectorConfig(tiling=TilingConfig(enabled=False))),
        combo("yolox full + retail + pvb", DetectorConfig(
            tiling=TilingConfig(enabled=False), fusion=_fusion(retail, pvb))),
        combo("yolox + retail full+1x3", DetectorConfig(fusion=_fusion(FusionModelConfig(
            model=RETAIL, tiling=TilingConfig(grid=(1, 3), full_frame=True))))),
        combo("yolox + pvb", DetectorConfig(fusion=_fusion(pvb))),
        combo("retail + pvb", DetectorConfig(
            model=RETAIL, tiling=TilingConfig(enabled=False), fusion=_fusion(pvb))),
    ]  # fmt: skip


def default_combo(nms_iou: float | None = None) -> Combo:
    """The shipped detector section, or it with another NMS IoU."""
    config = DetectorConfig() if nms_iou is None else DetectorConfig(nms_iou=nms_iou)
    return combo("default", config)


# --- tables ----------------------------------------------------------------------------------


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def error(pred: Sequence[float], truth: Sequence[int]) -> str:
    m = metrics(list(pred), list(truth))
    return f"{m['mae']:.2f} / {m['bias']:+.2f} / {m['mape_pct']:.1f}%"


HEAD_LAYOUTS = {
    YOLOX: [Layout(True), Layout(True, (1, 2)), Layout(True, (2, 2)), Layout(True, (2, 3)),
            Layout(True, (3, 3))],
    RETAIL: [Layout(True), Layout(False, (1, 2)), Layout(False, (1, 3)),
             Layout(False, (1, 3), unstitched=True), Layout(True, (1, 3)), Layout(False, (2, 3))],
    PVB: [Layout(True), Layout(False, (1, 2)), Layout(False, (1, 3)),
          Layout(False, (1, 3), unstitched=True), Layout(True, (1, 3))],
}  # fmt: skip


def heads_table(cache: CandidateCache, stills: list[Still]) -> str:
    """a. Head recall / precision per model and layout at each candidate score."""
    nms = DetectorConfig().nms_iou
    # What the shipped settings give each model on BRT (pvb as a fusion member).
    members = _fusion(FusionModelConfig(model=RETAIL), FusionModelConfig(model=PVB))
    fitted = dict(combo("", DetectorConfig(fusion=members)).layouts(FRAME_SIZE["brt"]))
    rows = []
    for model, layouts in HEAD_LAYOUTS.items():
        cache.ensure(model, nms, sorted({p for lay in layouts for p in lay.parts}), stills)
        for layout in layouts:
            cells = [SHORT[model], layout.name + (" (fitted)" if fitted[model] == layout else ""),
                     str(layout.passes)]  # fmt: skip
            for level in CANDIDATE_LEVELS:
                matched = annotated = predicted = 0
                for s in stills:
                    boxes = member_boxes(cache, model, layout, nms, s, level).xyxy.tolist()
                    matched += match_heads(boxes, [list(h) for h in s.heads])
                    annotated += len(s.heads)
                    predicted += len(boxes)
                recall, precision = matched / max(annotated, 1), matched / max(predicted, 1)
                cells += [f"{recall:.2f}", f"{precision:.2f}", f"{predicted / len(stills):.1f}"]
            rows.append(cells)
    header = ["model", "layout", "passes"]
    for level in CANDIDATE_LEVELS:
        header += [f"recall @{level:g}", f"precision @{level:g}", f"boxes/frame @{level:g}"]
    return markdown(header, rows)


def counts_tables(cache: CandidateCache, sets: dict[str, list[Still]]) -> tuple[str, str]:
    """b. Fused counts per combination and threshold on BRT train (+ the Mall), and the bias
    per crowd bin at the shipped threshold."""
    train, mall = sets["brt-train"], sets["mall"]
    shipped = DetectorConfig().confidence
    rows, bins = [], []
    truth = [s.truth for s in train]
    groups = [[i for i, t in enumerate(truth) if lo <= t < hi] for lo, hi in CROWD_BINS]
    for c in combos():
        prepare(cache, [c], train + mall)
        scores = [fused_boxes(cache, c, s).confidence for s in train]
        mall_scores = [fused_boxes(cache, c, s).confidence for s in mall]
        cells = [c.name, f"{c.describe(FRAME_SIZE['brt'])} ({c.passes(FRAME_SIZE['brt'])})"]
        for t in THRESHOLDS:
            cells.append(error([float((x >= t).sum()) for x in scores], truth))
        mall_counts = [float((x >= shipped).sum()) for x in mall_scores]
        on_mall = f"{c.describe(FRAME_SIZE['mall'])} ({c.passes(FRAME_SIZE['mall'])})"
        cells += [error(mall_counts, [s.truth for s in mall]), on_mall]
        rows.append(cells)
        counts = np.array([(x >= shipped).sum() for x in scores], dtype=float)
        errors = counts - np.asarray(truth)
        bins.append([c.name, *(f"{errors[g].mean():+.1f}" if g else "—" for g in groups)])
    header = ["combination", "BRT layouts (passes/frame)",
              *(f"BRT train @{t:g}: MAE / bias / MAPE" for t in THRESHOLDS),
              f"Mall @{shipped:g}", "Mall layouts (passes/frame)"]  # fmt: skip
    bin_header = ["combination"] + [
        (f"<{hi}" if lo == 0 else f"{lo}-{hi - 1}" if hi < 10**9 else f"{lo}+") + f" ({len(g)})"
        for (lo, hi), g in zip(CROWD_BINS, groups, strict=True)
    ]
    return markdown(header, rows), markdown(bin_header, bins)


@dataclass(frozen=True)
class Scored:
    """A frame's fused boxes in the zone: scores, whether each matches a head, the truth."""

    scores: FloatArray
    person: npt.NDArray[np.bool_]
    truth: int


def score_frames(cache: CandidateCache, c: Combo, stills: list[Still]) -> list[Scored]:
    out = []
    for s in stills:
        found = fused_boxes(cache, c, s, candidates=FLOOR)
        found = found[np.flatnonzero(found.confidence >= FLOOR)]
        person = np.zeros(len(found), dtype=bool)
        person[matched_boxes(found.xyxy.tolist(), [list(h) for h in s.heads])] = True
        out.append(Scored(found.confidence, person, s.truth))
    return out


def fit_bins(frames: list[Scored]) -> FloatArray:
    """P(person) per SOFT_EDGES bin: the share of matched boxes, made monotone in the score by
    pooling adjacent violators weighted by the bins' box counts (isotonic regression)."""
    scores = np.concatenate([f.scores for f in frames])
    person = np.concatenate([f.person for f in frames])
    index = np.digitize(scores, SOFT_EDGES) - 1
    n = np.bincount(index, minlength=len(SOFT_EDGES) - 1)[: len(SOFT_EDGES) - 1].astype(float)
    hits = np.bincount(index, weights=person, minlength=len(SOFT_EDGES) - 1)[: len(SOFT_EDGES) - 1]
    blocks: list[list[float]] = []  # [sum of hits, sum of boxes, bins]
    for h, w in zip(hits, n, strict=True):
        blocks.append([h, w, 1])
        while len(blocks) > 1 and _mean(blocks[-2]) > _mean(blocks[-1]):
            h2, w2, k2 = blocks.pop()
            blocks[-1] = [blocks[-1][0] + h2, blocks[-1][1] + w2, blocks[-1][2] + k2]
    p = np.repeat([_mean(b) for b in blocks], [int(b[2]) for b in blocks])
    # Leading empty bins take the first fitted value (a frame set without such low scores).
    seen = p[p >= 0]
    return np.where(p >= 0, p, seen[0] if len(seen) else 0.0)


def _mean(block: list[float]) -> float:
    # An empty bin (no box scored there) pools with the bins before it: their value, in order.
    return block[0] / block[1] if block[1] else -1.0


def soft_count(frame: Scored, probability: FloatArray, lowest: float) -> float:
    s = frame.scores[frame.scores >= lowest]
    return float(np.clip(probability[np.digitize(s, SOFT_EDGES) - 1], 0, 1).sum())


def soft_tables(cache: CandidateCache, sets: dict[str, list[Still]]) -> tuple[str, str, str]:
    """c. Soft counts from calibrated bins beside the hard counts; the upper bounds."""
    c = default_combo()
    every = sets["brt-train"] + sets["brt-test"] + sets["mall"]
    prepare(cache, [c], every)
    frames = {
        name: score_frames(cache, c, sets[name]) for name in ("brt-train", "brt-test", "mall")
    }
    truth = {name: [f.truth for f in fs] for name, fs in frames.items()}
    fits = {"Mall": fit_bins(frames["mall"]), "BRT train": fit_bins(frames["brt-train"])}
    rows = []
    for fitted, p in fits.items():
        for lowest in SOFT_LOWEST:
            rows.append([f"soft, bins fitted on {fitted}", f"{lowest:g}",
                         *(error([soft_count(f, p, lowest) for f in frames[n]], truth[n])
                           for n in ("brt-test", "mall"))])  # fmt: skip
    hard = {n: [fused_boxes(cache, c, s).confidence for s in sets[n]] for n in ("brt-test", "mall")}
    for t in (0.1, 0.15, 0.2):
        rows.append([f"hard threshold {t:g} (candidates {c.config.fusion.candidate_confidence:g})",
                     "—", *(error([float((x >= t).sum()) for x in hard[n]], truth[n])
                            for n in ("brt-test", "mall"))])  # fmt: skip
    soft = markdown(["count", "lowest fused score", "BRT test: MAE / bias / MAPE", "Mall"], rows)
    edges = [f"{e:g}" for e in SOFT_EDGES[:-1]]
    calib = markdown(
        ["P(person) fitted on", *edges],
        [[name, *(f"{v:.2f}" for v in p)] for name, p in fits.items()],
    )
    return soft, calib, bounds_table(frames, truth)


def bounds_table(frames: dict[str, list[Scored]], truth: dict[str, list[int]]) -> str:
    """What fits on BRT itself reach on its test split: the logistic model with a crowd feature
    (fitted on the train split, on 50 of its frames, on the Mall) and the count regression on
    score histograms (50 train frames x 20 draws, all train frames, the test frames themselves)."""
    from scipy.optimize import minimize

    train, test, mall = frames["brt-train"], frames["brt-test"], frames["mall"]
    rng = np.random.default_rng(0)
    some = [train[i] for i in rng.choice(len(train), min(SUBSET, len(train)), replace=False)]

    def features(f: Scored) -> FloatArray:
        crowd = np.log1p((f.scores >= CONFIDENT).sum())
        s = np.clip(f.scores, 1e-3, 1 - 1e-3)
        logit = np.log(s / (1 - s))
        return np.stack([np.ones_like(logit), logit, np.full_like(logit, crowd), logit * crowd], 1)

    def fit_logistic(fs: list[Scored]) -> FloatArray:
        x = np.concatenate([features(f) for f in fs])
        y = np.concatenate([f.person for f in fs]).astype(float)

        def loss(w: FloatArray) -> float:
            z = x @ w
            return float(np.sum(np.logaddexp(0, z) - y * z) + 1e-3 * w @ w)

        return np.asarray(minimize(loss, np.zeros(x.shape[1]), method="L-BFGS-B").x)

    def expected(fs: list[Scored], w: FloatArray) -> list[float]:
        return [float((1 / (1 + np.exp(-(features(f) @ w)))).sum()) for f in fs]

    rows = []
    for name, fs in (("BRT train", train), (f"{len(some)} BRT train frames", some), ("Mall", mall)):
        w = fit_logistic(fs)
        rows.append(["logistic on score + crowd", name, error(expected(test, w), truth["brt-test"]),
                     error(expected(mall, w), truth["mall"])])  # fmt: skip

    def histogram(f: Scored) -> FloatArray:
        return np.histogram(f.scores, HIST_EDGES)[0].astype(float)

    x_test = np.array([histogram(f) for f in test])

    def regress(fs: list[Scored], relative: bool) -> FloatArray:
        # Ridge without an intercept (no boxes, no people), weights 1/count for the relative fit.
        x = np.array([histogram(f) for f in fs])
        y = np.array([f.truth for f in fs], dtype=float)
        weight = 1 / np.maximum(y, 1) if relative else np.ones(len(y))
        a = (x * weight[:, None]).T
        return np.asarray(np.linalg.solve(a @ x + np.eye(x.shape[1]), a @ y))

    draws = np.random.default_rng(1)
    for relative in (False, True):
        kind = "count regression on score histogram" + (
            ", relative" if relative else ", least squares"
        )
        mapes, maes, biases = [], [], []
        for _ in range(20):
            pick = draws.choice(len(train), min(SUBSET, len(train)), replace=False)
            m = metrics(
                list(x_test @ regress([train[i] for i in pick], relative)), truth["brt-test"]
            )
            mapes.append(m["mape_pct"])
            maes.append(m["mae"])
            biases.append(m["bias"])
        rows.append([kind, f"{min(SUBSET, len(train))} BRT train frames, 20 draws (worst MAPE)",
                     f"{np.mean(maes):.2f} / {np.mean(biases):+.2f} / {np.mean(mapes):.1f}% "
                     f"({max(mapes):.1f}%)", "—"])  # fmt: skip
        for name, fs in (("BRT train", train), ("BRT test itself (in sample)", test)):
            pred = x_test @ regress(fs, relative)
            rows.append([kind, name, error(list(pred), truth["brt-test"]), "—"])
    return markdown(["model", "fitted on", "BRT test: MAE / bias / MAPE", "Mall"], rows)


def nms_table(cache: CandidateCache, sets: dict[str, list[Still]]) -> str:
    """d. The default with NMS IoU 0.65 (model and merge, or the model's only), stitching off."""
    stills = sets["brt-train"] + sets["brt-test"]
    wide = default_combo(nms_iou=0.65)
    default = default_combo()
    prepare(cache, [default, wide], stills)
    variants: list[tuple[str, Callable[[Still], Detections]]] = [
        ("**nms_iou 0.45 (shipped)**", lambda s: fused_boxes(cache, default, s)),
        ("model NMS 0.65, merge 0.45", lambda s: fused_boxes(cache, wide, s, merge_nms=0.45)),
        ("nms_iou 0.65 (model and merge)", lambda s: fused_boxes(cache, wide, s)),
        (
            "nms_iou 0.45, windows not stitched",
            lambda s: fused_boxes(cache, default, s, stitch=False),
        ),
    ]
    rows = []
    for name, boxes in variants:
        cells = [name]
        for split in ("brt-train", "brt-test"):
            scores = [boxes(s).confidence for s in sets[split]]
            for t in (0.13, 0.15):
                cells.append(error([float((x >= t).sum()) for x in scores],
                                   [s.truth for s in sets[split]]))  # fmt: skip
        rows.append(cells)
    header = ["default detector", "BRT train @0.13", "BRT train @0.15", "BRT test @0.13",
              "BRT test @0.15"]  # fmt: skip
    return markdown(header, rows)


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default=os.environ.get("LOBBYWATCH_DATA", str(REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/lobbywatch-crowd-probe"),
                        help="where the models' boxes are kept between runs")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="inference threads a model")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N frames a set, evenly spread")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a smoke run: --limit 3")
    args = parser.parse_args(argv)
    limit = 3 if args.quick and args.limit is None else args.limit

    os.environ.setdefault("LOBBYWATCH_MODELS", str(REPO.parent / "shared" / "models"))
    started = time.perf_counter()
    sets = load_stills(Path(args.data), limit)
    cache = CandidateCache(args.cache, args.threads)
    heads = heads_table(cache, sets["brt-heads"])
    counts, bins = counts_tables(cache, sets)
    soft, calib, bounds = soft_tables(cache, sets)
    nms = nms_table(cache, sets)
    wall = time.perf_counter() - started

    n = {k: len(v) for k, v in sets.items()}
    shipped = DetectorConfig().confidence
    print(
        f"a. Head recall / precision, BRT train every {HEADS_EVERY}rd frame ({n['brt-heads']} "
        f"frames), one model, NMS 0.45; (fitted): the layout the shipped settings give BRT\n"
    )
    print(heads + "\n")
    print(
        f"b. Fused per-frame count, BRT train ({n['brt-train']} frames) and Mall every "
        f"{MALL_EVERY}th ({n['mall']} frames, floor zone, no presence hold), candidates 0.1\n"
    )
    print(counts + "\n")
    print(f"Bias per true count (people; frames) on BRT train at {shipped:g}:\n")
    print(bins + "\n")
    print(
        f"c. Soft counting with the shipped default (models' candidates {FLOOR:g}), BRT test "
        f"({n['brt-test']} frames) and Mall ({n['mall']}):\n"
    )
    print(soft + "\n")
    print("Calibrated P(person) per fused-score bin (lower edges):\n")
    print(calib + "\n")
    print("Fits on BRT itself (upper bounds of a calibration of these boxes):\n")
    print(bounds + "\n")
    print("d. NMS IoU and stitching, the shipped default, BRT train / test:\n")
    print(nms + "\n")
    print("\n".join(["model passes run this time:", *(f"- {t}" for t in cache.timings)]))
    print(f"\nwall {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
