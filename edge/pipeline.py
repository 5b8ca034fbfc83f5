"""One camera's path from frame to zone occupancy: detect, place in zones, smooth.

No threads, files or clocks here: the service and the offline replay drive it, each with the
time base that fits (monotonic seconds live, source time in a replay). What it learns of the
camera's scene goes to a SceneFile the caller hands in (none in a replay: it learns afresh).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge import calibration
from edge.calibration import ZoneCalibration
from edge.config import (
    CameraConfig,
    DetectorConfig,
    FusionModelConfig,
    GatingConfig,
    OccupancyConfig,
    SceneConfig,
    TilingConfig,
    TrackingConfig,
)
from edge.counting.clutter import ClutterSettings
from edge.counting.overlays import OverlaySettings
from edge.counting.perspective import Plausibility
from edge.counting.scene import Scene
from edge.detect import (
    Detector,
    DetectorSettings,
    Normalization,
    TilingSettings,
    create_detector,
)
from edge.detect.fusion import FusedDetector
from edge.detect.gating import ChangeGate, GateSettings
from edge.detect.pool import DetectorPool
from edge.detect.settings import Family, letterboxes
from edge.occupancy import OccupancySmoother
from edge.presence import PresenceHold
from edge.storage.scene_file import SceneFile
from edge.tracking.dwell import DwellBook, DwellSettings, Visit, ZoneDwell
from edge.tracking.tracks import FootTracker, TrackerSettings, tracked_ids
from edge.types import Detections, Frame
from edge.zones import Zone, assign_zones, snap_to_border, tally
from models.store import resolve_model


@dataclass(frozen=True)
class FrameResult:
    """What one processed frame says about its camera's zones.

    raw: people the detector placed in each zone in this frame. occupancy: smoothed count per zone.
    inference_s: wall seconds spent in the detector, for fps and latency figures (0 when
    detector_ran is False: the change gate kept the last detections, edge/detect/gating.py).
    """

    camera_id: str
    frame_index: int
    raw: Mapping[str, int]  # per-frame count per zone: detected + held, then calibrated
    detected: Mapping[str, int]  # what the detector placed in each zone, before calibration
    occupancy: Mapping[str, float | None]
    detections: Detections
    zone_of: tuple[str | None, ...]  # the zone each detection counts in, None for none
    inference_s: float
    dropped: int = 0  # boxes the scene ruled out: no person's size or shape, on text, or static
    track_ids: tuple[int | None, ...] = ()  # each detection's person id (None: not yet confirmed)
    dwell: Mapping[str, ZoneDwell] = field(default_factory=dict)  # per timed zone (edge/tracking)
    visits: tuple[Visit, ...] = ()  # the visits that ended in this frame (edge/tracking)
    detector_ran: bool = True  # False: nothing changed in view, the last detections stand
    gate_reason: str = "off"  # why the gate ran the detector or not ("off": no gate)
    rejected: Detections = field(default_factory=Detections.empty)  # boxes the scene ruled out
    rejected_why: tuple[str, ...] = ()  # each one's reason: "text", "size" or "static"


@dataclass(frozen=True)
class _Judged:
    """One detector run as the scene judged it."""

    kept: Detections
    rejected: Detections
    why: tuple[str, ...]


def build_gate(config: GatingConfig, camera: CameraConfig) -> ChangeGate | None:
    """The camera's change gate; its ignore polygons are masked too (nothing there counts)."""
    if not config.enabled:
        return None
    masks = [m.polygon for m in config.masks] + [m.polygon for m in camera.ignore]
    settings = GateSettings(
        config.refresh_s,
        config.pixel_threshold,
        config.cell_share,
        config.grid,
        tuple(masks),
    )
    return ChangeGate(settings)


def build_scene(config: SceneConfig) -> Scene:
    """The config's fields are the settings' fields, less the switch."""
    p, o, c = config.perspective, config.overlays, config.clutter
    return Scene(
        Plausibility(**p.model_dump(exclude={"enabled"})) if p.enabled else None,
        OverlaySettings(**o.model_dump(exclude={"enabled"})) if o.enabled else None,
        ClutterSettings(**c.model_dump(exclude={"enabled"})) if c.enabled else None,
    )


