"""The site configuration: one YAML file, validated strictly, overridable from the environment.

Unknown keys are rejected (a misspelt `treshold` must not silently fall back to a default), every
field says its unit and bounds, and every error names the path in the file and its line. Any
value can be overridden as `LOBBYWATCH_<SECTION>__<KEY>[__<KEY>...]=<yaml value>`; list items
are addressed by index or by their `id` (`LOBBYWATCH_CAMERAS__LOBBY__SOURCE=rtsp://...`), so
containers and tests need not edit files.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
import stat
import types
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from edge.capture.settings import SourceKind, classify_source, redact_url

ENV_PREFIX = "LOBBYWATCH_"
ModelT = TypeVar("ModelT", bound=BaseModel)
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

Id = Annotated[
    str,
    Field(pattern=ID_PATTERN, description="Identifier: letters, digits and _ . - (up to 64)"),
]
Point = tuple[
    Annotated[float, Field(ge=0.0, le=1.0)],
    Annotated[float, Field(ge=0.0, le=1.0)],
]
#: Common frame sizes (width, height), smallest first: the example a pixel polygon's error gives.
FRAME_SIZES = ((640, 480), (1280, 720), (1920, 1080), (2560, 1440), (3840, 2160))


def _fractions_not_pixels(value: Any) -> Any:
    """One error for a polygon with a coordinate above 1, before the per-number checks.

    Points drawn on a frame grab come out in pixels; the bound on each number would then give
    one bare "<= 1" per coordinate (six for a triangle), none saying what is wrong. Anything
    else (a negative, NaN, a point of three numbers) is left to those checks, whose messages
    name the point.
    """
    if not isinstance(value, list):
        return value
    finite = [
        (float(p[0]), float(p[1]))
        for p in value
        if isinstance(p, (list, tuple)) and len(p) == 2 and all(_finite(c) for c in p)
    ]
    outside = [(x, y) for x, y in finite if x > 1 or y > 1]
    if not outside:
        return value
    highest = max(max(x, y) for x, y in outside)
    x, y = outside[0]
    hint = (
        "a polygon's points are fractions of the frame"
        " (x / width, y / height, 0..1, x right, y down)"
    )
    if highest < 2:  # a slip past the edge, not a pixel position
        raise PydanticCustomError(
            "polygon_outside_frame",
            f"point [{x:g}, {y:g}] lies outside the frame (a coordinate above 1); {hint}",
        )
    message = f"points look like pixels (a coordinate above 1: {highest:g}); {hint}"
    fits = [(w, h) for w, h in FRAME_SIZES if all(a <= w and b <= h for a, b in finite)]
    if fits:
        w, h = fits[0]
        message += f": e.g. in a {w}x{h} frame [{x:g}, {y:g}] is [{x / w:.4g}, {y / h:.4g}]"
    raise PydanticCustomError("polygon_in_pixels", message)


def _finite(value: Any) -> bool:
    """A number the bounds can judge (a bool, a string, NaN or a 400-digit int: theirs to refuse)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


Polygon = Annotated[
    list[Point],
    Field(
        min_length=3,
        description="At least 3 points [x, y] as fractions of the frame (x / width, y / height,"
        " 0..1), x right, y down; not pixels",
    ),
    # After the Field, so its length check stays the list's own ("List should have at least 3").
    BeforeValidator(_fractions_not_pixels),
]
ZoneRole = Literal["waiting", "queue", "service", "entrance", "self_service", "staff"]
# Where customers wait: the line whose wait is estimated (docs/queueing.md).
LINE_ROLES: tuple[ZoneRole, ...] = ("waiting", "queue")
# Zones whose visits are timed by default (TrackingConfig): every customer role. Waits come
# from the line's visits, departures from service visits, arrivals from entrance visits.
TIMED_ROLES: tuple[ZoneRole, ...] = ("waiting", "queue", "service", "entrance", "self_service")


class _Strict(BaseModel):
    # allow_inf_nan: "1e999" or .inf would make a duration endless or a threshold unreachable;
    # no field has a use for a non-finite number.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        # Lax mode reads `port: true` as 1. Strict mode would refuse it, but also the strings
        # that ${VAR} substitution produces ("8883"), so only booleans are refused here.
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _bool_for_number(field.annotation, value):
            raise ValueError("must be a number, not true/false")
        # A NUL ("\0" in YAML) is in no name, address or path; the OS refuses it in a path.
        if _has_nul(value):
            raise ValueError("contains a NUL character")
        return value


def _bool_for_number(annotation: Any, value: Any) -> bool:
    """Whether `value` holds a boolean, at any depth, where `annotation` wants an int or float."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _bool_for_number(args[0], value)
    if origin in (Union, types.UnionType):
        if isinstance(value, bool):
            return bool not in args and any(_wants_number(a) for a in args)
        return any(_bool_for_number(a, value) for a in args)
    if isinstance(value, bool):
        return _wants_number(annotation)
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and args:
        if origin is tuple and args[-1] is not Ellipsis:
            return any(_bool_for_number(a, v) for a, v in zip(args, value, strict=False))
        return any(_bool_for_number(args[0], v) for v in value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return any(_bool_for_number(args[1], v) for v in value.values())
    return False


def _has_nul(value: Any) -> bool:
    """A NUL in a string or a list of them (a mapping is a section: it checks its own fields)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


def _wants_number(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation in (int, float)


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest of `choices` to a misspelt `word`, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SiteConfig(_Strict):
    """The branch: its id in every topic, record and report, and its local time."""

    id: Id = Field(description="Site (branch) identifier, used in topics and records")
    name: str = Field("", description="Human-readable branch name")
    timezone: str = Field("UTC", description="IANA time zone of the branch, e.g. Asia/Shanghai")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class ZoneConfig(_Strict):
    """An area of the frame whose people are counted; ids are unique across the site."""

    id: Id
    name: str = Field("", description="Name shown to people")
    role: ZoneRole = Field(description="What the zone is for; alert rules select zones by it")
    polygon: Polygon
    priority: int = Field(
        0, description="Where zones overlap, a person counts only in the highest-priority zone"
    )
    capacity: int | None = Field(
        None,
        ge=1,
        le=200,
        description="self_service zones: how many kiosks there are (advice says how many are free)",
    )
    counter: str | None = Field(
        None,
        min_length=1,
        max_length=16,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="service and staff zones: the counter they belong to, shown as 'counter 3'",
    )

    @field_validator("polygon")
    @classmethod
    def _non_degenerate(cls, polygon: list[Point]) -> list[Point]:
        if _polygon_area(polygon) < 1e-6:
            raise ValueError("polygon has no area (points repeated or on one line)")
        return polygon

    @model_validator(mode="after")
    def _role_fields(self) -> ZoneConfig:
        if self.capacity is not None and self.role != "self_service":
            raise ValueError(f"capacity is for self_service zones, not {self.role}")
        if self.counter is not None and self.role not in ("service", "staff"):
            raise ValueError(f"counter is for service and staff zones, not {self.role}")
        return self


class IgnoreMaskConfig(_Strict):
    """An area whose detections never count (mannequins, a poster, a reflection)."""

    id: Id
    polygon: Polygon = Field(description="Detections whose feet fall here are dropped")
    reason: str = Field("", description="Why, e.g. 'mannequins in the shop window'")


class PerspectiveConfig(_Strict):
    """Person-box plausibility from the camera's own perspective (edge/counting/perspective.py).

    Defaults follow from the detectors and from people, not from any scene: see Plausibility.
    """

    enabled: bool = Field(True, description="Drop boxes of implausible size or shape for a person")
    min_height: float = Field(
        0.035, gt=0, lt=0.5, description="Shortest person box, as a fraction of the frame height"
    )
    min_aspect: float = Field(0.1, gt=0, lt=1, description="Thinnest person box, width / height")
    max_aspect: float = Field(1.5, gt=0.5, le=10, description="Widest person box, width / height")
    min_height_ratio: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Shortest box, as a fraction of the learned person height there",
    )
    max_height_ratio: float = Field(
        2.0,
        gt=1,
        le=20,
        description="Tallest box, as a multiple of the learned person height there",
    )
    learn_confidence: float = Field(
        0.6, ge=0, le=1, description="Score at or above which a box teaches the person height"
    )
    min_samples: int = Field(
        200, ge=10, le=100_000, description="Distinct confident boxes before the height is used"
    )
    max_samples: int = Field(
        2000, ge=10, le=100_000, description="Most recent distinct boxes the height is fitted on"
    )

    @model_validator(mode="after")
    def _check(self) -> PerspectiveConfig:
        if self.min_aspect >= self.max_aspect:
            raise ValueError("min_aspect must be less than max_aspect")
        if self.min_samples > self.max_samples:
            raise ValueError("min_samples must not exceed max_samples")
        return self


