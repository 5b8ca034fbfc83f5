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
included: the API is served, with no keys and no client, unless --no-api; Mosquitto, started
for the MQTT path unless --no-mqtt, is not), peak RSS of the tree (sum of VmRSS, sampled
every --sample-s), and CPU-ms per processed frame.

Cameras and what they replay (each gets a folder of links named seq_000001.jpg...):
- busy: the Mall sequence; with --offsets spread camera k of N starts at frame k*1600/N
  (wrapping), with --offsets same every camera starts at frame 0.
- still: one Mall frame (--still-frame, a busy one) repeated: a lobby where no one moves.
- empty: the per-pixel median of 64 Mall frames spread over the sequence (the people mostly
  vanish), repeated: an empty lobby. Its ground truth is taken as 0 (approximate).
A run is named KIND+N (busy4, still1); the idle-vs-busy ratio is the CPU% of the first
still/empty run over that of busy1 (same fps, same length), lower is better (issue: < 20%).

    python bench/capacity.py [--runs busy1,busy4,still1] [--fps 2] [--seconds 60] [--json out.json]
                             [--set detector.threads=1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.accuracy import load_heads, metrics, set_overrides  # noqa: E402

KINDS = ("busy", "still", "empty")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class CameraSpec:
    """One replayed camera: what it shows and where in the Mall sequence it starts."""

    id: str
    kind: str  # busy, still or empty
    offset: int  # index into the Mall frames of this camera's frame 0 (busy, still)


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


# ----------------------------------------------------------------------------- child: the service


def child_main(config: str, frames_out: str) -> None:
    """`lobbywatch run --config config`, recording each processed frame to frames_out."""
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


def mall_truth(data: Path) -> list[int]:
    """People per Mall frame, index 0 = seq_000001.jpg."""
    return [count for count, _ in load_heads(data / "mall" / "gt_heads.json").values()]


def empty_lobby(frames: list[Path], out: Path) -> None:
    """The per-pixel median of 64 frames spread over the sequence: the floor without people."""
    import cv2
    import numpy as np

    picks = frames[:: max(1, len(frames) // 64)][:64]
    images = [cv2.imread(str(p)) for p in picks]
    stack = np.stack([image for image in images if image is not None])
    cv2.imwrite(str(out), np.median(stack, axis=0).astype(np.uint8))


def link_frames(spec: CameraSpec, frames: list[Path], folder: Path, empty: Path | None) -> None:
    """The camera's replay folder: seq_000001.jpg... linked to the frames it shows, in order."""
    folder.mkdir(parents=True)
    for j in range(len(frames)):
        if spec.kind == "busy":
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
    step = index if spec.kind == "busy" else 0
    return truth[(spec.offset + step) % len(truth)]


def site_config(
    base: dict[str, Any], specs: list[CameraSpec], work: Path, fps: float, mqtt_port: int | None,
    api_port: int | None,
) -> dict[str, Any]:  # fmt: skip
    """The base config with the cameras replaced by the replayed ones, all of whose paths are
    absolute and point into work (the store too)."""
    config: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy
    template = config["cameras"][0]
    config["cameras"] = [
        {
            **template,
            "id": spec.id,
            # zone ids are unique on a site: each camera's zones are prefixed with its id
            "zones": [{**z, "id": zone_id(spec.id, z["id"])} for z in template["zones"]],
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
    alerts = config.get("alerts", {})
    alerts["rules"] = [
        {**rule, "id": f"{spec.id}-{rule['id']}",
         "zones": [zone_id(spec.id, z) for z in rule["zones"]]}
        for spec in specs
        for rule in alerts.get("rules", [])
    ]  # fmt: skip
    config["storage"] = {**config.get("storage", {}), "path": str(work / "lobbywatch.db")}
    if mqtt_port is None:
        config["mqtt"] = {"enabled": False}
    else:
        config["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port}
    if api_port is not None:
        config["api"] = {**config.get("api", {}), "enabled": True, "port": api_port}
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


def parse_runs(text: str) -> list[tuple[str, int]]:
    runs = []
    for item in text.split(","):
        kind = item.strip().rstrip("0123456789")
        count = item.strip()[len(kind) :]
        if kind not in KINDS or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"run {item!r}: KIND+N, KIND one of {KINDS}")
        runs.append((kind, int(count)))
    return runs


def camera_specs(kind: str, count: int, frames: int, spread: bool, still_frame: int) -> list[CameraSpec]:  # fmt: skip
    if kind == "busy":
        offsets = [k * frames // count if spread else 0 for k in range(count)]
    else:
        offsets = [still_frame] * count
    return [CameraSpec(f"cam{k + 1}", kind, offsets[k]) for k in range(count)]


def run_once(
    name: str,
    specs: list[CameraSpec],
    args: argparse.Namespace,
    truth: list[int],
    frames: list[Path],
    say: Callable[[str], None],
) -> RunResult:
    work = Path(tempfile.mkdtemp(prefix=f"capacity-{name}-"))
    broker: subprocess.Popen[bytes] | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        empty = None
        if any(s.kind == "empty" for s in specs):
            empty = work / "empty.jpg"
            empty_lobby(frames, empty)
        for spec in specs:
            link_frames(spec, frames, work / spec.id, empty)
        mqtt_port = None
        if args.mqtt:
            mqtt_port = free_port()
            mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            broker = subprocess.Popen(
                [mosquitto, "-p", str(mqtt_port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        api_port = free_port() if args.api else None
        base = yaml.safe_load(Path(args.config).read_text())
        config = site_config(base, specs, work, args.fps, mqtt_port, api_port)
        config_path = work / "site.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        frames_out = work / "frames.jsonl"
        env = {
            **os.environ,
            "LOBBYWATCH_MODELS": args.models,
            "LOBBYWATCH_DATA": args.data,
            **set_overrides(args.set),
        }
        log = (work / "service.log").open("wb")
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(config_path),
                   str(frames_out)]  # fmt: skip
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
        w0, cpu0, box0 = time.monotonic(), meter.sample(), machine_cpu_seconds()
        sample_until(w0 + args.seconds)
        w1, cpu1, box1 = time.monotonic(), meter.sample(), machine_cpu_seconds()
        service_fps = service_rates(work / "lobbywatch.db.state")
        code = stop_tree(proc, 20)
        records = read_frames(frames_out)
        window = w1 - w0
        in_window = [r for r in records if w0 <= r["t"] <= w1]
        zone = base["cameras"][0]["zones"][0]["id"]  # the one scored, on every camera
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
        for spec in specs:
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
                )
            )
        say(format_run(result))
        return result
    finally:
        if proc is not None:
            stop_tree(proc, 5)
        if broker is not None:
            broker.terminate()
            broker.wait(5)
        if args.keep:
            say(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


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
        f" over {c.frames_scored} frames"
        for c in run.per_camera
    ]
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
                        help="comma-separated KIND+N: busy4, still1, empty1")  # fmt: skip
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
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, as a site's environment would"
                        " set it (detector.threads=1)")  # fmt: skip
    parser.add_argument("--sample-s", type=float, default=0.5)
    parser.add_argument("--startup-timeout-s", type=float, default=180.0)
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (log, config)")
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every requested scenario in turn; returns (and with --json writes) the report."""
    args = parse_args(argv)
    frames = sorted((Path(args.data) / "mall" / "frames").glob("seq_*.jpg"))
    truth = mall_truth(Path(args.data))
    if len(frames) != len(truth):
        raise SystemExit(f"{len(frames)} Mall frames but {len(truth)} ground-truth counts")
    runs = []
    for kind, count in args.runs:
        specs = camera_specs(kind, count, len(frames), args.offsets == "spread", args.still_frame)
        runs.append(run_once(f"{kind}{count}", specs, args, truth, frames, say))
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
        "settings": args.set,
        "runs": [asdict(r) for r in runs],
        "idle_vs_busy": ratio,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3])
    else:
        main()
