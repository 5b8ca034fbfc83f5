"""Snapshots (docs/ui.md 3): the only image the product serves, off unless enabled, in memory,
to admins only, every view logged; and a frames socket a hostile client cannot jam.

The frames server here is the real one on a real Unix socket, fed by a FrameHolder as the
service's workers feed it; the API is the real app under uvicorn or its TestClient.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from datetime import timezone
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from api.app import create_app
from api.frames_client import FramesUnavailable, fetch
from api.routes.webapp import APP_DIR, FILES
from edge.config import LobbyConfig
from edge.runtime.frames import (
    MAX_REQUEST_BYTES,
    FrameHolder,
    FrameServer,
    judge,
    serve_frames,
    socket_path,
)
from edge.types import Detections, Frame
from edge.zones import Zone, assign_zones
from tests.test_api_support import (
    T0,
    Clock,
    auth,
    client_for,
    insert_alert,
    served,
    site_config,
)

UTC = timezone.utc
WIDTH, HEIGHT = 640, 360


def with_snapshots(config: LobbyConfig, enabled: bool = True) -> LobbyConfig:
    snapshots = config.api.snapshots.model_copy(update={"enabled": enabled})
    return config.model_copy(update={"api": config.api.model_copy(update={"snapshots": snapshots})})


def image(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A frame with something in it (gradients and a rectangle), so the JPEG is a real one."""
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    img = np.stack([np.tile(x, (height, 1)), np.tile(y[:, None], (1, width)),
                    np.full((height, width), 90, np.uint8)], axis=2)  # fmt: skip
    cv2.rectangle(img, (50, 40), (200, 300), (0, 0, 255), -1)
    return np.ascontiguousarray(img)


def boxes(*feet: tuple[float, float], score: float = 0.8) -> Detections:
    """A 40x120 px box standing on each normalized foot point."""
    xyxy = [[x * WIDTH - 20, y * HEIGHT - 120, x * WIDTH + 20, y * HEIGHT] for x, y in feet]
    n = len(feet)
    return Detections(
        np.array(xyxy, np.float32).reshape(n, 4), np.full(n, score, np.float32),
        np.zeros(n, np.int32),
    )  # fmt: skip


def frame(camera: str = "lobby", index: int = 0, img: np.ndarray | None = None) -> Frame:
    return Frame(camera, index, image() if img is None else img, T0, 1.0)


# ---- judging each box ---------------------------------------------------------------------

LEFT = Zone("left", ((0, 0), (0.5, 0), (0.5, 1), (0, 1)))
MASK = ((0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1))  # bottom right quarter


@pytest.mark.parametrize(
    ("foot", "zone", "reason"),
    [
        ((0.25, 0.8), "left", None),  # feet in the zone: counted
        ((0.75, 0.8), None, "ignored"),  # feet in the ignore mask
        ((0.75, 0.3), None, "no zone"),  # feet outside every zone, in no mask
    ],
)
def test_each_box_says_its_zone_or_why_it_does_not_count(foot, zone, reason):
    detections = boxes(foot)
    zone_of = assign_zones(detections.anchors(WIDTH, HEIGHT), [LEFT], [MASK])
    (box,) = judge(detections, zone_of, WIDTH, HEIGHT, [MASK])
    assert (box.zone, box.reason, box.counted) == (zone, reason, reason is None)
    assert box.anchor == pytest.approx(foot, abs=1e-4)
    assert box.score == pytest.approx(0.8)


def test_boxes_the_scene_ruled_out_are_ignored_for_the_scene_with_the_rule():
    kept, rejected = boxes((0.25, 0.8)), boxes((0.3, 0.6), (0.1, 0.2), score=0.5)
    judged = judge(kept, ["left"], WIDTH, HEIGHT, (), rejected, ("text", "static"))
    assert [(b.zone, b.reason, b.rule) for b in judged] == [
        ("left", None, None),
        (None, "scene", "text"),
        (None, "scene", "static"),
    ]


# ---- the holder -----------------------------------------------------------------------------