class OverlayConfig(_Strict):
    """Burnt-in clock, camera name and logo found and masked (edge/counting/overlays.py)."""

    enabled: bool = Field(True, description="Find text overlays and drop boxes lying on them")
    band: float = Field(
        0.1,
        gt=0,
        le=0.5,
        description="Height searched along the top and bottom, fraction of frame",
    )
    bright: int = Field(180, ge=1, le=255, description="Least brightness of a text stroke, 0-255")
    contrast: int = Field(
        100, ge=1, le=255, description="How much darker its outline is within 2 px, 0-255"
    )
    persistence: float = Field(
        0.7, gt=0, le=1, description="Fraction of recent frames a spot must show text"
    )
    window_frames: int = Field(
        200, ge=1, le=100_000, description="Processed frames the persistence averages over"
    )
    min_frames: int = Field(10, ge=1, le=10_000, description="Processed frames before any mask")
    max_text_height: float = Field(
        0.07, gt=0, le=0.5, description="Tallest line of text, as a fraction of the frame height"
    )
    cover: float = Field(
        0.5, gt=0, le=1, description="Fraction of a box on an overlay that drops the box"
    )

    @model_validator(mode="after")
    def _check(self) -> OverlayConfig:
        if self.max_text_height > self.band:
            raise ValueError("max_text_height must not exceed band")
        if self.contrast > self.bright:
            raise ValueError("contrast must not exceed bright")
        return self


class ClutterConfig(_Strict):
    """Things that never move and never change (mannequins, posters, clothes on racks) found
    over hours, suggested as ignore regions and, on strong evidence, not counted
    (edge/counting/clutter.py). Durations are seconds of observation: frames in which the place
    was detected. Defaults follow from people and cameras, not from any scene: see
    ClutterSettings."""

    enabled: bool = Field(True, description="Find places whose box and pixels never change")
    suggest_after_s: float = Field(
        7200.0,
        ge=60,
        le=30 * 86_400,
        description="Seconds a place's crop matches itself before it is suggested as an ignore "
        "region, still counted (2 h: twice the hour a customer may sit still)",
    )
    drop_after_s: float | None = Field(
        28800.0,
        ge=60,
        le=30 * 86_400,
        description="Seconds unchanged without a break before a place's boxes are not counted "
        "(8 h: an opening day no one sits through without moving); null: only suggest",
    )
    match_iou: float = Field(
        0.5, gt=0, le=1, description="Box overlap (IoU) at which a detection is the same place"
    )
    change_cell: float = Field(
        0.5,
        gt=0,
        le=10,
        description="A cell of the box's 16x16 grey thumbnail changed when it moves by this many "
        "spreads of the thumbnail (brightness and contrast of the whole box factored out)",
    )
    change_fraction: float = Field(
        0.03,
        gt=0,
        lt=1,
        description="Fraction of changed cells that shows a change (0.03: a hand, a turned head)",
    )
    drop_change_fraction: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="Most changed cells any frame may show for a drop (0.01: noise only)",
    )
    drift: float = Field(
        0.1,
        gt=0,
        le=1,
        description="How far the mean of the recent boxes may move, as a fraction of the box "
        "height, before the place counts as moved",
    )
    min_contrast: float = Field(
        8.0,
        ge=0,
        le=128,
        description="Spread of the grey thumbnail (0-255) below which a crop shows nothing",
    )
    max_step_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Most seconds one frame interval counts (a longer gap is an outage)",
    )
    occlusion_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="Seconds a place's crop may differ and come back to itself (someone passing "
        "in front) before the place counts as changed; the drop clock forgives none of it",
    )
    forget_after_s: float = Field(
        86_400.0,
        gt=0,
        le=30 * 86_400,
        description="Seconds without a detection after which a place is forgotten",
    )
    max_sites: int = Field(
        64, ge=1, le=1000, description="Most places watched at once (bounds the cost a frame)"
    )

    @model_validator(mode="after")
    def _check(self) -> ClutterConfig:
        if self.drop_after_s is not None and self.drop_after_s < self.suggest_after_s:
            raise ValueError("drop_after_s must not be less than suggest_after_s")
        if self.drop_change_fraction > self.change_fraction:
            raise ValueError("drop_change_fraction must not exceed change_fraction")
        return self


class SceneConfig(_Strict):
    """What the pipeline learns about one camera's view; kept in perspective-<camera>.json
    beside the database."""

    perspective: PerspectiveConfig = Field(default_factory=PerspectiveConfig)
    overlays: OverlayConfig = Field(default_factory=OverlayConfig)
    clutter: ClutterConfig = Field(default_factory=ClutterConfig)
    save_every_s: float = Field(
        300.0, gt=0, le=86_400, description="Seconds between saves of what was learned"
    )


class MotionMaskConfig(_Strict):
    """An area whose change does not count as motion for gating."""

    id: Id
    polygon: Polygon = Field(description="Change here never wakes the detector (a screen, a door)")
    reason: str = Field("", description="Why, e.g. 'queue display above the counters'")


class GatingConfig(_Strict):
    """Run the detector only when the view changed, or every refresh_s (edge/detect/gating.py).

    Defaults follow from cameras, not from a scene: a blurred grey level moving by 18 is past
    sensor noise and JPEG blocks, 2% of a cell is a small far person moving.
    """

    enabled: bool = Field(True, description="Skip the detector while nothing in view changes")
    refresh_s: float = Field(
        10.0, gt=0, le=300, description="Seconds after which the detector runs even on a still view"
    )
    pixel_threshold: int = Field(
        18, gt=0, lt=255, description="Grey levels a pixel must move by to count as changed"
    )
    cell_share: float = Field(
        0.02, gt=0, le=1, description="Share of a grid cell's pixels that must change"
    )
    grid: tuple[int, int] = Field((8, 6), description="Cells across and down compared (1..64 each)")
    masks: list[MotionMaskConfig] = Field(default_factory=list)

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: tuple[int, int]) -> tuple[int, int]:
        if not all(1 <= n <= 64 for n in grid):
            raise ValueError("grid cells must be 1..64 on each axis")
        return grid

    @model_validator(mode="after")
    def _check(self) -> GatingConfig:
        _unique([m.id for m in self.masks], "motion mask")
        return self


