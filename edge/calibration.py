"""On-site count calibration: a per-zone correction chosen by cross-validation on hand-labelled
frames, or none when no correction beats the detector's own count.

Every detector misses some people in a given scene (far corners, crowds, a pillar) and sees a
few that are not there; how many depends on the camera's height and angle, which only the site
knows. A few frames labelled by hand per zone can fix some of that: true ~= scale * detected +
offset. But a fit can also hurt: a scale of 1.5-2 multiplies the detector's noise (most at low
counts), and on 50 frames a two-parameter fit chases that noise. So each candidate correction
(none, offset only, scale only, scale + offset, a robust Theil-Sen line) is judged on frames it
was not fitted on, and the simplest one within noise of the best is kept; "none" when no
correction clearly beats no correction. The file says which one was chosen and why, with the
expected error on new frames and its 95% interval.

Pure: numpy and scipy, no capture or detector here (edge/replay.py gathers the labelled frames,
the CLI reads and writes files).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import yaml

from edge.types import Detections
from edge.zones import Zone, assign_zones, snap_to_border, tally

if TYPE_CHECKING:
    from edge.config import CameraConfig

SCALE_BOUNDS = (0.5, 3.0)
OFFSET_BOUNDS = (-10.0, 10.0)

# Below this many labelled frames the choice is mostly noise, so the command warns (and still
# chooses). Why 20: the cross-validated MAE of n frames has a standard error of about
# 0.75 x MAE / sqrt(n) (absolute count errors spread about as much as their mean); at n = 20
# that is ~17% of the error, as large as the 10-30% a good correction gains, so fewer frames
# cannot tell a real gain from luck. Counting 20 frames by hand takes a person ~15 minutes.
MIN_FRAMES = 20
# At most this many folds: leave-one-out up to 20 frames, 20 interleaved folds above.
MAX_FOLDS = 20
BOOTSTRAP_RESAMPLES = 2000
# A correction must beat no correction by this many standard errors of the paired held-out
# difference (about 98% one-sided): a wrong correction costs every frame after it, so the bar
# to leave the detector alone is higher than the one between two corrections (one SE).
NONE_MARGIN_SE = 2.0

Model = Literal["none", "offset", "scale", "scale+offset", "robust"]
# Simplest first: a tie (within one standard error) goes to the earlier one.
MODELS: tuple[Model, ...] = ("none", "offset", "scale", "scale+offset", "robust")
# What a file without `model` (written before the cross-validated choice) holds.
LEGACY_MODEL: Model = "scale+offset"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ZoneCalibration:
    """One zone's correction and how it was chosen.

    Errors are in people per frame (MAE) and percent of the true count (MAPE, frames with
    nobody left out). mae_before / mae_after: on the labelled frames themselves (in-sample).
    cv_*: on frames each fit did not see (cross-validation), what to expect on new frames;
    *_ci: 95% bootstrap interval over frames. candidates: CV MAE of every model tried.
    """

    scale: float = 1.0
    offset: float = 0.0
    frames: int = 0  # labelled frames it was fitted on
    mae_before: float | None = None
    mae_after: float | None = None
    model: Model = LEGACY_MODEL
    reason: str = ""
    warning: str = ""
    cv_mae: float | None = None
    cv_mae_ci: tuple[float, float] | None = None
    cv_mape: float | None = None
    cv_mape_ci: tuple[float, float] | None = None
    mape_before: float | None = None
    candidates: tuple[tuple[str, float], ...] = field(default=())
    fitted_from: Literal["counts", "heads", ""] = ""

    def apply(self, detected: int) -> int:
        """The corrected count of one frame, a whole number of people, never negative."""
        return max(0, round(self.scale * detected + self.offset))

    @property
    def refused(self) -> bool:
        return self.model == "none"


IDENTITY = ZoneCalibration(model="none")


# --- candidate fits: (detected, truth) -> (scale, offset), or None when these frames cannot fit it


def _fit_offset(x: FloatArray, y: FloatArray) -> tuple[float, float] | None:
    return 1.0, float(np.mean(y - x))


def _fit_scale(x: FloatArray, y: FloatArray) -> tuple[float, float] | None:
    denominator = float(np.dot(x, x))
    return (float(np.dot(x, y)) / denominator, 0.0) if denominator > 0 else None


def _fit_line(x: FloatArray, y: FloatArray) -> tuple[float, float] | None:
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    scale, offset = np.polyfit(x, y, 1)
    return float(scale), float(offset)


def _fit_robust(x: FloatArray, y: FloatArray) -> tuple[float, float] | None:
    """Theil-Sen: the median of pairwise slopes, so a few mislabelled frames do not tilt it."""
    from scipy.stats import theilslopes

    if len(x) < 3 or np.ptp(x) == 0:
        return None
    slope, intercept, _, _ = theilslopes(y, x)
    return float(slope), float(intercept)


FITS: dict[Model, Callable[[FloatArray, FloatArray], tuple[float, float] | None]] = {
    "none": lambda x, y: (1.0, 0.0),
    "offset": _fit_offset,
    "scale": _fit_scale,
    "scale+offset": _fit_line,
    "robust": _fit_robust,
}


def _bounded(fit: tuple[float, float]) -> tuple[float, float]:
    return float(np.clip(fit[0], *SCALE_BOUNDS)), float(np.clip(fit[1], *OFFSET_BOUNDS))


def _predict(fit: tuple[float, float], x: FloatArray) -> FloatArray:
    """As ZoneCalibration.apply: whole people, never negative (the error is judged on that)."""
    return np.maximum(0.0, np.round(fit[0] * x + fit[1]))


def _held_out_predictions(model: Model, x: FloatArray, y: FloatArray) -> FloatArray | None:
    """Each frame predicted by the model fitted without its fold; None if a fold cannot fit it."""
    folds = min(len(x), MAX_FOLDS)
    fold_of = np.arange(len(x)) % folds
    predicted = np.empty_like(x)
    for k in range(folds):
        held = fold_of == k
        fit = FITS[model](x[~held], y[~held])
        if fit is None:
            return None
        predicted[held] = _predict(_bounded(fit), x[held])
    return predicted


def _mape(abs_errors: FloatArray, y: FloatArray) -> float | None:
    people = y > 0
    return float(100 * np.mean(abs_errors[people] / y[people])) if people.any() else None


def _bootstrap_ci(
    abs_errors: FloatArray, y: FloatArray, rng: np.random.Generator
) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """95% percentile intervals of MAE and MAPE over frames resampled with replacement."""
    n = len(abs_errors)
    picks = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    maes = abs_errors[picks].mean(axis=1)
    mae_ci = (float(np.percentile(maes, 2.5)), float(np.percentile(maes, 97.5)))
    people = y[picks] > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(people, abs_errors[picks] / np.where(people, y[picks], 1.0), 0.0)
        mapes = 100 * ratios.sum(axis=1) / people.sum(axis=1)
    mapes = mapes[np.isfinite(mapes)]
    if not len(mapes):
        return mae_ci, None
    return mae_ci, (float(np.percentile(mapes, 2.5)), float(np.percentile(mapes, 97.5)))


def fit_zone(
    detected: Sequence[int],
    truth: Sequence[float],
    *,
    metric: Literal["mae", "mape"] = "mae",
    fitted_from: Literal["counts", "heads", ""] = "",
    seed: int = 0,
) -> ZoneCalibration:
    """Choose and fit one zone's correction by cross-validation on labelled frames.

    Every model in MODELS is scored on held-out frames (MAX_FOLDS-fold, leave-one-out for fewer
    frames). The best score wins unless a simpler model is within one standard error of it
    (the paired difference over frames): then the simplest such model. "none" is kept (the
    correction refused) when it is within NONE_MARGIN_SE standard errors of the best, or nothing
    scores better.
    """
    if len(detected) != len(truth) or not detected:
        raise ValueError("need the same, non-zero number of detected and hand counts")
    x = np.asarray(detected, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    n = len(x)
    warning = (
        f"only {n} labelled frame(s), at least {MIN_FRAMES} advised: the choice and the"
        " interval are rough"
        if n < MIN_FRAMES
        else ""
    )
    errors_none = np.abs(x - y)
    before, mape_before = float(errors_none.mean()), _mape(errors_none, y)
    rng = np.random.default_rng(seed)
    if n < 2:
        mae_ci, mape_ci = _bootstrap_ci(errors_none, y, rng)
        return ZoneCalibration(
            frames=n, mae_before=before, mae_after=before, model="none",
            reason="one labelled frame cannot tell a correction from noise",
            warning=warning, cv_mae=before, cv_mae_ci=mae_ci, cv_mape=mape_before,
            cv_mape_ci=mape_ci, mape_before=mape_before, fitted_from=fitted_from,
        )  # fmt: skip

    held_out: dict[Model, FloatArray] = {}
    for model in MODELS:
        predicted = _held_out_predictions(model, x, y)
        if predicted is not None:
            held_out[model] = np.abs(predicted - y)

    def score(abs_errors: FloatArray) -> FloatArray:
        """Per-frame loss of the selection metric (frames with nobody weigh 0 in MAPE)."""
        if metric == "mae":
            return abs_errors
        return np.where(y > 0, 100 * abs_errors / np.where(y > 0, y, 1.0), 0.0)

    scores = {m: float(score(e).mean()) for m, e in held_out.items()}
    best = min(scores, key=lambda m: (scores[m], MODELS.index(m)))

    def within_noise(model: Model, margin: float = 1.0) -> bool:
        diff = score(held_out[model]) - score(held_out[best])
        return bool(float(diff.mean()) <= margin * float(diff.std(ddof=1)) / np.sqrt(n))

    chosen: Model = "none"
    if not within_noise("none", NONE_MARGIN_SE):
        better = [m for m in held_out if scores[m] < scores["none"] and within_noise(m)]
        chosen = min(better, key=MODELS.index) if better else "none"
    fit = (1.0, 0.0) if chosen == "none" else _bounded(FITS[chosen](x, y) or (1.0, 0.0))
    chosen_errors = held_out[chosen]
    mae_ci, mape_ci = _bootstrap_ci(chosen_errors, y, rng)
    name = "MAE" if metric == "mae" else "MAPE"
    unit = "" if metric == "mae" else "%"
    if chosen == "none":
        runner_up = min((m for m in scores if m != "none"), key=lambda m: scores[m], default=None)
        reason = (
            f"no correction beat the detector's own count on held-out frames: CV {name}"
            f" {scores['none']:.2f}{unit} without"
            + (f", best correction {runner_up} {scores[runner_up]:.2f}{unit}" if runner_up else "")
            + " (within noise or worse)"
        )
    else:
        reason = (
            f"{chosen}: CV {name} {scores[chosen]:.2f}{unit} against {scores['none']:.2f}{unit}"
            f" without, {n} frame(s), {min(n, MAX_FOLDS)}-fold"
        )
    return ZoneCalibration(
        scale=fit[0],
        offset=fit[1],
        frames=n,
        mae_before=before,
        mae_after=float(np.abs(_predict(fit, x) - y).mean()),
        model=chosen,
        reason=reason,
        warning=warning,
        cv_mae=float(chosen_errors.mean()),
        cv_mae_ci=mae_ci,
        cv_mape=_mape(chosen_errors, y),
        cv_mape_ci=mape_ci,
        mape_before=mape_before,
        candidates=tuple((m, float(held_out[m].mean())) for m in MODELS if m in held_out),
        fitted_from=fitted_from,
    )


# --- labelled frames ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadPoints:
    """One frame's hand-clicked heads: (N, 2) x, y in `units` (pixels of the frame or 0-1)."""

    count: int
    xy: FloatArray


