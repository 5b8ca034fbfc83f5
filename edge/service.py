"""`lobbywatch run`: the long-running service, one worker thread per camera.

Each worker reads frames, counts people per zone, keeps the live state and the interval history
in the store, and reports unknown (never 0) while its camera is stale or offline. The main thread
watches the workers' heartbeats, prints a status line, purges old history, and turns SIGTERM or
SIGINT into a clean stop that writes the last partial interval.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from edge import watchdog
from edge.board import BoardUpdate, OccupancyBoard
from edge.capture import Camera, CaptureSettings
from edge.child import ChildProcess, ChildState
from edge.config import CameraConfig, LobbyConfig
from edge.detect import Detector
from edge.history import HistoryRecorder
from edge.integrations.central import CentralFeed
from edge.notifier import DeliveryStatus, Notifier
from edge.pipeline import CameraPipeline, FrameResult, build_pool
from edge.runtime.config_watch import ConfigWatch, load_runnable
from edge.runtime.device_state import StateFile, state_path
from edge.runtime.frames import FrameHolder, FrameServer, serve_frames
from edge.runtime.histogram import DETECTOR_SECONDS_BOUNDS, Histogram
from edge.runtime.queue_monitor import QueueMonitor
from edge.storage.scene_file import SceneFile, scene_path
from edge.store import CameraLive, HistoryRow, Store, StoreCondition, StoreWriteError
from edge.types import CameraStatus, ZoneReading

log = logging.getLogger("lobbywatch.service")

READ_TIMEOUT_S = 0.5
LIVE_EVERY_S = 1.0
PURGE_EVERY_S = 3600.0
# The systemd watchdog is fed while each worker loop turned within HEARTBEAT_MAX_S and each
# online camera had a frame processed within FRAMES_MAX_S (keep WatchdogSec above both).
HEARTBEAT_MAX_S = 30.0
FRAMES_MAX_S = 60.0
# A detector that fails on this many frames in a row is broken, not unlucky: exit and let the
# service manager restart the process rather than report nothing forever.
MAX_CONSECUTIVE_ERRORS = 20
#: History rows a camera keeps in memory while the store refuses writes (about six days of
#: one zone at the default 10 s interval); beyond it the oldest are dropped, and counted.
MAX_UNSAVED_HISTORY = 50_000
STATE_EVERY_S = 1.0
RECOVER_EVERY_S = 10.0
#: Seconds of frames a worker's shares (dropped, detector) are taken over: long enough that one
#: slow frame is no overload, short enough that the status line says it within a minute.
RATE_WINDOW_S = 30.0
#: Above this share of its frames dropped by capture, a camera is "overloaded": the box cannot
#: keep the camera's fps (a few drops are jitter; a tenth is a rate the camera does not get).
OVERLOADED_SHARE = 0.1


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def capture_settings(camera: CameraConfig, *, realtime: bool, loop: bool) -> CaptureSettings:
    return CaptureSettings(
        camera_id=camera.id,
        source=camera.source,
        target_fps=camera.fps,
        source_fps=camera.source_fps,
        realtime=realtime,
        loop=loop,
        stale_after_s=camera.stale_after_s,
        offline_after_s=camera.offline_after_s,
        reconnect_max_s=camera.reconnect_max_s,
        open_timeout_s=min(camera.offline_after_s, 10.0),
    )


@dataclass(frozen=True)
class WorkerState:
    """What the main thread may read about a worker (replaced whole, never mutated in place).

    inference_ms: the detector's time on the last frame it ran on.
    target_fps: the camera's configured fps. dropped_share: of the frames capture delivered over
    the last RATE_WINDOW_S, the share it replaced with a newer one before the worker read it
    (the box was too slow); detector_share: of the frames processed there, the share the detector
    ran on (change gating reuses the last detections on the rest). Both None without frames in
    the window (and while the camera is not online).
    """

    status: CameraStatus = CameraStatus.OFFLINE
    fps: float = 0.0
    occupancy: dict[str, float | None] = field(default_factory=dict)
    raw: dict[str, int] | None = None
    inference_ms: float = 0.0
    target_fps: float = 0.0
    dropped_share: float | None = None
    detector_share: float | None = None

    @property
    def overloaded(self) -> bool:
        """Online and dropping more than OVERLOADED_SHARE of its frames."""
        return (
            self.status is CameraStatus.ONLINE
            and self.dropped_share is not None
            and self.dropped_share > OVERLOADED_SHARE
        )


class RateWindow:
    """Frames processed, frames capture dropped and detector runs over the last `window_s`
    seconds (monotonic), as counts with the time they happened; one per worker thread."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, int, int, int]] = deque()
        self._processed = self._dropped = self._detector = 0

    def add(self, now: float, *, processed: int = 0, dropped: int = 0, detector: int = 0) -> None:
        if processed or dropped or detector:
            self._events.append((now, processed, dropped, detector))
            self._processed += processed
            self._dropped += dropped
            self._detector += detector
        self._prune(now)

    def clear(self) -> None:
        self._events.clear()
        self._processed = self._dropped = self._detector = 0

    def shares(self, now: float) -> tuple[float | None, float | None]:
        """(dropped / (processed + dropped), detector runs / processed); None without frames."""
        self._prune(now)
        delivered = self._processed + self._dropped
        dropped = self._dropped / delivered if delivered else None
        detector = self._detector / self._processed if self._processed else None
        return dropped, detector

    def _prune(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window_s:
            _, processed, dropped, detector = self._events.popleft()
            self._processed -= processed
            self._dropped -= dropped
            self._detector -= detector


class CameraWorker:
    def __init__(
        self,
        camera_config: CameraConfig,
        camera: Camera,
        pipeline: CameraPipeline,
        store: Store,
        interval_s: int,
        *,
        board: OccupancyBoard | None = None,
        frames: FrameHolder | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
        handed_over: WorkerState | None = None,
    ) -> None:
        """handed_over: the state of the worker this one follows on a config reload, whose
        `camera` (already running) it takes over: its zones that remain start from their last
        counts rather than unknown, until this worker's first frame."""
        self.camera_id = camera_config.id
        self.board = board
        self.frames = frames  # snapshots on: each processed frame offered (edge/runtime/frames.py)
        self.camera = camera
        self.pipeline = pipeline
        self.store = store
        self.recorder = HistoryRecorder(camera_config.id, pipeline.zone_ids, interval_s)
        self.clock = clock
        self.wall_clock = wall_clock
        self.target_fps = camera_config.fps
        self.state = WorkerState(
            occupancy={z: None for z in pipeline.zone_ids}, target_fps=self.target_fps
        )
        self._camera_running = handed_over is not None
        if handed_over is not None:
            raw = handed_over.raw
            self.state = WorkerState(
                handed_over.status, handed_over.fps,
                {z: handed_over.occupancy.get(z) for z in pipeline.zone_ids},
                None if raw is None else {z: raw[z] for z in pipeline.zone_ids if z in raw},
                handed_over.inference_ms, self.target_fps,
            )  # fmt: skip
        self.rates = RateWindow()
        # The detector's time on each frame it ran on, since the start (the API's histogram).
        self.detector_seconds = Histogram(DETECTOR_SECONDS_BOUNDS)
        self._dropped_seen = camera.dropped  # capture's running counter: the window takes deltas
        self.heartbeat = clock()
        self.last_frame_at: float | None = None  # monotonic time of the last processed frame
        self.error: BaseException | None = None
        # Closed intervals the store has not taken yet (a full disk): written, merged like a
        # restart's, with the next interval that closes once it takes writes again.
        self.unsaved_history: list[HistoryRow] = []
        self.dropped_history = 0
        self._thread = threading.Thread(
            target=self._run, name=f"camera-{self.camera_id}", daemon=True
        )
        self._stop = threading.Event()
        self._handover = False

    def start(self) -> None:
        if not self._camera_running:
            self.camera.start()
        self._thread.start()

    def stop(self, *, handover: bool = False) -> None:
        """handover: a config reload, whose next worker takes this camera over: the camera is
        left running and nothing turns unknown (the interval so far is written)."""
        self._handover = handover
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self.camera.finished

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported to the main thread, which exits non-zero
            log.exception("camera %s: worker failed", self.camera_id)
            self.error = exc
        finally:
            if self._handover and self.error is None:
                self._save_history(self.recorder.flush())
            else:
                self.camera.stop(timeout=2.0)  # a reader hung in OpenCV must not hold up shutdown
                self._write_unknown_on_exit()
            self.pipeline.save_scene()  # what it learned of the view since the last save

    def write_unknown(self, zone_ids: list[str]) -> None:
        """Leave zones a reload removed unknown on the board (so on MQTT) and in the store,
        rather than their last count for good; after the thread ended."""
        if not zone_ids:
            return
        state = self.state
        at = self.wall_clock()
        readings = [
            ZoneReading(zone_id=z, camera_id=self.camera_id, count=None, raw=None, at=at,
                        camera_status=CameraStatus.OFFLINE)
            for z in zone_ids
        ]  # fmt: skip
        if self.board is not None:
            self.board.update(BoardUpdate(self.camera_id, state.status, tuple(readings), False))
        camera = CameraLive(self.camera_id, state.status, state.fps, at, state.inference_ms)
        with contextlib.suppress(StoreWriteError):
            self.store.write_live(readings, camera)

    def _loop(self) -> None:
        last_tick = self.clock()
        last_live = -LIVE_EVERY_S
        last_status = None
        errors = 0
        while not self._stop.is_set() and not self.camera.finished:
            frame = self.camera.read(READ_TIMEOUT_S)
            now, status = self.clock(), self.camera.status
            seen_s = now - last_tick if status is CameraStatus.ONLINE else 0.0
            last_tick = self.heartbeat = now
            values: dict[str, float | None] | None = None
            result: FrameResult | None = None
            state = self.state
            dropped = self._take_dropped()
            if status is not CameraStatus.ONLINE:
                self.pipeline.mark_unknown()
                if self.frames is not None:
                    self.frames.forget(self.camera_id)
                self.rates.clear()  # the shares are of the time it is online, from its return
                state = WorkerState(
                    status, self.camera.fps, {z: None for z in self.pipeline.zone_ids},
                    target_fps=self.target_fps,
                )  # fmt: skip
            elif frame is not None:
                try:
                    result = self.pipeline.process(frame, frame.monotonic)
                    errors = 0
                except Exception:
                    errors += 1
                    log.exception("camera %s: frame %d failed", self.camera_id, frame.index)
                    self.rates.add(now, dropped=dropped)
                    if errors >= MAX_CONSECUTIVE_ERRORS:
                        raise
                    continue
                ran = result.detector_ran
                self.rates.add(now, processed=1, dropped=dropped, detector=int(ran))
                if self.frames is not None:
                    self.frames.offer(
                        frame, result.detections, result.zone_of, result.dropped,
                        result.rejected, result.rejected_why,
                    )  # fmt: skip
                if ran:
                    self.detector_seconds.observe(max(0.0, result.inference_s))
                values = dict(result.occupancy)
                self.last_frame_at = now
                # The detector's time when it last ran: a frame that reused its detections took
                # none, and "infer 0 ms" would hide what a run costs.
                infer_ms = result.inference_s * 1000 if ran else state.inference_ms
                state = WorkerState(
                    status, self.camera.fps, values, dict(result.raw), infer_ms,
                    self.target_fps, *self.rates.shares(now),
                )  # fmt: skip
            else:
                self.rates.add(now, dropped=dropped)
                state = WorkerState(
                    status, self.camera.fps, state.occupancy, state.raw, state.inference_ms,
                    self.target_fps, *self.rates.shares(now),
                )  # fmt: skip
            self.state = state
            if self.board is not None:
                readings = self._readings(state)
                tracked = (result.visits, result.dwell) if result is not None else ((), {})
                self.board.update(
                    BoardUpdate(self.camera_id, status, readings, frame is not None, *tracked)
                )
            self._save_history(self.recorder.observe(self.wall_clock().timestamp(), values, seen_s))
            if status is not last_status or now - last_live >= LIVE_EVERY_S:
                if status is not last_status:
                    log.info("camera %s: %s", self.camera_id, status.value)
                self._write_live(state)
                last_live, last_status = now, status

    def _take_dropped(self) -> int:
        """Frames capture dropped since the last call."""
        total = self.camera.dropped
        delta, self._dropped_seen = max(0, total - self._dropped_seen), total
        return delta

    def _readings(self, state: WorkerState) -> tuple[ZoneReading, ...]:
        at = self.wall_clock()
        return tuple(
            ZoneReading(
                zone_id=zone_id,
                camera_id=self.camera_id,
                count=state.occupancy.get(zone_id),
                raw=state.raw.get(zone_id) if state.raw else None,
                at=at,
                camera_status=state.status,
            )
            for zone_id in self.pipeline.zone_ids
        )

    def _save_history(self, rows: list[HistoryRow]) -> None:
        """Write closed intervals, with any the store refused before; keep them if it refuses.
        Tried when an interval closes, so a full disk costs one failed write per interval."""
        if not rows:
            return
        pending = self.unsaved_history + rows
        try:
            self.store.write_history(pending)
        except StoreWriteError:
            overflow = len(pending) - MAX_UNSAVED_HISTORY
            if overflow > 0:
                self.dropped_history += overflow
                pending = pending[overflow:]
            self.unsaved_history = pending
            return
        if self.unsaved_history:
            log.warning("camera %s: %d history rows kept in memory are in the store",
                        self.camera_id, len(self.unsaved_history))  # fmt: skip
        self.unsaved_history = []

    def _write_live(self, state: WorkerState) -> None:
        readings = self._readings(state)
        camera = CameraLive(
            self.camera_id, state.status, state.fps, readings[0].at, state.inference_ms
        )
        # A failed one is replaced by the next anyway; the store's condition says it is failing.
        with contextlib.suppress(StoreWriteError):
            self.store.write_live(list(readings), camera)

    def _write_unknown_on_exit(self) -> None:
        # A stopped pipeline knows nothing about the room: leave "unknown", not the last count,
        # on the board (and so on MQTT) first: the store may be what made us stop.
        final = WorkerState(CameraStatus.OFFLINE, 0.0, {})
        try:
            if self.board is not None:
                readings = self._readings(final)
                self.board.update(BoardUpdate(self.camera_id, final.status, readings, False))
        except Exception:
            log.exception("camera %s: could not publish the final state", self.camera_id)
        self._save_history(self.recorder.flush())
        self._write_live(final)
        if self.unsaved_history:
            log.error("camera %s: %d history rows could not be written before the stop",
                      self.camera_id, len(self.unsaved_history))  # fmt: skip


class Service:
    def __init__(
        self,
        config: LobbyConfig,
        *,
        config_path: Path | None = None,
        detector_factory: Callable[[], Detector] | None = None,
        config_loader: Callable[[Path], LobbyConfig] = load_runnable,
    ) -> None:
        """config_path: the file `config` came from; watched, and a valid change taken up in
        process (reload). config_loader: how the watch loads it (tests: without the model
        checks their stand-in detector does not need)."""
        self.config = config
        self.config_path = config_path
        self._config_loader = config_loader
        self.api: ChildProcess | None = None
        self._make_api(config)
        self._detector_injected = detector_factory is not None
        self._detector_factory = detector_factory or self._pool_factory(config)
        self._stop = threading.Event()
        self.workers: list[CameraWorker] = []
        self.notifier: Notifier | None = None
        self.board: OccupancyBoard | None = None
        self.watch: ConfigWatch | None = None
        self._frames: FrameHolder | None = None
        self._frame_server: FrameServer | None = None
        self.feed: CentralFeed | None = None  # the head-office feed, with central.enabled

    def _make_api(self, config: LobbyConfig) -> None:
        if config.api.enabled and self.config_path is not None and self.api is None:
            command = [sys.executable, "-m", "api", "--config", str(self.config_path)]
            self.api = ChildProcess("api", command)

    @staticmethod
    def _pool_factory(config: LobbyConfig) -> Callable[[], Detector]:
        # One pool for every camera (edge/detect/pool.py): each model loaded once per slot, and
        # the cameras served in turn when the box is short.
        cache_dir = config.storage.path.parent / "cache"
        return functools.cache(
            lambda: build_pool(config.detector, cache_dir, cameras=len(config.cameras))
        )

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        """Run until stopped or every (non-looping) source has ended; returns an exit code."""
        config = self.config
        store = Store(config.storage.path, site_id=config.site.id, memory_fallback=True)
        state_file = StateFile(state_path(config.storage.path))
        log.info(
            "site %s: %d camera(s), detector %s, store %s",
            config.site.id,
            len(config.cameras),
            " + ".join([config.detector.model, *(m.model for m in config.detector.fusion.models)]),
            config.storage.path,
        )
        if self.config_path is not None:
            self.watch = ConfigWatch(self.config_path, config, load=self._config_loader)
        self._purge(store)
        code = 1  # an exception on the way is an error exit
        try:
            self._start_site(config, store, {})
            if self.api is not None:
                self.api.start()
            self._start_workers(config, store, {})
            # READY only now: building detectors can take minutes (a TensorRT engine on a
            # Jetson's first start), and systemd arms the watchdog at READY=1.
            watchdog.notify_ready(f"{len(config.cameras)} camera(s) starting")
            code = self._supervise(store, state_file)
            return code
        finally:
            # Every way out leaves the retained state unknown/offline: workers put "offline"
            # on the board (published while the broker is there), then availability says
            # "stopped" for a clean stop and "offline" for an error exit.
            self._stop_workers(keep=set())
            watchdog.notify_stopping()
            self._stop_feed()
            if self.notifier is not None:
                self.notifier.stop(clean=code == 0)
            if self.api is not None:
                self.api.stop()
            if self._frame_server is not None:
                self._frame_server.stop()
            if self.notifier is not None:
                state_file.write(self.snapshot(store, self.notifier, running=False))
            state_file.close()
            store.close()
            log.info("stopped")

    def _start_site(
        self, config: LobbyConfig, store: Store, seeds: dict[str, CameraWorker]
    ) -> None:
        """The board, the notifier with its queue monitor, and the frames server for `config`.
        seeds: on a reload, the workers of cameras that continue: their zones that remain are
        on the new board with their last counts before anyone listens, so a (re)connect
        publishes those, not unknown."""
        board = OccupancyBoard({c.id: [z.id for z in c.zones] for c in config.cameras})
        for camera in config.cameras:
            seed = seeds.get(camera.id)
            if seed is not None:
                readings = tuple(
                    r
                    for r in seed._readings(seed.state)
                    if r.zone_id in {z.id for z in camera.zones}
                )
                board.update(BoardUpdate(camera.id, seed.state.status, readings, False))
        queue = QueueMonitor(config, board, store)
        notifier = Notifier(config, store, board, queue=queue)
        feed = self._make_feed(config, store, board, notifier)
        notifier.start()
        if feed is not None:
            feed.start()
        self.board, self.notifier, self.feed = board, notifier, feed
        self._frames, self._frame_server = serve_frames(config)

    @staticmethod
    def _make_feed(
        config: LobbyConfig, store: Store, board: OccupancyBoard, notifier: Notifier
    ) -> CentralFeed | None:
        """The head-office feed (docs/central.md "Device feed"), hooked to the retained state
        publisher, when central.enabled; it goes through the local broker, so it needs MQTT."""
        if not config.central.enabled:
            return None
        if notifier.link is None or notifier.state is None:
            log.warning("central.enabled but mqtt.enabled is false: the head-office feed goes "
                        "through the local broker, nothing is sent")  # fmt: skip
            return None
        feed = CentralFeed(config, store, notifier.link, board.total)
        notifier.state.on_queue = feed.on_queue
        notifier.state.on_camera_status = feed.on_camera_status
        return feed

    def _stop_feed(self) -> None:
        """Before the notifier, whose link the feed publishes through; what it did not see
        acknowledged is sent again from its cursors by the next one."""
        if self.feed is not None:
            self.feed.stop()
            self.feed = None

    def _start_workers(
        self, config: LobbyConfig, store: Store, handed: dict[str, CameraWorker]
    ) -> None:
        """A worker per camera; one in `handed` (a reload) takes over its old worker's camera."""
        assert self.board is not None
        workers = []
        for camera_config in config.cameras:
            detector = self._detector_factory()
            log.info("camera %s: detector on %s", camera_config.id, detector.provider)
            scene_file = SceneFile(scene_path(config.storage.path.parent, camera_config.id))
            pipeline = CameraPipeline(
                camera_config,
                detector,
                config.occupancy,
                scene_file=scene_file,
                tracking=config.tracking,
            )
            old = handed.get(camera_config.id)
            if old is not None:
                camera = old.camera
            else:
                settings = capture_settings(camera_config, realtime=True, loop=camera_config.loop)
                camera = Camera(settings)
            worker = CameraWorker(
                camera_config, camera, pipeline, store, config.storage.interval_s,
                board=self.board, frames=self._frames,
                handed_over=None if old is None else old.state,
            )  # fmt: skip
            workers.append(worker)
            self.workers = workers
            worker.start()

    def _stop_workers(self, keep: set[str]) -> dict[str, CameraWorker]:
        """Stop every worker; those of cameras in `keep` hand their running camera over (a
        reload). Returns the workers whose camera was handed over."""
        handed: dict[str, CameraWorker] = {}
        for worker in self.workers:
            handover = worker.camera_id in keep and worker.alive and not worker.finished
            if handover:
                handed[worker.camera_id] = worker
            worker.stop(handover=handover)
        for worker in self.workers:
            worker.join(timeout=10.0)
        for camera_id, worker in list(handed.items()):
            if worker.alive or worker.error is not None:  # stuck, or failed on the way out
                log.error("camera %s: worker did not stop cleanly; reopening its camera",
                          camera_id)  # fmt: skip
                worker.camera.stop(timeout=2.0)
                del handed[camera_id]
        return handed

    def reload(self, config: LobbyConfig, store: Store) -> bool:
        """Run `config` from now on, in this process (docs/ui.md 5): the camera workers, the
        notifier and the queue monitor stopped and made again from it; a camera whose capture
        settings are the same keeps its stream open, and its zones that remain their counts
        (the MQTT session ends with a clean disconnect and no "stopped", the next one says
        "online": availability never reads offline for a reload); the detector pool is kept
        when the `detector` section (and the number of cameras it is sized for) is the same;
        the API child restarted to serve the new zones. False when it cannot be taken here."""
        old = self.config
        if config.storage != old.storage or config.site.id != old.site.id:
            if self.watch is not None:
                self.watch.not_taken("storage or site.id changed")
            return False
        olds = {c.id: c for c in old.cameras}
        keep = {
            c.id for c in config.cameras
            if c.id in olds
            and capture_settings(c, realtime=True, loop=c.loop)
            == capture_settings(olds[c.id], realtime=True, loop=olds[c.id].loop)
        }  # fmt: skip
        handed = self._stop_workers(keep)
        new_zones = {z.id for c in config.cameras for z in c.zones}
        for worker in handed.values():
            worker.write_unknown([z for z in worker.pipeline.zone_ids if z not in new_zones])
        self._stop_feed()
        if self.notifier is not None:
            self.notifier.stop(final=False)
        if self._frame_server is not None:
            self._frame_server.stop()
        same_pool = config.detector == old.detector and len(config.cameras) == len(old.cameras)
        if not self._detector_injected and not same_pool:
            self._detector_factory = self._pool_factory(config)
        self.config = config
        self._start_site(config, store, handed)
        self._start_workers(config, store, handed)
        if self.watch is not None:
            self.watch.taken(config)
        self._restart_api(config)
        line = "config reloaded (" + "; ".join(
            f"camera {c.id}: zones {', '.join(z.id for z in c.zones)}" for c in config.cameras
        ) + ")"  # fmt: skip
        log.info(line)
        watchdog.notify_status(line)
        return True

    def _restart_api(self, config: LobbyConfig) -> None:
        if self.api is not None:
            self.api.stop()
            if not config.api.enabled:
                self.api = None
                return
        self._make_api(config)
        if self.api is not None:
            self.api.start()

    def _supervise(self, store: Store, state_file: StateFile) -> int:
        now = time.monotonic()
        next_status = now + self.config.logging.status_interval_s
        next_purge = now + PURGE_EVERY_S
        next_state = next_recover = now
        while not self._stop.wait(0.5):
            notifier = self.notifier
            assert notifier is not None
            failed = [w for w in self.workers if w.error is not None]
            if failed:
                log.error("camera worker(s) failed: %s", ", ".join(w.camera_id for w in failed))
                return 1
            if all(not w.alive and w.finished for w in self.workers):
                log.info("all sources ended")
                return 0
            if self.watch is not None:
                changed = self.watch.poll()
                if changed is not None:
                    self.reload(changed, store)
                    continue
            if self.api is not None:
                self.api.poll()
            now = time.monotonic()
            if self.frames_flowing(now):
                watchdog.notify_watchdog()
            if now >= next_state:
                snapshot = self.snapshot(store, notifier)
                state_file.write(snapshot)
                notifier.publish_health(health_summary(snapshot))
                next_state = now + STATE_EVERY_S
            if now >= next_status:
                lines = [status_line(w.camera_id, w.state) for w in self.workers]
                lines += [
                    w.pipeline.describe_scene() for w in self.workers if w.pipeline.scene.enabled
                ]
                lines.append(device_line(store.condition, notifier.status(), self._unsaved()))
                if self.api is not None and not self.api.state.ok:
                    lines.append(self.api.state.describe())
                if self.watch is not None and self.watch.status.state != "ok":
                    lines.append(self.watch.status.describe())
                for line in lines:
                    log.info(line)
                watchdog.notify_status("; ".join(lines))
                next_status = now + self.config.logging.status_interval_s
            if now >= next_recover and store.condition.memory_only:
                store.recover()
                next_recover = now + RECOVER_EVERY_S
            if now >= next_purge:
                self._purge(store)
                next_purge = now + PURGE_EVERY_S
        return 0

    def _unsaved(self) -> tuple[int, int]:
        """History rows kept in memory, and dropped, over all cameras."""
        return (
            sum(len(w.unsaved_history) for w in self.workers),
            sum(w.dropped_history for w in self.workers),
        )

    def snapshot(self, store: Store, notifier: Notifier, *, running: bool = True) -> dict[str, Any]:
        """The device state file's content (edge/runtime/device_state.py): what only this process
        knows, for the API's health and metrics and for doctor."""
        condition = store.condition
        delivery = notifier.status()
        unsaved, dropped = self._unsaved()
        broker = delivery.broker
        return {
            "pid": os.getpid(),
            "at": utc_now().isoformat(),
            "running": running,
            "store": {
                "writable": condition.writable,
                "since": _iso(condition.since),
                "error": condition.error,
                "failed_writes": condition.failed_writes,
                "memory_only": condition.memory_only,
                "unsaved_history_rows": unsaved,
                "dropped_history_rows": dropped,
                "unsaved_alert_writes": delivery.unsaved_writes,
                "unsaved_ticket_events": notifier.queue.unsaved_tickets,
                "lost_ticket_events": notifier.queue.tickets_lost,
            },
            "broker": None if broker is None else {
                "state": broker.state,
                "since": _iso(broker.since),
                "reason": broker.reason,
                "attempts": broker.attempts,
            },
            "outbox": {"backlog": delivery.backlog, "expired": delivery.expired},
            "channels": delivery.channels or {},
            "api": None if self.api is None else _child(self.api.state),
            "cameras": {w.camera_id: camera_state(w.state) for w in self.workers},
            # Whether the config file is the config running (edge/runtime/config_watch.py).
            "config": None if self.watch is None else self.watch.status.as_json(),
            # Cumulative since this process started (edge/runtime/histogram.py), for /metrics.
            "histograms": {
                "detector_seconds": {
                    w.camera_id: w.detector_seconds.counts().as_json() for w in self.workers
                },
                "alert_latency_seconds": (
                    None if notifier.outbox is None else notifier.outbox.latency.counts().as_json()
                ),
            },
        }  # fmt: skip

    def frames_flowing(self, now: float) -> bool:
        """Whether to feed the systemd watchdog: every worker loop is turning, and every camera
        that says it is online has had a frame processed lately.

        A detector that hangs stops the feeding and systemd restarts the service. A camera that
        is down is not the service's fault: capture reports it offline and reconnects on its
        own, and IT gets an alert, so restarting the whole service would only add noise.
        """
        loops_turning = all(now - w.heartbeat < HEARTBEAT_MAX_S for w in self.workers)
        online_processing = all(
            w.last_frame_at is not None and now - w.last_frame_at < FRAMES_MAX_S
            for w in self.workers
            if w.state.status is CameraStatus.ONLINE
        )
        return loops_turning and online_processing

    def _purge(self, store: Store) -> None:
        cutoff = utc_now() - timedelta(days=self.config.storage.retention_days)
        try:
            removed = store.purge_before(cutoff)
        except StoreWriteError:
            return  # tried again in an hour; the store's condition says it is failing
        if removed:
            # purge_before counts the ticket events it removed with the history rows
            log.info(
                "purged %d rows (history and ticket events) older than %s", removed, cutoff.date()
            )


def camera_state(state: WorkerState) -> dict[str, Any]:
    """A camera's part of the device state file (read by the API's health and metrics)."""
    return {
        "status": state.status.value,
        "fps": round(state.fps, 2),
        "target_fps": state.target_fps,
        "dropped_share": _round(state.dropped_share),
        "detector_share": _round(state.detector_share),
        "overloaded": state.overloaded,
    }


def _round(share: float | None) -> float | None:
    return None if share is None else round(share, 3)


def status_line(camera_id: str, state: WorkerState) -> str:
    """`camera c1 online 1.6/2 fps, 20% dropped (overloaded), detector 15% of frames, infer
    120 ms | zones`: the rate against the asked one, and what the box could not keep up with."""
    zones = " ".join(
        f"{zone}={'unknown' if value is None else f'{value:g}'}"
        + ("" if state.raw is None or value is None else f" (raw {state.raw.get(zone)})")
        for zone, value in state.occupancy.items()
    )
    parts = [f"camera {camera_id} {state.status.value} {state.fps:.1f}/{state.target_fps:g} fps"]
    if state.dropped_share:  # said only when some were
        overloaded = " (overloaded)" if state.overloaded else ""
        parts.append(f"{_percent(state.dropped_share)} dropped{overloaded}")
    if state.detector_share is not None:
        parts.append(f"detector {_percent(state.detector_share)} of frames")
    parts.append(f"infer {state.inference_ms:.0f} ms")
    return f"{', '.join(parts)} | {zones}"


def _percent(share: float) -> str:
    """Whole percent; a share that rounds to 0 or 100 but is not says so (<1%, >99%)."""
    if 0 < share < 0.005:
        return "<1%"
    if 0.995 <= share < 1:
        return ">99%"
    return f"{share:.0%}"


def _child(state: ChildState) -> dict[str, Any]:
    return {
        "state": state.phase,
        "since": _iso(state.since_utc),
        "restarts": state.restarts,
        "last_exit_code": state.last_exit_code,
        "last_error": state.last_error,
        "summary": state.describe(),
    }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def device_line(
    store: StoreCondition, delivery: DeliveryStatus, unsaved_history: tuple[int, int]
) -> str:
    """The status line's device part: store, broker, outbox; what is wrong, and since when."""
    rows, dropped = unsaved_history
    if store.writable:
        parts = ["store ok"]
    else:
        since = f" since {store.since:%H:%M:%S}" if store.since else ""
        kept = f"{rows} history rows and {delivery.unsaved_writes} alert writes kept in memory"
        parts = [f"store FAILING{since} ({store.error}): {kept}"]
        if store.memory_only:
            parts[0] += ", running on memory"
        if dropped:
            parts[0] += f", {dropped} rows dropped"
    broker = delivery.broker
    if broker is None:
        parts.append("mqtt disabled")
    elif broker.state == "connected":
        parts.append("broker connected")
    else:
        reason = f" ({broker.reason})" if broker.reason else ""
        parts.append(f"broker {broker.state.upper()} since {broker.since:%H:%M:%S}{reason}")
    parts.append(f"outbox {delivery.backlog} waiting")
    if delivery.expired:
        parts.append(f"{delivery.expired} expired")
    for channel_id, channel in (delivery.channels or {}).items():
        if channel.get("state") != "ok":  # a channel is named only when something is wrong
            parts.append(f"channel {channel_id} {str(channel.get('state')).upper()}"
                         f" ({channel.get('last_error')})")  # fmt: skip
    return "device: " + "; ".join(parts)


def health_summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What the device publishes as its retained health: states and reasons, not counters
    that change every second (it is republished only when this changes)."""
    store = snapshot["store"]
    api = snapshot.get("api") or {}
    failing = not store["writable"]
    overloaded = overloaded_cameras(snapshot)
    config = snapshot.get("config") or {}
    invalid = config.get("state") == "invalid"  # the service would not start from its file
    degraded = failing or api.get("state") == "failed" or bool(overloaded) or invalid
    return {
        "status": "degraded" if degraded else "ok",
        "store": {
            "state": "failing" if failing else "ok",
            "since": store["since"],
            "error": store["error"],
            "memory_only": store["memory_only"],
        },
        "api": api.get("state"),
        "overloaded": overloaded,
        "config": None if not config else {
            "state": config.get("state"),
            "since": config.get("since"),
            "error": config.get("error"),
        },
    }  # fmt: skip


def overloaded_cameras(snapshot: dict[str, Any]) -> list[str]:
    """Ids of the snapshot's cameras that drop more than OVERLOADED_SHARE of their frames."""
    cameras = snapshot.get("cameras") or {}
    return sorted(
        c for c, info in cameras.items() if isinstance(info, dict) and info.get("overloaded")
    )
