"""Tests for edge.capture: classification, redaction, backoff, watchdog, real files, fake sources.

Time-based tests use thresholds of tenths of a second and assert lower bounds or eventual states
(polled with a generous deadline), never tight upper bounds: they must pass on a loaded 2-core box.
"""

from __future__ import annotations

import itertools
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import edge.capture.camera as camera_module
from edge.capture import (
    Backoff,
    Camera,
    CaptureError,
    CaptureSettings,
    FrameSource,
    SourceKind,
    assess,
    classify_source,
    decimation_stride,
    open_source,
    redact_url,
    resolve_source_fps,
)
from edge.types import CameraStatus, Frame

Image = np.ndarray[Any, np.dtype[np.uint8]]
DEADLINE_S = 8.0  # generous: only reached when a test is about to fail


# ------------------------------------------------------------------------------------ helpers


def make_settings(source: str = "rtsp://cam.local/stream", **overrides: Any) -> CaptureSettings:
    values: dict[str, Any] = {
        "camera_id": "lobby-1",
        "source": source,
        "target_fps": 10.0,
        "realtime": False,
        "stale_after_s": 0.3,
        "offline_after_s": 0.8,
        "reconnect_min_s": 0.02,
        "reconnect_max_s": 0.1,
        "open_timeout_s": 0.5,
    }
    values.update(overrides)
    return CaptureSettings(**values)


def image(value: int, size: tuple[int, int] = (24, 32)) -> Image:
    return np.full((*size, 3), value % 256, dtype=np.uint8)


def write_sequence(folder: Path, count: int, *, first: int = 1, ext: str = "png") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(first, first + count):
        assert cv2.imwrite(str(folder / f"seq_{number:06d}.{ext}"), image(number * 10))
    return str(folder / f"seq_%06d.{ext}")


def write_video(path: Path, count: int, fps: float = 10.0) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (32, 24))
    assert writer.isOpened()
    for i in range(count):
        writer.write(image(i * 12))
    writer.release()
    return str(path)


def replay(settings: CaptureSettings, **camera_kwargs: Any) -> list[Frame]:
    return list(Camera(settings, **camera_kwargs).iter_frames(poll_s=0.2))


def pump_until(
    camera: Camera, done: Callable[[Camera], bool], timeout: float = DEADLINE_S
) -> list[CameraStatus]:
    """Call read() (which runs the watchdog) until done(camera); the statuses seen on the way."""
    seen = [camera.status]
    deadline = time.monotonic() + timeout
    while not done(camera):
        assert time.monotonic() < deadline, f"condition not reached; statuses seen: {seen}"
        camera.read(0.02)
        if camera.status is not seen[-1]:
            seen.append(camera.status)
    return seen


