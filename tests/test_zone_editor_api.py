"""The zone editor's save (docs/ui.md 5): PUT /v1/cameras/{id}/geometry writes the camera's
zones into the real config file, keeping every other line and comment, through the service's own
loader, with If-Match, a backup and an atomic write; refused whole when anything is wrong."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.config_edit import KEEP_BACKUPS, backups, replace_geometry
from edge.config import load_config, parse_config
from tests.conftest import REPO_ROOT, SmallDisk
from tests.test_api_support import KEYS, T0, Clock, Monotonic, auth, hash_key

SITE = """\
# Branch 1 (this comment, and every line outside the lobby's zones, must survive a save)
site: {{id: branch-1, timezone: Europe/Berlin}}
cameras:
  - id: lobby
    name: Lobby
    source: rtsp://127.0.0.1/lobby   # the dome camera
    zones:   # drawn on the May picture
      - id: queue
        name: Queue
        role: queue
        polygon: [[0.5, 0], [1, 0], [1, 1]]
      - id: kiosks
        role: self_service
        capacity: 4          # four machines
        polygon: [[0, 0.5], [0.5, 0.5], [0.5, 1]]
    # nothing is masked in the lobby yet
  - id: door
    source: rtsp://127.0.0.1/door
    zones:
      - {{id: entrance, role: entrance, polygon: [[0, 0], [1, 0], [1, 1]]}}
storage: {{path: "{db}", interval_s: 10}}
mqtt: {{enabled: false}}
alerts:
  rules:
    - {{id: long-queue, zones: [queue], raise_at: 5, clear_at: 2}}
api:
  keys: {keys}