class CameraConfig(_Strict):
    """One camera (or a replayed file or image sequence) and the zones drawn on its
    view."""

    id: Id
    name: str = Field("", description="Name shown to people")
    source: str = Field(
        min_length=1,
        description="rtsp:// URL, USB index (usb:0), video file, or image pattern like seq_%06d.jpg",
    )
    fps: float = Field(2.0, gt=0, le=60, description="Frames per second to process (decimation)")
    source_fps: float | None = Field(
        None, gt=0, le=240, description="Frame rate of an image sequence or a file that lacks one"
    )
    loop: bool = Field(False, description="Replay a file or sequence forever (demos)")
    stale_after_s: float = Field(10.0, gt=0, description="Seconds without a frame before stale")
    offline_after_s: float = Field(
        30.0, gt=0, description="Seconds without a frame before offline and reconnect"
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Upper bound of the reconnect backoff")
    zones: list[ZoneConfig] = Field(min_length=1)
    ignore: list[IgnoreMaskConfig] = Field(default_factory=list)
    calibration: Path | None = Field(
        None, description="Per-zone count correction written by `lobbywatch calibrate`"
    )
    scene: SceneConfig = Field(
        default_factory=SceneConfig,
        description="Box plausibility, text overlays and static clutter, learned",
    )
    gating: GatingConfig = Field(
        default_factory=GatingConfig,
        description="Detector only on change, with a bounded refresh (still people stay counted)",
    )

    @field_validator("source")
    @classmethod
    def _known_source(cls, source: str) -> str:
        if classify_source(source) is SourceKind.STREAM:  # raises ValueError, credentials masked
            _check_stream_address(source)
        return source

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        _unique([z.id for z in self.zones], "zone")
        _unique([m.id for m in self.ignore], "ignore mask")
        if self.offline_after_s <= self.stale_after_s:
            raise ValueError("offline_after_s must be greater than stale_after_s")
        return self


class TilingConfig(_Strict):
    """Overlapping tiles, each enlarged to the model's input, so small, distant people are found."""

    enabled: bool = Field(True, description="Also run the detector on overlapping tiles")
    grid: tuple[Annotated[int, Field(ge=1, le=8)], Annotated[int, Field(ge=1, le=8)]] = Field(
        (2, 2), description="Tiles as (columns, rows)"
    )
    overlap: float = Field(
        0.2, ge=0.0, le=0.5, description="Fraction of a tile shared with its neighbour"
    )
    full_frame: bool = Field(
        True, description="Also run once on the whole frame (near, large people)"
    )
    fit: bool = Field(
        True,
        description="Fit the grid to each frame and model: windows shaped like the input of a "
        "model that stretches the frame to it (a portrait camera in a landscape input), and no "
        "tile that enlarges people no more for a letterboxing one (a 2x2 grid is 1x2 on a "
        "portrait frame); applies with tiling off too",
    )


class _ModelFormat(_Strict):
    """What a model file is, where the manifest does not say (a model given by path)."""

    family: Literal["yolox", "ultralytics", "openvino_ssd", "openvino_boxes"] | None = Field(
        None, description="Output format; required when `model` is a path outside the manifest"
    )
    input_size: (
        tuple[Annotated[int, Field(ge=32, le=4096)], Annotated[int, Field(ge=32, le=4096)]]
        | Literal["frame"]
        | None
    ) = Field(
        None,
        description="Model input (width, height) in pixels; default from the manifest. `frame`: "
        "each frame's own size rounded up to a multiple of 32, its longer side at most the "
        "manifest's (a yolox model, reshaped by OpenVINO)",
    )


class FusionModelConfig(_ModelFormat):
    model: str = Field(min_length=1, description="Model name from the manifest, or a path")
    tiling: TilingConfig = Field(
        default_factory=lambda: TilingConfig(enabled=False),
        description="Tiles for this model (default: one pass over the whole frame)",
    )


class FusionConfig(_Strict):
    models: list[FusionModelConfig] = Field(
        default_factory=lambda: [FusionModelConfig(model="person-detection-retail-0013")],
        max_length=3,
        description="More person detectors run on every frame; their boxes are fused with "
        "the main model's, and `detector.confidence` applies to the fused score; "
        "[] runs the main model alone",
    )
    iou: float = Field(
        0.5, gt=0.0, le=1.0, description="IoU from which boxes of two models are one person"
    )
    candidate_confidence: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Score from which each model proposes a box to the fusion",
    )


# Opt-in detector settings for a kind of scene. A preset sets these keys of the detector section,
# which may then not be set beside it (the others: provider, threads, nms_iou).
# crowd: dense, occluded queues (BENCHMARKS.md, "Crowd preset (opt-in)"). ByteTrack's YOLOX-Nano
# at each frame's own size, alone: its full-body boxes hold where COCO models lose the hidden
# bodies; tiles would cost four more passes at the frame's size. 0.15 is the default detector's
# threshold, not a tuned one (on the BRT train split 0.1 counts better, on the Mall worse).
# Its training data is non-commercial: never a default.
CROWD_MODEL = "bytetrack_nano_mot17"
CROWD_ACKNOWLEDGEMENT = "non-commercial-training-data"  # its manifest license_note's value
PRESETS: dict[str, dict[str, Any]] = {
    "crowd": {
        "model": CROWD_MODEL,
        "input_size": "frame",
        "confidence": 0.15,
        "tiling": {"enabled": False},
        "fusion": {"models": []},
    },
}