def wait_for(predicate: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def transitions(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """Status changes in the order the camera logged them: ("offline", "online"), ..."""
    pattern = re.compile(r"^camera lobby-1: (\w+) -> (\w+) ")
    matches = (pattern.match(r.getMessage()) for r in caplog.records)
    return [(m.group(1), m.group(2)) for m in matches if m]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManualClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class LiveSource:
    """A fake camera: frames every period_s; after `frames` frames it hangs, fails or raises."""

    live = True
    fps: float | None = None

    def __init__(
        self,
        *,
        frames: int | None = None,
        then: str = "hang",
        period_s: float = 0.002,
        marker: int = 0,
        release: threading.Event | None = None,
    ) -> None:
        self._frames, self._then, self._period = frames, then, period_s
        self.marker = marker
        self.release = release or threading.Event()
        self.hanging = threading.Event()
        self.reads = 0
        self.skips = 0
        self.closed = False
        self._count = 0

    def _next(self) -> int | None:
        if self._frames is not None and self._count >= self._frames:
            if self._then == "hang":
                self.hanging.set()
                self.release.wait()
                return self._count
            if self._then == "raise":
                raise OSError("device unplugged")
            return None
        time.sleep(self._period)
        self._count += 1
        return self._count - 1

    def read(self) -> tuple[int, Image] | None:
        self.reads += 1
        index = self._next()
        return None if index is None else (index, image(self.marker))

    def skip(self) -> int | None:
        self.skips += 1
        return self._next()

    def close(self) -> None:
        self.closed = True


class ListSource:
    """A fake replay source of `count` frames; raises once when about to return fail_at."""

    live = False

    def __init__(self, count: int, *, fps: float | None = 10.0, fail_at: int | None = None) -> None:
        self._count, self.fps, self._fail_at = count, fps, fail_at
        self._next = 0
        self.decoded: list[int] = []

    def _advance(self) -> int | None:
        if self._next >= self._count:
            return None
        if self._next == self._fail_at:
            raise OSError("read error")
        self._next += 1
        return self._next - 1

    def read(self) -> tuple[int, Image] | None:
        index = self._advance()
        if index is None:
            return None
        self.decoded.append(index)
        return index, image(index)

    def skip(self) -> int | None:
        return self._advance()

    def close(self) -> None:
        pass


class Opener:
    """Hands out sources (or raises exceptions) in order; records call times (time.monotonic)."""

    def __init__(self, items: list[FrameSource | Exception], repeat_last: bool = True) -> None:
        self._items = items
        self._repeat_last = repeat_last
        self.calls: list[float] = []

    def __call__(self, settings: CaptureSettings) -> FrameSource:
        self.calls.append(time.monotonic())
        last = len(self._items) == 1 and self._repeat_last
        item = self._items[0] if last else self._items.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class CountingSource:
    """Wraps a real source and counts decoded vs stepped-over frames."""

    def __init__(self, inner: FrameSource) -> None:
        self._inner = inner
        self.reads = 0
        self.skips = 0

    def read(self) -> tuple[int, Image] | None:
        self.reads += 1
        return self._inner.read()

    def skip(self) -> int | None:
        self.skips += 1
        return self._inner.skip()

    def close(self) -> None:
        self._inner.close()

    @property
    def fps(self) -> float | None:
        return self._inner.fps

    @property
    def live(self) -> bool:
        return self._inner.live


@pytest.fixture
def capture_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="lobbywatch.capture")
    yield caplog


@pytest.fixture(autouse=True)
def no_leaked_readers() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    wait_for(
        lambda: (
            not [t for t in set(threading.enumerate()) - before if t.name.startswith("capture-")]
        ),
        timeout=3.0,
    )


# ----------------------------------------------------------------------- pure logic: tables


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("rtsp://10.0.0.5:554/Streaming/Channels/101", SourceKind.STREAM),
        ("RTSP://user:pw@cam/x", SourceKind.STREAM),
        ("rtsps://cam.local/stream", SourceKind.STREAM),
        ("http://cam.local/mjpeg", SourceKind.STREAM),
        ("https://cam.local/live.m3u8", SourceKind.STREAM),
        ("usb:0", SourceKind.USB),
        ("USB:2", SourceKind.USB),
        ("0", SourceKind.USB),
        ("/dev/video0", SourceKind.USB),
        ("/dev/v4l/by-id/usb-Logitech_C920-video-index0", SourceKind.USB),
        ("recordings/lobby.mp4", SourceKind.FILE),
        ("/data/lobby 2024.avi", SourceKind.FILE),
        ("frames/seq_%06d.jpg", SourceKind.SEQUENCE),
        ("frames/seq_%d.png", SourceKind.SEQUENCE),
        ("100%%/seq_%04d.png", SourceKind.SEQUENCE),
    ],
)
def test_classify_source_names_the_kind(source: str, kind: SourceKind) -> None:
    assert classify_source(source) is kind


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("seq_%s.jpg", "integer field"),
        ("seq_%06d_%d.jpg", "integer field"),
        ("seq_%06.jpg", "integer field"),
        ("usb:front", "usb:<index>"),
        ("ftp://user:secret@host/x.mp4", "unsupported source scheme"),
    ],
)
def test_classify_source_rejects_bad_input_clearly(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        classify_source(source)
    assert "secret" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://user:secret@10.0.0.5:554/ch1", "rtsp://user:***@10.0.0.5:554/ch1"),
        ("rtsps://admin:p@ss:w0rd@cam/x", "rtsps://admin:***@cam/x"),
        ("http://tokenonly@cam/mjpeg", "http://***@cam/mjpeg"),
        ("rtsp://cam.local/stream", "rtsp://cam.local/stream"),
        ("rtsp://cam/x?user=a&password=hunter2&ch=1", "rtsp://cam/x?user=a&password=***&ch=1"),
        ("https://cam/live?token=abc123", "https://cam/live?token=***"),
        (
            "open failed: rtsp://u:pw@h/a and rtsp://v:pw2@h/b",
            "open failed: rtsp://u:***@h/a and rtsp://v:***@h/b",
        ),
        ("frames/seq_%06d.jpg", "frames/seq_%06d.jpg"),
        ("user@example.com wrote", "user@example.com wrote"),
        ("", ""),
    ],
)
def test_redact_url_masks_credentials(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"target_fps": 0.0}, "target_fps"),
        ({"target_fps": float("nan")}, "target_fps"),
        ({"source_fps": -1.0}, "source_fps"),
        ({"stale_after_s": 5.0, "offline_after_s": 5.0}, "stale_after_s"),
        ({"reconnect_min_s": 2.0, "reconnect_max_s": 1.0}, "reconnect_max_s"),
        ({"open_timeout_s": 0.0}, "open_timeout_s"),
        ({"camera_id": " "}, "camera_id"),
        ({"source": "seq_%s.jpg"}, "integer field"),
    ],
)
def test_settings_reject_invalid_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_settings(**overrides)