def read_head_points(path: Path) -> dict[str, HeadPoints]:
    """A JSON object {frame: {"count": n, "heads_xy": [[x, y], ...]}} (the Mall and BRT files).

    frame: a 0-based frame number of the source, or an image file name of an image sequence.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected an object of frame -> {{count, heads_xy}}")
    result = {}
    for key, value in data.items():
        if not isinstance(value, dict) or "heads_xy" not in value:
            raise ValueError(f"{path}: frame {key!r} needs heads_xy")
        xy = np.asarray(value["heads_xy"], dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all() or (xy < 0).any():
            raise ValueError(f"{path}: frame {key!r}: head points must be finite, not negative")
        count = int(value.get("count", len(xy)))
        if count != len(xy):
            raise ValueError(f"{path}: frame {key!r}: count {count} but {len(xy)} head points")
        result[str(key)] = HeadPoints(count, xy)
    return result


def head_units(heads: Mapping[str, HeadPoints]) -> Literal["pixels", "normalized"]:
    """Normalized when every coordinate is at most 1 (no pixel file has all heads in 1 pixel)."""
    points = [h.xy for h in heads.values() if len(h.xy)]
    return "normalized" if points and max(float(p.max()) for p in points) <= 1.0 else "pixels"


def heads_per_zone(
    xy_normalized: FloatArray,
    zones: Sequence[Zone],
    ignore: Sequence[Sequence[tuple[float, float]]] = (),
) -> dict[str, int]:
    """People per zone from head points, one zone each by the rule that counts detections
    (priority, then id; ignore masks drop). Heads, not feet: a person standing on a zone's edge
    may fall in a different zone than their box's foot point does."""
    points = np.asarray(xy_normalized, dtype=np.float32).reshape(-1, 2)
    return tally(assign_zones(points, zones, ignore), [z.id for z in zones])


