"""Things that never move and never change (a mannequin, clothes on a rack, a poster, a still
picture on a screen), found over hours of a camera's own frames: suggested as ignore regions,
and dropped from the counts where the evidence is strong, while a person who sits still for an
hour stays counted.

A detection that recurs at one place (box IoU >= `match_iou` with a remembered box) is a
*site*. A person gives evidence that a thing does not:

- the pixels inside the box change. A seated person breathes, turns their head, moves a hand,
  shifts their weight by a few pixels; a thing's crop is the same up to sensor noise,
  compression and the room's light. Each site keeps a grey thumbnail of its box (16 x 16 cell
  means), normalised to zero mean and unit spread, so a change of brightness and contrast over
  the whole box (lights dimmed, a cloud, the camera's exposure) leaves it as it was. A frame in
  which more than `change_fraction` of the cells differ from the site's reference by more than
  `change_cell` spreads shows a change. The cells lie on the site's own box, not on the
  detection's, so the detector's jitter moves nothing, while a person shifting by a few pixels
  moves their edges across cells;
- the box moves: the mean of its recent boxes (about the last ten, which averages out the
  detector's jitter) leaves the box the reference was taken at by more than `drift` of its
  height;
- it leaves: the crop stays different while no detection is there (the empty chair). A thing
  the detector merely missed leaves its crop as it was: a miss is not a departure.

Evidence is counted in time, not frames (cameras run at 0.5-2 fps), summed over the frames in
which the site was detected; each frame interval counts at most `max_step_s`, so an outage or
a restart never passes for hours of stillness. Two clocks per site, one for each level:

- *suggested* (shown with its box, so IT can add an ignore mask; still counted) after
  `suggest_after_s` in which the crop matched its reference. A difference that comes back
  to the reference within `occlusion_s` (someone walking past in front, often undetected
  because they hide only part of the thing, or a reflection in a shop window) pauses the clock;
  one that lasts gives the reference up and starts afresh. On a busy floor a thing is hidden
  every few minutes, and it must still be found.
- *dropped* (its boxes not counted) after `drop_after_s` with no difference at all: not one
  frame differed, none showed even `drop_change_fraction` of its cells changed. This clock does
  not forgive: a person whose every movement came back to the same pose would pass the first
  level, never this one.

A frame in which another detection covers part of the site is no evidence either way, nor is a
crop too flat to show movement (`min_contrast`).

Each frame's pixels are compared before any box is dropped, so a person who sits down in front
of a dropped mannequin changes its crop and is counted from that frame on.

Boxes are normalized (x by the frame width, y by its height), so a site survives a change of
stream resolution with the same view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge.types import FloatArray

BoolArray = npt.NDArray[np.bool_]
Level = Literal["watching", "suggested", "dropped"]
STATE_VERSION = 1

# Thumbnail side in cells: a seated person's head or hand covers several of 256 cells, and a
# shift of a few pixels moves an edge by a cell on any box up to ~50 px wide.
CELLS = 16
# Samples per cell and axis: the thumbnail costs the same for a box of 20 px and one of 400 px,
# and 4 x 4 samples average a cell's noise down by 4.
_SAMPLES_PER_CELL = 4
# Weight of a new box in the running mean of a site's boxes: about the last ten boxes.
_MEAN_WEIGHT = 0.1
# Another detection covering this fraction of a site's box occludes it for the frame.
_OCCLUDED = 0.1
# ITU-R BT.601 luma weights, in OpenCV's BGR channel order.
_GREY = np.array([0.114, 0.587, 0.299], dtype=np.float32)
_SAMPLES = np.arange(CELLS * _SAMPLES_PER_CELL)
# (CELLS, CELLS * _SAMPLES_PER_CELL): averages each run of samples into its cell.
_CELL_MEAN = np.kron(
    np.eye(CELLS, dtype=np.float32),
    np.full((1, _SAMPLES_PER_CELL), 1 / _SAMPLES_PER_CELL, np.float32),
)


@dataclass(frozen=True)
class ClutterSettings:
    """When a place that never changes is suggested or dropped. Durations in seconds of
    observation (frames in which the site was detected), not of wall time.

    suggest_after_s: matching its reference this long, a site is suggested as an ignore region:
    2 h, twice the hour a customer may sit still (issue 11); a suggestion costs only a look.
    drop_after_s: unchanged this long without a break, its boxes are dropped: 8 h, a whole opening
    day, which no one sits through without moving (None: only suggest). match_iou: a box this
    close to a site is the same place (0.5, the usual criterion for the same object).
    change_cell: a cell differs when it moves by this many spreads of the normalised crop (0.5:
    sensor noise and compression, averaged over a cell's samples, stay well below it on a crop
    of min_contrast). change_fraction: a frame shows a change when more than this fraction of
    the cells differ (0.03: about 8 cells, a hand or a turned head on a person's box).
    drop_change_fraction: for a drop, no frame of the run may show more than this (0.01, two
    cells: noise only). drift: the mean box may move this fraction of the box height (0.1: the
    detector's jitter, averaged over ten boxes, is far smaller). min_contrast: spread of the grey
    thumbnail, in grey levels (0-255), below which a crop shows nothing (8: a blank wall, a
    dark corner). max_step_s: the most one frame interval counts (30 s: a camera at its
    slowest useful rate; a longer gap is an outage). occlusion_s: a crop that differs this long
    without coming back has changed for good (60 s: a passer-by hides a place for seconds).
    forget_after_s: a site not detected for
    this long is forgotten (a day: a thing lit only in opening hours is seen again the next).
    max_sites: the most sites kept (far more than the still things a lobby camera has; it bounds
    the cost of a frame).
    """

    suggest_after_s: float = 7200.0
    drop_after_s: float | None = 28800.0
    match_iou: float = 0.5
    change_cell: float = 0.5
    change_fraction: float = 0.03
    drop_change_fraction: float = 0.01
    drift: float = 0.1
    min_contrast: float = 8.0
    max_step_s: float = 30.0
    occlusion_s: float = 60.0
    forget_after_s: float = 86400.0
    max_sites: int = 64

    def __post_init__(self) -> None:
        if self.suggest_after_s <= 0:
            raise ValueError("need suggest_after_s > 0")
        if self.drop_after_s is not None and self.drop_after_s < self.suggest_after_s:
            raise ValueError("need drop_after_s >= suggest_after_s (or None: never drop)")
        if not 0 < self.match_iou <= 1 or self.change_cell <= 0 or self.drift <= 0:
            raise ValueError("need 0 < match_iou <= 1, change_cell > 0 and drift > 0")
        if not 0 <= self.drop_change_fraction <= self.change_fraction < 1:
            raise ValueError("need 0 <= drop_change_fraction <= change_fraction < 1")
        if self.min_contrast < 0 or self.max_step_s <= 0 or self.forget_after_s <= 0:
            raise ValueError("need min_contrast >= 0, max_step_s > 0 and forget_after_s > 0")
        if self.occlusion_s < 0:
            raise ValueError("need occlusion_s >= 0")
        if self.max_sites < 1:
            raise ValueError("need max_sites >= 1")


@dataclass
class Site:
    """One place a detection recurs. box: normalized (x1, y1, x2, y2) where it was when its
    reference was taken; mean: running mean of the boxes matched since; ref: the normalised
    thumbnail of `box` (CELLS * CELLS), None until the place is seen again (a box seen once is
    a passer-by until then) with a crop that has contrast.

    same_s: observed seconds since ref was taken in which the crop matched it; a frame that
    differs (someone passing in front) pauses it, a difference that lasts occlusion_s gives
    the reference up. Suggestions go by it. unchanged_s: the unbroken part, seconds since the
    last frame that differed at all; drops go by it. peak: the largest fraction of changed cells
    a frame of that unbroken run showed. different_s: observed seconds the crop has differed
    since it last matched. changes: references given up. unseen_s: seconds since the site was
    last detected. seen_s: observed seconds while detected, over all references."""

    box: FloatArray
    mean: FloatArray
    ref: FloatArray | None
    same_s: float = 0.0
    unchanged_s: float = 0.0
    peak: float = 0.0
    different_s: float = 0.0
    changes: int = 0
    unseen_s: float = 0.0
    seen_s: float = 0.0

    def restart(self, box: FloatArray, ref: FloatArray | None) -> None:
        """The place changed for good: a new reference at the current box."""
        self.box, self.mean, self.ref = box.copy(), box.copy(), ref
        self.same_s = self.unchanged_s = self.peak = self.different_s = 0.0
        self.changes += 1


def thumbnail(
    image: npt.NDArray[np.uint8], box: FloatArray, min_contrast: float
) -> FloatArray | None:
    """The normalised grey thumbnail (CELLS * CELLS, zero mean, unit spread) of a normalized
    box of a BGR (or grey) frame; None if the box is under 2 px or its spread is under
    `min_contrast` grey levels. Each cell is the mean of a grid of samples, the same number
    for any box size (on a box narrower than the grid, pixels are read more than once)."""
    height, width = image.shape[:2]
    x1, x2 = (min(max(round(float(v) * width), 0), width) for v in (box[0], box[2]))
    y1, y2 = (min(max(round(float(v) * height), 0), height) for v in (box[1], box[3]))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    rows = (_SAMPLES * (y2 - y1)) // _SAMPLES.size
    cols = (_SAMPLES * (x2 - x1)) // _SAMPLES.size
    # take on the box's view, not on the frame: 4x faster than fancy indexing
    samples = image[y1:y2, x1:x2].take(rows, axis=0).take(cols, axis=1).astype(np.float32)
    grey = samples @ _GREY if samples.ndim == 3 else samples
    cells = _CELL_MEAN @ grey @ _CELL_MEAN.T
    centred = (cells - float(cells.sum()) / cells.size).ravel()  # .mean() costs 3x more
    spread = float(np.sqrt(np.dot(centred, centred) / centred.size))
    if spread < max(min_contrast, 1e-6):
        return None
    return np.asarray(centred / spread, dtype=np.float32)


def changed_fraction(ref: FloatArray, now: FloatArray, change_cell: float) -> float:
    """Fraction of the cells of two normalised thumbnails that differ by over change_cell."""
    return float(np.count_nonzero(np.abs(now - ref) > change_cell)) / len(ref)


def iou(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), (N, M)."""
    ix = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    iy = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(ix, 0.0) * np.maximum(iy, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.asarray(inter / np.maximum(union, 1e-9), dtype=np.float32)


def _covered(sites: FloatArray, boxes: FloatArray) -> FloatArray:
    """Fraction of each site's box (S, 4) covered by each box (N, 4), (S, N)."""
    ix = np.minimum(sites[:, None, 2], boxes[None, :, 2]) - np.maximum(
        sites[:, None, 0], boxes[None, :, 0]
    )
    iy = np.minimum(sites[:, None, 3], boxes[None, :, 3]) - np.maximum(
        sites[:, None, 1], boxes[None, :, 1]
    )
    area = np.maximum((sites[:, 2] - sites[:, 0]) * (sites[:, 3] - sites[:, 1]), 1e-9)
    return np.asarray(np.maximum(ix, 0.0) * np.maximum(iy, 0.0) / area[:, None], dtype=np.float32)


def _match(iou_matrix: FloatArray, least: float) -> dict[int, int]:
    """Greedy one-to-one matching, best IoU first: {site index: detection index}."""
    pairs: dict[int, int] = {}
    if iou_matrix.size == 0:
        return pairs
    order = np.argsort(-iou_matrix, axis=None)
    used: set[int] = set()
    for flat in order:
        s, d = divmod(int(flat), iou_matrix.shape[1])
        if iou_matrix[s, d] < least:
            break
        if s not in pairs and d not in used:
            pairs[s] = d
            used.add(d)
    return pairs


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _where(box: FloatArray) -> str:
    return f"x {box[0]:.2f}-{box[2]:.2f} y {box[1]:.2f}-{box[3]:.2f}"


class ClutterModel:
    """Per camera: `update` each processed frame with its boxes; it answers which boxes are
    not static clutter and learns from the frame."""

    def __init__(self, settings: ClutterSettings | None = None) -> None:
        self.settings = settings or ClutterSettings()
        self.reset()

    def reset(self) -> None:
        """Forget every site (the camera was moved, the lobby refitted)."""
        self.sites: list[Site] = []
        self._last_now: float | None = None

    def level(self, site: Site) -> Level:
        s = self.settings
        if (
            s.drop_after_s is not None
            and site.unchanged_s >= s.drop_after_s
            and site.peak <= s.drop_change_fraction
        ):
            return "dropped"
        return "suggested" if site.same_s >= s.suggest_after_s else "watching"

    def _step(self, now: float) -> float:
        """Seconds this frame counts: the interval since the last, capped at max_step_s (none
        for the first frame after a start, nor when the clock went back)."""
        last, self._last_now = self._last_now, now
        if last is None:
            return 0.0
        return min(max(now - last, 0.0), self.settings.max_step_s)

    def update(
        self,
        image: npt.NDArray[np.uint8],
        xyxy: FloatArray,
        candidate: BoolArray,
        now: float,
    ) -> BoolArray:
        """Which of this frame's boxes (pixels, (N, 4)) are kept: all but those on a dropped
        site whose crop is unchanged in this very frame. candidate: the boxes still counted
        after the other tests of the scene; only they form sites, all of them occlude.
        now: the frame's time in seconds on a steady clock."""
        s = self.settings
        height, width = image.shape[:2]
        dt = self._step(now)
        n = len(xyxy)
        keep = np.ones(n, dtype=bool)
        scale = np.array([width, height, width, height], dtype=np.float32)
        boxes = (np.asarray(xyxy, dtype=np.float32) / scale).reshape(-1, 4)
        cand = np.flatnonzero(candidate)
        # Candidates on a place already watched (someone in front of the poster) start none.
        free: BoolArray = np.ones(len(cand), dtype=bool)
        occluded: BoolArray = np.zeros(len(self.sites), dtype=bool)
        if self.sites and n:
            site_boxes = np.stack([site.box for site in self.sites])
            overlap = iou(site_boxes, boxes[cand])
            pairs = {si: int(cand[di]) for si, di in _match(overlap, s.match_iou).items()}
            free = np.asarray(~(overlap >= s.match_iou).any(axis=0))
            covered = _covered(site_boxes, boxes)
            for si, di in pairs.items():
                covered[si, di] = 0.0  # a site's own detection does not hide it
            occluded = np.asarray((covered >= _OCCLUDED).any(axis=1))
        else:
            pairs = {}
        survivors: list[Site] = []
        for si, site in enumerate(self.sites):
            det = pairs.get(si)
            seen = self._observe(site, image, None if det is None else boxes[det],
                                 bool(occluded[si]), dt)  # fmt: skip
            if seen == "gone":
                continue
            survivors.append(site)
            # Dropped only on this frame's own evidence: the crop compared and unchanged.
            if det is not None and seen == "same" and self.level(site) == "dropped":
                keep[det] = False
        for d in cand[free]:
            # Its crop is taken when it is seen again: walkers pass and cost nothing.
            survivors.append(Site(boxes[d].copy(), boxes[d].copy(), None))
        self.sites = self._bounded(survivors)
        return keep

    def _observe(
        self,
        site: Site,
        image: npt.NDArray[np.uint8],
        box: FloatArray | None,
        occluded: bool,
        dt: float,
    ) -> Literal["same", "changed", "unknown", "gone"]:
        """Take one frame's evidence for a site. box: its matched detection (normalized), None
        if it was not detected. "gone": forget the site (its crop differed for occlusion_s with
        no detection there, or it was not detected for forget_after_s); "unknown": no evidence
        (occluded by a detection, too flat, no reference yet)."""
        s = self.settings
        if box is None:
            if site.ref is None:
                return "gone"  # a box seen once and not again is no place yet
            site.unseen_s += dt
            if site.unseen_s > s.forget_after_s:
                return "gone"
        else:
            site.unseen_s = 0.0
            site.mean += _MEAN_WEIGHT * (box - site.mean)
        if occluded:
            return "unknown"
        crop = thumbnail(image, site.box, s.min_contrast)
        if crop is None:
            return "unknown"  # too flat to show movement
        if site.ref is None:
            site.ref = crop  # seen again: now a place, with the crop to compare against
            return "unknown"
        fraction = changed_fraction(site.ref, crop, s.change_cell)
        if box is not None:
            site.seen_s += dt
        if fraction > s.change_fraction or (box is not None and self._moved(site, image)):
            site.unchanged_s = site.peak = 0.0  # the unbroken run ends at any difference
            site.different_s += dt
            if site.different_s <= s.occlusion_s:
                return "changed"  # perhaps someone in front: see whether it comes back
            if box is None:
                return "gone"  # it left: the place has shown something else for occlusion_s
            site.restart(box, thumbnail(image, box, s.min_contrast))
            return "changed"
        site.different_s = 0.0
        if box is not None:
            site.same_s += dt
            site.unchanged_s += dt
            site.peak = max(site.peak, fraction)
        return "same"

    def _moved(self, site: Site, image: npt.NDArray[np.uint8]) -> bool:
        """Whether the mean box left the reference's box by more than `drift` of its height (in
        pixels, so x and y are weighed alike)."""
        height, width = image.shape[:2]
        delta = np.abs(site.mean - site.box) * np.array([width, height, width, height])
        return bool(delta.max() > self.settings.drift * (site.box[3] - site.box[1]) * height)

    def _bounded(self, sites: list[Site]) -> list[Site]:
        """At most max_sites: the longest unchanged kept, then the most recently seen."""
        if len(sites) <= self.settings.max_sites:
            return sites
        ranked = sorted(sites, key=lambda site: (-site.same_s, site.unseen_s))
        return ranked[: self.settings.max_sites]

    def found(self) -> list[tuple[Site, Level]]:
        """The suggested and dropped sites, longest unchanged first."""
        out = [(site, self.level(site)) for site in self.sites]
        out = [(site, level) for site, level in out if level != "watching"]
        return sorted(out, key=lambda item: -item[0].same_s)

    def describe(self) -> str:
        """e.g. 'clutter: 1 dropped (x 0.52-0.60 y 0.30-0.65, unchanged 9.1 h); watching 12
        places, longest unchanged 14 min'."""
        found = self.found()
        parts = []
        for name, label in (("dropped", "dropped"), ("suggested", "suggested as ignore region")):
            sites = [site for site, level in found if level == name]
            if sites:
                where = ", ".join(
                    f"{_where(site.box)} unchanged {_duration(site.same_s)}" for site in sites[:3]
                )
                more = f" and {len(sites) - 3} more" if len(sites) > 3 else ""
                parts.append(f"{len(sites)} {label}{'s' if len(sites) > 1 else ''} "
                             f"({where}{more})")  # fmt: skip
        watching = [site for site in self.sites if self.level(site) == "watching"]
        longest = max((site.same_s for site in watching), default=0.0)
        head = "; ".join(parts) if parts else "nothing static found"
        return (
            f"clutter: {head}; watching {len(watching)} place{'' if len(watching) == 1 else 's'}"
            + (f", longest unchanged {_duration(longest)}" if watching else "")
        )

    def suggestions(self) -> list[str]:
        """One line per suggested or dropped site, with an ignore mask ready for the config:
        its polygon is the box grown by 5% each way, so the feet of the boxes it gives fall
        inside (an ignore mask tests the bottom centre of a box)."""
        lines = []
        for k, (site, level) in enumerate(self.found(), start=1):
            x1, y1, x2, y2 = (float(v) for v in site.box)
            gx, gy = 0.05 * (x2 - x1), 0.05 * (y2 - y1)
            x1, x2 = max(0.0, x1 - gx), min(1.0, x2 + gx)
            y1, y2 = max(0.0, y1 - gy), min(1.0, y2 + gy)
            polygon = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]
            points = ", ".join(f"[{x:.3f}, {y:.3f}]" for x, y in polygon)
            state = "dropped from the counts" if level == "dropped" else "still counted"
            lines.append(
                f"{level} ({state}): unchanged for {_duration(site.same_s)} "
                f"({_duration(site.unchanged_s)} unbroken) at {_where(site.box)}; to ignore it "
                f"for good, check a snapshot and add under cameras[].ignore: "
                f"{{id: clutter-{k}, polygon: [{points}], "
                f"reason: 'unchanged {_duration(site.same_s)}'}}"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "sites": [
                {
                    "box": [round(float(v), 6) for v in site.box],
                    "mean": [round(float(v), 6) for v in site.mean],
                    "ref": None if site.ref is None else [round(float(v), 2) for v in site.ref],
                    "same_s": round(site.same_s, 1),
                    "unchanged_s": round(site.unchanged_s, 1),
                    "peak": round(site.peak, 4),
                    "different_s": round(site.different_s, 1),
                    "changes": site.changes,
                    "unseen_s": round(site.unseen_s, 1),
                    "seen_s": round(site.seen_s, 1),
                    "level": self.level(site),  # for people reading the file
                }
                for site in self.sites
            ],
        }

    def load(self, state: Mapping[str, Any]) -> bool:
        """Take up a state from `to_dict`; False (and nothing changed) if it is not usable."""
        try:
            if state.get("version") != STATE_VERSION:
                return False
            sites = [_site(item) for item in state["sites"]]
        except (KeyError, TypeError, ValueError):
            return False
        self.reset()
        self.sites = self._bounded(sites)
        return True


def _site(item: Mapping[str, Any]) -> Site:
    """One saved site, checked; ValueError if it is not one."""
    box = np.asarray(item["box"], dtype=np.float32).reshape(4)
    mean = np.asarray(item["mean"], dtype=np.float32).reshape(4)
    ref = None if item["ref"] is None else np.asarray(item["ref"], dtype=np.float32)
    keys = ("same_s", "unchanged_s", "peak", "different_s", "unseen_s", "seen_s")
    numbers = [float(item[k]) for k in keys]
    changes = int(item["changes"])
    for a in (box, mean):
        if not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
            raise ValueError("box outside the frame")
    if box[0] >= box[2] or box[1] >= box[3]:
        raise ValueError("empty box")
    if ref is not None and (ref.shape != (CELLS * CELLS,) or not np.isfinite(ref).all()):
        raise ValueError("thumbnail of the wrong size")
    if not all(np.isfinite(v) and v >= 0 for v in numbers) or changes < 0:
        raise ValueError("negative or non-finite duration")
    same_s, unchanged_s, peak, different_s, unseen_s, seen_s = numbers
    return Site(box, mean, ref, same_s, unchanged_s, peak, different_s, changes, unseen_s, seen_s)