class CameraPipeline:
    def __init__(
        self,
        camera: CameraConfig,
        detector: Detector,
        occupancy: OccupancyConfig,
        calibrations: Mapping[str, ZoneCalibration] | None = None,
        scene_file: SceneFile | None = None,
        tracking: TrackingConfig | None = None,
    ) -> None:
        self.camera_id = camera.id
        self.detector = detector
        self.zones = tuple(Zone(z.id, tuple(z.polygon), z.priority) for z in camera.zones)
        self.ignore = tuple(snap_to_border(m.polygon) for m in camera.ignore)
        if calibrations is None:
            calibrations = calibration.load(camera.calibration) if camera.calibration else {}
        self.calibrations = {
            z.id: calibrations.get(z.id, calibration.IDENTITY) for z in camera.zones
        }
        self._hold = PresenceHold(
            occupancy.hold_frames, occupancy.hold_s, occupancy.hold_gate, occupancy.hold_min_hits
        )
        self._smoothers = {
            z.id: OccupancySmoother(occupancy.window_s, occupancy.quantile) for z in camera.zones
        }
        self._tracker, self._dwell = build_tracking(camera, tracking or TrackingConfig())
        self.scene = build_scene(camera.scene)
        self._gate = build_gate(camera.gating, camera)
        # What the scene kept of the last run's boxes, and what it ruled out and why: what a
        # frame the gate lets pass counts from.
        self._kept: _Judged | None = None
        self._scene_file = scene_file if self.scene.enabled else None
        self._scene_every_s = camera.scene.save_every_s
        self._scene_saved_at: float | None = None
        state = self._scene_file.load() if self._scene_file else None
        if state is not None:
            self.scene.load(state)

    @property
    def holds_people(self) -> bool:
        """Whether counts depend on earlier frames (people held through a missed detection)."""
        return self._hold.active

    @property
    def zone_ids(self) -> tuple[str, ...]:
        return tuple(z.id for z in self.zones)

    def process(self, frame: Frame, now: float) -> FrameResult:
        """Count people in one frame; `now` is the frame's time in seconds on a steady clock."""
        # Known text overlays are painted out first: the detector never boxes a clock digit.
        image = self.scene.for_detector(frame.image)
        gate = self._gate.decide(image, now) if self._gate is not None else None
        judged = self._kept
        if gate is None or gate.run or judged is None:
            judged, inference_s = self._detect(frame, image, now)
            ran = True
        else:
            inference_s, ran = 0.0, False
        detections = judged.kept
        dropped = len(judged.rejected)
        anchors = detections.anchors(frame.width, frame.height)
        zone_of = tuple(assign_zones(anchors, self.zones, self.ignore))
        detected = tally(zone_of, self.zone_ids)
        present = tally(
            zone_of + tuple(self._hold.update(detections.xyxy, zone_of, now)), self.zone_ids
        )
        raw = {z: self.calibrations[z].apply(n) for z, n in present.items()}
        occupancy = {z: self._smoothers[z].update(raw[z], now) for z in self.zone_ids}
        track_ids: tuple[int | None, ...] = ()
        dwell: dict[str, ZoneDwell] = {}
        visits: tuple[Visit, ...] = ()
        if self._tracker is not None and self._dwell is not None:
            tracked = self._tracker.update(detections.xyxy, now)
            track_ids = tracked.ids
            dwell = self._dwell.update(tracked_ids(tracked, zone_of), now)
            visits = self._dwell.ended
        return FrameResult(
            self.camera_id,
            frame.index,
            raw,
            detected,
            occupancy,
            detections,
            zone_of,
            inference_s,
            dropped,
            track_ids,
            dwell,
            visits,
            ran,
            "off" if gate is None else gate.reason,
            judged.rejected,
            judged.why,
        )

    def _detect(
        self, frame: Frame, image: npt.NDArray[np.uint8], now: float
    ) -> tuple[_Judged, float]:
        """Run the detector and the scene's judgement: the boxes kept and ruled out, and the
        detector's wall seconds."""
        started = time.perf_counter()
        try:
            detections = self.detector.detect(image)
        except Exception:
            if self._gate is not None:
                self._gate.reset()  # the next frame must not be compared with one never seen
            raise
        inference_s = time.perf_counter() - started
        if isinstance(self.detector, DetectorPool):  # its turn in the line is not inference
            inference_s -= self.detector.waited_s()
        judged = _Judged(detections, Detections.empty(), ())
        if self.scene.enabled:
            keep = self.scene.update(frame.image, detections, now)
            if not keep.all():
                out = np.flatnonzero(~keep)
                why = tuple(self.scene.last_reasons[i] for i in out)
                judged = _Judged(detections[keep], detections[out], why)
            self._maybe_save_scene(now)
        self._kept = judged
        return judged, inference_s

    def _maybe_save_scene(self, now: float) -> None:
        if self._scene_file is None:
            return
        if self._scene_saved_at is None:
            self._scene_saved_at = now
        elif now - self._scene_saved_at >= self._scene_every_s:
            self.save_scene()
            self._scene_saved_at = now

    def save_scene(self) -> None:
        """Keep what was learned of the scene now (also called at shutdown)."""
        if self._scene_file is not None:
            self._scene_file.save(self.scene.to_dict())

    def reset_scene(self) -> None:
        """Forget the learned scene, here and on disk (the camera was moved or re-aimed)."""
        self.scene.reset()
        if self._scene_file is not None:
            self._scene_file.remove()

    def describe_scene(self) -> str:
        """What was learned, for the status line and doctor."""
        return f"camera {self.camera_id}: {self.scene.describe()}"

    def mark_unknown(self) -> None:
        """The camera is not online: forget the window so stale counts are never reported."""
        self._hold.reset()
        self._kept = None
        if self._gate is not None:
            self._gate.reset()
        if self._tracker is not None and self._dwell is not None:
            self._tracker.reset()
            self._dwell.reset()
        for smoother in self._smoothers.values():
            smoother.update(None, 0.0)