@dataclass(frozen=True)
class CalibrationFrame:
    """One labelled frame as the fits see it.

    detected: the product's per-zone count (held people included, uncalibrated). truth: the
    labelled count per zone. heads_xy (normalized) and detections (source pixels) are kept for
    fits that need to know which box matched which head (per-box probabilities, perspective:
    the seam for them is fit_camera); the count correction uses the counts only.
    """

    index: int
    detected: Mapping[str, int]
    truth: Mapping[str, float]
    detections: Detections
    heads_xy: FloatArray | None = None


def head_labelled(
    index: int,
    detected: Mapping[str, int],
    heads_xy: FloatArray,
    detections: Detections,
    zones: Sequence[Zone],
    ignore: Sequence[Sequence[tuple[float, float]]] = (),
) -> CalibrationFrame:
    """A frame labelled by its clicked heads (normalized): the truth is the heads counted per
    zone (heads_per_zone). One way for every source of head points (a file of them with the
    frames read again, or the hand counts /debug kept in the store), so both fit alike."""
    truth = {z: float(n) for z, n in heads_per_zone(heads_xy, zones, ignore).items()}
    return CalibrationFrame(index, dict(detected), truth, detections, heads_xy)


def camera_geometry(
    camera: CameraConfig,
) -> tuple[tuple[Zone, ...], tuple[tuple[tuple[float, float], ...], ...]]:
    """The camera's zones and ignore masks as its pipeline counts with them."""
    zones = tuple(Zone(z.id, tuple(z.polygon), z.priority) for z in camera.zones)
    return zones, tuple(snap_to_border(m.polygon) for m in camera.ignore)