class DetectorConfig(_ModelFormat):
    """The person detector every camera shares: the model, its score threshold, tiles and
    fusion with a second model (BENCHMARKS.md has the measurements behind the defaults)."""

    preset: Literal["crowd"] | None = Field(
        None,
        description="Opt-in settings for a kind of scene (sets model, input_size, confidence, "
        "tiling and fusion, which may then not be given). "
        f"crowd: dense overhead queues with {CROWD_MODEL} (non-commercial training data: needs "
        "licence_acknowledged)",
    )
    licence_acknowledged: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
        description="The site accepts a model's licence note: its value, as `lobbywatch models "
        f"list` shows it (e.g. {CROWD_ACKNOWLEDGEMENT})",
    )
    model: str = Field(
        "yolox_nano",
        min_length=1,
        description="Model name from the manifest, or a path to a model file",
    )
    confidence: float = Field(
        0.15,
        ge=0.0,
        le=1.0,
        description="Minimum person score (the fused score when fusion is on; "
        "about 0.2 for yolox_nano alone)",
    )
    nms_iou: float = Field(
        0.45, gt=0.0, le=1.0, description="IoU above which overlapping boxes merge"
    )
    tiling: TilingConfig = Field(default_factory=TilingConfig)
    provider: Literal["auto", "tensorrt", "cuda", "openvino", "cpu"] = Field(
        "auto", description="Execution provider; auto picks the fastest installed"
    )
    threads: int = Field(
        0,
        ge=0,
        le=64,
        description="Inference threads per model; 0 = sized for the box: its cores shared out "
        "over the models of the detectors running at once, at least 1",
    )
    slots: int = Field(
        0,
        ge=0,
        le=64,
        description="Detectors shared by all cameras (each loads every model once); 0 = as "
        "many as the box has cores, or cameras if fewer",
    )
    fusion: FusionConfig = Field(
        default_factory=FusionConfig, description="Several detectors, boxes fused (see fusion.py)"
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        name = data.get("preset") if isinstance(data, dict) else None
        preset = PRESETS.get(name) if isinstance(name, str) else None
        if preset is None:  # none, or a name the Literal will refuse with the choices
            return data
        # The preset owns its keys: a key set beside it would quietly make it another detector
        # (a section copied from configs/mall.yaml keeps its tiles and fusion).
        clash = [key for key in preset if key in data]
        if clash:
            raise ValueError(
                f"detector.preset {name} sets {', '.join(preset)}; remove "
                f"{', '.join('detector.' + key for key in clash)}, or remove the preset and "
                "set every key yourself"
            )
        return {**copy.deepcopy(preset), **data}

    @model_validator(mode="after")
    def _candidates_below_threshold(self) -> DetectorConfig:
        if self.fusion.models and self.fusion.candidate_confidence > self.confidence:
            raise ValueError(
                "detector.fusion.candidate_confidence must not exceed detector.confidence"
            )
        return self

    @model_validator(mode="after")
    def _preset_acknowledged(self) -> DetectorConfig:
        # Checked here too, not only against the manifest before a run (edge/tools/preflight.py):
        # a config prepared for another device is refused as soon as it is read.
        if self.preset == "crowd" and self.licence_acknowledged != CROWD_ACKNOWLEDGEMENT:
            given = f" (it is {self.licence_acknowledged!r})" if self.licence_acknowledged else ""
            raise ValueError(
                f"detector.preset crowd runs {CROWD_MODEL}, whose training data (CrowdHuman, "
                "MOT17 under CC BY-NC-SA 3.0, CityPersons, ETHZ) is for non-commercial use "
                "(`lobbywatch models list` shows the note). If the site accepts this, set "
                f"detector.licence_acknowledged: {CROWD_ACKNOWLEDGEMENT}{given}"
            )
        return self


class OccupancyConfig(_Strict):
    """From per-frame counts to the occupancy reported: smoothing over a window, and holding a
    person the detector misses for a frame."""

    window_s: float = Field(
        2.0,
        ge=0,
        le=600,
        description="Seconds of per-frame counts the smoothed occupancy looks back over",
    )
    quantile: float = Field(
        0.5, ge=0.0, le=1.0, description="Quantile of the window reported (0.5: the median)"
    )
    hold_frames: int = Field(
        1,
        ge=0,
        le=10,
        description="Processed frames in a row a person the detector misses still counts (0 = off)",
    )
    hold_s: float = Field(
        3.0,
        ge=0,
        le=60,
        description="Longest a missed person still counts, in seconds, however slow the frames",
    )
    hold_gate: float = Field(
        1.0, gt=0, le=3.0, description="How far feet may move between frames, in box heights"
    )
    hold_min_hits: int = Field(
        2,
        ge=1,
        le=100,
        description="Frames a person must have been detected in before a miss is held over",
    )


class TrackingConfig(_Strict):
    """People followed with ids in the waiting and queue zones, for their time in zone
    (edge/tracking). Defaults are for 1-2 processed frames per second: see the fields."""

    enabled: bool = Field(True, description="Follow people and time their visits to zones")
    roles: list[ZoneRole] = Field(
        default_factory=lambda: list(TIMED_ROLES),
        min_length=1,
        description="Roles of the zones whose visits are timed; staff zones never are",
    )
    gate: float = Field(
        1.0,
        gt=0,
        le=3.0,
        description="How far feet may be from where a track predicted them, in box heights, "
        "per frame (a walker covers about one between frames at 1 Hz)",
    )
    lost_s: float = Field(
        10.0,
        ge=0,
        le=120,
        description="Seconds a person not found keeps their id, to be found again (hidden "
        "behind a passer-by, missed by the detector for a few frames)",
    )
    min_hits: int = Field(
        2,
        ge=1,
        le=100,
        description="Frames a person must be found in before they have an id and a visit "
        "(one-frame false boxes never do)",
    )
    exit_grace_s: float = Field(
        15.0,
        ge=0,
        le=600,
        description="Seconds a person may go unseen in a zone before their visit ends; at "
        "least lost_s, so a person found again with their id is one visit",
    )
    window_s: float = Field(
        1800.0,
        gt=0,
        le=86400,
        description="Seconds finished visits count in the finished-visit dwell figures",
    )
    staff_frames: int = Field(
        3,
        ge=1,
        le=1000,
        description="Frames in a staff zone after which a person is staff and never timed",
    )

    @model_validator(mode="after")
    def _check(self) -> TrackingConfig:
        if "staff" in self.roles:
            raise ValueError("roles: staff zones are never timed")
        if self.exit_grace_s < self.lost_s:
            raise ValueError(
                "exit_grace_s must be at least lost_s: a person found again with their id "
                "would otherwise count as two visits"
            )
        return self


class StorageConfig(_Strict):
    """The SQLite history: counts per interval, alerts, and their outbox."""

    path: Path = Field(
        Path("/var/lib/lobbywatch/lobbywatch.db"), description="SQLite database file"
    )
    interval_s: int = Field(10, ge=1, le=3600, description="History bucket length in seconds")
    retention_days: int = Field(
        400, ge=1, le=3650, description="History older than this is deleted"
    )


class LoggingConfig(_Strict):
    """What the service writes to stderr (the journal under systemd)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe messages written"
    )
    status_interval_s: float = Field(
        10.0, gt=0, description="Seconds between status lines with each camera's fps and counts"
    )


# --- MQTT, alerts, API -----------------------------------------------------------------------

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
TimeRange = Annotated[
    str,
    Field(
        pattern=_TIME_RANGE.pattern,
        description="Local time range HH:MM-HH:MM in the site's time zone, end after start",
    ),
]


def parse_time_range(text: str) -> tuple[int, int]:
    """'09:00-17:30' -> (540, 1050): minutes after local midnight, end exclusive."""
    match = _TIME_RANGE.match(text)
    if match is None:
        raise ValueError(f"time range {text!r} must look like 09:00-17:30")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end > 24 * 60 or end <= start:
        raise ValueError(f"time range {text!r} must end after it starts, by 24:00 at the latest")
    return start, end


def _check_ranges(ranges: list[str]) -> list[str]:
    for text in ranges:
        parse_time_range(text)
    return ranges


class MqttTlsConfig(_Strict):
    """TLS to the broker, and a client certificate where the broker asks for one."""

    enabled: bool = Field(False, description="Connect with TLS (port 8883 by convention)")
    ca_file: Path | None = Field(None, description="CA certificate (PEM); system CAs when unset")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS")
    key_file: Path | None = Field(None, description="Client private key (PEM)")
    insecure: bool = Field(
        False, description="Skip the broker hostname check: for a lab bench, never a branch"
    )

    @model_validator(mode="after")
    def _pair(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class HomeAssistantConfig(_Strict):
    """Home Assistant MQTT discovery (docs/ui.md 4): the site's zones, alert rules and cameras
    announced as entities of one HA device, retained under `prefix`."""

    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery payloads")
    prefix: str = Field(
        "homeassistant",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Home Assistant's discovery prefix (its MQTT integration's setting)",
    )


class SnapshotsConfig(_Strict):
    """The only camera image the product ever serves (docs/ui.md 3): off unless enabled, the
    latest frame held in memory, never stored, served to admins only, every view logged."""

    enabled: bool = Field(
        False, description="Let admins see a camera's latest frame and its detections"
    )


class MqttConfig(_Strict):
    """The broker: retained occupancy and state, alerts to handhelds and their
    acknowledgements (docs/mqtt.md)."""

    enabled: bool = Field(True, description="Publish occupancy and alerts to the broker")
    host: str = Field("localhost", min_length=1, description="Broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS by convention)")
    client_id: str | None = Field(None, description="Default: lobbywatch-<site id>")
    username: str | None = Field(None, description="Broker user; none: connect anonymously")
    password: SecretStr | None = Field(
        None, description="Prefer LOBBYWATCH_MQTT__PASSWORD or password_file to the file itself"
    )
    password_file: Path | None = Field(None, description="File whose first line is the password")
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig)
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds")
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay in seconds")
    reconnect_max_s: float = Field(60.0, gt=0, description="Upper bound of the reconnect backoff")
    topic_prefix: str = Field(
        "lobbywatch",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Topics are <prefix>/<site id>/...",
    )
    occupancy_interval_s: float = Field(
        30.0, gt=0, le=3600, description="Retained occupancy is republished at least this often"
    )
    alert_expiry_s: int = Field(
        3600, ge=60, le=7 * 86400, description="MQTT v5 message expiry of alert messages"
    )
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class PeriodConfig(_Strict):
    """Thresholds that apply in part of the day, e.g. a lunch peak."""

    days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS), min_length=1, description="Weekdays it applies on"
    )
    time: TimeRange
    raise_at: float = Field(ge=0, description="The rule's raise_at in this period")
    clear_at: float = Field(ge=0, description="The rule's clear_at in this period (< raise_at)")

    @model_validator(mode="after")
    def _check(self) -> PeriodConfig:
        parse_time_range(self.time)
        if self.clear_at >= self.raise_at:
            raise ValueError("clear_at must be below raise_at")
        return self


class QuietConfig(_Strict):
    """A time of day without diversion alerts (a meeting, a cash delivery)."""

    days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS), min_length=1, description="Weekdays it applies on"
    )
    time: TimeRange

    @field_validator("time")
    @classmethod
    def _range(cls, value: str) -> str:
        parse_time_range(value)
        return value


class ScheduleConfig(_Strict):
    """When the branch is open: diversion alerts are raised only then."""

    opening_hours: dict[Weekday, list[TimeRange]] = Field(
        default_factory=dict,
        description="Per weekday, opening ranges in local time; a day not listed is closed. "
        "Empty: open around the clock",
    )
    holidays: list[date] = Field(default_factory=list, description="Closed dates (local)")
    quiet: list[QuietConfig] = Field(
        default_factory=list, description="Periods without diversion alerts"
    )
    quiet_before_close_min: int = Field(
        15, ge=0, le=240, description="No new diversion alert in the last minutes before closing"
    )

    @field_validator("opening_hours")
    @classmethod
    def _ranges(cls, hours: dict[Weekday, list[str]]) -> dict[Weekday, list[str]]:
        for ranges in hours.values():
            _check_ranges(ranges)
        return hours


RuleMetric = Literal["count", "wait", "forecast_count", "forecast_wait", "arrivals"]
DiversionPoint = Literal["waiting_area", "entrance"]


class AlertRuleConfig(_Strict):
    """A diversion alert: raised when people in some zones stay at or above a threshold,
    cleared when they stay at or below a lower one (hysteresis)."""

    id: Id
    name: str = Field("", description="Name shown to people")
    zones: list[Id] = Field(min_length=1, description="Zones watched; the rule uses their sum")
    raise_at: float = Field(ge=0, description="People at or above which the condition holds")
    clear_at: float = Field(ge=0, description="People at or below which it clears (< raise_at)")
    raise_after_s: float = Field(60.0, ge=0, description="Seconds the count must hold to raise")
    clear_after_s: float = Field(120.0, ge=0, description="Seconds it must stay low to clear")
    cooldown_s: float = Field(900.0, ge=0, description="Seconds after a clear before raising again")
    escalate_after_s: float | None = Field(
        300.0, gt=0, description="Re-notify and tell the supervisor if not acknowledged by then"
    )
    max_escalations: int = Field(
        2, ge=0, le=10, description="Escalations at most, escalate_after_s apart, per alert"
    )
    effect_after_s: float = Field(
        600.0, gt=0, description="When to measure the waiting count after the pass is done"
    )
    periods: list[PeriodConfig] = Field(default_factory=list)
    metric: RuleMetric = Field(
        "count",
        description="What raise_at and clear_at measure: count (people in the zones), wait "
        "(estimated minutes of wait for a customer arriving now), forecast_count or "
        "forecast_wait (people or minutes horizon_min ahead), arrivals (entrance arrivals in "
        "5 minutes)",
    )
    horizon_min: Literal[15, 30] = Field(
        15, description="forecast_count and forecast_wait: minutes ahead"
    )
    point: DiversionPoint = Field(
        "waiting_area",
        description="The diversion point the alert is for: waiting_area (the lobby manager's "
        "pass) or entrance (the greeter at the ticket machine)",
    )
    reask_after_s: float | None = Field(
        600.0,
        gt=0,
        description="After a pass is done, ask for another if the condition still holds this "
        "many seconds later; null: never",
    )

    @model_validator(mode="after")
    def _check(self) -> AlertRuleConfig:
        if self.clear_at >= self.raise_at:
            raise ValueError("clear_at must be below raise_at")
        _unique(list(self.zones), "zone in rule")
        return self


class QueueConfig(_Strict):
    """The wait estimate, its forecast and the advice in alerts (docs/queueing.md)."""

    window_s: float = Field(
        1200.0, ge=120, le=4 * 3600, description="Seconds of departures and arrivals the wait "
        "estimate is measured over"
    )  # fmt: skip
    min_departures: int = Field(
        3, ge=1, le=100, description="Fewer departures in the window: no throughput-based wait"
    )
    min_service_s: float = Field(
        30.0, ge=0, le=3600, description="A shorter visit to a service zone is a passer-by"
    )
    max_wait_s: float = Field(
        3 * 3600.0, gt=0, le=24 * 3600, description="Wait estimates are capped here"
    )
    unstaffed_after_s: float = Field(
        120.0, ge=0, le=3600, description="A counter empty this long while the line grows is "
        "unstaffed"
    )  # fmt: skip
    surge_factor: float = Field(
        2.0, gt=1, le=20, description="Entrance arrivals at this multiple of the usual for the "
        "time of day are a surge"
    )  # fmt: skip


class CameraAlertConfig(_Strict):
    """Tell IT when a camera stops delivering frames."""

    enabled: bool = Field(True, description="Raise an alert for an offline or stale camera")
    after_s: float = Field(
        120.0, gt=0, description="Seconds a camera must be offline or stale before IT is told"
    )


ChannelKind = Literal["wecom", "dingtalk", "feishu", "email", "ntfy", "webhook"]
ChannelEvent = Literal["raised", "escalated", "accepted", "pass_done", "cleared"]
ChannelAudience = Literal["manager", "supervisor", "both", "it"]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$", description="Environment variable")]
#: What a channel hears of when its config names no events (docs/handheld.md, Delivery channels).
DEFAULT_CHANNEL_EVENTS: dict[str, tuple[ChannelEvent, ...]] = {
    "manager": ("raised", "escalated", "accepted", "cleared"),
    "both": ("raised", "escalated", "accepted", "cleared"),
    "supervisor": ("escalated", "accepted", "cleared"),
    "it": ("raised", "cleared"),
}
_CHANNEL_AUDIENCE_EVENTS: dict[str, frozenset[str]] = {
    "manager": frozenset(get_args(ChannelEvent)),
    "both": frozenset(get_args(ChannelEvent)),
    # The supervisor hears of an alert when it is escalated, never when it is merely raised.
    "supervisor": frozenset({"escalated", "accepted", "pass_done", "cleared"}),
    # Camera alerts are raised and cleared, nobody accepts them.
    "it": frozenset({"raised", "cleared"}),
}


class ChannelConfig(_Strict):
    """A channel the bank already uses (WeCom, DingTalk, Feishu, e-mail, ntfy, a signed webhook)
    that alerts also go to, through a durable outbox with retries (edge/alerts/delivery.py).
    The URL holds the robot key or the mail password, so it is never written here: it comes
    from an environment variable or a file, and is never logged."""

    id: Id = Field(description="Names the channel in deliveries, logs, health and metrics")
    kind: ChannelKind = Field(description="Which service; the URL must be of that kind")
    url_env: EnvName | None = Field(
        None, description="Environment variable holding the channel's URL (apprise syntax)"
    )
    url_file: Path | None = Field(None, description="File whose first line is the channel's URL")
    secret_env: EnvName | None = Field(
        None, description="webhook only: environment variable holding the HMAC-SHA256 secret"
    )
    secret_file: Path | None = Field(
        None, description="webhook only: file whose first line is the HMAC-SHA256 secret"
    )
    audience: ChannelAudience = Field(
        "manager",
        description="manager: the lobby manager's group; supervisor: escalations (and what "
        "follows them); both; it: camera alerts",
    )
    events: list[ChannelEvent] | None = Field(
        None,
        min_length=1,
        description="Events sent (raised, escalated, accepted, pass_done, cleared); default "
        "by audience",
    )
    language: Literal["en", "zh-CN"] | None = Field(
        None, description="Language of this channel's messages; default alerts.language"
    )
    max_per_minute: int = Field(
        6,
        ge=1,
        le=60,
        description="Messages at most per minute; what is over is delayed and merged into one "
        "(WeCom and DingTalk robots refuse more than 20 a minute)",
    )
    expire_after_s: float = Field(
        7200.0,
        ge=60,
        le=7 * 86400,
        description="Seconds after which an undelivered message is given up as no longer useful",
    )
    timeout_s: float = Field(
        10.0, gt=0, le=60, description="Seconds one attempt may take, answer included"
    )
    api_base: str | None = Field(
        None,
        description="wecom, dingtalk, feishu: scheme and host of the service where the bank runs "
        "its own (a private WeCom or DingTalk) or a relay; default the public service",
    )

    @property
    def sends(self) -> tuple[ChannelEvent, ...]:
        """The events this channel is sent, the default for its audience when none are set."""
        return tuple(self.events) if self.events else DEFAULT_CHANNEL_EVENTS[self.audience]

    @model_validator(mode="after")
    def _check(self) -> ChannelConfig:
        if (self.url_env is None) == (self.url_file is None):
            raise ValueError("give exactly one of url_env or url_file (the URL holds its key)")
        signing = self.secret_env is not None or self.secret_file is not None
        if self.kind == "webhook":
            if (self.secret_env is None) == (self.secret_file is None):
                raise ValueError("a webhook is signed: give one of secret_env or secret_file")
        elif signing:
            raise ValueError(f"secret_env and secret_file are for kind webhook, not {self.kind}")
        if self.api_base is not None:
            if self.kind not in ("wecom", "dingtalk", "feishu"):
                raise ValueError("api_base is for wecom, dingtalk and feishu")
            parts = urlsplit(self.api_base)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
                raise ValueError("api_base must look like https://host[:port] (no path or query)")
        if self.events is not None:
            _unique(list(self.events), "event in channel")
            wrong = sorted(set(self.events) - _CHANNEL_AUDIENCE_EVENTS[self.audience])
            if wrong:
                raise ValueError(
                    f"audience {self.audience} is not sent {', '.join(wrong)} (it may have: "
                    f"{', '.join(sorted(_CHANNEL_AUDIENCE_EVENTS[self.audience]))})"
                )
        return self


class AlertsConfig(_Strict):
    """Diversion alerts to the lobby manager's handheld, their escalations, and the channels
    they also go to (docs/handheld.md)."""

    language: Literal["en", "zh-CN"] = Field("en", description="Language of alert messages")
    templates_dir: Path | None = Field(None, description="Override the shipped message templates")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    rules: list[AlertRuleConfig] = Field(default_factory=list)
    camera_offline: CameraAlertConfig = Field(default_factory=CameraAlertConfig)
    channels: list[ChannelConfig] = Field(
        default_factory=list,
        description="WeCom, DingTalk, Feishu, e-mail, ntfy and webhook channels (none by default)",
    )

    @model_validator(mode="after")
    def _unique_rules(self) -> AlertsConfig:
        _unique([r.id for r in self.rules], "rule")
        _unique([c.id for c in self.channels], "channel")
        return self


class ApiKeyConfig(_Strict):
    """A key for the API, stored as its sha256 or read from the environment, never in clear."""

    id: Id = Field(description="Who holds the key (shown in logs and audit, never the key)")
    role: Literal["viewer", "manager", "admin"] = Field(
        description="viewer: read everything; manager: also acknowledge alerts; admin: everything"
    )
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="sha256 hex of the key; the key is not stored"
    )
    env: str | None = Field(
        None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="Environment variable holding the key"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ApiKeyConfig:
        if (self.sha256 is None) == (self.env is None):
            raise ValueError("give exactly one of sha256 or env")
        return self


class ApiTlsConfig(_Strict):
    """https for the API: the phone web app needs it (a browser keeps the phone's credential
    only from an https page, and runs service workers and notifications only there)."""

    cert_file: Path | None = Field(
        None, description="The device's certificate chain (PEM), naming the host phones open"
    )
    key_file: Path | None = Field(None, description="Its private key (PEM)")

    @model_validator(mode="after")
    def _pair(self) -> ApiTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class ApiConfig(_Strict):
    """The supervisor REST API and the pages it serves (api/README.md)."""

    enabled: bool = Field(False, description="Serve the API from `lobbywatch run` as well")
    host: str = Field("127.0.0.1", description="Listen address; 0.0.0.0 to serve the branch LAN")
    port: int = Field(8080, ge=1, le=65535, description="Listen port")
    tls: ApiTlsConfig = Field(default_factory=ApiTlsConfig)
    public_url: str | None = Field(
        None,
        description="How phones on the branch LAN reach the API, https://host[:port], for the "
        "pairing QR code; default https://<this machine's name>:<port>",
    )
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed; none by default"
    )
    failed_auth_limit_per_min: int = Field(
        10, ge=1, le=10000, description="Failed authentications per client address per minute"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IPs or CIDRs) whose X-Forwarded-For names the client; "
        "none by default: the client is the connection's peer, whatever the headers say",
    )
    session_ttl_s: int = Field(
        8 * 3600,
        ge=60,
        le=7 * 86400,
        description="How long a browser login with a key lasts (seconds, from the login)",
    )
    snapshots: SnapshotsConfig = Field(default_factory=SnapshotsConfig)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        try:
            _ = parts.port  # raises for a port outside 0..65535
        except ValueError:
            raise ValueError("public_url has a bad port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("public_url must look like https://host[:port]")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("public_url is scheme, host and port only (no path or query)")
        return url.rstrip("/")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, proxies: list[str]) -> list[str]:
        import ipaddress  # here, not at the top, to keep this section's change in one place

        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"trusted proxy {proxy!r} is not an IP address or CIDR") from None
        return proxies

    @model_validator(mode="after")
    def _unique_keys(self) -> ApiConfig:
        _unique([k.id for k in self.keys], "api key")
        return self


class CentralFeedConfig(_Strict):
    """What the device sends to the head office (docs/central.md, "Device feed"): closed
    occupancy buckets, the queue's wait each minute, alert states and camera status, under
    `<prefix>/<site>/history/` on the local broker, which bridges them to the centre."""

    enabled: bool = Field(False, description="Publish the head-office feed under history/")
    bucket: Literal["1m", "15m"] = Field(
        "15m", description="Occupancy bucket sent to the centre (the API's bucket of that size)"
    )
    catch_up_days: float = Field(
        7, gt=0, le=90, description="After an outage, send closed buckets this far back at most"
    )
    receipts: bool = Field(
        True,
        description="Advance the feed's cursors on the centre's receipts (central/receipts), "
        "not on the local broker's PUBACK; false for a centre that sends none",
    )
    resend_after_s: float = Field(
        30,
        ge=5,
        le=3600,
        description="Send a message again when the centre has sent receipts for this long "
        "since it was sent, none of them for it (receipts only; seconds)",
    )


class LobbyConfig(_Strict):
    site: SiteConfig
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    cameras: list[CameraConfig] = Field(min_length=1)
    occupancy: OccupancyConfig = Field(default_factory=OccupancyConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    central: CentralFeedConfig = Field(default_factory=CentralFeedConfig)

    @model_validator(mode="after")
    def _central_topics(self) -> LobbyConfig:
        # NATS (the centre's broker) maps MQTT's / to its subjects' . and drops a client that
        # publishes a topic with a . in it: the bridge would reconnect and resend for ever.
        dotted = [v for v in (self.site.id, self.mqtt.topic_prefix) if "." in v]
        if self.central.enabled and dotted:
            raise ValueError(
                f"central.enabled: the head office's broker takes no '.' in topics, and "
                f"{dotted[0]!r} (site.id or mqtt.topic_prefix) has one: rename it"
            )
        # The centre reads <prefix>.<site>.history.<kind>: a prefix of one level.
        if self.central.enabled and "/" in self.mqtt.topic_prefix:
            raise ValueError(
                f"central.enabled: mqtt.topic_prefix {self.mqtt.topic_prefix!r} has more than "
                "one level; the head office takes one (as central.yaml broker.topic_prefix)"
            )
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> LobbyConfig:
        _unique([c.id for c in self.cameras], "camera")
        # Zone ids are site-wide: history, alerts and the API address a zone without its camera.
        zone_ids = [z.id for c in self.cameras for z in c.zones]
        _unique(zone_ids, "zone")
        _unknown_zone_errors(self.alerts.rules, zone_ids)
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        ids = [c.id for c in self.cameras]
        raise KeyError(
            f"no camera {camera_id!r} in the config{suggest(camera_id, ids)} "
            f"(cameras: {', '.join(ids)})"
        )


def _check_stream_address(source: str) -> None:
    """A stream URL needs a host and, if it gives one, a port in 1..65535 (urlsplit says why)."""
    try:
        parts = urlsplit(source.strip())
        port = parts.port
    except ValueError as exc:  # "Port out of range 0-65535", a malformed IPv6 address...
        raise ValueError(f"bad stream address {redact_url(source)!r}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"stream address {redact_url(source)!r} has no host")
    if port == 0:
        raise ValueError(f"bad stream address {redact_url(source)!r}: port 0")


def _unknown_zone_errors(rules: Sequence[AlertRuleConfig], zone_ids: list[str]) -> None:
    """Raise one error per unknown zone in a rule, located at that item of `zones` (its line)."""
    errors = [
        InitErrorDetails(
            type=PydanticCustomError(
                "unknown_zone",
                f"alert rule {rule.id!r} watches unknown zone {zone!r}{suggest(zone, zone_ids)}"
                f" (zones: {', '.join(zone_ids)})",
            ),
            loc=("alerts", "rules", r, "zones", z),
            input=zone,
        )
        for r, rule in enumerate(rules)
        for z, zone in enumerate(rule.zones)
        if zone not in zone_ids
    ]
    if errors:
        raise ValidationError.from_exception_data("LobbyConfig", errors)


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    duplicates = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if duplicates:
        raise ValueError(f"duplicate {what} id(s): {', '.join(duplicates)}")


def _polygon_area(polygon: list[Point]) -> float:
    area = 0.0
    for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        area += x1 * y2 - x2 * y1
    return abs(area) / 2.0


# --- loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a config: where (dotted path, file line or env var) and what."""

    path: str
    message: str
    line: int | None = None
    env_var: str | None = None

    def __str__(self) -> str:
        where = self.path or "(top level)"
        if self.env_var:
            where += f" (from environment {self.env_var})"
        elif self.line is not None:
            where += f" (line {self.line})"
        # One line whatever the file holds: a key or value may contain a newline or escape code.
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in f"{where}: {self.message}")


