"""`lobbywatch doctor`: is this device ready to count people and tell anyone?

Each check is a small function that takes what it inspects (config sections) and the I/O it needs
(`Probes`: file reads, provider lists, a TCP connect, an MQTT connect, disk usage, the clock), and
returns `CheckResult`s with a status, a one-line summary and, for a problem, what to do about it.
Tests pass fakes; the command passes the real probes. The command prints one line per result and
exits 1 when any check fails (with `--strict`, also on a warning), so install and update scripts
can use it as their health check.

Registered as a plugin of the `lobbywatch.cli` entry-point group: `register(app)`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import json
import os
import platform
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple
from urllib.parse import urlsplit

import typer

from edge.capture.settings import SourceKind, classify_source, redact_url
from edge.config import (
    CameraConfig,
    ConfigError,
    DetectorConfig,
    LobbyConfig,
    MqttConfig,
    load_config,
)
from edge.runtime.device_state import DeviceState, read_state, state_path
from edge.storage.scene_file import SceneFile, scene_path
from edge.store import probe_write

if TYPE_CHECKING:
    from models.manifest import ModelEntry

GIB = 1 << 30
# Below these the history database (WAL) and model caches run out within weeks.
DISK_FAIL_BYTES = 1 * GIB
DISK_WARN_BYTES = 5 * GIB
# A wall clock before this is a device that booted without RTC or NTP (Jetsons often do):
# TLS certificates are "not yet valid" and history rows carry 1970 dates.
EARLIEST_PLAUSIBLE_YEAR = 2025
CONNECT_TIMEOUT_S = 3.0
DEFAULT_CONFIG = Path(os.environ.get("LOBBYWATCH_CONFIG", "/etc/lobbywatch/lobbywatch.yaml"))


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class CheckResult:
    """One finding. `fix` says what to do; empty when there is nothing to do."""

    check: str
    status: Status
    summary: str
    fix: str = ""
    details: tuple[str, ...] = ()


def ok(check: str, summary: str, details: Sequence[str] = ()) -> CheckResult:
    return CheckResult(check, Status.OK, summary, "", tuple(details))


def warn(check: str, summary: str, fix: str, details: Sequence[str] = ()) -> CheckResult:
    return CheckResult(check, Status.WARN, summary, fix, tuple(details))


def fail(check: str, summary: str, fix: str, details: Sequence[str] = ()) -> CheckResult:
    return CheckResult(check, Status.FAIL, summary, fix, tuple(details))


# --- probes: the I/O, replaceable in tests -----------------------------------------------


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


@dataclass(frozen=True)
class BrokerProbe:
    """What an MQTT connection attempt found. reason: the CONNACK reason, or the error."""

    connected: bool
    reason: str
    publish_allowed: bool | None = None  # None: not tried (not connected)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _openvino_devices() -> list[str] | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    return [str(d) for d in ov.Core().available_devices]


def _tcp_connect(host: str, port: int, timeout: float) -> None:
    socket.create_connection((host, port), timeout=timeout).close()


def _disk_usage(path: Path) -> DiskUsage:
    usage = shutil.disk_usage(path)
    return DiskUsage(usage.total, usage.used, usage.free)


def kernel_clock_synchronized() -> bool | None:
    """The kernel's NTP state (what `timedatectl` reports as "System clock synchronized").

    adjtimex(2) with no modes only reads: it returns TIME_ERROR (5) while the clock is
    unsynchronized, whichever NTP client (timesyncd, chrony, ntpd) steers it. None if unknown.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex is ~208 bytes; modes = 0
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != 5


