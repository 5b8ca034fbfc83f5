"""Camera: one reader thread per camera feeding a small queue, watched from the consumer side.

Why the watchdog lives with the consumer: an OpenCV read on RTSP can block forever, so the
reader thread cannot be trusted to notice its own hang. Each reader belongs to a generation;
when the consumer sees a read stuck for longer than offline_after_s it bumps the generation,
starts a fresh reader, and the old (daemon) thread discards whatever its read finally returns.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from types import TracebackType
from typing import TypeVar

from edge.capture.health import Backoff, assess
from edge.capture.settings import CaptureError, CaptureSettings, redact_url
from edge.capture.sources import (
    FrameSource,
    Image,
    decimation_stride,
    open_source,
    resolve_source_fps,
)
from edge.types import CameraStatus, Frame

logger = logging.getLogger("lobbywatch.capture")

T = TypeVar("T")

REPLAY_QUEUE_SIZE = 2
"""Frames buffered for lossless replay: enough to overlap decode with detection, no more."""
WATCH_INTERVAL_S = 0.25
"""A consumer waiting in read() re-runs the watchdog at least this often (seconds)."""
FPS_WINDOW_S = 5.0
"""Window of the delivered-rate measurement (seconds, monotonic)."""
MAX_ABANDONED_READERS = 3
"""Hung reader threads tolerated at once; beyond that no new reader is started until one exits,
so a server that accepts connections and then stalls cannot make us leak a thread a minute."""


def utc_now() -> datetime:
    """Wall time for Frame.captured_at: records only, never durations."""
    return datetime.now(timezone.utc)


class _Retired(Exception):
    """The reader's generation was superseded (abandoned as hung, or the camera stopped)."""


class _EndOfSource:
    """Queued after the last frame of a non-looping replay, so "finished" means "all consumed"."""


_END = _EndOfSource()