@pytest.mark.parametrize(
    ("source_fps", "target_fps", "stride"),
    [
        (30.0, 10.0, 3),
        (25.0, 10.0, 2),
        (25.0, 5.0, 5),
        (10.0, 10.0, 1),
        (5.0, 10.0, 1),
        (29.97, 2.0, 15),
    ],
)
def test_decimation_stride(source_fps: float, target_fps: float, stride: int) -> None:
    assert decimation_stride(source_fps, target_fps) == stride


def test_source_fps_prefers_container_then_settings_then_default(
    capture_log: pytest.LogCaptureFixture,
) -> None:
    video = make_settings("a.mp4")
    assert resolve_source_fps(30.0, video) == 30.0
    assert resolve_source_fps(90000.0, video) == 25.0  # an RTP clock is not a frame rate
    assert resolve_source_fps(None, make_settings("a.mp4", source_fps=12.0)) == 12.0
    assert resolve_source_fps(None, video) == 25.0
    assert not capture_log.records
    assert resolve_source_fps(None, make_settings("s_%03d.png")) == 1.0
    assert "assuming 1.0 fps" in capture_log.text


def test_backoff_doubles_up_to_the_bound_and_resets() -> None:
    top = Backoff(1.0, 30.0, rng=lambda: 1.0)
    assert [top.next_delay() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    bottom = Backoff(1.0, 30.0, rng=lambda: 0.0)
    assert [bottom.next_delay() for _ in range(7)] == [1.0, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    top.reset()
    assert top.next_delay() == 1.0


@given(
    min_s=st.floats(0.01, 10.0),
    spread=st.floats(1.0, 100.0),
    draws=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=2000),
)
def test_backoff_delays_stay_within_bounds(min_s: float, spread: float, draws: list[float]) -> None:
    max_s = min_s * spread
    values = iter(draws)
    backoff = Backoff(min_s, max_s, rng=lambda: next(values))
    ceilings = []
    for _ in draws:
        ceilings.append(backoff.ceiling())
        assert min_s <= backoff.next_delay() <= max_s
    assert ceilings == sorted(ceilings)


@pytest.mark.parametrize(
    ("now", "status", "busy_since", "expected", "abandon"),
    [
        (105.0, CameraStatus.ONLINE, 104.0, CameraStatus.ONLINE, False),
        (111.0, CameraStatus.ONLINE, 101.0, CameraStatus.STALE, False),
        (111.0, CameraStatus.OFFLINE, 101.0, CameraStatus.OFFLINE, False),  # never promoted
        (131.0, CameraStatus.STALE, 100.5, CameraStatus.OFFLINE, True),
        (131.0, CameraStatus.OFFLINE, None, CameraStatus.OFFLINE, False),  # in backoff: left alone
        (131.0, CameraStatus.OFFLINE, 125.0, CameraStatus.OFFLINE, False),  # a reopen in progress
    ],
)
def test_watchdog_verdict(
    now: float,
    status: CameraStatus,
    busy_since: float | None,
    expected: CameraStatus,
    abandon: bool,
) -> None:
    verdict = assess(
        now,
        status=status,
        last_progress=100.0,
        busy_since=busy_since,
        stale_after_s=10.0,
        offline_after_s=30.0,
    )
    assert (verdict.status, verdict.abandon) == (expected, abandon)


# ------------------------------------------------------------------- real image sequences


def test_sequence_indices_are_zero_based_and_complete(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path, 20, first=1)
    frames = replay(make_settings(pattern, source_fps=10.0, target_fps=10.0))
    assert [f.index for f in frames] == list(range(20))
    # index 0 is seq_000001.png (value 10): the first existing file, not number 0
    assert [int(f.image[0, 0, 0]) for f in frames] == [(i + 1) * 10 % 256 for i in range(20)]
    assert all(f.camera_id == "lobby-1" and f.captured_at.tzinfo is not None for f in frames)


@pytest.mark.parametrize("first", [0, 1, 5])
def test_sequence_starts_at_first_existing_number(tmp_path: Path, first: int) -> None:
    pattern = write_sequence(tmp_path, 3, first=first)
    frames = replay(make_settings(pattern, source_fps=10.0))
    assert [(f.index, int(f.image[0, 0, 0])) for f in frames] == [
        (i, (first + i) * 10 % 256) for i in range(3)
    ]


def test_missing_sequence_fails_with_clear_error(tmp_path: Path) -> None:
    pattern = str(tmp_path / "seq_%06d.png")
    with pytest.raises(CaptureError, match=r"seq_%06d\.png.*numbers 0\.\.5"):
        open_source(make_settings(pattern))
    with pytest.raises(CaptureError, match="open failed"):
        replay(make_settings(pattern, source_fps=10.0))


def test_sequence_decimation_keeps_every_kth_without_decoding_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pattern = write_sequence(tmp_path, 20)
    decoded: list[str] = []
    real_imread = cv2.imread

    def counting_imread(path: str, *args: Any) -> Any:
        decoded.append(Path(path).name)
        return real_imread(path, *args)

    monkeypatch.setattr(cv2, "imread", counting_imread)
    frames = replay(make_settings(pattern, source_fps=30.0, target_fps=10.0))
    assert [f.index for f in frames] == [0, 3, 6, 9, 12, 15, 18]
    assert decoded == [f"seq_{i + 1:06d}.png" for i in (0, 3, 6, 9, 12, 15, 18)]


def test_sequence_skipped_files_may_be_corrupt(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path, 10)
    for index in range(10):
        if index % 2:
            Path(pattern % (index + 1)).write_bytes(b"not an image")
    frames = replay(make_settings(pattern, source_fps=20.0, target_fps=10.0))
    assert [f.index for f in frames] == [0, 2, 4, 6, 8]


def test_undecodable_kept_file_is_logged_and_stepped_over(
    tmp_path: Path, capture_log: pytest.LogCaptureFixture
) -> None:
    pattern = write_sequence(tmp_path, 5)
    Path(pattern % 3).write_bytes(b"truncated")  # index 2
    frames = replay(make_settings(pattern, source_fps=10.0))
    assert [f.index for f in frames] == [0, 1, 3, 4]
    assert "cannot decode" in capture_log.text


def test_sequence_without_fps_warns_and_assumes_one_per_second(
    tmp_path: Path, capture_log: pytest.LogCaptureFixture
) -> None:
    pattern = write_sequence(tmp_path, 4)
    frames = replay(make_settings(pattern, target_fps=0.5))  # 1 fps source -> every 2nd frame
    assert [f.index for f in frames] == [0, 2]
    assert "assuming 1.0 fps" in capture_log.text


def test_finished_only_after_the_last_frame_is_read(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path, 3)
    camera = Camera(make_settings(pattern, source_fps=10.0))
    camera.start()
    try:
        indices = []
        for _ in range(3):
            frame = camera.read(DEADLINE_S)
            assert frame is not None
            indices.append(frame.index)
            assert not camera.finished
        assert indices == [0, 1, 2]
        assert camera.read(DEADLINE_S) is None
        assert camera.finished
        assert camera.status is CameraStatus.ONLINE  # a finished file is not a failure
        assert camera.read(10.0) is None  # returns at once once finished
    finally:
        camera.stop()


def test_realtime_replay_is_paced_at_source_rate(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path, 6)
    started = time.monotonic()
    frames = replay(make_settings(pattern, source_fps=40.0, target_fps=40.0, realtime=True))
    elapsed = time.monotonic() - started
    assert elapsed >= 5 / 40.0 * 0.9
    assert [f.index for f in frames] == sorted(f.index for f in frames)
    assert frames[-1].index == 5


def test_lossless_replay_waits_for_a_slow_consumer(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path, 8)
    camera = Camera(make_settings(pattern, source_fps=10.0))
    frames = []
    for frame in camera.iter_frames(poll_s=0.2):
        frames.append(frame.index)
        time.sleep(0.01)
    assert frames == list(range(8))
    assert camera.dropped == 0


# ---------------------------------------------------------------------------- real video file


def test_video_file_frame_count_and_indices(tmp_path: Path) -> None:
    path = write_video(tmp_path / "lobby.avi", 12, fps=10.0)
    camera = Camera(make_settings(path, target_fps=10.0, source_fps=99.0))
    frames = list(camera.iter_frames())
    assert camera.source_fps == 10.0  # the container's rate wins over the configured fallback
    assert [f.index for f in frames] == list(range(12))
    means = [float(f.image.mean()) for f in frames]
    assert means == pytest.approx([i * 12 for i in range(12)], abs=3)
    assert frames[0].image.shape == (24, 32, 3)


def test_video_decimation_grabs_skipped_frames_without_decoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "lobby.avi", 12, fps=10.0)
    opened: list[CountingSource] = []

    def opener(settings: CaptureSettings) -> FrameSource:
        opened.append(CountingSource(open_source(settings)))
        return opened[-1]

    frames = replay(make_settings(path, target_fps=3.0), opener=opener)  # k = round(10/3) = 3
    assert [f.index for f in frames] == [0, 3, 6, 9]
    assert [float(f.image.mean()) for f in frames] == pytest.approx([0, 36, 72, 108], abs=3)
    (source,) = opened
    assert source.reads == 5  # 4 kept + the read that found the end
    assert source.skips == 8