def mqtt_probe(config: MqttConfig, site_id: str, timeout: float = 5.0) -> BrokerProbe:
    """Connect as the service does (edge.mqtt.make_client), then try one QoS 1 publish.

    The client id differs from the service's so a running service is not kicked off the
    broker; the publish goes to <prefix>/<site>/doctor, which the device ACL allows and no
    one subscribes to. MQTT v5 brokers answer a refused publish with a PUBACK reason code.
    """
    from edge.mqtt import Topics, make_client

    client = make_client(config, f"lobbywatch-{site_id}-doctor")
    connack: dict[str, Any] = {}
    puback: dict[str, Any] = {}
    connected, published = threading.Event(), threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        connack["reason"] = reason
        connected.set()

    def on_publish(_c: Any, _u: Any, _mid: Any, reason: Any, _p: Any) -> None:
        puback["reason"] = reason
        published.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(config.host, config.port, keepalive=config.keepalive_s)
    except (OSError, ValueError) as exc:
        return BrokerProbe(False, f"{type(exc).__name__}: {exc}")
    client.loop_start()
    try:
        if not connected.wait(timeout):
            return BrokerProbe(False, f"no answer (CONNACK) within {timeout:g} s")
        reason = connack["reason"]
        if reason.is_failure:
            return BrokerProbe(False, str(reason))
        topic = f"{Topics(config.topic_prefix, site_id).base}/doctor"
        client.publish(topic, b'{"check": "doctor"}', qos=1)
        if not published.wait(timeout):
            return BrokerProbe(True, str(reason), None)
        allowed = not getattr(puback["reason"], "is_failure", False)
        return BrokerProbe(True, str(reason), allowed)
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass
class Probes:
    """Every piece of I/O the checks use; the defaults inspect this machine."""

    root: Path = Path("/")
    read_text: Callable[[Path], str | None] = _read_text
    ort_providers: Callable[[], list[str]] = _ort_providers
    openvino_devices: Callable[[], list[str] | None] = _openvino_devices
    tcp_connect: Callable[[str, int, float], None] = _tcp_connect
    path_exists: Callable[[Path], bool] = field(default=lambda p: p.exists())
    mqtt: Callable[[MqttConfig, str], BrokerProbe] = mqtt_probe
    disk_usage: Callable[[Path], DiskUsage] = _disk_usage
    clock_synchronized: Callable[[], bool | None] = kernel_clock_synchronized
    wall_time: Callable[[], float] = time.time
    running_service: Callable[[Path], DeviceState | None] = field(
        default=lambda store: _running_service(store)
    )
    store_write: Callable[[Path], str | None] = field(
        default=lambda store: probe_write(store, "doctor_probe_at", datetime.now(timezone.utc))
    )


# --- platform and providers ------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformInfo:
    kind: str  # "jetson", "intel" or "other"
    model: str
    os_name: str
    machine: str
    l4t: str | None = None


def read_platform(probes: Probes) -> PlatformInfo:
    root = probes.root
    os_release = probes.read_text(root / "etc/os-release") or ""
    os_name = next(
        (
            line.split("=", 1)[1].strip().strip('"')
            for line in os_release.splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        platform.system(),
    )
    model = (probes.read_text(root / "proc/device-tree/model") or "").strip("\0 \n")
    tegra = probes.read_text(root / "etc/nv_tegra_release")
    if tegra is not None or "jetson" in model.lower():
        l4t = None
        if tegra:
            # "# R36 (release), REVISION: 3.0, ..." -> "R36.3.0"
            head = tegra.split(",")
            major = head[0].replace("#", "").split("(")[0].strip()
            revision = next((h.split(":")[1].strip() for h in head if "REVISION" in h), "")
            l4t = f"{major}.{revision}" if revision else major
        return PlatformInfo("jetson", model or "NVIDIA Jetson", os_name, platform.machine(), l4t)
    cpuinfo = probes.read_text(root / "proc/cpuinfo") or ""
    vendor = probes.read_text(root / "sys/class/dmi/id/sys_vendor") or ""
    product = (probes.read_text(root / "sys/class/dmi/id/product_name") or "").strip()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        "",
    )
    if "GenuineIntel" in cpuinfo:
        described = " ".join(part for part in (vendor.strip(), product, f"({cpu})") if part)
        return PlatformInfo("intel", described, os_name, platform.machine())
    return PlatformInfo("other", cpu or product or platform.machine(), os_name, platform.machine())


