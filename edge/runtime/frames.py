"""What the detector sees, for admins (docs/ui.md 3): the latest frame per camera, in memory only.

Only built when `api.snapshots.enabled`: off, the service keeps no frame beyond the one being
processed and the socket does not exist. On, each camera worker offers every processed frame
and its result to a FrameHolder, which keeps a reference to the latest image (never a copy,
never encoded until asked: capture hands out a new array per frame, so keeping one costs no
copy and no CPU in the worker) and the boxes of the last few frames (no images), so a page
that fetched the image can ask for the boxes of that very frame by its `seq`.

The API is another process; it asks the FrameServer, a Unix socket beside the store
(`lobbywatch-frames.sock`, mode 0600, removed on stop). Request: one JSON line,
`{"camera": id}` (optional `"image": false` for the boxes only, `"seq": n` for an earlier
frame's boxes). Answer: one JSON header line (camera, seq, frame_index, at, width, height,
boxes, scene_dropped, jpeg_bytes; or error and status), then jpeg_bytes bytes of JPEG.
Nothing here writes an image to disk.

The server never blocks a camera worker: workers only swap references under a lock held for
microseconds; each client is served in its own thread with a deadline for the whole exchange
(a slow or silent client is dropped), a request larger than MAX_REQUEST_BYTES is refused, and
beyond MAX_CLIENTS at once a client is told "busy" and closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from edge.config import LobbyConfig
from edge.types import Detections, Frame
from edge.zones import in_any_polygon, snap_to_border

log = logging.getLogger("lobbywatch.frames")

SOCKET_NAME = "lobbywatch-frames.sock"
#: A request is one short JSON line; anything longer is not one of ours.
MAX_REQUEST_BYTES = 1024
#: Seconds a client has for its whole exchange (request in, answer out).
IO_TIMEOUT_S = 5.0
#: Clients served at once; more are answered "busy" (each costs a JPEG encode).
MAX_CLIENTS = 4
#: Frames whose boxes are kept per camera (about 4 s at 4 fps), images not included.
RECENT_FRAMES = 16
JPEG_QUALITY = 85
#: sun_path is 108 bytes on Linux, with its terminating NUL.
MAX_SOCKET_PATH = 107

Reason = Literal["ignored", "scene", "no zone"]
Polygon = Sequence[tuple[float, float]]


def socket_path(store_path: Path) -> Path:
    """Where the service that owns the store at `store_path` serves its frames."""
    return store_path.parent / SOCKET_NAME


@dataclass(frozen=True)
class Box:
    """One detection as the count judged it. xyxy: pixels of the frame; anchor: the feet,
    normalized (what places a person in a zone); zone: where it counts, None when it does
    not; reason: why not (an ignore mask, the scene's rules, outside every zone)."""

    xyxy: tuple[float, float, float, float]
    anchor: tuple[float, float]
    score: float
    zone: str | None
    reason: Reason | None
    rule: str | None = None  # the scene's rule, for reason "scene": "text", "size", "static"

    @property
    def counted(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict[str, Any]:
        return {
            "xyxy": [round(v, 1) for v in self.xyxy],
            "anchor": [round(v, 4) for v in self.anchor],
            "score": round(self.score, 3),
            "zone": self.zone,
            "counted": self.counted,
            "reason": self.reason,
            "rule": self.rule,
        }


def judge(
    detections: Detections,
    zone_of: Sequence[str | None],
    width: int,
    height: int,
    ignore: Sequence[Polygon] = (),
    rejected: Detections | None = None,
    rejected_why: Sequence[str] = (),
) -> tuple[Box, ...]:
    """Each box with its zone or why it does not count. A box in no zone is "ignored" where
    its feet fall in an ignore mask (masks win over zones, edge/zones.py) and "no zone"
    otherwise; the boxes the scene ruled out (FrameResult.rejected) are "scene", with the
    rule (rejected_why) where given."""
    anchors = detections.anchors(width, height)
    masked = in_any_polygon(np.clip(anchors, 0.0, 1.0), ignore)
    boxes = [
        _box(detections, anchors, i, zone, None if zone else "ignored" if masked[i] else "no zone")
        for i, zone in enumerate(zone_of)
    ]
    if rejected is not None and len(rejected):
        rejected_anchors = rejected.anchors(width, height)
        rules = list(rejected_why) + [None] * (len(rejected) - len(rejected_why))
        boxes += [
            replace(_box(rejected, rejected_anchors, i, None, "scene"), rule=rules[i])
            for i in range(len(rejected))
        ]
    return tuple(boxes)


def _box(
    detections: Detections,
    anchors: npt.NDArray[np.float32],
    i: int,
    zone: str | None,
    reason: Reason | None,
) -> Box:
    x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
    return Box(
        (x1, y1, x2, y2),
        (float(anchors[i][0]), float(anchors[i][1])),
        float(detections.confidence[i]),
        zone,
        reason,
    )


@dataclass(frozen=True)
class HeldFrame:
    """A processed frame as the holder keeps it. seq: the holder's own running number per
    camera (a looping source repeats frame_index). image: the BGR frame, only on the latest
    frame (None on the earlier ones, whose boxes alone are kept). scene_dropped: how many
    boxes the scene ruled out (in `boxes` too, as "scene", when the caller had them)."""

    camera_id: str
    seq: int
    frame_index: int
    at: datetime
    width: int
    height: int
    boxes: tuple[Box, ...]
    scene_dropped: int
    image: npt.NDArray[np.uint8] | None = None

    def header(self, jpeg_bytes: int = 0) -> dict[str, Any]:
        return {
            "camera": self.camera_id,
            "seq": self.seq,
            "frame_index": self.frame_index,
            "at": self.at.isoformat(),
            "width": self.width,
            "height": self.height,
            "boxes": [b.to_json() for b in self.boxes],
            "counted": sum(b.counted for b in self.boxes),
            "scene_dropped": self.scene_dropped,
            "jpeg_bytes": jpeg_bytes,
        }


class FrameHolder:
    """Per camera, the latest frame with its boxes and the boxes of the RECENT_FRAMES before.

    offer() runs in the camera workers, the readers in the server's threads: one lock guards
    the references, held only to swap them. ignore: each camera's ignore polygons
    (normalized, as the pipeline uses them), to say why a box in no zone is not counted.
    """

    def __init__(
        self, ignore: Mapping[str, Sequence[Polygon]], recent: int = RECENT_FRAMES
    ) -> None:
        self._ignore = {camera: tuple(polygons) for camera, polygons in ignore.items()}
        self._recent = recent
        self._lock = threading.Lock()
        self._latest: dict[str, HeldFrame] = {}
        self._earlier: dict[str, deque[HeldFrame]] = {}
        self._seq: dict[str, int] = {}

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self._ignore)

    def offer(
        self,
        frame: Frame,
        detections: Detections,
        zone_of: Sequence[str | None],
        dropped: int = 0,
        rejected: Detections | None = None,
        rejected_why: Sequence[str] = (),
    ) -> HeldFrame:
        """Keep `frame` as its camera's latest, with what the pipeline found in it (a
        FrameResult's detections, zone_of, dropped count, and the boxes the scene ruled out
        with each one's rule)."""
        camera = frame.camera_id
        boxes = judge(
            detections, zone_of, frame.width, frame.height, self._ignore.get(camera, ()),
            rejected, rejected_why,
        )  # fmt: skip
        with self._lock:
            seq = self._seq.get(camera, 0) + 1
            self._seq[camera] = seq
            held = HeldFrame(
                camera, seq, frame.index, frame.captured_at, frame.width, frame.height, boxes,
                dropped, frame.image,
            )  # fmt: skip
            previous = self._latest.get(camera)
            if previous is not None:
                earlier = self._earlier.setdefault(camera, deque(maxlen=self._recent))
                earlier.append(replace(previous, image=None))  # its image is let go here
            self._latest[camera] = held
        return held

    def latest(self, camera: str) -> HeldFrame | None:
        with self._lock:
            return self._latest.get(camera)

    def find(self, camera: str, seq: int) -> HeldFrame | None:
        """The frame numbered `seq`: the latest (with its image) or an earlier one (boxes only)."""
        with self._lock:
            latest = self._latest.get(camera)
            if latest is not None and latest.seq == seq:
                return latest
            return next((f for f in self._earlier.get(camera, ()) if f.seq == seq), None)

    def forget(self, camera: str) -> None:
        """Let go of the camera's frames (it went offline: its last view is no longer now)."""
        with self._lock:
            self._latest.pop(camera, None)
            self._earlier.pop(camera, None)


def encode_jpeg(image: npt.NDArray[np.uint8]) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the frame could not be encoded as JPEG")
    return bytes(data.tobytes())


class RequestError(Exception):
    """A request the server answers with an error header (status as HTTP would say it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_request(line: bytes) -> tuple[str, bool, int | None]:
    """(camera, image wanted, seq) from one request line; RequestError when it is not one."""
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise RequestError(400, "the request is not JSON") from None
    if not isinstance(request, dict) or not isinstance(request.get("camera"), str):
        raise RequestError(400, 'the request must be {"camera": "<id>"}')
    image = request.get("image", True)
    seq = request.get("seq")
    unknown = set(request) - {"camera", "image", "seq"}
    if not isinstance(image, bool) or unknown:
        raise RequestError(400, "image must be true or false; no other fields")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
        raise RequestError(400, "seq must be a positive integer")
    return request["camera"], image, seq


class FrameServer:
    """The holder's frames over a Unix socket at `path`, one thread per client (see the module
    docstring for the protocol and its bounds). monotonic: the clock of each client's deadline.
    """

    def __init__(
        self,
        holder: FrameHolder,
        path: Path,
        *,
        timeout_s: float = IO_TIMEOUT_S,
        max_clients: int = MAX_CLIENTS,
        encode: Callable[[npt.NDArray[np.uint8]], bytes] = encode_jpeg,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise ValueError(
                f"frames socket path {path} is longer than {MAX_SOCKET_PATH} bytes: "
                "put the store (storage.path) in a shorter directory"
            )
        self.holder = holder
        self.path = path
        self.timeout_s = timeout_s
        self.encode = encode
        self.monotonic = monotonic
        self._slots = threading.BoundedSemaphore(max_clients)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.served = 0  # answers sent, errors included (for tests and the status line)

    def start(self) -> FrameServer:
        """Bind, owner-only, then accept in a thread. Refuses to replace a live server's
        socket or a file that is not a socket; a dead one's socket is removed."""
        self._clear_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound under a temporary name, made owner-only, then renamed: the socket is never
        # reachable at its known path with the umask's mode.
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        try:
            listener.bind(str(temporary))
            os.chmod(temporary, 0o600)
            os.rename(temporary, self.path)
            listener.listen(8)
        except BaseException:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        listener.settimeout(0.5)  # how often the accept loop looks at the stop event
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, name="frames-server", daemon=True)
        self._thread.start()
        log.info("snapshots on: frames served to the API at %s", self.path)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _clear_stale(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise RuntimeError(f"{self.path} exists and is not a socket: not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink()  # left by a service that did not stop cleanly
            return
        finally:
            probe.close()
        raise RuntimeError(f"another service already serves frames at {self.path}")

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                log.exception("frames socket: accept failed")
                continue
            if not self._slots.acquire(blocking=False):
                self._refuse(conn)
                continue
            threading.Thread(
                target=self._serve, args=(conn,), name="frames-client", daemon=True
            ).start()

    def _refuse(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.1)
            with contextlib.suppress(OSError):
                conn.sendall(_error_line(503, "busy: too many snapshot requests at once"))

    def _serve(self, conn: socket.socket) -> None:
        deadline = self.monotonic() + self.timeout_s
        try:
            with conn:
                if not _same_user(conn):
                    log.warning("frames socket: refused a client of another user")
                    return
                try:
                    header, jpeg = self._answer(self._read_request(conn, deadline))
                except RequestError as exc:
                    header, jpeg = {"error": str(exc), "status": exc.status}, b""
                self._send(conn, json.dumps(header).encode() + b"\n" + jpeg, deadline)
                self.served += 1
        except (OSError, TimeoutError) as exc:  # a client gone or too slow: its problem only
            log.debug("frames socket: client dropped (%s)", exc)
        except Exception:
            log.exception("frames socket: answering a client failed")
        finally:
            self._slots.release()

    def _read_request(self, conn: socket.socket, deadline: float) -> bytes:
        data = b""
        while b"\n" not in data:
            if len(data) > MAX_REQUEST_BYTES:
                raise RequestError(
                    413, f"a request is one line of at most {MAX_REQUEST_BYTES} bytes"
                )
            conn.settimeout(self._left(deadline))
            chunk = conn.recv(MAX_REQUEST_BYTES + 1 - len(data))
            if not chunk:
                raise RequestError(400, "the request ended before its newline")
            data += chunk
        line = data.split(b"\n", 1)[0]
        if len(line) > MAX_REQUEST_BYTES:
            raise RequestError(413, f"a request is one line of at most {MAX_REQUEST_BYTES} bytes")
        return line

    def _answer(self, line: bytes) -> tuple[dict[str, Any], bytes]:
        camera, want_image, seq = parse_request(line)
        if camera not in self.holder.cameras:
            raise RequestError(404, f"no camera {camera!r} in this service")
        held = self.holder.find(camera, seq) if seq is not None else self.holder.latest(camera)
        if held is None:
            if seq is not None:
                raise RequestError(404, f"frame {seq} of camera {camera} is no longer held")
            raise RequestError(503, f"no frame of camera {camera} yet (not online)")
        if not want_image or held.image is None:
            return held.header(), b""
        jpeg = self.encode(held.image)
        return held.header(len(jpeg)), jpeg

    def _send(self, conn: socket.socket, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            conn.settimeout(self._left(deadline))
            sent = conn.send(view)
            view = view[sent:]

    def _left(self, deadline: float) -> float:
        left = deadline - self.monotonic()
        if left <= 0:
            raise TimeoutError("the client's time is up")
        return left


def _same_user(conn: socket.socket) -> bool:
    """Whether the peer runs as this process's user (the socket's mode says so already; this
    holds where the directory's or a mount's permissions would not)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return True
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _error_line(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode() + b"\n"


def serve_frames(config: LobbyConfig) -> tuple[FrameHolder | None, FrameServer | None]:
    """The service's holder and server when `api.snapshots.enabled`, started; (None, None)
    when off, or when the socket cannot be made (said in the log: counting goes on)."""
    if not config.api.snapshots.enabled:
        return None, None
    ignore = {c.id: [snap_to_border(m.polygon) for m in c.ignore] for c in config.cameras}
    holder = FrameHolder(ignore)
    try:
        server = FrameServer(holder, socket_path(config.storage.path)).start()
    except (OSError, RuntimeError, ValueError) as exc:
        log.error("snapshots: cannot serve frames (%s); running without them", exc)
        return None, None
    return holder, server