class ConfigError(Exception):
    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} error(s) in configuration\n{lines}")


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Bounds on what the loader accepts. A site config is a few KiB, a few thousand values and under
# ten levels deep; these are far above that and far below what exhausts the loader (a 50 000-deep
# list overflows the stack, nine lines of nested aliases expand to a billion values).
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000


@dataclass(frozen=True)
class ConfigSource:
    """Where a loaded config came from: the file, each path's line, the paths the environment set.

    Kept beside the config so checks made after loading (edge/tools/preflight.py) point at the
    same lines as the schema's errors.
    """

    name: str
    lines: Mapping[tuple[str, ...], int]
    env_paths: Mapping[tuple[str, ...], str]

    def issue(self, loc: Sequence[str | int], message: str) -> ConfigIssue:
        path = tuple(str(part) for part in loc)
        env_var = next((v for p, v in self.env_paths.items() if _overlaps(path, p)), None)
        # A default (a section not in the file) has no line; the first line would mislead.
        line = _nearest_line(self.lines, path) if path[:1] in self.lines or not path else None
        return ConfigIssue(".".join(path), message, line, env_var)


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> LobbyConfig:
    """Read, override from the environment, and validate a config file.

    Strings may refer to environment variables as ${NAME} or ${NAME:-default}. Relative paths
    (storage, file and sequence sources) are taken relative to the config file's directory, so a
    config works whatever directory the service starts in.
    """
    return read_config(path, environ)[0]