def test_the_holder_keeps_only_the_latest_image_and_the_boxes_of_earlier_frames():
    holder = FrameHolder({"lobby": []}, recent=2)
    images = [image() for _ in range(4)]
    held = [
        holder.offer(frame(index=i, img=images[i]), boxes((0.25, 0.8)), ["left"]) for i in range(4)
    ]
    latest = holder.latest("lobby")
    assert latest is not None and latest.seq == 4 and latest.image is images[3]  # no copy
    earlier = [holder.find("lobby", s) for s in (1, 2, 3)]
    assert earlier[0] is None  # beyond `recent`
    assert [f.seq for f in earlier[1:] if f] == [2, 3]
    assert all(f.image is None for f in earlier[1:] if f)  # their images are let go
    assert earlier[2] is not None and earlier[2].boxes == held[2].boxes
    holder.forget("lobby")
    assert holder.latest("lobby") is None and holder.find("lobby", 3) is None


# ---- the frames socket ----------------------------------------------------------------------


@pytest.fixture
def holder() -> FrameHolder:
    held = FrameHolder({"lobby": [MASK], "door": []})
    held.offer(frame(), boxes((0.25, 0.8), (0.75, 0.8)), ["left", None])
    return held


@pytest.fixture
def server(tmp_path: Path, holder: FrameHolder):
    started = FrameServer(holder, socket_path(tmp_path / "lw.db"), timeout_s=2.0).start()
    yield started
    started.stop()