def check_platform(info: PlatformInfo) -> CheckResult:
    python = platform.python_version()
    where = f"{info.model}, {info.os_name}, Python {python}"
    if info.kind == "jetson":
        return ok("platform", f"NVIDIA Jetson ({info.l4t or 'L4T unknown'}): {where}")
    if info.kind == "intel":
        return ok("platform", f"Intel: {where}")
    return warn(
        "platform",
        f"not a Jetson or an Intel machine: {where}",
        "lobbywatch runs here on the CPU only; supported targets are NVIDIA Jetson (JetPack 6) "
        "and Intel NUCs (Ubuntu 22.04/24.04)",
    )


def check_providers(
    info: PlatformInfo, detector: DetectorConfig, ort_providers: list[str], ov: list[str] | None
) -> CheckResult:
    """Execution providers present, and whether the device's accelerator is among them."""
    details = [f"onnxruntime: {', '.join(ort_providers) or 'none'}"]
    details.append(f"openvino: {', '.join(ov) if ov else 'not installed'}")
    forced = {
        "tensorrt": "TensorrtExecutionProvider",
        "cuda": "CUDAExecutionProvider",
        "openvino": "OpenVINOExecutionProvider",
    }.get(detector.provider)
    if (
        forced is not None
        and forced not in ort_providers
        and not (forced.startswith("OpenVINO") and ov)
    ):
        return fail(
            "providers",
            f"detector.provider is {detector.provider!r} but {forced} is not installed",
            _accelerator_hint(info) or "set detector.provider: auto",
            details,
        )
    if info.kind == "jetson" and "TensorrtExecutionProvider" not in ort_providers:
        return warn(
            "providers",
            "no TensorRT: the detector runs on the CPU at a fraction of the frame rate",
            _accelerator_hint(info),
            details,
        )
    if info.kind == "intel" and not ov and "OpenVINOExecutionProvider" not in ort_providers:
        return warn(
            "providers",
            "no OpenVINO: the Intel iGPU and NPU are unused",
            _accelerator_hint(info),
            details,
        )
    # Azure's provider calls a cloud endpoint; it is no accelerator of this device.
    local = ("CPUExecutionProvider", "AzureExecutionProvider")
    accel = [p for p in ort_providers if p not in local] + [f"OpenVINO {d}" for d in (ov or [])]
    return ok("providers", f"accelerators: {', '.join(accel) or 'CPU only'}", details)


def _accelerator_hint(info: PlatformInfo) -> str:
    if info.kind == "jetson":
        return (
            "install JetPack 6's onnxruntime-gpu wheel into the venv (deploy/install.sh "
            "--target jetson does it; see deploy/README.md, 'Jetson')"
        )
    if info.kind == "intel":
        return (
            "pip install 'lobbywatch[openvino]' into the venv, and for the iGPU the Intel "
            "compute runtime (apt install intel-opencl-icd); see deploy/README.md, 'Intel NUC'"
        )
    return ""


# --- model -------------------------------------------------------------------------------


def check_model(detector: DetectorConfig) -> list[CheckResult]:
    """The configured models (the main one and those fused with it) are present, their files
    match their recorded sha256, and a licence note is acknowledged by the config."""
    results = _check_one_model(detector.model, "detector.model", detector)
    for i, other in enumerate(detector.fusion.models):
        results += _check_one_model(other.model, f"detector.fusion.models[{i}].model", detector)
    return results