def read_config(
    path: Path | str, environ: Mapping[str, str] | None = None
) -> tuple[LobbyConfig, ConfigSource]:
    """load_config, also returning where each value came from (for later checks' messages)."""
    environ = os.environ if environ is None else environ
    path = Path(path)
    text = _read_text(path)
    return _parse(text, source=str(path), base_dir=path.parent, environ=environ)


def _read_text(path: Path) -> str:
    """The file's text. Refuses a device or pipe (reading /dev/zero never ends), a file over
    MAX_CONFIG_BYTES and bytes that are not UTF-8, each as a ConfigError."""

    def error(message: str, line: int | None = None) -> ConfigError:
        return ConfigError(str(path), [ConfigIssue("", message, line)])

    try:
        # stat before open: opening a FIFO blocks until someone writes to it.
        if not stat.S_ISREG(path.stat().st_mode):
            raise error("not a regular file (a device, directory or pipe is not a config)")
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise error(f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise error(f"larger than {MAX_CONFIG_BYTES // 1024} KiB: not a site config")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        raise error(message, line) from None


def parse_config(
    text: str, *, source: str = "<config>", base_dir: Path = Path("."), environ: Mapping[str, str]
) -> LobbyConfig:
    return _parse(text, source=source, base_dir=base_dir, environ=environ)[0]


def read_model(
    path: Path | str, model: type[ModelT], environ: Mapping[str, str] | None = None
) -> ModelT:
    """Another file of the same kind as the site config (the head office's central.yaml):
    the same limits, ${VAR} references and error messages, validated as `model`; no
    LOBBYWATCH_ overrides and no path resolution."""
    environ = os.environ if environ is None else environ
    source = str(path)
    data, lines, issues = _yaml_data(_read_text(Path(path)), source, environ)
    located = ConfigSource(source, lines, {})
    if issues:
        raise ConfigError(source, issues)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _issues_from(exc, located)) from None


