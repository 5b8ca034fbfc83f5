#!/usr/bin/env python3
"""Capacity of one box: N replayed cameras through the real `lobbywatch run` (issue #14).

Each run writes a temporary site config from configs/mall.yaml with N cameras (each replaying
the Mall frames as a realtime camera asked for --fps), starts a real Mosquitto for the MQTT
path, and runs the CLI's own `run` command in a subprocess for --seconds once every camera has
processed its first frame (plus --warmup). The subprocess is `lobbywatch run` with one thin
hook: CameraPipeline.process also appends the frame's index and counts to a JSON-lines file, so
each camera's counts can be scored against the Mall ground truth frame by frame (the store's
live table keeps only the latest count, not which frame it came from).

Reported per camera: achieved fps (frames processed in the window / window seconds) next to the
rate the service itself reports (its state file: capture's delivered rate over the last 5 s),
mean detector ms, and the per-frame MAE of the raw count and of the smoothed occupancy against
the authors' head counts (as bench/mall_accuracy.py, over every frame processed in the run).
Per run: CPU% of the whole process tree (100% = one core; from /proc, so the API child is
included: the API is served and polled unless --no-api; Mosquitto, started for the MQTT path
unless --no-mqtt, is not, nor are the subscriber and the poller, which run in this process, as
a handheld and a dashboard would elsewhere), peak RSS of the tree (sum of VmRSS, sampled every
--sample-s), and CPU-ms per processed frame.

Cameras and what they replay (each gets a folder of links named seq_000001.jpg...):
- busy: the Mall sequence; with --offsets spread camera k of N starts at frame k*1600/N
  (wrapping), with --offsets same every camera starts at frame 0.
- still: one Mall frame (--still-frame, a busy one) repeated: a lobby where no one moves.
- empty: the per-pixel median of 64 Mall frames spread over the sequence (the people mostly
  vanish), repeated: an empty lobby. Its ground truth is taken as 0 (approximate).
- brt: the 767 BRT camera 1 stills (360x640, a dense bus-platform queue from above) in order,
  spread like busy ones, scored against their head counts; the zone is the whole frame. The
  stills are seconds to minutes apart, replayed as a 2 fps camera with the site's settings (the
  presence hold on, as configured: `--set occupancy.hold_frames=0` is bench/scenes.py's way).
A run is named KIND+N (busy4, still1), or several joined by + (busy3+brt1: cameras 1-3 busy,
camera 4 brt); the idle-vs-busy ratio is the CPU% of the first still/empty run over that of
busy1 (same fps, same length), lower is better (issue: < 20%).

Beside the cameras (bench/capacity_probes.py): with MQTT, a paho subscriber on the site's
`alerts` topic, and each alert joined to the frame that decided it: the latency from that
frame's hand-off to the board to on_message, p50/p90/p99/max over the alerts decided in the
window. A site's rules seldom fire in a minute: --alert-probe N gives the first N cameras of
each run a ladder of rules that flap by design (one raise or clear per person the count moves),
at the cost of more alert traffic than a real site has. With the API served, a poller GETs
/v1/occupancy, /v1/health and /metrics once a second over the window (with a viewer key made
for the run: without a key every route but health answers 503), unless --no-api-poll.

    python bench/capacity.py [--runs busy1,busy4,still1,busy3+brt1] [--fps 2] [--seconds 60]
                             [--alert-probe 1] [--json out.json] [--set detector.threads=1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.accuracy import load_heads, metrics, set_overrides  # noqa: E402
from bench.capacity_probes import (  # noqa: E402
    API_ENDPOINTS,
    AlertReport,
    AlertSubscriber,
    ApiPoller,
    EndpointReport,
    Handoff,
    alert_report,
    endpoint_reports,
    format_latency,
    probe_rules,
    stored_alerts,
)

KINDS = ("busy", "still", "empty", "brt")
#: The footage each kind replays: the Mall sequence, or the BRT stills.
FOOTAGE = {"busy": "mall", "still": "mall", "empty": "mall", "brt": "brt"}
WHOLE_FRAME = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
#: The environment variable the run's viewer key is handed to the service in (api.keys env).
API_KEY_ENV = "LOBBYWATCH_CAPACITY_BENCH_KEY"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class CameraSpec:
    """One replayed camera: what it shows and where in its footage it starts."""

    id: str
    kind: str  # busy, still, empty or brt
    offset: int  # index into its footage (Mall frames, BRT stills) of its frame 0
    probe: bool = False  # carries the flapping alert rules (--alert-probe)


@dataclass(frozen=True)
class Footage:
    """Frames in order and the people in each (the authors' head count)."""

    frames: list[Path]
    truth: list[int]


@dataclass
class CameraResult:
    id: str
    kind: str
    offset: int
    asked_fps: float
    achieved_fps: float  # frames processed in the window / window seconds
    service_fps: float | None  # the service's own figure (state file), at the window's end
    frames_in_window: int
    frames_scored: int  # every frame processed in the run
    detector_ms: float
    raw_mae: float
    raw_bias: float
    smoothed_mae: float | None  # None while a camera's occupancy was unknown in some frame
    distinct_frames: int = 0  # of its footage, among the frames scored (767 for all BRT stills)


@dataclass
class RunResult:
    name: str
    cameras: int
    asked_fps: float
    window_s: float
    startup_s: float  # from the process start to every camera's first frame
    cpu_pct: float  # of one core, whole service process tree, over the window
    cpu_ms_per_frame: float
    machine_busy_pct: float  # all cores together, everything on the box, over the window
    peak_rss_mib: float  # sum of VmRSS over the tree, sampled
    exit_code: int | None
    per_camera: list[CameraResult] = field(default_factory=list)
    alerts: AlertReport | None = None  # None without MQTT
    api: list[EndpointReport] | None = None  # None when the API was not polled


# ----------------------------------------------------------------------------- child: the service


def child_main(config: str, frames_out: str, handoffs_out: str | None = None) -> None:
    """`lobbywatch run --config config`, recording each processed frame to frames_out and,
    with handoffs_out, when each frame's counts were handed to the board (alert latency)."""
    from edge.board import BoardUpdate, OccupancyBoard
    from edge.cli import app
    from edge.pipeline import CameraPipeline

    lock = threading.Lock()
    # One line per frame, flushed per line; left open until the process exits.
    sink = Path(frames_out).open("a", buffering=1)  # noqa: SIM115
    original = CameraPipeline.process

    def process(self: CameraPipeline, frame: Any, now: float) -> Any:
        result = original(self, frame, now)
        record = {
            "cam": result.camera_id,
            "i": result.frame_index,
            "raw": dict(result.raw),
            "occ": dict(result.occupancy),
            "ms": result.inference_s * 1000,
            "t": time.monotonic(),  # system-wide on Linux: the parent's clock too
        }
        with lock:
            sink.write(json.dumps(record) + "\n")
        return result

    CameraPipeline.process = process  # type: ignore[method-assign]
    if handoffs_out is not None:
        handoffs = Path(handoffs_out).open("a", buffering=1)  # noqa: SIM115
        update = OccupancyBoard.update

        def handed(board: OccupancyBoard, board_update: BoardUpdate) -> None:
            # the clocks first, the line after the rules ran: writing it delays no alert
            t, wall = time.monotonic(), time.time()
            update(board, board_update)
            if board_update.frame:
                line = json.dumps({"cam": board_update.camera_id, "t": t, "wall": wall})
                with lock:
                    handoffs.write(line + "\n")

        OccupancyBoard.update = handed  # type: ignore[method-assign,assignment]
    app(["run", "--config", config])


# ----------------------------------------------------------------------------- /proc sampling


def process_tree(root: int) -> list[int]:
    """root and every descendant alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores (/proc/stat): how much else
    ran beside the service in a window, on a shared box."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB / 1024
    except OSError:
        return 0.0


class TreeMeter:
    """CPU and resident memory of a process tree, from /proc (psutil is not a dependency).

    CPU is kept per pid as the last value read, so a child that exits keeps what it used up to
    the last sample."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.cpu: dict[int, float] = {}
        self.peak_rss_mib = 0.0

    def sample(self) -> float:
        """Total CPU seconds of the tree so far; updates the peak RSS."""
        rss = 0.0
        for pid in process_tree(self.root):
            used = cpu_seconds(pid)
            if used is not None:
                self.cpu[pid] = used
                rss += rss_mib(pid)
        self.peak_rss_mib = max(self.peak_rss_mib, rss)
        return sum(self.cpu.values())


# ----------------------------------------------------------------------------- the run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_footage(data: Path, name: str) -> Footage:
    """The Mall sequence or the BRT stills, in order, with their head counts."""
    folder, pattern = {"mall": ("mall", "seq_*.jpg"), "brt": ("brt_cam1", "cam1_*.jpg")}[name]
    frames = sorted((data / folder / "frames").glob(pattern))
    heads = load_heads(data / folder / "gt_heads.json")  # file name -> (count, points)
    missing = [p.name for p in frames if p.name not in heads]
    if not frames or missing or len(heads) != len(frames):
        raise SystemExit(
            f"{name}: {len(frames)} frames, {len(heads)} head counts"
            + (f", none for {missing[:3]}" if missing else "")
        )
    return Footage(frames, [heads[p.name][0] for p in frames])


def empty_image(frames: list[Path]) -> Any:
    """The per-pixel median of 64 frames spread over the sequence: the floor without people."""
    import cv2
    import numpy as np

    picks = frames[:: max(1, len(frames) // 64)][:64]
    images = [cv2.imread(str(p)) for p in picks]
    stack = np.stack([image for image in images if image is not None])
    return np.median(stack, axis=0).astype(np.uint8)


def empty_lobby(frames: list[Path], out: Path) -> None:
    """empty_image written to `out`, for a camera to replay."""
    import cv2

    cv2.imwrite(str(out), empty_image(frames))


def link_frames(spec: CameraSpec, frames: list[Path], folder: Path, empty: Path | None) -> None:
    """The camera's replay folder: seq_000001.jpg... linked to the frames it shows, in order."""
    folder.mkdir(parents=True)
    for j in range(len(frames)):
        if spec.kind in ("busy", "brt"):
            target = frames[(spec.offset + j) % len(frames)]
        elif spec.kind == "still":
            target = frames[spec.offset % len(frames)]
        else:
            assert empty is not None
            target = empty
        (folder / f"seq_{j + 1:06d}.jpg").symlink_to(target)


def camera_truth(spec: CameraSpec, index: int, truth: list[int]) -> int:
    if spec.kind == "empty":
        return 0
    step = index if spec.kind in ("busy", "brt") else 0
    return truth[(spec.offset + step) % len(truth)]


def camera_zones(spec: CameraSpec, template: dict[str, Any]) -> list[dict[str, Any]]:
    """The template camera's zones under this camera's ids (zone ids are unique on a site);
    a brt camera has only the first, over the whole frame (the BRT stills' heads are
    annotated everywhere)."""
    zones = [{**z, "id": zone_id(spec.id, z["id"])} for z in template["zones"]]
    if spec.kind == "brt":
        zones = [{**zones[0], "name": "Whole frame (BRT stills)", "polygon": WHOLE_FRAME}]
    return zones


def site_config(
    base: dict[str, Any], specs: list[CameraSpec], work: Path, fps: float, mqtt_port: int | None,
    api_port: int | None, api_key_env: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The base config with the cameras replaced by the replayed ones, all of whose paths are
    absolute and point into work (the store too). api_key_env: a viewer key for the poller,
    read by the service from that environment variable."""
    config: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy
    template = config["cameras"][0]
    config["cameras"] = [
        {
            **template,
            "id": spec.id,
            "zones": camera_zones(spec, template),
            "name": f"Replayed camera {spec.id} ({spec.kind})",
            "source": str(work / spec.id / "seq_%06d.jpg"),
            # every source frame is due at the asked rate: frames the service cannot take in
            # time are dropped by capture (realtime), as a live camera's would be
            "source_fps": fps,
            "fps": fps,
            "loop": True,
        }
        for spec in specs
    ]
    # each rule once per camera, on that camera's zones: every camera drives the alert path
    alerts = config.setdefault("alerts", {})
    base_rules, rules = alerts.get("rules", []), []
    for spec, camera in zip(specs, config["cameras"], strict=True):
        has = {z["id"] for z in camera["zones"]}
        for rule in base_rules:
            watched = [zone_id(spec.id, z) for z in rule["zones"]]
            if set(watched) <= has:  # a brt camera keeps only the first zone
                rules.append({**rule, "id": f"{spec.id}-{rule['id']}", "zones": watched})
        if spec.probe:
            rules += probe_rules(spec.id, camera["zones"][0]["id"])
    alerts["rules"] = rules
    config["storage"] = {**config.get("storage", {}), "path": str(work / "lobbywatch.db")}
    if mqtt_port is None:
        config["mqtt"] = {"enabled": False}
    else:
        config["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port}
    if api_port is not None:
        config["api"] = {**config.get("api", {}), "enabled": True, "port": api_port}
        if api_key_env is not None:
            key = {"id": "capacity-bench", "role": "viewer", "env": api_key_env}
            config["api"]["keys"] = [*config["api"].get("keys", []), key]
    return config


def zone_id(camera_id: str, zone: str) -> str:
    return f"{camera_id}-{zone}"


def read_frames(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    if lines and not lines[-1].endswith("}"):
        lines = lines[:-1]  # a line being written
    records: list[dict[str, Any]] = [json.loads(line) for line in lines if line]
    return records


def stop_tree(proc: subprocess.Popen[bytes], grace_s: float) -> int | None:
    """SIGTERM the service (a clean stop), then SIGKILL its whole process group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the API child or anything left behind
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        return None


Run = tuple[tuple[str, int], ...]  # (kind, cameras) parts: busy3+brt1 is (("busy", 3), ("brt", 1))


def parse_runs(text: str) -> list[Run]:
    runs = []
    for item in text.split(","):
        parts = []
        for part in item.strip().split("+"):
            kind = part.rstrip("0123456789")
            count = part[len(kind) :]
            if kind not in KINDS or not count.isdigit() or int(count) < 1:
                raise argparse.ArgumentTypeError(
                    f"run {item!r}: KIND+N or several joined by +, KIND one of {KINDS}"
                )
            parts.append((kind, int(count)))
        runs.append(tuple(parts))
    return runs


def run_name(run: Run) -> str:
    return "+".join(f"{kind}{count}" for kind, count in run)


def camera_specs(kind: str, count: int, frames: int, spread: bool, still_frame: int, first: int = 1) -> list[CameraSpec]:  # fmt: skip
    """`count` cameras of one kind, numbered from `first`; busy and brt ones spread over
    their `frames` (or all at 0), still ones on --still-frame."""
    if kind in ("busy", "brt"):
        offsets = [k * frames // count if spread else 0 for k in range(count)]
    else:
        offsets = [still_frame] * count
    return [CameraSpec(f"cam{first + k}", kind, offsets[k]) for k in range(count)]


def run_specs(run: Run, footage: dict[str, Footage], spread: bool, still_frame: int, probes: int) -> list[CameraSpec]:  # fmt: skip
    """Every camera of a run, numbered in order; the first `probes` carry the alert probe."""
    specs: list[CameraSpec] = []
    for kind, count in run:
        frames = len(footage[FOOTAGE[kind]].frames)
        specs += camera_specs(kind, count, frames, spread, still_frame, first=len(specs) + 1)
    return [replace(s, probe=i < probes) for i, s in enumerate(specs)]


def run_once(
    name: str,
    specs: list[CameraSpec],
    args: argparse.Namespace,
    footage: dict[str, Footage],
    say: Callable[[str], None],
) -> RunResult:
    work = Path(tempfile.mkdtemp(prefix=f"capacity-{name}-"))
    broker: subprocess.Popen[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = None
    subscriber: AlertSubscriber | None = None
    poller: ApiPoller | None = None
    try:
        empty = None
        if any(s.kind == "empty" for s in specs):
            empty = work / "empty.jpg"
            empty_lobby(footage["mall"].frames, empty)
        for spec in specs:
            link_frames(spec, footage[FOOTAGE[spec.kind]].frames, work / spec.id, empty)
        mqtt_port = None
        if args.mqtt:
            mqtt_port = free_port()
            mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            broker = subprocess.Popen(
                [mosquitto, "-p", str(mqtt_port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        api_port = free_port() if args.api else None
        api_key = secrets.token_urlsafe(24) if args.api and args.api_poll else None
        base = yaml.safe_load(Path(args.config).read_text())
        config = site_config(base, specs, work, args.fps, mqtt_port, api_port,
                             API_KEY_ENV if api_key else None)  # fmt: skip
        config_path = work / "site.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        frames_out, handoffs_out = work / "frames.jsonl", work / "handoffs.jsonl"
        env = {
            **os.environ,
            "LOBBYWATCH_MODELS": args.models,
            "LOBBYWATCH_DATA": args.data,
            **set_overrides(args.set),
            **({API_KEY_ENV: api_key} if api_key else {}),
        }
        if mqtt_port is not None:
            # subscribed before the service starts, as a handheld that is already on
            from edge.mqtt import Topics

            site = config["site"]["id"]
            prefix = config["mqtt"].get("topic_prefix", "lobbywatch")
            subscriber_topic = Topics(prefix, site).alerts
            subscriber = AlertSubscriber("127.0.0.1", mqtt_port, subscriber_topic)
            subscriber.start()
        log = (work / "service.log").open("wb")
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(config_path),
                   str(frames_out)]  # fmt: skip
        if subscriber is not None:
            command.append(str(handoffs_out))
        started = time.monotonic()
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        meter = TreeMeter(proc.pid)

        def sample_until(deadline: float, done: Callable[[], bool] = lambda: False) -> bool:
            while time.monotonic() < deadline:
                meter.sample()
                if proc is not None and proc.poll() is not None:
                    return False
                if done():
                    return True
                time.sleep(args.sample_s)
            return done()

        ids = {s.id for s in specs}

        def all_online() -> bool:
            return ids <= {r["cam"] for r in read_frames(frames_out)}

        if not sample_until(started + args.startup_timeout_s, all_online):
            code = stop_tree(proc, 5)
            tail = (work / "service.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name}: not every camera processed a frame (exit {code}):\n{tail}")
        startup_s = time.monotonic() - started
        sample_until(time.monotonic() + args.warmup)
        if api_key is not None:
            poller = ApiPoller(f"http://127.0.0.1:{api_port}",
                               {"Authorization": f"Bearer {api_key}"})  # fmt: skip
        w0, cpu0, box0 = time.monotonic(), meter.sample(), machine_cpu_seconds()
        if poller is not None:
            poller.start()
        sample_until(w0 + args.seconds)
        w1, cpu1, box1 = time.monotonic(), meter.sample(), machine_cpu_seconds()
        polls = poller.stop() if poller is not None else None
        service_fps = service_rates(work / "lobbywatch.db.state")
        if subscriber is not None:
            time.sleep(args.alert_grace_s)  # alerts decided just before w1 are still on their way
        code = stop_tree(proc, 20)
        records = read_frames(frames_out)
        window = w1 - w0
        in_window = [r for r in records if w0 <= r["t"] <= w1]
        result = RunResult(
            name=name,
            cameras=len(specs),
            asked_fps=args.fps,
            window_s=round(window, 2),
            startup_s=round(startup_s, 1),
            cpu_pct=round(100 * (cpu1 - cpu0) / window, 1),
            cpu_ms_per_frame=round(1000 * (cpu1 - cpu0) / max(len(in_window), 1), 1),
            machine_busy_pct=round(100 * (box1[0] - box0[0]) / max(box1[1] - box0[1], 1e-9), 1),
            peak_rss_mib=round(meter.peak_rss_mib, 1),
            exit_code=code,
        )
        if subscriber is not None:
            received, subscriber = subscriber.stop(), None
            handoffs = [Handoff(h["cam"], h["t"], h["wall"]) for h in read_frames(handoffs_out)]
            camera_of_rule = {rule["id"]: spec.id for spec, rule in camera_rules(config, specs)}
            made = stored_alerts(work / "lobbywatch.db", subscriber_topic)
            result.alerts = alert_report(received, handoffs, camera_of_rule, (w0, w1), made)
        if polls is not None:
            result.api = endpoint_reports(polls, API_ENDPOINTS)
        zone = base["cameras"][0]["zones"][0]["id"]  # the one scored, on every camera
        for spec in specs:
            truth = footage[FOOTAGE[spec.kind]].truth
            mine = [r for r in records if r["cam"] == spec.id]
            windowed = [r for r in in_window if r["cam"] == spec.id]
            ref = [camera_truth(spec, r["i"], truth) for r in mine]
            scored = zone_id(spec.id, zone)
            raw = metrics([r["raw"][scored] for r in mine], ref)
            occupancy = [r["occ"][scored] for r in mine]
            smooth = None
            if None not in occupancy:
                smooth = round(metrics(occupancy, ref)["mae"], 3)
            result.per_camera.append(
                CameraResult(
                    id=spec.id,
                    kind=spec.kind,
                    offset=spec.offset,
                    asked_fps=args.fps,
                    achieved_fps=round(len(windowed) / window, 3),
                    service_fps=service_fps.get(spec.id),
                    frames_in_window=len(windowed),
                    frames_scored=len(mine),
                    detector_ms=round(sum(r["ms"] for r in windowed) / max(len(windowed), 1), 1),
                    raw_mae=round(raw["mae"], 3),
                    raw_bias=round(raw["bias"], 3),
                    smoothed_mae=smooth,
                    distinct_frames=len({r["i"] % len(truth) for r in mine}),
                )
            )
        say(format_run(result))
        return result
    finally:
        if poller is not None:
            poller.stop()
        if subscriber is not None:
            subscriber.stop()
        if proc is not None:
            stop_tree(proc, 5)
        if broker is not None:
            broker.terminate()
            broker.wait(5)
        if args.keep:
            say(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def camera_rules(config: dict[str, Any], specs: list[CameraSpec]) -> list[tuple[CameraSpec, dict[str, Any]]]:  # fmt: skip
    """Each rule of the site with the camera whose zones it watches (every rule here watches
    one camera's)."""
    owner = {z["id"]: spec for spec, c in zip(specs, config["cameras"], strict=True)
             for z in c["zones"]}  # fmt: skip
    return [(owner[rule["zones"][0]], rule) for rule in config["alerts"]["rules"]]


def service_rates(state_file: Path) -> dict[str, float]:
    """Each camera's fps as the service itself reports it (its state file, refreshed every
    second from capture's delivered rate over the last 5 s), read as doctor and the API do."""
    from datetime import datetime, timezone

    from edge.runtime.device_state import read_state

    state = read_state(state_file, datetime.now(timezone.utc))
    if state is None:
        return {}
    cameras = state.section("cameras")
    return {cam: float(info["fps"]) for cam, info in cameras.items()}


# ----------------------------------------------------------------------------- report


def format_run(run: RunResult) -> str:
    cores = os.cpu_count() or 1
    head = (
        f"{run.name}: {run.cameras} camera(s) asked {run.asked_fps:g} fps,"
        f" window {run.window_s:.0f} s (start-up {run.startup_s:.0f} s):"
        f" CPU {run.cpu_pct:.0f}% of a core = {run.cpu_pct / cores:.0f}% of {cores} cores"
        f" ({run.cpu_ms_per_frame:.0f} CPU-ms/frame; whole box {run.machine_busy_pct:.0f}% busy),"
        f" peak RSS {run.peak_rss_mib:.0f} MiB, exit {run.exit_code}"
    )
    rows = [
        f"  {c.id:6s} {c.kind:5s} off {c.offset:4d}  fps {c.achieved_fps:5.2f}"
        f" (service {'-' if c.service_fps is None else f'{c.service_fps:.2f}'})"
        f"  frames {c.frames_in_window:4d}  det {c.detector_ms:6.1f} ms"
        f"  MAE raw {c.raw_mae:5.2f} (bias {c.raw_bias:+.2f}) smoothed {'-' if c.smoothed_mae is None else f'{c.smoothed_mae:5.2f}'}"
        f" over {c.frames_scored} frames ({c.distinct_frames} distinct)"
        for c in run.per_camera
    ]
    if run.alerts is not None:
        a = run.alerts
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(a.kinds.items())) or "none"
        rows.append(
            f"  alerts: {a.in_window} decided in the window ({kinds}) of {a.received} received"
            f" ({a.unmatched} without a frame, {a.missing} made in it never came);"
            " deciding frame -> subscriber:"
            f" {format_latency(a.latency)}"
        )
    for e in run.api or []:
        statuses = ", ".join(f"{k}: {n}" for k, n in sorted(e.statuses.items()))
        rows.append(
            f"  API GET {e.endpoint}: {e.polls} polls ({statuses}), {e.errors} errors,"
            f" {format_latency(e.latency)}"
        )
    return "\n".join([head, *rows])


def idle_ratio(runs: list[RunResult]) -> dict[str, Any] | None:
    """CPU of the first still/empty run over that of busy1 (the same asked fps and length)."""
    busy = next((r for r in runs if r.name == "busy1"), None)
    idle = next((r for r in runs if r.name in ("still1", "empty1")), None)
    if busy is None or idle is None or not busy.cpu_pct:
        return None
    return {
        "idle": idle.name,
        "busy": busy.name,
        "cpu_ratio": round(idle.cpu_pct / busy.cpu_pct, 3),
        "cpu_ms_per_frame_ratio": round(idle.cpu_ms_per_frame / busy.cpu_ms_per_frame, 3)
        if busy.cpu_ms_per_frame
        else None,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=parse_runs, default=parse_runs("busy1,busy2,busy4,still1"),
                        help="comma-separated KIND+N: busy4, still1, empty1, brt1, busy3+brt1")  # fmt: skip
    parser.add_argument("--fps", type=float, default=2.0, help="asked of every camera")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds after every camera's first frame before the window")  # fmt: skip
    parser.add_argument("--offsets", choices=("spread", "same"), default="spread")
    parser.add_argument("--still-frame", type=int, default=800, help="Mall index for still runs")
    parser.add_argument("--config", default=str(REPO / "configs" / "mall.yaml"))
    parser.add_argument("--data", default=os.environ.get("LOBBYWATCH_DATA", str(REPO.parent / "shared" / "data")))  # fmt: skip
    parser.add_argument("--models", default=os.environ.get("LOBBYWATCH_MODELS", str(REPO.parent / "shared" / "models")))  # fmt: skip
    parser.add_argument("--no-mqtt", dest="mqtt", action="store_false",
                        help="no broker: MQTT disabled in the service")  # fmt: skip
    parser.add_argument("--no-api", dest="api", action="store_false",
                        help="do not serve the API from the service (served by default, no keys)")  # fmt: skip
    parser.add_argument("--no-api-poll", dest="api_poll", action="store_false",
                        help="serve the API but ask it nothing (polled once a second by default)")  # fmt: skip
    parser.add_argument("--alert-probe", type=int, nargs="?", const=1, default=0, metavar="N",
                        help="the first N cameras (1 if N is left out) get the flapping alert"
                        " rules, for an alert latency p99 within a minute")  # fmt: skip
    parser.add_argument("--alert-grace-s", type=float, default=2.0,
                        help="after the window, before the stop: for alerts still on their way")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, as a site's environment would"
                        " set it (detector.threads=1)")  # fmt: skip
    parser.add_argument("--sample-s", type=float, default=0.5)
    parser.add_argument("--startup-timeout-s", type=float, default=180.0)
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (log, config)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.alert_probe and not args.mqtt:
        parser.error("--alert-probe needs MQTT (the subscriber is what it measures)")
    return args


def main(argv: list[str] | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every requested scenario in turn; returns (and with --json writes) the report."""
    args = parse_args(argv)
    needed = {FOOTAGE[kind] for run in args.runs for kind, _ in run} | {"mall"}
    footage = {name: load_footage(Path(args.data), name) for name in sorted(needed)}
    runs = []
    for run in args.runs:
        specs = run_specs(
            run, footage, args.offsets == "spread", args.still_frame, args.alert_probe
        )
        runs.append(run_once(run_name(run), specs, args, footage, say))
    ratio = idle_ratio(runs)
    if ratio is not None:
        say(
            f"idle vs busy: {ratio['idle']} costs {100 * ratio['cpu_ratio']:.0f}% of"
            f" {ratio['busy']}'s CPU (issue #14 target: < 20%)"
        )
    report = {
        "command": " ".join(["bench/capacity.py", *(argv if argv is not None else sys.argv[1:])]),
        "cpus": os.cpu_count(),
        "fps": args.fps,
        "seconds": args.seconds,
        "offsets": args.offsets,
        "mqtt": args.mqtt,
        "api": args.api,
        "api_poll": args.api and args.api_poll,
        "alert_probe": args.alert_probe,
        "settings": args.set,
        "runs": [asdict(r) for r in runs],
        "idle_vs_busy": ratio,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--child":
        child_main(*sys.argv[2:])
    else:
        main()
