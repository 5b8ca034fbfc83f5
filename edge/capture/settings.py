"""Capture settings, source classification and credential redaction.

Pure code (standard library only): it can be tested without OpenCV or a camera.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

_STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_USB = re.compile(r"^(?:usb:)?(\d+)$", re.IGNORECASE)
# One integer conversion such as %d, %6d or %06d; "%%" is a literal percent sign.
_PRINTF_INT = re.compile(r"%0?\d*d")
_PRINTF_ANY = re.compile(r"%(?:%|[-+ #0-9.]*[a-zA-Z]?)")
# userinfo is everything up to the last "@" of the authority (a password may contain "@").
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pass|pwd|token|secret|key|auth)=)[^&#;\s]*", re.IGNORECASE
)


class CaptureError(RuntimeError):
    """A source cannot be opened or read. Messages never contain credentials."""


class SourceKind(enum.Enum):
    """Where frames come from; decides pacing, decimation and queue policy.

    STREAM and USB are live (the device keeps producing frames whether we read them or not);
    FILE and SEQUENCE are replayed (every frame is there, at our pace).
    """

    STREAM = "stream"
    USB = "usb"
    FILE = "file"
    SEQUENCE = "sequence"

    @property
    def live(self) -> bool:
        return self in (SourceKind.STREAM, SourceKind.USB)


def classify_source(source: str) -> SourceKind:
    """Tell what kind of source a configured string names; ValueError when it names none.

    "rtsp://", "rtsps://", "http(s)://" -> STREAM; "usb:0", "0", "/dev/video0" (or a stable
    udev path such as /dev/v4l/by-id/...) -> USB;
    a string with one printf integer field ("seq_%06d.jpg") -> SEQUENCE; any other path -> FILE.
    Pure: nothing is opened or checked on disk.
    """
    text = source.strip()
    if not text:
        raise ValueError("capture source is empty")
    if text.lower().startswith(_STREAM_SCHEMES):
        return SourceKind.STREAM
    if _SCHEME.match(text):
        raise ValueError(
            f"unsupported source scheme in {redact_url(text)!r}: use rtsp, rtsps, http or https"
        )
    if _USB.match(text) or text.startswith("/dev/"):
        return SourceKind.USB
    if text.lower().startswith("usb:"):
        raise ValueError(f"USB source {text!r} must be usb:<index>, e.g. usb:0")
    if "%" in text:
        _check_sequence_pattern(text)
        return SourceKind.SEQUENCE
    return SourceKind.FILE


def _check_sequence_pattern(pattern: str) -> None:
    fields = [m.group(0) for m in _PRINTF_ANY.finditer(pattern) if m.group(0) != "%%"]
    if len(fields) != 1 or not _PRINTF_INT.fullmatch(fields[0]):
        raise ValueError(
            f"image sequence pattern {pattern!r} must contain exactly one integer field "
            f"such as %d or %06d (found {fields or 'none'})"
        )


def usb_device(source: str) -> int | str:
    """The OpenCV device for a USB source: an index for "usb:N" / "N", the path for /dev/videoN."""
    match = _USB.match(source.strip())
    return int(match.group(1)) if match else source.strip()


def redact_url(text: str) -> str:
    """Mask credentials in a URL, or in any text that contains URLs (an exception message).

    "rtsp://user:secret@host/x" -> "rtsp://user:***@host/x"; a userinfo without a password
    (often a token) becomes "***"; query values named password/token/key/... become "***".
    Used on every log line and error message that may carry a camera address.
    """
    return _SECRET_QUERY.sub(r"\g<key>***", _USERINFO.sub(_mask_userinfo, text))


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _password = match.group("userinfo").partition(":")
    masked = f"{user}:***" if sep else "***"
    return f"{match.group('scheme')}{masked}@"


@dataclass(frozen=True)
class CaptureSettings:
    """How to read one camera. All durations are seconds on the monotonic clock.

    source_fps is the frame rate of files and image sequences when the container does not say
    (an image sequence never does): videos fall back to 25, sequences to 1 (with a warning).
    realtime paces replayed sources at their own timing (service mode); False replays as fast as
    the consumer reads, losing no frame (offline evaluation). loop restarts a replayed source.
    stale_after_s / offline_after_s: no new frame for that long -> STALE / OFFLINE (and reopen).
    reconnect_min_s .. reconnect_max_s bound the jittered exponential backoff between reopens.
    open_timeout_s goes to the FFMPEG backend as open and read timeouts, so a dead RTSP server
    cannot block a read forever where OpenCV honours it.
    """

    camera_id: str
    source: str
    target_fps: float
    source_fps: float | None = None
    realtime: bool = True
    loop: bool = False
    stale_after_s: float = 10.0
    offline_after_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    open_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.camera_id.strip():
            raise ValueError("camera_id must not be empty")
        where = f"camera {self.camera_id!r}"
        classify_source(self.source)
        _require_positive(where, "target_fps", self.target_fps)
        if self.source_fps is not None:
            _require_positive(where, "source_fps", self.source_fps)
        for name in ("stale_after_s", "offline_after_s", "reconnect_min_s", "open_timeout_s"):
            _require_positive(where, name, getattr(self, name))
        if self.stale_after_s >= self.offline_after_s:
            raise ValueError(
                f"{where}: stale_after_s ({self.stale_after_s}) must be < "
                f"offline_after_s ({self.offline_after_s})"
            )
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(
                f"{where}: reconnect_max_s ({self.reconnect_max_s}) must be >= "
                f"reconnect_min_s ({self.reconnect_min_s})"
            )

    @property
    def kind(self) -> SourceKind:
        return classify_source(self.source)

    @property
    def redacted_source(self) -> str:
        """The source as it may appear in logs."""
        return redact_url(self.source)


def _require_positive(where: str, name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name} must be a finite number > 0, got {value}")