class Camera:
    """Frames from one source, decimated to settings.target_fps, with health and reconnects.

    clock: monotonic seconds, used for every duration, timeout, backoff and pacing decision.
    wall_clock: UTC-aware time, used only for Frame.captured_at. opener: opens a FrameSource
    (tests substitute fakes). rng: jitter source for the reconnect backoff, in [0, 1).
    Waiting itself (threading.Condition) runs on real time; with a fake clock call read(0).
    """

    def __init__(
        self,
        settings: CaptureSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
        opener: Callable[[CaptureSettings], FrameSource] = open_source,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._live = settings.kind.live
        self._clock = clock
        self._wall_clock = wall_clock
        self._opener = opener
        self._backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s, rng=rng)
        # Lossless replay blocks the reader on a full queue; live and realtime sources keep only
        # the newest frame so the pipeline works on "now", not on a backlog.
        self._lossless = not self._live and not settings.realtime
        self._capacity = REPLAY_QUEUE_SIZE if self._lossless else 1
        self._cond = threading.Condition()
        self._queue: deque[Frame | _EndOfSource] = deque()
        self._status = CameraStatus.OFFLINE  # nothing seen yet: unknown, never "online"
        self._generation = 0
        self._started = False
        self._stopped = False
        self._ended = False
        self._finished = False
        self._since = 0.0
        self._last_frame_at: float | None = None
        self._busy_since: float | None = None
        self._last_error: str | None = None
        self._reader: threading.Thread | None = None
        self._abandoned: list[threading.Thread] = []
        self._respawn_blocked = False
        self._delivered: deque[float] = deque()
        self._dropped = 0
        self._live_next = 0  # running frame counter of a live source, kept across reconnects
        self._resume = 0  # replay: next source index to deliver after a reopen
        self._source_fps: float | None = None

    # ----------------------------------------------------------------------------- public API

    @property
    def settings(self) -> CaptureSettings:
        return self._settings

    @property
    def status(self) -> CameraStatus:
        """Health as of the last read(); only ONLINE cameras should yield counts."""
        with self._cond:
            return self._status

    @property
    def finished(self) -> bool:
        """A non-looping file or sequence reached its end and its last frame was read."""
        with self._cond:
            return self._finished

    @property
    def fps(self) -> float:
        """Rate of frames handed out by read() over the last FPS_WINDOW_S seconds (per second)."""
        with self._cond:
            self._prune_delivered(self._clock())
            if len(self._delivered) < 2:
                return 0.0
            span = self._delivered[-1] - self._delivered[0]
            return (len(self._delivered) - 1) / span if span > 0 else 0.0

    @property
    def last_frame_at(self) -> float | None:
        """Monotonic time (seconds) the reader last queued a frame; None before the first."""
        with self._cond:
            return self._last_frame_at

    @property
    def source_fps(self) -> float | None:
        """Frames per second of a replayed source, as used for decimation and pacing.

        The container's rate, else settings.source_fps, else a default; None until opened and
        for live sources. Source time of a replayed frame is frame.index / source_fps seconds.
        """
        with self._cond:
            return self._source_fps

    @property
    def last_error(self) -> str | None:
        """Why the camera last failed (credentials masked); None if it never did."""
        with self._cond:
            return self._last_error

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before they were read (live and realtime sources)."""
        with self._cond:
            return self._dropped

    def start(self) -> None:
        """Start the reader thread. A camera is started once."""
        with self._cond:
            if self._started:
                raise RuntimeError(f"camera {self._settings.camera_id} was already started")
            self._started = True
            self._since = self._clock()
            self._spawn(delay=0.0)
        logger.info(
            "camera %s: capture started from %s",
            self._settings.camera_id,
            self._settings.redacted_source,
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Ask every loop to exit and join the reader for up to timeout seconds (real time).

        A reader stuck inside an OpenCV call cannot be interrupted: it is a daemon thread and
        exits, discarding its result, when the call returns.
        """
        with self._cond:
            self._stopped = True
            reader = self._reader
            self._cond.notify_all()
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)
            if reader.is_alive():
                logger.warning(
                    "camera %s: reader still blocked in a read after %.1f s; left to exit alone",
                    self._settings.camera_id,
                    timeout,
                )

    def read(self, timeout: float) -> Frame | None:
        """The next kept frame, or None after timeout seconds (on `clock`) or once finished.

        Each call also runs the watchdog, which updates status and replaces a hung reader.
        """
        deadline = self._clock() + max(0.0, timeout)
        with self._cond:
            if not self._started:
                raise RuntimeError(f"camera {self._settings.camera_id}: call start() first")
            while True:
                if self._queue:
                    return self._take()
                if self._finished or self._stopped:
                    return None
                now = self._clock()
                self._watch(now)
                remaining = deadline - now
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, WATCH_INTERVAL_S))

    def iter_frames(self, poll_s: float = 0.5) -> Iterator[Frame]:
        """Offline replay: start, yield every kept frame until finished, stop.

        A replayed source that fails raises CaptureError instead of being retried forever:
        an evaluation that silently waits on a typo in a path helps nobody. Live sources are
        yielded until stop() is called from another thread.
        """
        self.start()
        try:
            while True:
                frame = self.read(poll_s)
                if frame is not None:
                    yield frame
                    continue
                if self.finished or self._is_stopped():
                    return
                self._raise_if_replay_failed()
        finally:
            self.stop()

    def __enter__(self) -> Camera:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ consumer side (locked)

    def _take(self) -> Frame | None:
        item = self._queue.popleft()
        self._cond.notify_all()  # a lossless reader may be waiting for room
        if isinstance(item, _EndOfSource):
            self._finished = True
            logger.info("camera %s: replay finished", self._settings.camera_id)
            return None
        now = self._clock()
        self._delivered.append(now)
        self._prune_delivered(now)
        return item

    def _prune_delivered(self, now: float) -> None:
        while self._delivered and now - self._delivered[0] > FPS_WINDOW_S:
            self._delivered.popleft()

    def _watch(self, now: float) -> None:
        """The watchdog: status from frame age, and a fresh reader when the current one hangs."""
        if self._ended or self._stopped:
            return
        self._abandoned = [t for t in self._abandoned if t.is_alive()]
        if self._reader is None:
            self._respawn_if_allowed()
            return
        if not self._reader.is_alive():
            self._replace_reader(now, "reader thread died")
            return
        last_progress = self._since
        if self._last_frame_at is not None:
            last_progress = max(last_progress, self._last_frame_at)
        verdict = assess(
            now,
            status=self._status,
            last_progress=last_progress,
            busy_since=self._busy_since,
            stale_after_s=self._settings.stale_after_s,
            offline_after_s=self._settings.offline_after_s,
        )
        age = now - last_progress
        self._set_status(verdict.status, f"no new frame for {age:.1f} s")
        if verdict.abandon:
            self._replace_reader(now, f"read blocked for over {self._settings.offline_after_s} s")

    def _replace_reader(self, now: float, reason: str) -> None:
        self._last_error = reason
        self._set_status(CameraStatus.OFFLINE, f"{reason}; abandoning reader")
        self._generation += 1
        self._busy_since = None
        self._since = now
        if self._reader is not None:
            self._abandoned.append(self._reader)
            self._reader = None
        self._cond.notify_all()
        self._respawn_if_allowed()

    def _respawn_if_allowed(self) -> None:
        if len(self._abandoned) >= MAX_ABANDONED_READERS:
            if not self._respawn_blocked:
                logger.error(
                    "camera %s: %d readers still hung; no new reader until one returns",
                    self._settings.camera_id,
                    len(self._abandoned),
                )
            self._respawn_blocked = True
            return
        self._respawn_blocked = False
        self._spawn(self._next_delay())

    def _spawn(self, delay: float) -> None:
        generation = self._generation
        self._reader = threading.Thread(
            target=self._run,
            args=(generation, delay),
            name=f"capture-{self._settings.camera_id}-{generation}",
            daemon=True,  # a reader hung in OpenCV must never keep the process alive
        )
        self._reader.start()

    def _set_status(self, status: CameraStatus, reason: str) -> None:
        if status is self._status:
            return
        level = logging.INFO if status is CameraStatus.ONLINE else logging.WARNING
        logger.log(
            level,
            "camera %s: %s -> %s (%s)",
            self._settings.camera_id,
            self._status.value,
            status.value,
            redact_url(reason),
        )
        self._status = status

    def _next_delay(self) -> float:
        delay = self._backoff.next_delay()
        logger.info(
            "camera %s: reopening %s in %.2f s (attempt %d)",
            self._settings.camera_id,
            self._settings.redacted_source,
            delay,
            self._backoff.attempt,
        )
        return delay

    def _is_stopped(self) -> bool:
        with self._cond:
            return self._stopped

    def _raise_if_replay_failed(self) -> None:
        with self._cond:
            failed = self._status is CameraStatus.OFFLINE and self._last_error is not None
            if self._live or not failed:
                return
            message = f"camera {self._settings.camera_id}: {self._last_error}"
        raise CaptureError(message)

    # ----------------------------------------------------------------------------- reader side

    def _run(self, generation: int, delay: float) -> None:
        try:
            self._reader_loop(generation, delay)
        except _Retired:
            pass
        except Exception as exc:  # a bug here must show up as OFFLINE, not as a silent thread
            logger.error(
                "camera %s: reader crashed: %s",
                self._settings.camera_id,
                redact_url(repr(exc)),
            )
            with self._cond:
                if self._current(generation):
                    self._last_error = redact_url(f"reader crashed: {exc!r}")
                    self._set_status(CameraStatus.OFFLINE, "reader crashed")

    def _reader_loop(self, generation: int, delay: float) -> None:
        """Open, pump frames, and reopen after failures (with backoff) or at the end of a loop."""
        while True:
            if delay > 0:
                self._pause(generation, delay)
            source = self._open(generation)
            if source is None:
                delay = self._failure_delay(generation)
                continue
            ended, kept = self._pump_and_close(generation, source)
            if not ended:
                delay = self._failure_delay(generation)
            elif not self._settings.loop:
                self._end(generation)
                return
            elif kept == 0:
                self._fail(generation, "source has no frames to loop over")
                delay = self._failure_delay(generation)
            else:
                delay = 0.0

    def _open(self, generation: int) -> FrameSource | None:
        self._enter_io(generation)
        try:
            source = self._opener(self._settings)
        except Exception as exc:
            self._leave_io(generation)
            self._fail(generation, f"open failed: {exc}")
            return None
        try:
            self._leave_io(generation)
        except _Retired:
            _close_quietly(source)
            raise
        return source

    def _pump_and_close(self, generation: int, source: FrameSource) -> tuple[bool, int]:
        """Pump frames until the source ends (True) or fails (False); frames kept in this pass."""
        try:
            if source.live:
                return self._pump_live(generation, source)
            return self._pump_replay(generation, source)
        except _Retired:
            raise
        except Exception as exc:
            self._fail(generation, f"read failed: {exc}")
            return False, 0
        finally:
            _close_quietly(source)

    def _pump_live(self, generation: int, source: FrameSource) -> tuple[bool, int]:
        """Grab every frame so the device buffer never lags; decode one per 1/target_fps s."""
        interval = 1.0 / self._settings.target_fps
        with self._cond:
            counter = self._live_next
        last_kept: float | None = None
        kept = 0
        try:
            while True:
                if last_kept is None or self._clock() - last_kept >= interval:
                    item = self._io(generation, source.read)
                    if item is None:
                        self._fail(generation, "stream returned no frame")
                        return False, kept
                    last_kept = self._clock()
                    self._deliver(generation, counter, item[1])
                    kept += 1
                elif self._io(generation, source.skip) is None:
                    self._fail(generation, "stream returned no frame")
                    return False, kept
                counter += 1
        finally:
            with self._cond:
                if self._current(generation):
                    self._live_next = counter

    def _pump_replay(self, generation: int, source: FrameSource) -> tuple[bool, int]:
        """Keep every k-th frame, stepping over the others undecoded; True at the end."""
        fps = resolve_source_fps(source.fps, self._settings)
        stride = decimation_stride(fps, self._settings.target_fps)
        with self._cond:
            self._source_fps = fps
        next_index = self._skip_to_resume_point(generation, source)
        if next_index is None:
            return True, 0
        anchor: tuple[float, int] | None = None  # (monotonic s, index) of the first kept frame
        kept = 0
        while True:
            if next_index % stride:
                index = self._io(generation, source.skip)
                if index is None:
                    return self._replay_ended(kept)
            else:
                item = self._io(generation, source.read)
                if item is None:
                    return self._replay_ended(kept)
                index, image = item
                if self._settings.realtime:
                    anchor = self._pace(generation, anchor, index, fps)
                self._deliver(generation, index, image)
                kept += 1
            next_index = index + 1
            self._resume = next_index

    def _skip_to_resume_point(self, generation: int, source: FrameSource) -> int | None:
        """After a failure, step (undecoded) over frames already delivered: no duplicates."""
        next_index = 0
        while next_index < self._resume:
            index = self._io(generation, source.skip)
            if index is None:
                return None
            next_index = index + 1
        if next_index:
            logger.info(
                "camera %s: resumed replay at frame %d", self._settings.camera_id, next_index
            )
        return next_index

    def _replay_ended(self, kept: int) -> tuple[bool, int]:
        self._resume = 0  # a loop starts again at index 0
        return True, kept

    def _pace(
        self, generation: int, anchor: tuple[float, int] | None, index: int, fps: float
    ) -> tuple[float, int]:
        """Wait until frame `index` is due at the source's own rate (realtime replay)."""
        if anchor is None:
            return self._clock(), index
        due = anchor[0] + (index - anchor[1]) / fps
        wait = due - self._clock()
        if wait > 0:
            self._pause(generation, wait)
        return anchor

    def _deliver(self, generation: int, index: int, image: Image) -> None:
        frame = Frame(
            camera_id=self._settings.camera_id,
            index=index,
            image=image,
            captured_at=self._wall_clock(),
            monotonic=self._clock(),
        )
        with self._cond:
            if self._lossless:
                self._cond.wait_for(
                    lambda: not self._current(generation) or len(self._queue) < self._capacity
                )
            self._check_current(generation)
            if len(self._queue) >= self._capacity:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(frame)
            self._last_frame_at = self._clock()
            self._backoff.reset()
            self._set_status(CameraStatus.ONLINE, "frames arriving")
            self._cond.notify_all()

    def _end(self, generation: int) -> None:
        with self._cond:
            self._check_current(generation)
            self._ended = True
            self._queue.append(_END)  # never dropped: "finished" needs every frame consumed
            self._cond.notify_all()
        logger.info("camera %s: end of source reached", self._settings.camera_id)

    def _fail(self, generation: int, reason: str) -> None:
        with self._cond:
            self._check_current(generation)
            self._last_error = redact_url(reason)
            self._set_status(CameraStatus.OFFLINE, reason)

    def _failure_delay(self, generation: int) -> float:
        with self._cond:
            self._check_current(generation)
            return self._next_delay()

    def _pause(self, generation: int, seconds: float) -> None:
        """Sleep up to `seconds` (real time), waking at once on stop or abandonment."""
        with self._cond:
            self._cond.wait_for(lambda: not self._current(generation), timeout=seconds)
            self._check_current(generation)

    def _io(self, generation: int, call: Callable[[], T]) -> T:
        """Run one blocking source call, visible to the watchdog while it lasts.

        If the generation was retired meanwhile, the result is discarded (_Retired).
        """
        self._enter_io(generation)
        try:
            return call()
        finally:
            self._leave_io(generation)

    def _enter_io(self, generation: int) -> None:
        with self._cond:
            self._check_current(generation)
            self._busy_since = self._clock()

    def _leave_io(self, generation: int) -> None:
        with self._cond:
            self._check_current(generation)
            self._busy_since = None

    def _current(self, generation: int) -> bool:
        return not self._stopped and generation == self._generation

    def _check_current(self, generation: int) -> None:
        if not self._current(generation):
            raise _Retired


def _close_quietly(source: FrameSource) -> None:
    try:
        source.close()
    except Exception as exc:  # closing a broken source must not hide why it broke
        logger.debug("closing source failed: %s", redact_url(repr(exc)))