def test_the_socket_is_owner_only_serves_the_frame_and_is_removed_on_stop(tmp_path, holder):
    server = FrameServer(holder, tmp_path / "lobbywatch-frames.sock").start()
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["lobbywatch-frames.sock"]  # no temp left
    snap = fetch(server.path, "lobby")
    decoded = cv2.imdecode(np.frombuffer(snap.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(decoded.astype(int) - image().astype(int)).mean() < 3  # the frame itself
    assert snap.header["width"] == WIDTH and snap.header["height"] == HEIGHT
    assert [(b["zone"], b["reason"]) for b in snap.header["boxes"]] == [
        ("left", None),
        (None, "ignored"),
    ]
    server.stop()
    assert not server.path.exists()
    with pytest.raises(FramesUnavailable, match="not running") as refused:
        fetch(server.path, "lobby")
    assert refused.value.status == 503


def test_a_dead_services_socket_is_replaced_and_a_live_one_or_a_file_is_not(tmp_path, holder):
    path = tmp_path / "lobbywatch-frames.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: a crashed service's
    first = FrameServer(holder, path).start()
    try:
        with pytest.raises(RuntimeError, match="already serves"):
            FrameServer(holder, path).start()
    finally:
        first.stop()
    path.write_text("not a socket")
    with pytest.raises(RuntimeError, match="not a socket"):
        FrameServer(holder, path).start()
    assert path.read_text() == "not a socket"


@pytest.mark.parametrize(
    ("camera", "kwargs", "status", "message"),
    [
        ("nowhere", {}, 404, "no camera 'nowhere'"),
        ("door", {}, 503, "no frame of camera door yet"),
        ("lobby", {"seq": 99}, 404, "no longer held"),
    ],
)
def test_the_server_says_why_there_is_no_frame(server, camera, kwargs, status, message):
    with pytest.raises(FramesUnavailable, match=message) as refused:
        fetch(server.path, camera, **kwargs)
    assert refused.value.status == status


def raw_exchange(path: Path, data: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        conn.sendall(data)
        answer = b""
        while b"\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    return json.loads(answer.split(b"\n", 1)[0])


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\xff\xfe garbage\n", 400),
        (b"[1, 2]\n", 400),
        (b'{"camera": 3}\n', 400),
        (b'{"camera": "lobby", "path": "/etc/passwd"}\n', 400),
        (b'{"camera": "lobby", "seq": -1}\n', 400),
        (b"x" * (4 * MAX_REQUEST_BYTES), 413),  # huge, no newline: refused, not buffered
        (b"x" * (2 * MAX_REQUEST_BYTES) + b"\n", 413),
    ],
)
def test_garbage_and_huge_requests_get_an_error_and_the_server_goes_on(server, data, status):
    answer = raw_exchange(server.path, data)
    assert answer["status"] == status and answer["error"]
    assert fetch(server.path, "lobby", image=False).header["camera"] == "lobby"


def dropped(conn: socket.socket) -> bool:
    """Whether the server closed `conn` without an answer (EOF, or a reset where it left
    bytes of ours unread)."""
    conn.settimeout(10)
    try:
        return conn.recv(100) == b""
    except ConnectionResetError:
        return True


def test_a_silent_client_is_dropped_and_does_not_hold_up_the_others(tmp_path, holder):
    server = FrameServer(holder, tmp_path / "f.sock", timeout_s=0.3, max_clients=2).start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.connect(str(server.path))
            silent.sendall(b'{"camera": "lo')  # and nothing more
            assert fetch(server.path, "lobby").jpeg  # served meanwhile
            assert dropped(silent)  # at its deadline, unanswered
        assert fetch(server.path, "lobby").jpeg  # its slot came back
    finally:
        server.stop()


def test_a_client_that_trickles_is_dropped_at_its_deadline_on_the_servers_clock(tmp_path, holder):
    now, asked = [0.0], threading.Event()

    def clock() -> float:
        asked.set()
        return now[0]

    server = FrameServer(holder, tmp_path / "f.sock", timeout_s=5.0, monotonic=clock).start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
            slow.connect(str(server.path))
            slow.sendall(b"{")
            assert asked.wait(10)  # its deadline is set: 5 s from 0
            now[0] = 6.0
            slow.sendall(b'"')
            assert dropped(slow)  # unanswered, long before the socket's own 10 s
    finally:
        server.stop()


def test_beyond_max_clients_a_client_is_told_busy(tmp_path, holder):
    server = FrameServer(holder, tmp_path / "f.sock", timeout_s=5.0, max_clients=1).start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holding:
            holding.connect(str(server.path))
            holding.sendall(b"{")  # holds the one slot
            with pytest.raises(FramesUnavailable, match="busy") as refused:
                fetch(server.path, "lobby")
            assert refused.value.status == 503
    finally:
        server.stop()


def test_a_client_that_does_not_read_its_answer_is_dropped_and_frees_its_slot(tmp_path, holder):
    big = b"\xff" * (16 * 1024 * 1024)  # more than the socket buffers hold
    server = FrameServer(
        holder, tmp_path / "f.sock", timeout_s=0.3, max_clients=1, encode=lambda _img: big
    ).start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lazy:
            lazy.connect(str(server.path))
            lazy.sendall(b'{"camera": "lobby"}\n')  # and never reads
            done = threading.Event()
            got: list[int] = []

            def ask() -> None:
                for _ in range(50):  # busy while the lazy one holds the slot, then served
                    try:
                        got.append(len(fetch(server.path, "lobby", timeout_s=10).jpeg))
                        break
                    except FramesUnavailable as exc:
                        assert "busy" in exc.reason
                        threading.Event().wait(0.1)
                done.set()

            threading.Thread(target=ask, daemon=True).start()
            assert done.wait(30)
            assert got == [len(big)]
    finally:
        server.stop()


def test_off_there_is_no_holder_no_server_and_no_socket(tmp_path):
    config = site_config(tmp_path)
    assert serve_frames(config) == (None, None)
    assert not socket_path(config.storage.path).exists()


def test_on_the_service_serves_frames_at_the_store_and_a_long_path_is_said_plainly(tmp_path):
    config = with_snapshots(site_config(tmp_path))
    holder, server = serve_frames(config)
    assert holder is not None and server is not None
    try:
        assert server.path == tmp_path / "lobbywatch-frames.sock" and server.path.exists()
    finally:
        server.stop()
    with pytest.raises(ValueError, match="shorter directory"):
        FrameServer(FrameHolder({}), tmp_path / ("x" * 120))


# ---- the API --------------------------------------------------------------------------------


def zone_of(
    config: LobbyConfig, detections: Detections, camera_id: str | None = None
) -> list[str | None]:
    camera = config.camera(camera_id) if camera_id else config.cameras[0]
    zones = [Zone(z.id, tuple(z.polygon), z.priority) for z in camera.zones]
    return assign_zones(detections.anchors(WIDTH, HEIGHT), zones, [])


@pytest.fixture
def live_site(tmp_path):
    """The test site with snapshots on, its frames server up with one frame of the lobby:
    one person in waiting, one in queue, one in no zone."""
    config = with_snapshots(site_config(tmp_path))
    holder, server = serve_frames(config)
    assert holder is not None and server is not None
    detections = boxes((0.4, 0.5), (0.9, 0.5), (0.1, 0.9))
    holder.offer(frame(), detections, zone_of(config, detections))
    yield config, holder
    server.stop()


def test_an_admin_gets_the_frame_as_jpeg_not_stored_and_its_boxes(live_site, caplog):
    config, _ = live_site
    caplog.set_level(logging.INFO, logger="lobbywatch.api")
    client = client_for(config, Clock(T0))
    response = client.get("/v1/cameras/lobby/snapshot.jpg", headers=auth("admin"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "no-store"
    decoded = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (HEIGHT, WIDTH, 3)
    seq = response.headers["x-lobbywatch-seq"]
    found = client.get(f"/v1/cameras/lobby/detections?seq={seq}", headers=auth("admin"))
    assert found.status_code == 200 and found.headers["cache-control"] == "no-store"
    body = found.json()
    assert (body["width"], body["height"], body["counted"]) == (WIDTH, HEIGHT, 2)
    assert [(b["zone"], b["reason"]) for b in body["boxes"]] == [
        ("waiting", None),
        ("queue", None),
        (None, "no zone"),
    ]
    views = [r.getMessage() for r in caplog.records if r.name == "lobbywatch.api"]
    assert views == [
        "snapshot of camera lobby (image) viewed by key admin-1 from testclient",
        "snapshot of camera lobby (detections) viewed by key admin-1 from testclient",
    ]
    context = client.app.state.lobbywatch
    assert context.snapshot_views.by_camera() == {"lobby": 2}
    assert context.snapshot_views.total == 2
    metrics = client.get("/metrics", headers=auth("viewer")).text
    assert 'lobbywatch_snapshot_views_total{camera="lobby"} 2.0' in metrics
    assert not any(
        p.suffix in (".jpg", ".jpeg", ".png") for p in config.storage.path.parent.rglob("*")
    )


@pytest.mark.parametrize("role", ["viewer", "manager"])
@pytest.mark.parametrize("what", ["snapshot.jpg", "detections", "geometry"])
def test_viewers_and_managers_may_not_see_a_frame(live_site, caplog, role, what):
    config, _ = live_site
    caplog.set_level(logging.INFO, logger="lobbywatch.api")
    client = client_for(config, Clock(T0))
    response = client.get(f"/v1/cameras/lobby/{what}", headers=auth(role))
    assert response.status_code == 403
    assert not response.headers["content-type"].startswith("image/")
    assert "viewed" not in caplog.text
    assert client.app.state.lobbywatch.snapshot_views.total == 0


def test_without_a_key_nothing_is_shown(live_site):
    client = client_for(live_site[0], Clock(T0))
    assert client.get("/v1/cameras/lobby/snapshot.jpg").status_code == 401


@pytest.mark.parametrize("what", ["snapshot.jpg", "detections", "geometry"])
def test_an_unknown_camera_is_404(live_site, what):
    client = client_for(live_site[0], Clock(T0))
    assert client.get(f"/v1/cameras/attic/{what}", headers=auth("admin")).status_code == 404


def test_off_or_without_the_service_the_answer_is_503_with_the_reason(tmp_path):
    off = client_for(site_config(tmp_path), Clock(T0))
    response = off.get("/v1/cameras/lobby/snapshot.jpg", headers=auth("admin"))
    assert response.status_code == 503
    assert "api.snapshots.enabled" in response.json()["detail"]
    on = client_for(with_snapshots(site_config(tmp_path)), Clock(T0))  # no service running
    response = on.get("/v1/cameras/lobby/detections", headers=auth("admin"))
    assert response.status_code == 503
    assert "service is not running" in response.json()["detail"]


def test_a_camera_without_a_frame_yet_is_503_saying_so(live_site):
    client = client_for(live_site[0], Clock(T0))
    response = client.get("/v1/cameras/door/snapshot.jpg", headers=auth("admin"))
    assert (
        response.status_code == 503 and "no frame of camera door yet" in response.json()["detail"]
    )


def test_the_geometry_is_the_configs_zones_and_masks(live_site):
    client = client_for(live_site[0], Clock(T0))
    body = client.get("/v1/cameras/lobby/geometry", headers=auth("admin")).json()
    assert [z["id"] for z in body["zones"]] == ["waiting", "queue"]
    assert body["zones"][0]["polygon"] == [[0, 0], [0.5, 0], [0.5, 1]]
    assert body["ignore"] == []


# ---- privacy: off, no route returns an image --------------------------------------------------

#: Real values for every path parameter a route may have (a new one must be added here).
PATH_VALUES = {
    "camera_id": ["lobby", "door"],
    "alert_id": ["a1"],
    "zone_id": ["waiting"],
    "count_id": ["1"],
}
WEB_DIR = APP_DIR.parent


def page_files(path: str) -> list[str] | None:
    """For a page's file route (`/<page>/{name}`, assets in api/web/<page>/): every file it
    ships, and the page itself; None for other routes."""
    head, _, param = path.partition("{")
    page = head.strip("/")
    if not param.startswith("name") or "/" in page or not (WEB_DIR / page).is_dir():
        return None
    files = [str(f.relative_to(WEB_DIR / page)) for f in (WEB_DIR / page).rglob("*") if f.is_file()]
    return ["", *sorted(files)]


def every_route(app) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, routers included, path params filled."""
    found: list[tuple[str, str]] = []

    def walk(routes, prefix: str) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI's included router
                walk(route.original_router.routes, prefix + route.include_context.prefix)
                continue
            path = prefix + route.path
            for method in sorted(route.methods or ()):
                for filled in fill(path):
                    found.append((method, filled))

    walk(app.routes, "")
    return found


def fill(path: str) -> list[str]:
    files = page_files(path)
    if files is not None:
        return [path.split("{")[0] + name for name in files]
    paths = [path]
    while any("{" in p for p in paths):
        name = paths[0].split("{", 1)[1].split("}", 1)[0]
        assert name in PATH_VALUES, f"{path}: no real value for {{{name}}}: add it to PATH_VALUES"
        paths = [p.replace(f"{{{name}}}", v, 1) for p in paths for v in PATH_VALUES[name]]
    return paths


def test_with_snapshots_off_no_route_returns_an_image(tmp_path):
    """Every route, every method, with an admin key, while a frames server (which the service
    would not even start) holds a frame: no answer is an image, except the phone app's own
    icons (and any page's shipped pictures), byte for byte the files in api/web/."""
    config = site_config(tmp_path)
    insert_alert(create_app(config, rollup_every_s=None).state.lobbywatch.store.store(), "a1", T0)
    routes = every_route(create_app(config, rollup_every_s=None))
    assert ("GET", "/v1/cameras/lobby/snapshot.jpg") in routes and len(routes) > 30
    headers = {**auth("admin"), "X-Lobbywatch-App": "1"}
    images: list[str] = []
    with served(config) as base, httpx.Client(base_url=base, timeout=10) as client:
        for method, path in routes:
            with client.stream(method, path, headers=headers, json={}) as response:
                kind = response.headers.get("content-type", "")
                if kind.startswith("image/"):
                    images.append(path)
                    shipped = WEB_DIR / path.strip("/")
                    assert shipped.is_file() and response.read() == shipped.read_bytes(), path
                if kind.startswith("text/event-stream"):
                    continue  # a live stream: its type said enough, leave it
                response.read()
    assert {f"/app/{n}" for n in FILES if n.startswith("icons/")} <= set(images)
    assert not socket_path(config.storage.path).exists()
