"""`lobbywatch doctor`: each check with fake probes, the broker check on a real Mosquitto
configured from deploy/, and the command through the plugin registration."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from edge.config import LobbyConfig, parse_config
from edge.doctor import (
    GIB,
    BrokerProbe,
    DiskUsage,
    PlatformInfo,
    Probes,
    Status,
    check_broker,
    check_camera,
    check_capacity,
    check_clock,
    check_disk,
    check_model,
    check_platform,
    check_providers,
    check_store,
    exit_code,
    read_platform,
    register,
    render,
    run_checks,
)
from edge.runtime.device_state import DeviceState
from edge.store import Store

NOW_2026 = 1_790_000_000.0  # 2026-09-21


def config(extra: str = "", **env: str) -> LobbyConfig:
    text = (
        "site: {id: branch-042}\n"
        "cameras:\n"
        "  - id: lobby\n"
        "    source: rtsp://admin:secret@10.0.0.5/stream1\n"
        "    zones: [{id: waiting, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}]\n" + extra
    )
    return parse_config(text, environ=env)


def files(tree: dict[str, str]) -> Any:
    def read(path: Path) -> str | None:
        return tree.get(path.as_posix().lstrip("/"))

    return read


# --- platform and providers ------------------------------------------------------------------

JETSON = {
    "etc/nv_tegra_release": "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic\n",
    "proc/device-tree/model": "NVIDIA Jetson Orin Nano Developer Kit\0",
    "etc/os-release": 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\n',
}
NUC = {
    "proc/cpuinfo": "vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) Ultra 5 125H\n",
    "sys/class/dmi/id/sys_vendor": "ASUSTeK COMPUTER INC.\n",
    "sys/class/dmi/id/product_name": "NUC14RVH\n",
    "etc/os-release": 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\n',
}
OTHER = {"proc/cpuinfo": "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"}


@pytest.mark.parametrize(
    ("tree", "kind", "status", "text"),
    [
        (JETSON, "jetson", Status.OK, "R36.3.0"),
        (NUC, "intel", Status.OK, "NUC14RVH"),
        (OTHER, "other", Status.WARN, "not a Jetson or an Intel"),
    ],
)
def test_platform_is_recognised(tree: dict[str, str], kind: str, status: Status, text: str) -> None:
    info = read_platform(Probes(read_text=files(tree)))
    assert info.kind == kind
    result = check_platform(info)
    assert result.status is status and text in result.summary


JETSON_INFO = PlatformInfo("jetson", "Orin", "Ubuntu 22.04", "aarch64", "R36.3.0")
NUC_INFO = PlatformInfo("intel", "NUC", "Ubuntu 24.04", "x86_64")
CPU = ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("info", "provider", "ort", "ov", "status", "text"),
    [
        (
            JETSON_INFO,
            "auto",
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", *CPU],
            None,
            Status.OK,
            "TensorrtExecutionProvider",
        ),
        (JETSON_INFO, "auto", CPU, None, Status.WARN, "no TensorRT"),
        (JETSON_INFO, "tensorrt", CPU, None, Status.FAIL, "not installed"),
        (NUC_INFO, "auto", CPU, ["CPU", "GPU", "NPU"], Status.OK, "OpenVINO NPU"),
        (NUC_INFO, "openvino", CPU, ["CPU"], Status.OK, "OpenVINO CPU"),
        (NUC_INFO, "auto", CPU, None, Status.WARN, "no OpenVINO"),
        (NUC_INFO, "openvino", CPU, None, Status.FAIL, "not installed"),
    ],
)
def test_providers(
    info: PlatformInfo,
    provider: str,
    ort: list[str],
    ov: list[str] | None,
    status: Status,
    text: str,
) -> None:
    detector = config(f"detector: {{provider: {provider}}}\n").detector
    result = check_providers(info, detector, ort, ov)
    assert result.status is status, result
    assert text in result.summary
    assert result.status is Status.OK or result.fix


# --- model -----------------------------------------------------------------------------------


def test_model_present_with_matching_sha256(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    results = check_model(config().detector)
    assert [r.status for r in results] == [Status.OK, Status.OK]  # yolox and the fused retail-0013
    assert all("sha256 ok" in r.summary for r in results)
    assert any("yolox_nano.onnx" in d for d in results[0].details)
    assert any("person-detection-retail-0013.bin" in d for d in results[1].details)


def test_model_missing_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    main, fused = check_model(config().detector)
    assert main.status is Status.FAIL and "lobbywatch models fetch yolox_nano" in main.fix
    assert fused.status is Status.FAIL and "detector.fusion.models[0].model" in fused.summary


def test_model_with_a_wrong_checksum_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "yolox_nano.onnx").write_bytes(b"not the model")
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(tmp_path))
    (result,) = check_model(config("detector: {fusion: {models: []}}\n").detector)
    assert result.status is Status.FAIL and "sha256" in result.summary


def test_agpl_weights_are_flagged(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    if not (models_dir / "agpl" / "yolo11n_int8_dynamic_320.onnx").exists():
        pytest.skip("AGPL test weights not present")
    results = check_model(
        config("detector: {model: yolo11n_int8_dynamic_320, fusion: {models: []}}\n").detector
    )
    assert [r.status for r in results] == [Status.OK, Status.WARN]
    assert "AGPL-3.0" in results[1].summary


# --- cameras ---------------------------------------------------------------------------------


def test_reachable_rtsp_camera_and_masked_credentials() -> None:
    seen: list[tuple[str, int]] = []

    def connect(host: str, port: int, timeout: float) -> None:
        seen.append((host, port))

    result = check_camera(config().cameras[0], Probes(tcp_connect=connect))
    assert result.status is Status.OK
    assert seen == [("10.0.0.5", 554)]
    assert "secret" not in result.summary and "admin:***" in result.summary


def test_unreachable_camera_fails_with_what_to_check() -> None:
    def refuse(host: str, port: int, timeout: float) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    result = check_camera(config().cameras[0], Probes(tcp_connect=refuse))
    assert result.status is Status.FAIL
    assert "Connection refused" in result.summary and "power" in result.fix
    assert "secret" not in render([result])


@pytest.mark.parametrize(
    ("source", "present", "status"),
    [
        ("usb:0", {"dev/video0"}, Status.OK),
        ("usb:1", set(), Status.FAIL),
        ("/dev/v4l/by-id/cam", {"dev/v4l/by-id/cam"}, Status.OK),
    ],
)
def test_usb_camera(tmp_path: Path, source: str, present: set[str], status: Status) -> None:
    camera = config().cameras[0].model_copy(update={"source": source})
    probes = Probes(
        root=tmp_path, path_exists=lambda p: p.relative_to(tmp_path).as_posix() in present
    )
    assert check_camera(camera, probes).status is status


# --- broker (fake probe) ------------------------------------------------------------------------

TLS = (
    "mqtt: {host: broker.branch, port: 8883, username: branch-042, password_file: PW,"
    " tls: {enabled: true}}\n"
)


@pytest.mark.parametrize(
    ("probe", "status", "text"),
    [
        (BrokerProbe(True, "Success", True), Status.OK, "connected as branch-042"),
        (BrokerProbe(False, "Not authorized"), Status.FAIL, "broker.sh"),
        (BrokerProbe(False, "ConnectionRefusedError: refused"), Status.FAIL, "mosquitto running"),
        (BrokerProbe(True, "Success", False), Status.FAIL, "username must be the site id"),
    ],
)
def test_broker_outcomes(tmp_path: Path, probe: BrokerProbe, status: Status, text: str) -> None:
    pw = tmp_path / "pw"
    pw.write_text("x" * 20)
    pw.chmod(0o640)
    cfg = config(TLS.replace("PW", str(pw)))
    results = check_broker(cfg.mqtt, cfg.site.id, Probes(mqtt=lambda m, s: probe))
    assert results[-1].status is status
    assert text in results[-1].summary + results[-1].fix
    assert all(r.status is not Status.WARN for r in results)


def test_broker_warnings_for_plain_text_and_loose_files(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("x" * 20)
    pw.chmod(0o644)
    cfg = config(f"mqtt: {{host: 10.0.0.2, username: other, password_file: {pw}}}\n")
    results = check_broker(
        cfg.mqtt, cfg.site.id, Probes(mqtt=lambda m, s: BrokerProbe(True, "Success", True))
    )
    summaries = " | ".join(r.summary for r in results if r.status is Status.WARN)
    assert "not the site id" in summaries
    assert "readable by every user" in summaries
    assert "no TLS" in summaries


def test_missing_password_file_fails_before_connecting(tmp_path: Path) -> None:
    cfg = config(f"mqtt: {{username: branch-042, password_file: {tmp_path / 'missing'}}}\n")

    def never(m: Any, s: str) -> BrokerProbe:
        raise AssertionError("must not connect")

    results = check_broker(cfg.mqtt, cfg.site.id, Probes(mqtt=never))
    assert results[-1].status is Status.FAIL and "does not exist" in results[-1].summary


def test_disabled_mqtt_is_fine() -> None:
    cfg = config("mqtt: {enabled: false}\n")
    (result,) = check_broker(cfg.mqtt, cfg.site.id, Probes())
    assert result.status is Status.OK


# --- disk and clock ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("free", "status"), [(50 * GIB, Status.OK), (3 * GIB, Status.WARN), (GIB // 2, Status.FAIL)]
)
def test_disk(tmp_path: Path, free: int, status: Status) -> None:
    probes = Probes(disk_usage=lambda p: DiskUsage(100 * GIB, 100 * GIB - free, free))
    result = check_disk(tmp_path / "not" / "yet" / "lobbywatch.db", probes)
    assert result.status is status
    assert str(tmp_path) in result.summary  # the nearest directory that exists


@pytest.mark.parametrize(
    ("now", "synced", "status"),
    [
        (NOW_2026, True, Status.OK),
        (NOW_2026, False, Status.WARN),
        (NOW_2026, None, Status.WARN),
        (86400.0, True, Status.FAIL),  # 1970: booted without RTC or NTP
    ],
)
def test_clock(now: float, synced: bool | None, status: Status) -> None:
    result = check_clock(Probes(wall_time=lambda: now, clock_synchronized=lambda: synced))
    assert result.status is status


def test_kernel_clock_state_is_read_without_privileges() -> None:
    from edge.doctor import kernel_clock_synchronized

    assert kernel_clock_synchronized() in (True, False, None)


# --- all together -------------------------------------------------------------------------


def healthy_probes() -> Probes:
    return Probes(
        read_text=files(NUC),
        ort_providers=lambda: CPU,
        openvino_devices=lambda: ["CPU", "GPU"],
        tcp_connect=lambda h, p, t: None,
        mqtt=lambda m, s: BrokerProbe(True, "Success", True),
        disk_usage=lambda p: DiskUsage(100 * GIB, 10 * GIB, 90 * GIB),
        clock_synchronized=lambda: True,
        wall_time=lambda: NOW_2026,
    )


def test_all_checks_pass_on_a_healthy_device(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    cfg = config("mqtt: {enabled: false}\n")
    results = run_checks(cfg, healthy_probes())
    assert [r.check for r in results] == [
        "platform",
        "providers",
        "model",  # yolox_nano
        "model",  # person-detection-retail-0013, fused with it
        "camera lobby",
        "scene lobby",  # nothing learned yet: limits only
        "broker",
        "store",
        "disk",
        "clock",
    ]
    assert all(r.status is Status.OK for r in results), render(results)
    assert exit_code(results) == 0


def test_exit_code_is_one_on_failure_and_with_strict_on_warnings() -> None:
    from edge.doctor import fail, ok, warn

    assert exit_code([ok("a", "fine"), warn("b", "hm", "do x")]) == 0
    assert exit_code([ok("a", "fine"), warn("b", "hm", "do x")], strict=True) == 1
    assert exit_code([fail("c", "bad", "do y")]) == 1


def _doctor_app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command, so `doctor` stays a named sub-command
        pass

    return app


def test_doctor_command_reports_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: x}\ncameras: []\n")
    result = CliRunner().invoke(_doctor_app(), ["doctor", "--config", str(bad)])
    assert result.exit_code == 1
    assert "FAIL  config" in result.output


def test_doctor_is_registered_as_a_lobbywatch_plugin() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="lobbywatch.cli")}
    assert names.get("doctor") == "edge.doctor:register"


# --- the broker check against a real Mosquitto from deploy/ --------------------------------


@pytest.fixture(scope="module")
def real_broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.test_deploy_mosquitto import MOSQUITTO, configure_broker

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed")
    b = configure_broker(tmp_path_factory.mktemp("doctor-broker"))
    b.start()
    yield b
    b.stop()


def _device_config(broker: Any, tmp_path: Path, site: str, password: str) -> LobbyConfig:
    pw = tmp_path / f"{site}.pw"
    pw.write_text(password + "\n")
    pw.chmod(0o640)
    return parse_config(
        f"site: {{id: {site}}}\n"
        "cameras: [{id: c, source: rtsp://10.0.0.5/s, zones: [{id: z, role: waiting,"
        " polygon: [[0, 0], [1, 0], [1, 1]]}]}]\n"
        f"mqtt: {{host: localhost, port: {broker.tls_port}, username: {site},"
        f" password_file: {pw}, tls: {{enabled: true, ca_file: {broker.pki.ca}}}}}\n",
        environ={},
    )


def test_broker_check_on_real_mosquitto(real_broker: Any, tmp_path: Path) -> None:
    site = "branch-042"
    good = _device_config(real_broker, tmp_path, site, real_broker.device_passwords[site])
    (result,) = check_broker(good.mqtt, good.site.id, Probes())
    assert result.status is Status.OK, result
    assert "connected as branch-042" in result.summary and "not confirmed" not in result.summary

    wrong = _device_config(real_broker, tmp_path, site, "not-the-password-123")
    (result,) = check_broker(wrong.mqtt, wrong.site.id, Probes())
    assert result.status is Status.FAIL and "broker.sh" in result.fix


def test_broker_check_catches_a_device_whose_username_is_not_its_site(
    real_broker: Any, tmp_path: Path
) -> None:
    # branch-043's credentials used by a config for site branch-042: connects, may not publish.
    cfg = _device_config(
        real_broker, tmp_path, "branch-043", real_broker.device_passwords["branch-043"]
    )
    cfg = cfg.model_copy(update={"site": cfg.site.model_copy(update={"id": "branch-042"})})
    results = check_broker(cfg.mqtt, cfg.site.id, Probes())
    assert results[-1].status is Status.FAIL
    assert "may not publish" in results[-1].summary


def test_doctor_json_output_end_to_end(
    real_broker: Any, tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOBBYWATCH_MODELS", str(models_dir))
    site = "branch-042"
    cfg_file = tmp_path / "site.yaml"
    pw = tmp_path / "pw"
    pw.write_text(real_broker.device_passwords[site] + "\n")
    pw.chmod(0o640)
    with socket.socket() as camera:  # a "camera" that accepts TCP on loopback
        camera.bind(("127.0.0.1", 0))
        camera.listen()
        port = camera.getsockname()[1]
        cfg_file.write_text(
            f"site: {{id: {site}}}\n"
            f"cameras: [{{id: c, source: 'rtsp://u:p@127.0.0.1:{port}/s', zones: [{{id: z,"
            " role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}]}]\n"
            f"mqtt: {{host: localhost, port: {real_broker.tls_port}, username: {site},"
            f" password_file: {pw}, tls: {{enabled: true, ca_file: {real_broker.pki.ca}}}}}\n"
            f"storage: {{path: {tmp_path / 'db' / 'lobbywatch.db'}}}\n"
        )
        started = time.monotonic()
        result = CliRunner().invoke(_doctor_app(), ["doctor", "--config", str(cfg_file), "--json"])
    assert time.monotonic() - started < 30
    payload = json.loads(result.output)
    by_check = {r["check"]: r for r in payload}
    assert by_check["camera c"]["status"] == "ok"
    assert by_check["broker"]["status"] == "ok"
    assert by_check["model"]["status"] == "ok"
    assert real_broker.device_passwords[site] not in result.output


def service_state(**sections: Any) -> DeviceState:
    return DeviceState({"running": True, **sections}, datetime.now(timezone.utc), current=True)


def test_with_the_service_running_the_broker_check_asks_it_instead_of_taking_its_session(
    tmp_path: Path,
) -> None:
    # The broker binds client ids to usernames: doctor connecting as the device would knock
    # the running service off the broker.
    cfg = config("mqtt: {host: 127.0.0.1, username: branch-042}\n")

    def never(m: Any, s: str) -> BrokerProbe:
        raise AssertionError("must not connect while the service runs")

    down = service_state(broker={"state": "disconnected", "since": "2026-12-01T10:00:00+00:00",
                                 "reason": "connection refused"})  # fmt: skip
    (result,) = check_broker(cfg.mqtt, cfg.site.id, Probes(mqtt=never), down)
    assert result.status is Status.FAIL and "connection refused" in result.summary
    up = service_state(broker={"state": "connected", "since": "2026-12-01T10:00:00+00:00"})
    (result,) = check_broker(cfg.mqtt, cfg.site.id, Probes(mqtt=never), up)
    assert result.status is Status.OK and "running service is connected" in result.summary


def test_store_check_reports_a_failing_store_of_the_running_service(tmp_path: Path) -> None:
    failing = service_state(store={"writable": False, "since": "2026-12-01T10:00:00+00:00",
                                   "error": "database or disk is full",
                                   "unsaved_history_rows": 12, "unsaved_alert_writes": 1})  # fmt: skip
    result = check_store(tmp_path / "lw.db", Probes(), failing)
    assert result.status is Status.FAIL
    assert "database or disk is full" in result.summary and "12 history rows" in result.summary
    fine = service_state(store={"writable": True})
    assert check_store(tmp_path / "lw.db", Probes(), fine).status is Status.OK


def test_store_check_writes_for_real_without_a_running_service(small_disk: Any) -> None:
    path = small_disk.path / "lw.db"
    assert check_store(path, Probes(), None).status is Status.OK  # none yet
    Store(path, site_id="b1").close()
    assert check_store(path, Probes(), None).status is Status.OK
    store = Store(path, site_id="b1")  # holds the -wal/-shm as a running store would
    small_disk.fill()
    try:
        result = check_store(path, Probes(), None)
    finally:
        store.close()
    assert result.status is Status.FAIL and "full" in result.summary


def test_capacity_check_names_the_cameras_the_box_is_too_slow_for() -> None:
    cameras = {
        "door": {"status": "online", "fps": 1.6, "target_fps": 2.0, "dropped_share": 0.2,
                 "overloaded": True},
        "seats": {"status": "online", "fps": 2.0, "target_fps": 2.0, "dropped_share": 0.0,
                  "overloaded": False},
    }  # fmt: skip
    [result] = check_capacity(service_state(cameras=cameras))
    assert result.status is Status.WARN
    assert "1 of 2 camera(s): door 1.6/2 fps, 20% of its frames dropped" in result.summary
    assert "seats" not in result.summary and "cameras[].fps" in result.fix
    cameras["door"].update(overloaded=False, dropped_share=0.0)
    [result] = check_capacity(service_state(cameras=cameras))
    assert result.status is Status.OK and "keeps up with its 2 camera(s)" in result.summary
    assert check_capacity(None) == []