def _check_one_model(name: str, where: str, detector: DetectorConfig) -> list[CheckResult]:
    from models.manifest import ModelError
    from models.store import resolve_model, sha256_file, verify

    try:
        resolved = resolve_model(name)
    except ModelError as exc:
        return [
            fail(
                "model",
                f"{where} {name!r} not found",
                f"lobbywatch models fetch {name} (on a connected machine), copy the "
                "files to /var/lib/lobbywatch/models, or export one (lobbywatch models export)",
                str(exc).splitlines(),
            )
        ]
    details = [f"{p}  sha256 {sha256_file(p)}" for p in resolved.files if p.is_file()]
    if resolved.entry is None:
        return [
            warn(
                "model",
                f"{resolved.path} is not in the manifest or an exports.yaml: nothing to check "
                "its sha256 against",
                "use a model name from `lobbywatch models list`, so a damaged copy is caught",
                details,
            )
        ]
    problems = verify(resolved)
    if problems:
        return [
            fail(
                "model",
                f"{resolved.name}: files differ from their recorded sha256",
                f"fetch or export {resolved.name} again; a damaged file gives wrong counts",
                problems,
            )
        ]
    results = [ok("model", f"{resolved.name}: {len(resolved.files)} file(s), sha256 ok", details)]
    if resolved.entry.license_note is not None:
        results.append(_check_licence_note(resolved.entry, detector))
    if not resolved.entry.shippable:
        results.append(
            warn(
                "model",
                f"{resolved.name} is {resolved.entry.license} weights, not for deployment",
                "use yolox_nano (Apache-2.0), person-detection-retail-0013 on Intel, or weights "
                "you hold a licence for",
            )
        )
    return results


def _check_licence_note(entry: ModelEntry, detector: DetectorConfig) -> CheckResult:
    """Say, every time, that the running config uses a model with a licence note, and whether
    the config acknowledged it (without that the service refuses to start)."""
    note = entry.license_note
    assert note is not None
    how = f" (detector.preset: {detector.preset})" if detector.preset else ""
    key = f"detector.licence_acknowledged: {note.acknowledge}"
    if entry.acknowledgement_problem(detector.licence_acknowledged) is None:
        return ok(
            "licence",
            f"{entry.name}{how} has a licence note, acknowledged by this config ({key})",
            [note.text],
        )
    return fail(
        "licence",
        f"{entry.name}{how} has a licence note this config does not acknowledge: "
        "the service refuses to start",
        f"if the site accepts it, set {key}; otherwise choose another model",
        [note.text],
    )


# --- cameras -----------------------------------------------------------------------------


def check_camera(camera: CameraConfig, probes: Probes) -> CheckResult:
    name = f"camera {camera.id}"
    source = redact_url(camera.source)
    kind = classify_source(camera.source)
    if kind is SourceKind.STREAM:
        parts = urlsplit(camera.source)
        default_port = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}.get(parts.scheme, 554)
        host, port = parts.hostname or "", parts.port or default_port
        try:
            probes.tcp_connect(host, port, CONNECT_TIMEOUT_S)
        except OSError as exc:
            return fail(
                name,
                f"{source}: cannot connect to {host}:{port} ({exc.strerror or exc})",
                "check the camera's power and network cable, its address in cameras[].source, "
                "and that this device may reach it (VLAN, firewall)",
            )
        return ok(name, f"{source}: {host}:{port} reachable")
    if kind is SourceKind.USB:
        text = camera.source.strip()
        if text.startswith("/dev/"):
            device = probes.root / text.lstrip("/")
        else:
            device = probes.root / "dev" / f"video{text.split(':', 1)[-1]}"
        if not probes.path_exists(device):
            return fail(
                name,
                f"{source}: {device} does not exist",
                "plug the camera in (lsusb, v4l2-ctl --list-devices), or fix cameras[].source",
            )
        return ok(name, f"{source}: {device} present")
    path = (
        Path(camera.source.split("%")[0]).parent
        if kind is SourceKind.SEQUENCE
        else Path(camera.source)
    )
    if not probes.path_exists(path):
        return fail(name, f"{source}: not found", "fix cameras[].source")
    return warn(
        name,
        f"{source}: a recording, not a live camera",
        "fine for a demo; point cameras[].source at the camera's rtsp:// URL in production",
    )


def check_scene(camera: CameraConfig, storage_dir: Path) -> CheckResult:
    """What the service learned of this camera's view (perspective, text overlays, static
    clutter), as saved; each static place found with an ignore mask IT can add."""
    from edge.pipeline import build_scene  # the pipeline pulls in the detectors: only here

    name = f"scene {camera.id}"
    scene = build_scene(camera.scene)
    if not scene.enabled:
        return ok(name, "scene learning off")
    path = scene_path(storage_dir, camera.id)
    state = SceneFile(path).load()
    if state is None:
        return ok(name, f"nothing learned yet ({path} absent or unreadable): limits only")
    scene.load(state)
    details = [*scene.suggestions(), f"kept in {path}; delete it to relearn"]
    if scene.suggestions():
        fix = "look at a snapshot; where it is no person, add the ignore mask shown to the config"
        return warn(name, scene.describe(), fix, details)
    return ok(name, scene.describe(), details)


