"""Frame sources: the small I/O interface behind which OpenCV sits.

A FrameSource hands out frames one by one and can step over a frame without decoding it, because
decoding is the real cost of replay on a 2-core edge box. The Camera owns threads, timing and
health; sources only do I/O, so tests substitute fakes.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from edge.capture.settings import (
    CaptureError,
    CaptureSettings,
    SourceKind,
    classify_source,
    redact_url,
    usb_device,
)

logger = logging.getLogger("lobbywatch.capture")

Image = npt.NDArray[np.uint8]

DEFAULT_VIDEO_FPS = 25.0
DEFAULT_SEQUENCE_FPS = 1.0
FIRST_NUMBERS = range(0, 6)
"""Numbers tried for the first file of an image sequence (dumps start at 0 or 1, rarely later)."""

_MAX_PLAUSIBLE_FPS = 1000.0  # some containers report 90000 (the RTP clock) or 0 when unknown


class FrameSource(Protocol):
    """One opened source. Methods block; the Camera calls them from its reader thread only."""

    def read(self) -> tuple[int, Image] | None:
        """Decode the next frame: (0-based index in source, HxWx3 BGR); None at end/failure."""
        ...

    def skip(self) -> int | None:
        """Step over the next frame without decoding it; its index, or None at end/failure."""
        ...

    def close(self) -> None: ...

    @property
    def fps(self) -> float | None:
        """Frames per second the source declares, None when it does not say."""
        ...

    @property
    def live(self) -> bool:
        """True for streams and USB cameras (frames keep coming), False for files and sequences."""
        ...


def open_source(settings: CaptureSettings) -> FrameSource:
    """Open the source named by settings; CaptureError (credentials masked) if it cannot."""
    kind = classify_source(settings.source)
    if kind is SourceKind.SEQUENCE:
        return ImageSequenceSource(settings.source)
    return VideoCaptureSource(settings.source, kind, open_timeout_s=settings.open_timeout_s)


def resolve_source_fps(declared: float | None, settings: CaptureSettings) -> float:
    """Frame rate used to decimate and pace a replayed source, frames per second.

    The container's own rate wins; settings.source_fps covers containers that do not say (image
    sequences never do); then 25 for videos, and 1 for sequences with a warning, because a wrong
    guess there silently changes every duration computed from frame timing.
    """
    if declared is not None and _plausible_fps(declared):
        return declared
    if settings.source_fps is not None:
        return settings.source_fps
    if classify_source(settings.source) is SourceKind.SEQUENCE:
        logger.warning(
            "camera %s: image sequence without source_fps, assuming %.1f fps",
            settings.camera_id,
            DEFAULT_SEQUENCE_FPS,
        )
        return DEFAULT_SEQUENCE_FPS
    return DEFAULT_VIDEO_FPS


def decimation_stride(source_fps: float, target_fps: float) -> int:
    """Keep every k-th frame of a replayed source: k = max(1, round(source_fps / target_fps))."""
    return max(1, round(source_fps / target_fps))


def _plausible_fps(fps: float) -> bool:
    return math.isfinite(fps) and 0 < fps <= _MAX_PLAUSIBLE_FPS


def _as_bgr(image: npt.ArrayLike) -> Image:
    """OpenCV hands back grey or BGRA images from some devices; the pipeline wants HxWx3 BGR."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        return np.asarray(cv2.cvtColor(array, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if array.ndim == 3 and array.shape[2] == 4:
        return np.asarray(cv2.cvtColor(array, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    return array


class VideoCaptureSource:
    """A video file, a stream URL or a USB camera through cv2.VideoCapture.

    Indices count frames pulled from the capture (read or grabbed), from 0: the frame position
    in a file, a running counter for a live device.
    """

    def __init__(self, source: str, kind: SourceKind, *, open_timeout_s: float) -> None:
        self._kind = kind
        self._name = redact_url(source)
        self._cap = _open_capture(source, kind, open_timeout_s)
        if not self._cap.isOpened():
            self._cap.release()
            raise CaptureError(f"cannot open {kind.value} source {self._name}")
        declared = float(self._cap.get(cv2.CAP_PROP_FPS))
        self._fps = declared if _plausible_fps(declared) else None
        self._next = 0

    def read(self) -> tuple[int, Image] | None:
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        return self._advance(), _as_bgr(image)

    def skip(self) -> int | None:
        # grab() moves past the frame; only retrieve() (inside read()) pays for decoding it.
        return self._advance() if self._cap.grab() else None

    def close(self) -> None:
        self._cap.release()

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def live(self) -> bool:
        return self._kind.live

    def _advance(self) -> int:
        index = self._next
        self._next += 1
        return index


def _open_capture(source: str, kind: SourceKind, open_timeout_s: float) -> cv2.VideoCapture:
    if kind is SourceKind.USB:
        device = usb_device(source)
        if isinstance(device, int):
            return cv2.VideoCapture(device, cv2.CAP_ANY)
        return cv2.VideoCapture(device, cv2.CAP_ANY)
    timeout_ms = max(1, round(open_timeout_s * 1000))
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        timeout_ms,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        timeout_ms,
    ]
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)


class ImageSequenceSource:
    """Numbered image files named by a printf pattern such as "frames/seq_%06d.jpg".

    The first existing number (searched in FIRST_NUMBERS) is index 0; the sequence ends at the
    first missing number. skip() only checks that the file exists: it is never decoded.
    An existing file that cannot be decoded (a truncated JPEG from a dump) is logged and stepped
    over, keeping the indices of the files after it.
    """

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._first = first_sequence_number(pattern)
        self._next = 0

    def read(self) -> tuple[int, Image] | None:
        while True:
            index, path = self._next, self._path(self._next)
            if not os.path.isfile(path):
                return None
            self._next += 1
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is not None:
                return index, _as_bgr(image)
            logger.warning("image sequence: cannot decode %s, skipped", path)

    def skip(self) -> int | None:
        index = self._next
        if not os.path.isfile(self._path(index)):
            return None
        self._next += 1
        return index

    def close(self) -> None:
        """Nothing is held open between reads."""

    @property
    def fps(self) -> float | None:
        return None

    @property
    def live(self) -> bool:
        return False

    def _path(self, index: int) -> str:
        return self._pattern % (self._first + index)


def first_sequence_number(pattern: str) -> int:
    """The number of the first existing file of an image sequence; CaptureError if none exists."""
    for number in FIRST_NUMBERS:
        if os.path.isfile(pattern % number):
            return number
    raise CaptureError(
        f"image sequence {pattern!r}: no file for numbers {FIRST_NUMBERS.start}.."
        f"{FIRST_NUMBERS.stop - 1} (first tried: {pattern % FIRST_NUMBERS.start!r})"
    )
