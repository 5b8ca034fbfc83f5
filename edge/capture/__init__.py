"""Camera capture: frames from streams, USB cameras, video files and image sequences.

Decimates to the pipeline's frame rate without decoding skipped frames, keeps live latency low,
watches for hung reads and reconnects with bounded backoff. Logs go to "lobbywatch.capture" and
never contain stream credentials.
"""

from __future__ import annotations

from edge.capture.camera import Camera, utc_now
from edge.capture.health import Backoff, Verdict, assess
from edge.capture.settings import (
    CaptureError,
    CaptureSettings,
    SourceKind,
    classify_source,
    redact_url,
)
from edge.capture.sources import (
    FrameSource,
    ImageSequenceSource,
    VideoCaptureSource,
    decimation_stride,
    open_source,
    resolve_source_fps,
)

__all__ = [
    "Backoff",
    "Camera",
    "CaptureError",
    "CaptureSettings",
    "FrameSource",
    "ImageSequenceSource",
    "SourceKind",
    "Verdict",
    "VideoCaptureSource",
    "assess",
    "classify_source",
    "decimation_stride",
    "open_source",
    "redact_url",
    "resolve_source_fps",
    "utc_now",
]