# --- broker ------------------------------------------------------------------------------


def check_broker(
    mqtt: MqttConfig, site_id: str, probes: Probes, running: DeviceState | None = None
) -> list[CheckResult]:
    if not mqtt.enabled:
        return [ok("broker", "MQTT disabled (mqtt.enabled: false): no alerts leave the device")]
    results: list[CheckResult] = []
    where = f"{'mqtts' if mqtt.tls.enabled else 'mqtt'}://{mqtt.host}:{mqtt.port}"
    if running is not None and running.section("broker"):
        # The broker binds client ids to usernames: connecting with the device's account would
        # take the running service's connection and session. Ask the service instead.
        return [_broker_of_service(where, running.section("broker"))]
    if mqtt.username is None:
        results.append(
            warn(
                "broker",
                "no mqtt.username: the broker must allow anonymous clients",
                f"use the device's account: username {site_id} and password_file "
                "(deploy/mosquitto/broker.sh add-device)",
            )
        )
    elif mqtt.username != site_id:
        results.append(
            warn(
                "broker",
                f"mqtt.username {mqtt.username!r} is not the site id {site_id!r}",
                "the broker ACL lets a device write under lobbywatch/<its username>/: "
                "use the site id as the username",
            )
        )
    if mqtt.password_file is not None:
        if not probes.path_exists(mqtt.password_file):
            return [
                *results,
                fail(
                    "broker",
                    f"mqtt.password_file {mqtt.password_file} does not exist",
                    "create it (broker.sh add-device SITE --generate FILE) or fix the path",
                ),
            ]
        mode = _mode(mqtt.password_file)
        if mode is not None and mode & 0o004:
            results.append(
                warn(
                    "broker",
                    f"{mqtt.password_file} is readable by every user (mode {mode:o})",
                    f"chmod 0640 {mqtt.password_file}; chown root:lobbywatch",
                )
            )
    if mqtt.tls.enabled:
        for label, path in (
            ("ca_file", mqtt.tls.ca_file),
            ("cert_file", mqtt.tls.cert_file),
            ("key_file", mqtt.tls.key_file),
        ):
            if path is not None and not probes.path_exists(path):
                return [
                    *results,
                    fail("broker", f"mqtt.tls.{label} {path} does not exist", "fix the path"),
                ]
        if mqtt.tls.insecure:
            results.append(
                warn(
                    "broker",
                    "mqtt.tls.insecure: the broker's name is not checked",
                    "issue a server certificate for the name in mqtt.host and set insecure false",
                )
            )
    elif not _is_loopback(mqtt.host):
        results.append(
            warn(
                "broker",
                f"no TLS to {mqtt.host}: the password and alerts cross the network in clear",
                "set mqtt.tls.enabled: true and port 8883 (deploy/mosquitto)",
            )
        )
    try:
        found = probes.mqtt(mqtt, site_id)
    except OSError as exc:  # reading the password file, loading certificates
        found = BrokerProbe(False, f"{type(exc).__name__}: {exc}")
    if not found.connected:
        refused = any(w in found.reason.lower() for w in ("not authorized", "bad user name"))
        fix = (
            "check mqtt.username and the password file against the broker's users "
            "(broker.sh list; broker.sh add-device SITE --generate FILE sets a new password)"
            if refused
            else "is mosquitto running (systemctl status mosquitto)? check mqtt.host, mqtt.port, "
            "and that mqtt.tls.ca_file signed the broker's certificate for that host name"
        )
        return [*results, fail("broker", f"{where}: {found.reason}", fix)]
    if found.publish_allowed is False:
        return [
            *results,
            fail(
                "broker",
                f"{where}: connected as {mqtt.username}, but may not publish under "
                f"{mqtt.topic_prefix}/{site_id}/",
                "the ACL allows a device its own site only: the username must be the site id, "
                "and mqtt.topic_prefix must match the broker's (broker.sh setup --prefix)",
            ),
        ]
    note = "" if found.publish_allowed else " (publish not confirmed)"
    return [*results, ok("broker", f"{where}: connected as {mqtt.username}{note}")]


