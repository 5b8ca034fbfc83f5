"""Hand counts for calibration (docs/ui.md 6): heads clicked on a snapshot, kept in the store
with the detector's boxes of that frame and never the image, and `lobbywatch calibrate
--from-store` fitting on them as `--heads` fits on the same frames read again.

The store is real SQLite, the frames server the real one on a real Unix socket fed as the
service feeds it, the API the real app; the Mall test runs the real detector and pipeline.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import timedelta

import cv2
import pytest
from typer.testing import CliRunner

from api.auth import hash_key
from api.schemas import MAX_HEADS
from edge.calibration import MIN_FRAMES, camera_geometry, zones_key
from edge.cli import app
from edge.config import parse_config
from edge.pipeline import CameraPipeline, build_detector
from edge.replay import stored_frames
from edge.runtime.frames import RECENT_FRAMES, serve_frames
from edge.store import SCHEMA_VERSION, HandCount, Store, StoredBox
from edge.types import Frame
from tests.test_api_support import KEYS, T0, Clock, auth, client_for, site_config
from tests.test_snapshots import boxes, frame, with_snapshots, zone_of

APP = {"X-Lobbywatch-App": "1"}


def hand_count(camera: str = "lobby", **changes: object) -> HandCount:
    values: dict[str, object] = {
        "camera_id": camera, "at": T0, "seq": 3, "width": 640, "height": 360,
        "heads": ((0.4, 0.3), (0.9, 0.3)),
        "boxes": (StoredBox((10.0, 20.0, 50.0, 140.0), (0.047, 0.389), 0.81, "waiting"),),
        "detected": {"waiting": 1, "queue": 0}, "zones_key": "k", "saved_by": "admin-1",
        "saved_at": T0 + timedelta(seconds=5),
    }  # fmt: skip
    values.update(changes)
    return HandCount(**values)  # type: ignore[arg-type]


# ---- the store ------------------------------------------------------------------------------


def test_hand_counts_are_kept_listed_per_camera_and_deleted(tmp_path):
    with Store(tmp_path / "lw.db") as store:
        first = store.add_hand_count(hand_count())
        second = store.add_hand_count(hand_count(seq=4, heads=()))
        store.add_hand_count(hand_count("door"))
        kept = store.hand_counts("lobby")
        assert [c.id for c in kept] == [first, second] and store.hand_count_total("lobby") == 2
        assert kept[0] == hand_count(id=first)  # every field as given, times UTC
        assert kept[1].heads == ()
        assert store.delete_hand_count("lobby", first)
        assert not store.delete_hand_count("lobby", first)  # gone already
        assert not store.delete_hand_count("lobby", 3)  # the door's, not the lobby's
        assert [c.id for c in store.hand_counts("lobby")] == [second]


def test_a_version_5_store_gains_the_hand_counts_table_and_keeps_its_rows(tmp_path):
    path = tmp_path / "v5.db"
    Store(path, site_id="b1").close()
    with sqlite3.connect(path) as db:  # as schema 5 left it: no hand_counts table
        db.execute("DROP TABLE hand_counts")
        db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
        db.execute("INSERT INTO ticket_events (kind, ticket, at, received_at) VALUES "
                   "('issued', 'A1', '2026-01-01T09:00:00+00:00', '2026-01-01T09:00:00+00:00')")  # fmt: skip
    with Store(path, site_id="b1") as store:
        assert SCHEMA_VERSION == 6 and store.get_meta("schema_version") == "6"
        assert [e.ticket for _, e in store.tickets_after(0)] == ["A1"]
        assert store.hand_counts("lobby") == []
        store.add_hand_count(hand_count())
        assert len(store.hand_counts("lobby")) == 1


# ---- the API --------------------------------------------------------------------------------


@pytest.fixture
def live_site(tmp_path):
    """The test site with snapshots on and one lobby frame held: a person in waiting, one in
    queue, one in no zone; and a box the scene ruled out."""
    config = with_snapshots(site_config(tmp_path))
    holder, server = serve_frames(config)
    assert holder is not None and server is not None
    detections = boxes((0.4, 0.5), (0.9, 0.5), (0.1, 0.9))
    holder.offer(frame(), detections, zone_of(config, detections), 1, boxes((0.2, 0.2)), ["size"])
    yield config, holder
    server.stop()


#: Two heads in waiting, one in queue (the test site's triangles), one in no zone.
HEADS = [[0.4, 0.3], [0.45, 0.2], [0.9, 0.3], [0.1, 0.9]]


def test_an_admin_keeps_a_hand_count_with_that_frames_boxes_and_no_image(live_site, caplog):
    config, _ = live_site
    caplog.set_level(logging.INFO, logger="lobbywatch.api")
    client = client_for(config, Clock(T0 + timedelta(minutes=1)))
    response = client.post("/v1/cameras/lobby/hand-counts", json={"seq": 1, "heads": HEADS},
                           headers=auth("admin"))  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    saved = response.json()
    assert saved["heads_per_zone"] == {"waiting": 2, "queue": 1}
    assert saved["detected"] == {"waiting": 1, "queue": 1}
    assert saved["boxes"] == 3  # the scene's ruled-out box is not kept
    assert (saved["seq"], saved["width"], saved["height"]) == (1, 640, 360)
    assert saved["saved_by"] == "admin-1" and saved["at"].startswith("2024-05-06T00:00:00")

    (stored,) = client.app.state.lobbywatch.store.store().hand_counts("lobby")
    assert [b.zone for b in stored.boxes] == ["waiting", "queue", None]
    assert stored.heads == tuple(map(tuple, HEADS))
    zones, ignore = camera_geometry(config.cameras[0])
    assert stored.zones_key == zones_key(zones, ignore)

    listed = client.get("/v1/cameras/lobby/hand-counts", headers=auth("admin")).json()
    assert [c["id"] for c in listed["hand_counts"]] == [saved["id"]]
    assert listed["advised"] == MIN_FRAMES
    deleted = client.delete(f"/v1/cameras/lobby/hand-counts/{saved['id']}", headers=auth("admin"))
    assert deleted.status_code == 204
    again = client.delete(f"/v1/cameras/lobby/hand-counts/{saved['id']}", headers=auth("admin"))
    assert again.status_code == 404
    assert (
        client.get("/v1/cameras/lobby/hand-counts", headers=auth("admin")).json()["hand_counts"]
        == []
    )
    said = [r.getMessage() for r in caplog.records if r.name == "lobbywatch.api"]
    assert said == [
        f"hand count {saved['id']} of camera lobby (frame 1, 4 heads) saved by key admin-1 "
        "from testclient",
        "hand counts of camera lobby listed by key admin-1 from testclient",
        f"hand count {saved['id']} of camera lobby deleted by key admin-1 from testclient",
        "hand counts of camera lobby listed by key admin-1 from testclient",
    ]
    pictures = [p for p in config.storage.path.parent.rglob("*")
                if p.suffix.lower() in (".jpg", ".jpeg", ".png")]  # fmt: skip
    assert pictures == []
    blob = b"".join(p.read_bytes() for p in config.storage.path.parent.rglob("lw.db*"))
    assert b"\xff\xd8\xff" not in blob  # no JPEG inside the store either


@pytest.mark.parametrize("role", ["viewer", "manager"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "hand-counts"), ("GET", "hand-counts"), ("DELETE", "hand-counts/1")],
)
def test_viewers_and_managers_may_not_make_see_or_drop_hand_counts(live_site, role, method, path):
    config, _ = live_site
    client = client_for(config, Clock(T0))
    client.app.state.lobbywatch.store.store().add_hand_count(hand_count())
    response = client.request(method, f"/v1/cameras/lobby/{path}", headers=auth(role),
                              json={"seq": 1, "heads": HEADS} if method == "POST" else None)  # fmt: skip
    assert response.status_code == 403
    assert client.app.state.lobbywatch.store.store().hand_count_total("lobby") == 1


@pytest.mark.parametrize(
    "body",
    [
        {"seq": 1, "heads": [[0.5, 0.5]] * (MAX_HEADS + 1)},  # more heads than any lobby
        {"seq": 1, "heads": [[1.5, 0.5]]},  # pixels, not 0-1
        {"seq": 1, "heads": [[0.5, -0.1]]},
        {"seq": 1, "heads": [[0.5]]},
        {"seq": 0, "heads": []},
        {"seq": "x", "heads": []},
        {"heads": []},
        {"seq": 1, "heads": [], "image": "data:image/jpeg;base64,AAAA"},  # no other fields
    ],
)
def test_bodies_out_of_bounds_are_refused_and_nothing_is_kept(live_site, body):
    client = client_for(live_site[0], Clock(T0))
    response = client.post("/v1/cameras/lobby/hand-counts", json=body, headers=auth("admin"))
    assert response.status_code == 422
    assert client.app.state.lobbywatch.store.store().hand_count_total("lobby") == 0


def test_as_many_heads_as_allowed_are_kept(live_site):
    client = client_for(live_site[0], Clock(T0))
    body = {"seq": 1, "heads": [[0.3, 0.5]] * MAX_HEADS}
    response = client.post("/v1/cameras/lobby/hand-counts", json=body, headers=auth("admin"))
    assert response.status_code == 201 and response.json()["heads_per_zone"]["waiting"] == MAX_HEADS


def test_a_frame_the_service_no_longer_holds_is_409_take_a_new_snapshot(live_site):
    config, holder = live_site
    for index in range(1, RECENT_FRAMES + 2):  # the camera moves on past the record's length
        holder.offer(frame(index=index), boxes((0.4, 0.5)), ["waiting"])
    client = client_for(config, Clock(T0))
    old = client.post("/v1/cameras/lobby/hand-counts", json={"seq": 1, "heads": HEADS},
                      headers=auth("admin"))  # fmt: skip
    assert old.status_code == 409
    assert old.json()["detail"] == "that frame is gone, take a new snapshot"
    never = client.post("/v1/cameras/lobby/hand-counts", json={"seq": 999, "heads": []},
                        headers=auth("admin"))  # fmt: skip
    assert never.status_code == 409
    recent = client.post("/v1/cameras/lobby/hand-counts", json={"seq": 3, "heads": []},
                         headers=auth("admin"))  # fmt: skip
    assert recent.status_code == 201, recent.text  # an earlier frame still held: its boxes
    assert recent.json()["detected"] == {"waiting": 1, "queue": 0}


def test_off_every_hand_count_route_is_503_and_an_unknown_camera_404(tmp_path, live_site):
    off = client_for(site_config(tmp_path), Clock(T0))
    for method, path in [("POST", "hand-counts"), ("GET", "hand-counts"),
                         ("DELETE", "hand-counts/1")]:  # fmt: skip
        response = off.request(method, f"/v1/cameras/lobby/{path}", headers=auth("admin"),
                               json={"seq": 1, "heads": []} if method == "POST" else None)  # fmt: skip
        assert response.status_code == 503 and "api.snapshots.enabled" in response.json()["detail"]
    on = client_for(live_site[0], Clock(T0))
    assert on.get("/v1/cameras/attic/hand-counts", headers=auth("admin")).status_code == 404


def test_a_browser_session_must_send_the_app_header_to_save(live_site):
    client = client_for(live_site[0], Clock(T0))
    client.base_url = "https://device.branch.example"  # a session cookie needs https
    login = client.post("/v1/session", json={"key": KEYS["admin"]}, headers=APP)
    assert login.status_code == 200, login.text
    body = {"seq": 1, "heads": HEADS}
    assert client.post("/v1/cameras/lobby/hand-counts", json=body).status_code == 403
    assert client.post("/v1/cameras/lobby/hand-counts", json=body, headers=APP).status_code == 201


# ---- calibrate --from-store -------------------------------------------------------------------


def test_stored_counts_made_with_other_zones_are_counted_again_with_the_current_ones(tmp_path):
    config = site_config(tmp_path)
    zones, ignore = camera_geometry(config.cameras[0])
    box = StoredBox((0.0, 0.0, 10.0, 10.0), (0.9, 0.5), 0.8, "waiting")  # feet in queue now
    same = hand_count(
        id=1, boxes=(box,), detected={"waiting": 1}, zones_key=zones_key(zones, ignore)
    )
    other = hand_count(id=2, boxes=(box,), detected={"waiting": 1}, zones_key="old")
    frames, recounted = stored_frames([same, other], zones, ignore)
    assert recounted == [2]
    assert frames[0].detected == {"waiting": 1, "queue": 0}  # as the pipeline had it
    assert frames[1].detected == {"waiting": 0, "queue": 1}  # placed again
    assert frames[0].truth == {"waiting": 1.0, "queue": 1.0}


MALL_CONFIG = """\
site: {{id: mall, timezone: UTC}}
detector: {{model: yolox_nano, confidence: 0.2, threads: 1, tiling: {{enabled: false}}, fusion: {{models: []}}}}
cameras:
  - id: cam
    source: "{source}"
    source_fps: 2
    gating: {{enabled: false}}
    zones:
      - {{id: left, role: waiting, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}
      - {{id: right, role: queue, polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}}
    ignore:
      - {{id: shop, polygon: [[0.85, 0], [1, 0], [1, 0.3], [0.85, 0.3]]}}
storage: {{path: "{db}"}}
mqtt: {{enabled: false}}
api:
  keys: [{{id: it, role: admin, sha256: {admin}}}]
  snapshots: {{enabled: true}}
"""


def test_from_store_fits_as_heads_does_on_the_same_real_mall_frames(
    tmp_path, data_dir, models_dir, monkeypatch
):
    """Heads of 12 Mall frames (its ground truth) clicked in through the API on the frames the
    real pipeline held, then `calibrate --from-store` against `calibrate --heads --stills` on
    the same frames read again: the same file, byte for byte (the same detector counts per
    zone, the same heads per zone, the same fit)."""
    frames_dir = data_dir / "mall" / "frames"
    if not frames_dir.exists():
        pytest.skip(f"Mall frames not found at {frames_dir}")
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    gt = json.loads((data_dir / "mall" / "gt_heads.json").read_text())
    text = MALL_CONFIG.format(source=frames_dir / "seq_%06d.jpg", db=tmp_path / "lw.db",
                              admin=hash_key(KEYS["admin"]))  # fmt: skip
    (tmp_path / "site.yaml").write_text(text)
    config = parse_config(text, base_dir=tmp_path, environ={})
    camera = config.cameras[0]
    stills = config.occupancy.model_copy(update={"hold_frames": 0})
    pipeline = CameraPipeline(camera, build_detector(config.detector), stills, calibrations={})
    holder, server = serve_frames(config)
    assert holder is not None and server is not None
    labelled = range(12)
    try:
        client = client_for(config, Clock(T0))
        for index in labelled:
            name = f"seq_{index + 1:06d}.jpg"
            image = cv2.imread(str(frames_dir / name), cv2.IMREAD_COLOR)
            height, width = image.shape[:2]
            shot = Frame("cam", index, image, T0, index / 2)
            result = pipeline.process(shot, index / 2)  # the time calibrate gives it
            held = holder.offer(shot, result.detections, result.zone_of, result.dropped,
                                result.rejected, result.rejected_why)  # fmt: skip
            heads = [[x / width, y / height] for x, y in gt[name]["heads_xy"]]
            response = client.post("/v1/cameras/cam/hand-counts", headers=auth("admin"),
                                   json={"seq": held.seq, "heads": heads})  # fmt: skip
            assert response.status_code == 201, response.text
            assert response.json()["detected"] == dict(result.raw)
    finally:
        server.stop()

    heads_file = tmp_path / "heads.json"
    heads_file.write_text(json.dumps({f"seq_{i + 1:06d}.jpg": gt[f"seq_{i + 1:06d}.jpg"]
                                      for i in labelled}))  # fmt: skip
    runner = CliRunner()
    site = str(tmp_path / "site.yaml")
    stored = runner.invoke(app, ["calibrate", "--config", site, "--camera", "cam", "--from-store",
                                 "--out", str(tmp_path / "from-store.yaml")])  # fmt: skip
    assert stored.exit_code == 0, stored.output
    read = runner.invoke(app, ["calibrate", "--config", site, "--camera", "cam", "--heads",
                               str(heads_file), "--stills", "--out", str(tmp_path / "heads.yaml")])  # fmt: skip
    assert read.exit_code == 0, read.output
    assert "on 12 frame(s)" in stored.output and "note:" not in stored.output
    assert stored.output.replace("from-store", "heads") == read.output
    assert (tmp_path / "from-store.yaml").read_text() == (tmp_path / "heads.yaml").read_text()
    assert not list(tmp_path.rglob("*.png")) and not [
        p for p in tmp_path.rglob("*.jp*g") if "frames" not in p.parts
    ]


@pytest.mark.parametrize("kept", [0, 1])
def test_from_store_with_too_few_hand_counts_says_how_many_it_needs(tmp_path, kept):
    config = with_snapshots(site_config(tmp_path))
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: branch-1, timezone: UTC}\n"
        "cameras:\n  - {id: lobby, source: rtsp://127.0.0.1/lobby, zones: [{id: waiting, role:"
        " waiting, polygon: [[0, 0], [1, 0], [1, 1]]}]}\n"
        f'storage: {{path: "{config.storage.path}"}}\nmqtt: {{enabled: false}}\n'
    )
    with Store(config.storage.path, site_id="branch-1") as store:
        for _ in range(kept):
            store.add_hand_count(hand_count())
    out = tmp_path / "c.yaml"
    result = CliRunner().invoke(app, ["calibrate", "--config", str(site), "--from-store",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1
    assert f"has {kept} hand count(s)" in result.output and "at least 2" in result.output
    assert "/debug" in result.output and not out.exists()


def test_from_store_without_a_store_says_where_it_looked(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: b}\ncameras:\n  - {id: c, source: rtsp://127.0.0.1/c, zones: [{id: z, role:"
        " waiting, polygon: [[0, 0], [1, 0], [1, 1]]}]}\n"
        f'storage: {{path: "{tmp_path / "none.db"}"}}\nmqtt: {{enabled: false}}\n'
    )
    result = CliRunner().invoke(app, ["calibrate", "--config", str(site), "--from-store",
                                      "--out", str(tmp_path / "c.yaml")])  # fmt: skip
    assert result.exit_code == 1 and "no store at" in result.output
    assert not (tmp_path / "none.db").exists()


def test_from_store_takes_no_frames_or_labels(tmp_path):
    result = CliRunner().invoke(app, ["calibrate", "--from-store", "--heads", "h.json",
                                      "--out", str(tmp_path / "c.yaml")])  # fmt: skip
    assert result.exit_code == 1 and "--from-store takes no" in result.output