def _parse(
    text: str, *, source: str, base_dir: Path, environ: Mapping[str, str]
) -> tuple[LobbyConfig, ConfigSource]:
    data, lines, issues = _yaml_data(text, source, environ)
    env_paths = _apply_env_overrides(data, environ, issues)
    located = ConfigSource(source, lines, env_paths)
    if issues:
        raise ConfigError(source, issues)
    try:
        config = LobbyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _issues_from(exc, located)) from None
    return _resolve_paths(config, base_dir), located


def _yaml_data(
    text: str, source: str, environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], int], list[ConfigIssue]]:
    """The file's mapping with ${VAR} references expanded, its line index, and the issues
    found so far; raises ConfigError for what is not a bounded YAML mapping."""
    if len(text) > MAX_CONFIG_BYTES:
        limit = f"larger than {MAX_CONFIG_BYTES // 1024} KiB: not a site config"
        raise ConfigError(source, [ConfigIssue("", limit)])
    try:
        node, data = _load_yaml(text)
    except _YamlLimitError as exc:
        raise ConfigError(source, [ConfigIssue(exc.path, exc.message, exc.line)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        issue = ConfigIssue("", f"not valid YAML: {_one_line(exc)}", line)
        raise ConfigError(source, [issue]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "the file must be a YAML mapping of sections")])
    lines = _line_index(node)
    issues: list[ConfigIssue] = []
    return _expand_env_refs(data, environ, issues), lines, issues


def _load_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for lines) and its data, within MAX_DEPTH and MAX_NODES."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        # The constructor turns some scalars into values and can fail with a plain ValueError
        # (a date such as 2026-02-30, an integer of more than 4300 digits).
        try:
            data = loader.construct_document(node) if node is not None else None
        except (ValueError, OverflowError) as exc:
            raise yaml.YAMLError(str(exc)) from None
        return node, data
    finally:
        loader.dispose()