def _broker_of_service(where: str, broker: dict[str, Any]) -> CheckResult:
    state, since, reason = broker.get("state"), broker.get("since"), broker.get("reason")
    if state == "connected":
        return ok("broker", f"{where}: the running service is connected (since {since})")
    return fail(
        "broker",
        f"{where}: the running service is {state} since {since}: {reason}",
        "is mosquitto running (systemctl status mosquitto)? check mqtt.host, mqtt.port and the "
        "credentials; the service retries by itself and keeps alerts in its outbox meanwhile",
    )


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- store, disk and clock --------------------------------------------------------------


def _running_service(store: Path) -> DeviceState | None:
    state = read_state(state_path(store), datetime.now(timezone.utc))
    return state if state is not None and state.current else None


def check_store(path: Path, probes: Probes, running: DeviceState | None) -> CheckResult:
    """Whether the history store takes writes: as the running service finds (its writes are
    the real test), or by a write of doctor's own when no service runs."""
    fix = (
        "free space on the store's disk (it resumes by itself; until then history is kept in "
        "memory and lost on a restart), or check the file's owner and mode"
    )
    if running is not None:
        store = running.section("store")
        if store.get("writable", True):
            return ok("store", f"{path}: the running service writes it")
        kept = (
            f"{store.get('unsaved_history_rows', 0)} history rows and "
            f"{store.get('unsaved_alert_writes', 0)} alert writes kept in memory"
        )
        return fail(
            "store",
            f"{path}: the running service cannot write it since {store.get('since')}: "
            f"{store.get('error')} ({kept})",
            fix,
        )
    if not probes.path_exists(path):
        return ok("store", f"no store yet at {path} (the service makes it)")
    error = probes.store_write(path)
    if error is None:
        return ok("store", f"{path}: writable")
    return fail("store", f"{path}: not writable: {error}", fix)



def check_capacity(running: DeviceState | None) -> list[CheckResult]:
    """Whether the running service keeps up with every camera's rate (docs/capacity.md): a
    camera whose frames capture drops because the detector cannot take them is overloaded."""
    if running is None:
        return []
    cameras = running.section("cameras")
    short = {i: c for i, c in cameras.items() if isinstance(c, dict) and c.get("overloaded")}
    if not short:
        return [ok("capacity", f"the running service keeps up with its {len(cameras)} camera(s)")]
    lines = [
        f"{camera_id} {c.get('fps', 0):.1f}/{c.get('target_fps', 0):g} fps, "
        f"{c.get('dropped_share', 0):.0%} of its frames dropped"
        for camera_id, c in short.items()
    ]
    return [
        warn(
            "capacity",
            f"the box is too slow for {len(short)} of {len(cameras)} camera(s): {'; '.join(lines)}",
            "lower cameras[].fps, keep cameras[].gating on, use the camera's sub-stream, or move "
            "cameras to another box or an accelerator (bench/capacity.py measures a box)",
        )
    ]


def check_disk(path: Path, probes: Probes) -> CheckResult:
    """Free space where the history database lives (the nearest existing directory)."""
    existing = path
    while not probes.path_exists(existing) and existing != existing.parent:
        existing = existing.parent
    usage = probes.disk_usage(existing)
    free_gib = usage.free / GIB
    summary = f"{free_gib:.1f} GiB free of {usage.total / GIB:.1f} GiB at {existing}"
    if usage.free < DISK_FAIL_BYTES:
        return fail(
            "disk",
            summary,
            "free space (journalctl --vacuum-size=200M, old versions in /opt/lobbywatch) or "
            "lower storage.retention_days",
        )
    if usage.free < DISK_WARN_BYTES:
        return warn("disk", summary, "keep at least 5 GiB free for the history and model caches")
    return ok("disk", summary)