def zones_key(zones: Sequence[Zone], ignore: Sequence[Sequence[tuple[float, float]]]) -> str:
    """A short digest of the zones and masks a count was made with: equal digests, same
    geometry (a hand count's stored per-zone detections still hold)."""
    shape = {
        "zones": [[z.id, z.priority, [list(p) for p in z.polygon]] for z in zones],
        "ignore": [[list(p) for p in polygon] for polygon in ignore],
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def fit_camera(
    frames: Sequence[CalibrationFrame], *, metric: Literal["mae", "mape"] = "mae"
) -> dict[str, ZoneCalibration]:
    """One correction per zone that has labelled frames."""
    source: Literal["counts", "heads"] = (
        "heads" if frames and all(f.heads_xy is not None for f in frames) else "counts"
    )
    zones = sorted({z for f in frames for z in f.truth})
    result = {}
    for zone in zones:
        labelled = [f for f in frames if zone in f.truth]
        result[zone] = fit_zone(
            [f.detected[zone] for f in labelled],
            [f.truth[zone] for f in labelled],
            metric=metric,
            fitted_from=source,
        )
    return result


# --- the file -----------------------------------------------------------------------------------

HEADER = """\
# Written by `lobbywatch calibrate`. Per zone: true ~= scale * detected + offset, where `model`
# (none | offset | scale | scale+offset | robust) was chosen by cross-validation; `none` means
# no correction beat the detector's own count (`reason` says why) and the count is left as is.
# cv_mae / cv_mape (95% interval): the expected error on new frames; mae_before / mae_after: on
# the labelled frames themselves. Files with only scale/offset (older versions) still load.
"""


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _ci(value: tuple[float, float] | None) -> list[float] | None:
    return None if value is None else [round(value[0], 3), round(value[1], 3)]


def save(path: Path, calibrations: Mapping[str, ZoneCalibration]) -> None:
    data = {}
    for zone, c in calibrations.items():
        entry: dict[str, object] = {
            "model": c.model,
            "scale": round(c.scale, 4),
            "offset": round(c.offset, 3),
            "frames": c.frames,
            "mae_before": _r(c.mae_before),
            "mae_after": _r(c.mae_after),
            "reason": c.reason,
            "cv_mae": _r(c.cv_mae),
            "cv_mae_ci": _ci(c.cv_mae_ci),
            "cv_mape": _r(c.cv_mape, 2),
            "cv_mape_ci": _ci(c.cv_mape_ci),
            "mape_before": _r(c.mape_before, 2),
            "candidates_cv_mae": {m: round(v, 3) for m, v in c.candidates},
            "fitted_from": c.fitted_from,
            "warning": c.warning,
        }
        data[zone] = {k: v for k, v in entry.items() if v not in (None, "", {})}
    path.write_text(HEADER + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _pair(values: object) -> tuple[float, float] | None:
    if values is None:
        return None
    if not isinstance(values, list | tuple) or len(values) != 2:
        raise ValueError("an interval is [low, high]")
    return float(values[0]), float(values[1])


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def load(path: Path) -> dict[str, ZoneCalibration]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of zone id to calibration")
    result = {}
    for zone, values in data.items():
        if not isinstance(values, dict) or "scale" not in values:
            raise ValueError(f"{path}: zone {zone!r} needs at least a scale")
        scale, offset = float(values["scale"]), float(values.get("offset", 0.0))
        model = values.get("model", LEGACY_MODEL)
        if model not in MODELS:
            raise ValueError(f"{path}: zone {zone!r}: model {model!r} not one of {MODELS}")
        if model == "none" and (scale, offset) != (1.0, 0.0):
            raise ValueError(f"{path}: zone {zone!r}: model none needs scale 1 and offset 0")
        if not SCALE_BOUNDS[0] <= scale <= SCALE_BOUNDS[1]:
            raise ValueError(f"{path}: zone {zone!r}: scale {scale} outside {SCALE_BOUNDS}")
        if not OFFSET_BOUNDS[0] <= offset <= OFFSET_BOUNDS[1]:
            raise ValueError(f"{path}: zone {zone!r}: offset {offset} outside {OFFSET_BOUNDS}")
        candidates = values.get("candidates_cv_mae") or {}
        try:
            result[str(zone)] = ZoneCalibration(
                scale,
                offset,
                int(values.get("frames", 0)),
                _optional_float(values.get("mae_before")),
                _optional_float(values.get("mae_after")),
                model=model,
                reason=str(values.get("reason", "")),
                warning=str(values.get("warning", "")),
                cv_mae=_optional_float(values.get("cv_mae")),
                cv_mae_ci=_pair(values.get("cv_mae_ci")),
                cv_mape=_optional_float(values.get("cv_mape")),
                cv_mape_ci=_pair(values.get("cv_mape_ci")),
                mape_before=_optional_float(values.get("mape_before")),
                candidates=tuple((str(m), float(v)) for m, v in dict(candidates).items()),
                fitted_from=values.get("fitted_from", ""),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: zone {zone!r}: {exc}") from None
    return result