def _one_line(exc: yaml.YAMLError) -> str:
    """A YAML error without PyYAML's quoted source lines and carets, on one line."""
    if isinstance(exc, yaml.MarkedYAMLError):
        text = " ".join(part for part in (exc.context, exc.problem) if part)
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


class _YamlLimitError(yaml.YAMLError):
    """A document the loader refuses although it may be well-formed YAML."""

    def __init__(self, path: Sequence[str], message: str, mark: Any) -> None:
        self.path = ".".join(path[:8]) + (f"... ({len(path)} levels)" if len(path) > 8 else "")
        self.message = message
        self.line: int | None = mark.line + 1 if mark is not None else None
        super().__init__(message)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses, while composing and before anything is expanded: nesting deeper
    than MAX_DEPTH, more than MAX_NODES values counting every alias expansion (billion laughs),
    an alias inside its own anchor (a cycle), and a key given twice in a mapping (YAML says
    keys are unique; PyYAML silently keeps the last).

    Aliases stay allowed (`<<: *defaults` is a fair way to share settings between cameras)
    because what they can cost is bounded here.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0  # values so far, each alias counted as the size of what it expands to
        self._path: list[str] = []  # key or index of each node being composed, root first
        self._anchors: list[str | None] = []  # anchor of each node being composed
        self._heights: list[int] = []  # height so far of each node being composed
        self._extent: dict[str, tuple[int, int]] = {}  # anchor -> (values, height) expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        path = [*self._path, _segment(parent, index)] if parent is not None else []
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._anchors:
                raise _YamlLimitError(
                    path, f"alias *{event.anchor} refers to itself (a cycle)", event.start_mark
                )
            # An undefined alias is left to the composer, which reports it.
            nodes, height = self._extent.get(event.anchor or "", (1, 1))
            self._count(path, nodes, len(self._anchors) + height, event.start_mark)
            self._grow(height)
            return super().compose_node(parent, index)
        self._count(path, 1, len(self._anchors) + 1, event.start_mark)
        before = self._nodes
        self._path, outer_path = path, self._path
        self._anchors.append(getattr(event, "anchor", None))
        self._heights.append(0)
        node = super().compose_node(parent, index)
        anchor, height = self._anchors.pop(), self._heights.pop() + 1
        self._path = outer_path
        if anchor is not None:
            self._extent[anchor] = (self._nodes - before + 1, height)
        self._grow(height)
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node, path)
        return node

    def _count(self, path: list[str], nodes: int, depth: int, mark: Any) -> None:
        self._nodes += nodes
        if depth > MAX_DEPTH:
            raise _YamlLimitError(path, f"nested deeper than {MAX_DEPTH} levels", mark)
        if self._nodes > MAX_NODES:
            raise _YamlLimitError(
                path, f"more than {MAX_NODES} values once aliases are expanded", mark
            )

    def _grow(self, child_height: int) -> None:
        if self._heights:
            self._heights[-1] = max(self._heights[-1], child_height)


def _segment(parent: yaml.Node, index: Any) -> str:
    """How a child of `parent` appears in a dotted path: its key, its index, or '<key>'."""
    if isinstance(index, yaml.ScalarNode):
        return str(index.value)
    if isinstance(index, int) and isinstance(parent, yaml.SequenceNode):
        return str(index)
    return "<key>"


def _check_unique_keys(node: yaml.MappingNode, path: list[str]) -> None:
    first: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        name = (key.tag, key.value)
        if name in first:
            raise _YamlLimitError(
                [*path, str(key.value)],
                f"duplicate key (first on line {first[name]}; YAML keys must be unique)",
                key.start_mark,
            )
        first[name] = key.start_mark.line + 1


def _line_index(node: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """Map each path in the YAML document to its 1-based line, for error messages."""
    index: dict[tuple[str, ...], int] = {}

    def walk(n: yaml.Node, path: tuple[str, ...]) -> None:
        index[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                key_path = (*path, str(key.value))
                walk(value, key_path)
                index[key_path] = key.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, str(i)))

    if node is not None:
        walk(node, ())
    return index


def _expand_env_refs(value: Any, environ: Mapping[str, str], issues: list[ConfigIssue]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env_refs(v, environ, issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env_refs(v, environ, issues) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        issues.append(
            ConfigIssue("", f"environment variable {name} is not set (used as ${{{name}}})")
        )
        return ""

    return _ENV_REF.sub(substitute, value)


def _apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str], issues: list[ConfigIssue]
) -> dict[tuple[str, ...], str]:
    """Apply LOBBYWATCH_A__B__C=value overrides in place; returns the paths they set."""
    applied: dict[tuple[str, ...], str] = {}
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue  # LOBBYWATCH_MODELS, LOBBYWATCH_CONFIG... are settings, not overrides
        keys = [k.lower() for k in var[len(ENV_PREFIX) :].split("__")]
        try:
            value = _load_yaml(environ[var])[1] if environ[var] != "" else ""
        except yaml.YAMLError:
            value = environ[var]  # not YAML (or over the bounds): validated as the string it is
        try:
            path = _set_path(data, keys, value)
        except LookupError as exc:
            issues.append(ConfigIssue(".".join(keys), str(exc), env_var=var))
            continue
        applied[path] = var
    return applied


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> tuple[str, ...]:
    node: Any = data
    path: list[str] = []
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, dict):
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
            path.append(key)
        elif isinstance(node, list):
            index = _list_index(node, key)
            if last:
                node[index] = value
            else:
                node = node[index]
            path.append(str(index))
        else:
            raise LookupError(f"cannot set {key!r}: {'.'.join(path)} is not a section")
    return tuple(path)


def env_spelling(item_id: str) -> str:
    """How an id is written in a variable name: `-` and `.` as `_` (a shell name has neither).

    `waiting-full` -> `waiting_full`, so LOBBYWATCH_ALERTS__RULES__WAITING_FULL__RAISE_AT.
    """
    return re.sub(r"[-.]", "_", item_id.lower())


def _list_index(items: list[Any], key: str) -> int:
    """The list item a variable's key names: an index, or an id (see env_spelling).

    A key with `-` or `.` (possible with `env`, not with a shell) must match an id exactly; any
    other key matches the ids whose env_spelling it is. Two matches are an error, never a guess.
    """
    if key.isdigit() and int(key) < len(items):
        return int(key)
    ids = [str(item.get("id", "")) if isinstance(item, dict) else "" for item in items]
    literal = "-" in key or "." in key
    found = [i for i, v in enumerate(ids) if (v.lower() if literal else env_spelling(v)) == key]
    if len(found) == 1:
        return found[0]
    if found:
        raise LookupError(
            f"{key!r} matches the ids {', '.join(ids[i] for i in found)}: "
            f"address the item by index (0..{len(items) - 1})"
        )
    spelled = [env_spelling(v).upper() for v in ids if v]
    raise LookupError(
        f"no list item with index or id {key!r}{suggest(key.upper(), spelled)}"
        f" (ids as written in a variable: {', '.join(spelled) or 'none'})"
    )


def _issues_from(exc: ValidationError, source: ConfigSource) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the documented config)"
        issues.append(source.issue(error["loc"], message))
    return issues


def _overlaps(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _nearest_line(lines: Mapping[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def _resolve_paths(config: LobbyConfig, base_dir: Path) -> LobbyConfig:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else (base_dir / p).resolve()

    cameras = []
    for camera in config.cameras:
        update: dict[str, Any] = {}
        if classify_source(camera.source) in (SourceKind.FILE, SourceKind.SEQUENCE):
            update["source"] = str(resolve(Path(camera.source)))
        if camera.calibration is not None:
            update["calibration"] = resolve(camera.calibration)
        cameras.append(camera.model_copy(update=update))
    storage = config.storage.model_copy(update={"path": resolve(config.storage.path)})
    return config.model_copy(update={"cameras": cameras, "storage": storage})