def test_looping_video_restarts_at_index_zero(tmp_path: Path) -> None:
    path = write_video(tmp_path / "lobby.avi", 5, fps=10.0)
    camera = Camera(make_settings(path, target_fps=5.0, loop=True))  # k = 2: 0, 2, 4
    with camera:
        indices: list[int] = []
        while len(indices) < 8:
            frame = camera.read(DEADLINE_S)
            assert frame is not None
            indices.append(frame.index)
    assert indices == [0, 2, 4, 0, 2, 4, 0, 2]
    assert not camera.finished


def test_missing_video_file_fails_replay_with_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"cannot open file source .*missing\.mp4"):
        replay(make_settings(str(tmp_path / "missing.mp4")))


# ---------------------------------------------------------------- fake sources: health, backoff


def test_hung_read_goes_stale_then_offline_and_reopens(
    capture_log: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    hung = LiveSource(frames=2, then="hang", release=release, marker=1)
    healthy = LiveSource(marker=2)
    opener = Opener([hung, healthy], repeat_last=False)
    camera = Camera(make_settings(target_fps=50.0), opener=opener)
    camera.start()
    try:
        pump_until(camera, lambda c: len(opener.calls) == 2 and c.status is CameraStatus.ONLINE)
        assert transitions(capture_log) == [
            ("offline", "online"),
            ("online", "stale"),
            ("stale", "offline"),
            ("offline", "online"),
        ]
        assert "read blocked" in (camera.last_error or "")
        frame = camera.read(DEADLINE_S)
        assert frame is not None and int(frame.image[0, 0, 0]) == 2
    finally:
        release.set()  # the abandoned reader returns; its frame must be discarded
        camera.stop()
    wait_for(lambda: hung.closed)


def test_hung_readers_are_capped_until_one_returns(
    monkeypatch: pytest.MonkeyPatch, capture_log: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(camera_module, "MAX_ABANDONED_READERS", 1)
    release = threading.Event()
    opener = Opener([LiveSource(frames=0, then="hang", release=release)])
    camera = Camera(make_settings(stale_after_s=0.1, offline_after_s=0.3), opener=opener)
    camera.start()
    try:
        pump_until(camera, lambda c: "readers still hung" in capture_log.text)
        time.sleep(0.5)
        camera.read(0.05)
        assert len(opener.calls) == 1  # no second connection while the first is stuck
        release.set()
        pump_until(camera, lambda c: len(opener.calls) == 2)
    finally:
        release.set()
        camera.stop()


def test_watchdog_runs_on_the_injected_clock() -> None:
    clock = ManualClock(100.0)
    release = threading.Event()
    hung = LiveSource(frames=1, then="hang", release=release, marker=1)
    healthy = LiveSource(marker=2)
    opener = Opener([hung, healthy])
    settings = make_settings(stale_after_s=10.0, offline_after_s=30.0)
    camera = Camera(settings, clock=clock, opener=opener)
    camera.start()
    try:
        wait_for(lambda: camera.read(0) is not None or camera.status is CameraStatus.ONLINE)
        assert hung.hanging.wait(DEADLINE_S)
        statuses = []
        for now in (109.0, 111.0, 131.0):
            clock.now = now
            assert camera.read(0) is None
            statuses.append(camera.status)
            if now < 131.0:
                assert len(opener.calls) == 1  # stale is not yet a reason to reconnect
        assert statuses == [CameraStatus.ONLINE, CameraStatus.STALE, CameraStatus.OFFLINE]
        wait_for(lambda: len(opener.calls) == 2)
        frame = None
        while frame is None:  # bounded by the healthy fake: frames every 2 ms
            frame = camera.read(0)
        assert int(frame.image[0, 0, 0]) == 2
        assert frame.monotonic == 131.0
        assert camera.status is CameraStatus.ONLINE
        assert camera.last_frame_at == 131.0
    finally:
        release.set()
        camera.stop()


@pytest.mark.parametrize("failure", ["open-raises", "none", "raise"])
def test_failing_source_backs_off_with_growing_bounded_delays(failure: str) -> None:
    calls: list[float] = []

    def opener(settings: CaptureSettings) -> FrameSource:
        calls.append(time.monotonic())
        if failure == "open-raises":
            raise OSError("connection refused")
        return LiveSource(frames=0, then=failure)  # read returns None / raises

    camera = Camera(
        make_settings(reconnect_min_s=0.02, reconnect_max_s=0.08),
        opener=opener,
        rng=lambda: 1.0,  # no jitter: delays are the ceilings 0.02, 0.04, 0.08, 0.08
    )
    camera.start()
    try:
        pump_until(camera, lambda c: len(calls) >= 6)
        assert camera.status is CameraStatus.OFFLINE
        assert camera.last_error
    finally:
        camera.stop()
    gaps = [b - a for a, b in itertools.pairwise(calls)][:5]
    expected = [0.02, 0.04, 0.08, 0.08, 0.08]
    assert all(gap >= want * 0.9 for gap, want in zip(gaps, expected, strict=True)), gaps
    assert all(gap < want + 1.5 for gap, want in zip(gaps, expected, strict=True)), gaps


def test_source_that_recovers_goes_back_online(capture_log: pytest.LogCaptureFixture) -> None:
    opener = Opener(
        [OSError("refused"), OSError("refused"), LiveSource(frames=3, then="none"), LiveSource()],
        repeat_last=False,
    )
    camera = Camera(make_settings(), opener=opener)
    camera.start()
    try:
        pump_until(camera, lambda c: len(opener.calls) == 4 and c.status is CameraStatus.ONLINE)
    finally:
        camera.stop()
    assert transitions(capture_log) == [
        ("offline", "online"),
        ("online", "offline"),
        ("offline", "online"),
    ]


def test_live_indices_keep_counting_across_reconnects() -> None:
    opener = Opener(
        [LiveSource(frames=3, then="none", period_s=0.0), LiveSource()], repeat_last=False
    )
    camera = Camera(make_settings(target_fps=1000.0), opener=opener)
    camera.start()
    try:
        indices: list[int] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(indices) < 6 and time.monotonic() < deadline:
            frame = camera.read(0.1)
            if frame is not None:
                indices.append(frame.index)
    finally:
        camera.stop()
    assert len(indices) == 6
    assert indices == sorted(indices) and len(set(indices)) == 6


def test_live_source_keeps_only_the_newest_frame_and_decodes_at_target_rate() -> None:
    source = LiveSource(period_s=0.002)
    camera = Camera(make_settings(target_fps=20.0), opener=Opener([source]))
    camera.start()
    try:
        time.sleep(0.4)  # the consumer is busy: frames pile up at the device, not here
        frame = camera.read(DEADLINE_S)
        assert frame is not None and frame.index > 0
        assert camera.dropped > 0  # only the newest was kept
    finally:
        camera.stop()
    assert source.skips > source.reads  # grabbed continuously, decoded ~20 times a second


def test_replay_resumes_after_a_read_failure_without_duplicates() -> None:
    first = ListSource(10, fail_at=5)
    second = ListSource(10)
    camera = Camera(
        make_settings("clip.mp4", target_fps=5.0), opener=Opener([first, second], repeat_last=False)
    )
    camera.start()
    try:
        indices = []
        while not camera.finished:
            frame = camera.read(DEADLINE_S)
            if frame is not None:
                indices.append(frame.index)
    finally:
        camera.stop()
    assert indices == [0, 2, 4, 6, 8]
    assert second.decoded == [6, 8]  # frames before the failure point were stepped over


def test_stop_is_prompt_when_the_reader_waits_for_room(tmp_path: Path) -> None:
    pattern = write_sequence(tmp_path, 20)
    camera = Camera(make_settings(pattern, source_fps=10.0))
    camera.start()
    assert camera.read(DEADLINE_S) is not None
    time.sleep(0.1)  # the reader fills the queue and blocks
    started = time.monotonic()
    camera.stop(timeout=5.0)
    assert time.monotonic() - started < 2.0


def test_stop_is_prompt_during_backoff() -> None:
    camera = Camera(
        make_settings(reconnect_min_s=30.0, reconnect_max_s=60.0), opener=Opener([OSError("down")])
    )
    camera.start()
    pump_until(camera, lambda c: c.last_error is not None)
    started = time.monotonic()
    camera.stop()
    assert time.monotonic() - started < 2.0


def test_fps_measures_delivered_rate() -> None:
    clock = ManualClock(0.0)
    camera = Camera(make_settings("clip.mp4"), clock=clock, opener=Opener([ListSource(50)]))
    camera.start()
    try:
        for i in range(5):
            clock.now = i * 0.5
            frame = None
            while frame is None:
                frame = camera.read(0)
        assert camera.fps == pytest.approx(2.0)
        clock.now = 100.0
        assert camera.fps == 0.0
    finally:
        camera.stop()


# ----------------------------------------------------------------------- real OpenCV streams


def test_closed_port_stream_goes_offline_without_leaking_credentials(
    capture_log: pytest.LogCaptureFixture,
) -> None:
    url = f"rtsp://user:secret@127.0.0.1:{free_port()}/x"
    camera = Camera(make_settings(url, open_timeout_s=0.5))
    camera.start()
    try:
        pump_until(camera, lambda c: c.last_error is not None)
        assert camera.status is CameraStatus.OFFLINE
    finally:
        camera.stop()
    assert "secret" not in (camera.last_error or "")
    assert "secret" not in capture_log.text
    assert "user:***@127.0.0.1" in capture_log.text
    for record in capture_log.records:
        assert "secret" not in record.getMessage()


def test_open_error_message_masks_credentials() -> None:
    url = f"rtsp://user:secret@127.0.0.1:{free_port()}/x"
    with pytest.raises(CaptureError) as err:
        open_source(make_settings(url, open_timeout_s=0.5))
    assert "secret" not in str(err.value)
    assert "user:***@" in str(err.value)