def build_tracking(
    camera: CameraConfig, config: TrackingConfig
) -> tuple[FootTracker | None, DwellBook | None]:
    """A tracker and its dwell book where the camera has a zone of a timed role, else none."""
    timed = [z.id for z in camera.zones if z.role in config.roles]
    if not config.enabled or not timed:
        return None, None
    tracker = FootTracker(TrackerSettings(config.gate, config.lost_s, config.min_hits))
    staff = [z.id for z in camera.zones if z.role == "staff"]
    settings = DwellSettings(config.exit_grace_s, config.window_s, config.staff_frames)
    return tracker, DwellBook(timed, staff, settings)


def detector_settings(config: DetectorConfig, cache_dir: Path | None = None) -> DetectorSettings:
    """Runtime settings of the main model of the detector section, gaps filled from the manifest.

    With fusion on, the model proposes boxes from fusion.candidate_confidence; the fused score
    is what detector.confidence then applies to.
    """
    confidence = config.fusion.candidate_confidence if config.fusion.models else config.confidence
    return _model_settings(config, config, confidence, cache_dir)


def box_threads(cameras: int, models: int, cores: int | None = None) -> int:
    """Inference threads per model when the config leaves it to the box (threads: 0): the
    cores shared out over the models of every detector running at once (`cameras` of them),
    at least one. Each runtime's default is a pool the size of the machine per model, so 4
    cameras of 2 models on 2 cores ran 16 threads on 2 cores: 281 CPU-ms a frame and 1.6-1.9
    fps a camera; one thread each, 2.0 fps at half the CPU with the same counts (BENCHMARKS.md,
    Capacity)."""
    return max(1, (cores or box_cores()) // max(1, cameras * models))


def box_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def build_pool(
    config: DetectorConfig, cache_dir: Path | None = None, *, cameras: int = 1
) -> DetectorPool:
    """The detectors all of a box's cameras share (edge/detect/pool.py): `slots` of them, 0
    meaning one per core or per camera, whichever is fewer; `threads: 0` then shares the cores
    out over the models of the slots, which run at once."""
    slots = config.slots or max(1, min(cameras, box_cores()))
    return DetectorPool(lambda: build_detector(config, cache_dir, cameras=slots), slots)


def build_detector(
    config: DetectorConfig, cache_dir: Path | None = None, *, cameras: int = 1
) -> Detector:
    """One detector: detectors reuse their input buffers, so threads never share one.

    cache_dir keeps accelerator artefacts (TensorRT engines) across restarts. cameras: how many
    detectors run at once on this box, for the threads of `threads: 0` (box_threads).
    """
    if config.threads == 0:
        models = 1 + len(config.fusion.models)
        config = config.model_copy(update={"threads": box_threads(cameras, models)})
    main = create_detector(detector_settings(config, cache_dir))
    if not config.fusion.models:
        return main
    others = [create_detector(m) for m in fusion_settings(config, cache_dir)]
    return FusedDetector([main, *others], config.fusion.iou, config.confidence)


def fusion_settings(
    config: DetectorConfig, cache_dir: Path | None = None
) -> list[DetectorSettings]:
    """Runtime settings of the fusion's other models, each proposing from candidate_confidence."""
    candidates = config.fusion.candidate_confidence
    return [_model_settings(config, m, candidates, cache_dir) for m in config.fusion.models]


def _tiling(config: TilingConfig, family: Family) -> TilingSettings | None:
    """Tiles as configured; without them, a model that stretches the frame to its input still
    gets windows of its input's shape where the frame is far from it (a portrait camera)."""
    # A 1x1 grid is the whole frame: tiling would only run the same pass twice.
    if config.enabled and config.grid != (1, 1):
        return TilingSettings(config.grid, config.overlap, config.full_frame, config.fit)
    if config.fit and not letterboxes(family):
        return TilingSettings((1, 1), config.overlap, full_frame=False, fit=True)
    return None


def _model_settings(
    config: DetectorConfig,
    model_config: DetectorConfig | FusionModelConfig,
    confidence: float,
    cache_dir: Path | None,
) -> DetectorSettings:
    """Settings for one model: its own name, family, input size and tiling; the runtime options
    (provider, threads, NMS) of the detector section. Refuses a model whose licence note the
    section has not acknowledged, whatever starts it (service, replay, benchmark)."""
    model = resolve_model(model_config.model)
    where = "detector" if model_config is config else "detector.fusion.models"
    acknowledged = config.licence_acknowledged
    problem = model.entry.acknowledgement_problem(acknowledged) if model.entry else None
    if problem:
        raise ValueError(f"{where}: {problem}")
    family = model_config.family or model.family
    # "frame": the frame's own size, the manifest's input size capping its longer side.
    frame_sized = isinstance(model_config.input_size, str)
    input_size = model.input_size if frame_sized else model_config.input_size or model.input_size
    if family is None or input_size is None:
        fix = (
            "input_size frame takes its longest side from there"
            if frame_sized
            else "set family and input_size"
        )
        raise ValueError(
            f"{where}: model {model_config.model!r} is not in the model manifest: {fix}"
        )
    preprocess = model.entry.preprocess if model.entry else None
    return DetectorSettings(
        model_path=model.path,
        family=family,
        input_size=(int(input_size[0]), int(input_size[1])),
        confidence=confidence,
        nms_iou=config.nms_iou,
        tiling=_tiling(model_config.tiling, family),
        provider=config.provider,
        threads=config.threads,
        person_class_id=model.entry.classes.person if model.entry else 0,
        cache_dir=cache_dir,
        normalization=Normalization(preprocess.channels, preprocess.mean, preprocess.std)
        if preprocess
        else None,
        frame_sized=frame_sized,
    )