"""

QUEUE = {"id": "queue", "name": "Queue", "role": "queue", "priority": 0,
         "polygon": [[0.5, 0], [1, 0], [1, 1]]}  # fmt: skip
KIOSKS = {"id": "kiosks", "name": "", "role": "self_service", "priority": 0,
          "polygon": [[0, 0.5], [0.5, 0.5], [0.5, 1]]}  # fmt: skip
BENCH = {"id": "bench", "name": "Bench", "role": "waiting", "priority": 1,
         "polygon": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.4], [0.1, 0.4]]}  # fmt: skip
PLANT = {
    "id": "plant",
    "reason": "a plant: not a person",
    "polygon": [[0.9, 0.9], [1, 0.9], [1, 1]],
}


def keys() -> str:
    return "[" + ", ".join(
        f"{{id: {r}-1, role: {r}, sha256: {hash_key(k)}}}" for r, k in KEYS.items()
    ) + "]"  # fmt: skip


def write_site(directory: Path, db: str = "lw.db") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "lobbywatch.yaml"
    path.write_text(SITE.format(keys=keys(), db=db))
    path.chmod(0o640)
    return path


def client_for(path: Path, clock: Clock | None = None) -> TestClient:
    app = create_app(
        load_config(path, environ={}), config_path=path, rollup_every_s=None,
        monotonic=Monotonic(), clock=clock or Clock(T0), environ={},
    )  # fmt: skip
    return TestClient(app)


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, TestClient]:
    path = write_site(tmp_path / "etc")
    return path, client_for(path)


def etag(client: TestClient, camera: str = "lobby") -> str:
    response = client.get(f"/v1/cameras/{camera}/geometry", headers=auth("admin"))
    assert response.status_code == 200, response.text
    return response.headers["etag"]


def put(
    client: TestClient, body: object, tag: str | None, role: str = "admin", camera: str = "lobby"
):
    headers = {**auth(role), **({"If-Match": tag} if tag is not None else {})}
    return client.put(f"/v1/cameras/{camera}/geometry", json=body, headers=headers)


def test_the_geometry_etag_is_the_sha256_of_the_file_on_disk(site):
    path, client = site
    assert etag(client) == f'"{hashlib.sha256(path.read_bytes()).hexdigest()}"'
    path.write_text(path.read_text() + "# touched\n")
    assert etag(client) == f'"{hashlib.sha256(path.read_bytes()).hexdigest()}"'


def test_a_save_writes_the_zones_keeps_the_rest_and_a_backup(site, caplog):
    path, client = site
    before = path.read_text()
    tag = etag(client)
    with caplog.at_level(logging.INFO, logger="lobbywatch.api"):
        response = put(client, {"zones": [QUEUE, KIOSKS, BENCH], "ignore": [PLANT]}, tag)
    assert response.status_code == 200, response.text
    after = path.read_text()
    assert response.headers["etag"] == f'"{hashlib.sha256(after.encode()).hexdigest()}"'
    assert response.headers["etag"] == etag(client) != tag

    # The new zone and mask, in the answer and in a fresh GET.
    body = response.json()
    assert [z["id"] for z in body["zones"]] == ["queue", "kiosks", "bench"]
    assert body == client.get("/v1/cameras/lobby/geometry", headers=auth("admin")).json()
    assert body["ignore"] == [{**PLANT, "polygon": [[0.9, 0.9], [1.0, 0.9], [1.0, 1.0]]}]

    # The file loads; the kiosks kept their capacity (not in the body), the rest is as it was.
    config = load_config(path, environ={})
    lobby = config.camera("lobby")
    assert lobby.zones[1].capacity == 4 and lobby.zones[2].priority == 1
    assert config.camera("door") == load_config_text(before, path).camera("door")
    lines_before, lines_after = before.splitlines(), after.splitlines()
    start = lines_before.index("    zones:   # drawn on the May picture")
    assert lines_after[: start + 1] == lines_before[: start + 1]  # the key's comment too
    tail = lines_before[lines_before.index("    # nothing is masked in the lobby yet") :]
    assert lines_after[-len(tail) :] == tail
    assert "        capacity: 4          # four machines" in lines_after

    # The old file is the backup, with the file's mode; the new one kept it too.
    (backup,) = backups(path)
    assert backup.name == "lobbywatch.yaml.bak-20240506T000000Z"
    assert backup.read_text() == before
    assert oct(backup.stat().st_mode & 0o777) == oct(path.stat().st_mode & 0o777) == "0o640"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    messages = [r.getMessage() for r in caplog.records]
    assert "config: camera lobby zones saved by key admin-1 from testclient" in messages


def load_config_text(text: str, path: Path):
    return parse_config(text, source=str(path), base_dir=path.parent, environ={})


@pytest.mark.parametrize(
    ("zones", "path", "loc", "message"),
    [
        pytest.param(
            [KIOSKS], "alerts.rules.0.zones.0", ["config", "alerts", "rules", 0, "zones", 0],
            "alert rule 'long-queue' watches unknown zone 'queue'", id="a rule's zone removed",
        ),
        pytest.param(
            [QUEUE, {**BENCH, "id": "entrance"}], "", ["config"],
            "duplicate zone id(s): entrance", id="an id the door camera has",
        ),
        pytest.param(
            [QUEUE, {**BENCH, "polygon": [[64, 48], [320, 48], [320, 240]]}],
            "cameras.0.zones.1.polygon", ["body", "zones", 1, "polygon"],
            "pixels", id="a polygon in pixels",
        ),
        pytest.param(
            [QUEUE, {**KIOSKS, "role": "waiting"}], "cameras.0.zones.1", ["body", "zones", 1],
            "capacity is for self_service zones, not waiting", id="a kept key that no longer fits",
        ),
        pytest.param(
            [], "cameras.0.zones", ["body", "zones"], "at least 1 item", id="no zone",
        ),
    ],
)  # fmt: skip
def test_a_save_the_loader_refuses_is_a_422_with_its_messages_and_writes_nothing(
    site, zones, path, loc, message
):
    file, client = site
    before = file.read_bytes()
    response = put(client, {"zones": zones, "ignore": []}, etag(client))
    assert response.status_code == 422, response.text
    issues = response.json()["detail"]
    found = [i for i in issues if message in i["msg"]]
    assert found, issues
    assert found[0]["type"] == "config"
    assert found[0]["loc"] == loc
    assert found[0]["path"] == path or (path == "" and found[0]["path"] in ("", "cameras"))
    assert file.read_bytes() == before and backups(file) == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"zones": [{**QUEUE, "id": "../etc"}]}, ["body", "zones", 0, "id"]),
        ({"zones": [{**QUEUE, "id": "a" * 65}]}, ["body", "zones", 0, "id"]),
        ({"zones": [{**QUEUE, "polygon": [[0.5, i / 100] for i in range(65)]}]},
         ["body", "zones", 0, "polygon"]),
        ({"zones": [{**QUEUE, "role": "lounge"}]}, ["body", "zones", 0, "role"]),
        ({"zones": [{**QUEUE, "capacity": 3}]}, ["body", "zones", 0, "capacity"]),
        ({"zones": [QUEUE] * 33}, ["body", "zones"]),
        ({"zones": [QUEUE], "ignore": [{**PLANT, "polygon": [[0, 0], [1, 0]]}]},
         ["body", "ignore", 0, "polygon"]),
        ({"zones": [QUEUE], "cameras": []}, ["body", "cameras"]),
    ],
)  # fmt: skip
def test_a_body_that_is_not_geometry_is_refused_before_the_file_is_touched(site, body, loc):
    file, client = site
    before = file.read_bytes()
    response = put(client, body, etag(client))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert file.read_bytes() == before


def test_a_huge_body_is_refused_unread(site):
    file, client = site
    before = file.read_bytes()
    huge = json.dumps({"zones": [QUEUE], "pad": "x" * (300 * 1024)})
    response = client.put(
        "/v1/cameras/lobby/geometry",
        content=huge,
        headers={**auth("admin"), "If-Match": etag(client), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    # Chunked, with no length to go by, too.
    response = client.put(
        "/v1/cameras/lobby/geometry",
        content=iter([huge[i : i + 65536].encode() for i in range(0, len(huge), 65536)]),
        headers={**auth("admin"), "If-Match": etag(client), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert file.read_bytes() == before


def test_a_stale_or_missing_etag_saves_nothing(site):
    file, client = site
    tag = etag(client)
    file.write_text(file.read_text().replace("name: Lobby", "name: Lobby hall"))  # by hand
    before = file.read_bytes()
    stale = put(client, {"zones": [QUEUE, KIOSKS]}, tag)
    assert stale.status_code == 409 and "changed since" in stale.json()["detail"]
    missing = put(client, {"zones": [QUEUE, KIOSKS]}, None)
    assert missing.status_code == 428 and "If-Match" in missing.json()["detail"]
    assert put(client, {"zones": [QUEUE, KIOSKS]}, "*").status_code == 428
    assert file.read_bytes() == before
    fresh = put(client, {"zones": [QUEUE, KIOSKS]}, etag(client).strip('"'))  # bare works too
    assert fresh.status_code == 200, fresh.text
    assert "name: Lobby hall" in file.read_text()


@pytest.mark.parametrize("role", ["viewer", "manager"])
def test_only_an_admin_may_save(site, role):
    file, client = site
    before = file.read_bytes()
    assert put(client, {"zones": [QUEUE, KIOSKS, BENCH]}, etag(client), role).status_code == 403
    assert file.read_bytes() == before


def test_an_unknown_camera_is_a_404(site):
    _, client = site
    assert put(client, {"zones": [QUEUE]}, etag(client), camera="roof").status_code == 404


def test_without_its_config_path_the_api_cannot_save(tmp_path):
    path = write_site(tmp_path)
    app = create_app(load_config(path, environ={}), rollup_every_s=None, monotonic=Monotonic(),
                     environ={})  # fmt: skip
    client = TestClient(app)
    geometry = client.get("/v1/cameras/lobby/geometry", headers=auth("admin"))
    assert geometry.status_code == 200 and "etag" not in geometry.headers
    response = put(client, {"zones": [QUEUE]}, '"x"')
    assert response.status_code == 503 and "--config" in response.json()["detail"]


def test_a_file_on_a_read_only_mount_is_a_503_saying_so(tmp_path):
    disk = SmallDisk(tmp_path / "ro")  # skips where tmpfs cannot be mounted (not root)
    try:
        path = write_site(disk.path, db=str(tmp_path / "lw.db"))  # the store elsewhere
        client = client_for(path)
        tag = etag(client)
        remount = subprocess.run(["mount", "-o", "remount,ro", str(disk.path)],
                                 capture_output=True, text=True)  # fmt: skip
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
        before = path.read_bytes()
        response = put(client, {"zones": [QUEUE, KIOSKS, BENCH]}, tag)
        assert response.status_code == 503, response.text
        assert "read-only" in response.json()["detail"]
        assert path.read_bytes() == before
    finally:
        disk.unmount()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a directory without w")
def test_a_directory_the_api_may_not_write_is_a_503(site):
    file, client = site
    tag = etag(client)
    file.parent.chmod(0o555)
    try:
        response = put(client, {"zones": [QUEUE, KIOSKS, BENCH]}, tag)
    finally:
        file.parent.chmod(0o755)
    assert response.status_code == 503 and backups(file) == []


def test_only_the_newest_backups_are_kept(tmp_path):
    path = write_site(tmp_path)
    clock = Clock(T0)
    client = client_for(path, clock)
    first = None
    for i in range(KEEP_BACKUPS + 3):
        bench = {**BENCH, "priority": i}
        assert put(client, {"zones": [QUEUE, KIOSKS, bench]}, etag(client)).status_code == 200
        first = first or backups(path)[0].name
        if i % 2:
            clock.now = clock.now.replace(second=clock.now.second + 1)  # two saves a second too
    kept = backups(path)
    assert len(kept) == KEEP_BACKUPS and first not in [p.name for p in kept]
    assert kept[-1].name.endswith("-2") or kept[-1].name.endswith("Z")
    assert "priority: 11" in kept[-1].read_text()  # the file before the last save


@pytest.mark.parametrize("name", ["mall.yaml", "crowd.yaml"])
def test_saving_a_shipped_configs_own_geometry_changes_nothing_it_means(name, tmp_path):
    source = REPO_ROOT / "configs" / name
    text = source.read_text()
    environ = {"LOBBYWATCH_DETECTOR__LICENCE_ACKNOWLEDGED": "non-commercial-training-data"}
    config = parse_config(text, base_dir=source.parent, environ=environ)
    camera = config.cameras[0]
    zones = [{"id": z.id, "name": z.name, "role": z.role, "priority": z.priority,
              "polygon": [list(p) for p in z.polygon]} for z in camera.zones]  # fmt: skip
    ignore = [{"id": m.id, "reason": m.reason, "polygon": [list(p) for p in m.polygon]}
              for m in camera.ignore]  # fmt: skip
    edited, index = replace_geometry(text, camera.id, zones, ignore)
    assert index == 0
    assert parse_config(edited, base_dir=source.parent, environ=environ) == config
    # Only the zones' own lines may change (ruamel joins a polygon written over two lines).
    changed = [line for line in edited.splitlines() if line not in text.splitlines()]
    assert all(line.lstrip().startswith("polygon:") for line in changed), changed