def check_clock(probes: Probes) -> CheckResult:
    now = probes.wall_time()
    year = time.gmtime(now).tm_year
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    if year < EARLIEST_PLAUSIBLE_YEAR:
        return fail(
            "clock",
            f"the clock says {stamp}",
            "set the time (timedatectl set-ntp true, or chrony with the branch's NTP server): "
            "TLS certificates and history timestamps depend on it",
        )
    synced = probes.clock_synchronized()
    if synced is None:
        return warn("clock", f"{stamp}, synchronization unknown", "check timedatectl status")
    if not synced:
        return warn(
            "clock",
            f"{stamp}, not synchronized with NTP",
            "timedatectl set-ntp true (systemd-timesyncd) or install chrony, and allow UDP 123 "
            "to the branch's time server",
        )
    return ok("clock", f"{stamp}, synchronized")


# --- all together ------------------------------------------------------------------------


def run_checks(config: LobbyConfig, probes: Probes | None = None) -> list[CheckResult]:
    probes = probes or Probes()
    info = read_platform(probes)
    results = [check_platform(info)]
    try:
        ort_list = probes.ort_providers()
    except ImportError:
        ort_list = []
    results.append(check_providers(info, config.detector, ort_list, probes.openvino_devices()))
    results.extend(check_model(config.detector))
    results.extend(check_camera(camera, probes) for camera in config.cameras)
    results.extend(check_scene(c, config.storage.path.parent) for c in config.cameras)
    running = probes.running_service(config.storage.path)
    results.extend(check_broker(config.mqtt, config.site.id, probes, running))
    results.append(check_store(config.storage.path, probes, running))
    results.extend(check_capacity(running))
    results.append(check_disk(config.storage.path, probes))
    results.append(check_clock(probes))
    return results


def exit_code(results: Sequence[CheckResult], *, strict: bool = False) -> int:
    bad = {Status.FAIL, Status.WARN} if strict else {Status.FAIL}
    return 1 if any(r.status in bad for r in results) else 0


def render(results: Sequence[CheckResult], *, verbose: bool = False) -> str:
    label = {Status.OK: "ok  ", Status.WARN: "WARN", Status.FAIL: "FAIL"}
    lines = []
    for r in results:
        lines.append(f"{label[r.status]}  {r.check:<12} {r.summary}")
        if r.fix:
            lines.append(f"{'':18}fix: {r.fix}")
        if verbose or r.status is not Status.OK:
            lines.extend(f"{'':18}{d}" for d in r.details)
    fails = sum(r.status is Status.FAIL for r in results)
    warns = sum(r.status is Status.WARN for r in results)
    lines.append(f"{len(results)} checks: {fails} failed, {warns} warning(s)")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add `doctor` to the root command (entry point group `lobbywatch.cli`)."""

    @app.command()
    def doctor(
        config: Annotated[
            Path,
            typer.Option("--config", "-c", help="Site config (YAML). Env: LOBBYWATCH_CONFIG."),
        ] = DEFAULT_CONFIG,
        strict: Annotated[bool, typer.Option(help="Exit 1 on warnings too.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
        verbose: Annotated[
            bool, typer.Option("--verbose", "-v", help="Details of passing checks too.")
        ] = False,
    ) -> None:
        """Check this device: platform, accelerators, model files, cameras, broker, disk, clock.

        Exits 1 when a check fails (with --strict, also on a warning); each problem comes with
        what to do about it.
        """
        try:
            cfg = load_config(config)
        except ConfigError as exc:
            results = [
                fail("config", f"{config}: invalid", "fix the errors below", str(exc).splitlines())
            ]
        else:
            results = run_checks(cfg)
        if as_json:
            payload = [{**asdict(r), "status": r.status.value} for r in results]
            typer.echo(json.dumps(payload, indent=2))
        else:
            typer.echo(render(results, verbose=verbose))
        raise typer.Exit(exit_code(results, strict=strict))
