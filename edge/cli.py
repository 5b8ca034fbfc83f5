"""The `lobbywatch` command line."""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from edge.capture import CaptureError
from edge.config import ConfigError, LobbyConfig, read_config
from edge.logsafe import SafeFormatter
from models.cli import app as models_app
from models.manifest import ModelError

if TYPE_CHECKING:
    from edge.calibration import ZoneCalibration

app = typer.Typer(
    help="lobbywatch: people per zone from lobby cameras, history and diversion alerts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models_app, name="models", help="List, fetch and verify detector models.")


def _print_version(value: bool) -> None:
    if value:
        from edge.version import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the lobbywatch and Python versions, and exit.",
        ),
    ] = False,
) -> None:
    """lobbywatch: people per zone from lobby cameras, history and diversion alerts."""


DEFAULT_CONFIG = os.environ.get("LOBBYWATCH_CONFIG", "/etc/lobbywatch/lobbywatch.yaml")

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="Site config (YAML). Env: LOBBYWATCH_CONFIG."),
]


def _load(path: Path, *, runnable: bool = False) -> LobbyConfig:
    """The config, or its errors on stderr and exit 1. runnable: also refuse a config that cannot
    run on this machine (edge/tools/preflight.py), as `run` would fail on it."""
    try:
        config, source = read_config(path)
        if runnable:
            from edge.tools.preflight import check_runnable

            problems = check_runnable(config, source)
            if problems:
                raise ConfigError(str(path), problems)
        return config
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


# Failures a user can fix (a wrong path, a missing model): one clear line, no traceback.
USER_ERRORS = (CaptureError, ModelError, KeyError, FileNotFoundError, ValueError)


def _setup_logging(level: str) -> None:
    # Escaped: text from the broker (an ack's name, an alert id) must not forge log lines.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


@app.command("validate-config")
def validate_config(
    file: Annotated[Path, typer.Argument(help="Config file to check")],
    schema_only: Annotated[
        bool,
        typer.Option(
            "--schema-only",
            help="Check the file alone, not the models, files and environment variables it "
            "needs on this machine (for a config prepared for another device).",
        ),
    ] = False,
) -> None:
    """Check a config file and what it needs here; prints every error with its path and line,
    exits 0 or 1."""
    config = _load(file, runnable=not schema_only)
    zones = sum(len(c.zones) for c in config.cameras)
    typer.echo(
        f"{file}: OK (site {config.site.id}, {len(config.cameras)} camera(s), {zones} zone(s))"
    )


@app.command()
def run(config: ConfigOption = Path(DEFAULT_CONFIG)) -> None:
    """Run the service: count people per zone on every camera and keep the history."""
    from edge.service import Service

    cfg = _load(config, runnable=True)
    _setup_logging(cfg.logging.level)
    service = Service(cfg, config_path=config)
    service.install_signal_handlers()
    try:
        code = service.run()
    except USER_ERRORS as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def count(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON lines output file")],
    config: ConfigOption = Path(DEFAULT_CONFIG),
    camera: Annotated[str | None, typer.Option(help="Camera id (default: the first)")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="Replay this source instead of the camera's configured one"),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr")] = True,
) -> None:
    """Offline replay: one JSON line per processed frame with the raw count per zone."""
    from edge.replay import replay_to_file

    cfg = _load(config)
    _setup_logging("WARNING")
    try:
        summary = replay_to_file(cfg, out, camera, source, progress=progress)
    except USER_ERRORS as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{summary.frames} frames in {summary.wall_s:.1f} s ({summary.fps:.2f} fps end to end,"
        f" {1000 * summary.inference_s / max(summary.frames, 1):.1f} ms detector per frame) -> {out}",
        err=True,
    )


@app.command()
def calibrate(
    out: Annotated[
        Path, typer.Option(help="Calibration file to write (set cameras[].calibration to it)")
    ],
    counts: Annotated[
        Path | None,
        typer.Option(help="CSV of hand counts: frame,zone,count (frame: 0-based in the source)"),
    ] = None,
    heads: Annotated[
        Path | None,
        typer.Option(
            help="JSON of hand-clicked heads (preferred): {frame: {count, heads_xy: [[x, y]..]}},"
            " frame a 0-based number or an image file name, x/y pixels or 0-1; counted per zone"
        ),
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    camera: Annotated[str | None, typer.Option(help="Camera id (default: the first)")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="Read these frames instead of the camera's, e.g. DIR/lobby_%06d.jpg"),
    ] = None,
    stills: Annotated[
        bool,
        typer.Option(help="Frames are unrelated stills (snapshots): no presence hold across them"),
    ] = False,
    metric: Annotated[
        str, typer.Option(help="Error the choice minimises: mae (people) or mape (percent)")
    ] = "mae",
    from_store: Annotated[
        bool,
        typer.Option(
            "--from-store",
            help="Fit on the hand counts clicked on /debug and kept in the store (storage.path):"
            " no frames read, no detector run, the detector's boxes are stored with them",
        ),
    ] = False,
) -> None:
    """Choose a per-zone count correction by cross-validation on hand-labelled frames.

    Writes model `none` (no correction) when nothing beats the detector's own count."""
    from edge.calibration import read_head_points, save
    from edge.replay import calibrate_camera, read_hand_counts

    if from_store and (counts or heads or source or stills):
        typer.echo("error: --from-store takes no --counts, --heads, --source or --stills", err=True)
        raise typer.Exit(1)
    if not from_store and (counts is None) == (heads is None):
        typer.echo("error: give --counts or --heads (one of them), or --from-store", err=True)
        raise typer.Exit(1)
    if metric not in ("mae", "mape"):
        typer.echo("error: --metric is mae or mape", err=True)
        raise typer.Exit(1)
    cfg = _load(config)
    _setup_logging("WARNING")
    recounted: list[int] = []
    try:
        if from_store:
            fitted, recounted = _fit_from_store(cfg, camera, "mae" if metric == "mae" else "mape")
        else:
            fitted = calibrate_camera(
                cfg,
                read_hand_counts(counts) if counts else None,
                camera,
                heads=read_head_points(heads) if heads else None,
                source=source,
                stills=stills,
                metric="mae" if metric == "mae" else "mape",
            )
    except (*USER_ERRORS, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if recounted:
        typer.echo(
            f"note: {len(recounted)} hand count(s) ({', '.join(map(str, recounted[:10]))}) were"
            " made with other zones or masks: their boxes were placed in the current zones again"
        )
    save(out, fitted)
    for zone, c in sorted(fitted.items()):
        if c.refused:
            typer.echo(f"{zone}: NO CORRECTION on {c.frames} frame(s): {c.reason}")
        else:
            typer.echo(
                f"{zone}: {c.model}, true ~= {c.scale:.3f} x detected {c.offset:+.2f}"
                f" on {c.frames} frame(s) ({c.reason})"
            )
        if c.cv_mae is not None and c.cv_mae_ci is not None:
            mape = (
                f", MAPE {c.cv_mape:.1f}% ({c.cv_mape_ci[0]:.1f}-{c.cv_mape_ci[1]:.1f}%)"
                if c.cv_mape is not None and c.cv_mape_ci is not None
                else ""
            )
            typer.echo(
                f"  expected error on new frames: MAE {c.cv_mae:.2f}"
                f" (95% {c.cv_mae_ci[0]:.2f}-{c.cv_mae_ci[1]:.2f}){mape};"
                f" MAE on the labelled frames {c.mae_before:.2f} -> {c.mae_after:.2f}"
            )
        if c.candidates:
            typer.echo(
                "  candidates, CV MAE: " + ", ".join(f"{m} {v:.2f}" for m, v in c.candidates)
            )
        if c.warning:
            typer.echo(f"  warning: {c.warning}")
    typer.echo(f"written to {out}; set cameras[].calibration to use it")


def _fit_from_store(
    cfg: LobbyConfig, camera: str | None, metric: Literal["mae", "mape"]
) -> tuple[dict[str, ZoneCalibration], list[int]]:
    """calibrate --from-store: the store's hand counts of the camera, fitted (edge/replay.py)."""
    from edge.replay import calibrate_from_store
    from edge.store import Store

    if not cfg.storage.path.exists():
        raise ValueError(
            f"no store at {cfg.storage.path} (storage.path): the hand counts clicked on /debug"
            " are kept there"
        )
    with Store(cfg.storage.path, site_id=cfg.site.id) as store:
        return calibrate_from_store(cfg, store, camera, metric=metric)


@app.command()
def snapshot(
    out: Annotated[Path, typer.Option(help="Folder for the JPEGs (the only place they go)")],
    config: ConfigOption = Path(DEFAULT_CONFIG),
    camera: Annotated[str | None, typer.Option(help="Camera id (default: the first)")] = None,
    count: Annotated[int, typer.Option(min=1, max=1000, help="Frames to save")] = 30,
    every: Annotated[float, typer.Option(min=0.02, help="Seconds between saved frames")] = 10.0,
) -> None:
    """Save a few frames of a camera as JPEGs to count by hand, for `lobbywatch calibrate`."""
    from edge.tools.snapshot import take_snapshots

    cfg = _load(config)
    _setup_logging("WARNING")
    try:
        shots = take_snapshots(cfg, out, count, every, camera)
    except (*USER_ERRORS, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not shots.written:
        typer.echo("error: the camera gave no frame", err=True)
        raise typer.Exit(1)
    first, last = shots.written[0].name, shots.written[-1].name
    typer.echo(
        f"{len(shots.written)} frame(s) of {shots.camera_id} in {out} ({first} .. {last}).\n"
        "They show people: keep them on this machine and delete them once counted.\n"
        "Label them (head points preferred), frame = the file name or its number:\n"
        '  heads.json  {"' + first + '": {"count": 2, "heads_xy": [[x, y], [x, y]]}, ...}'
        "  (x, y in pixels of the image)\n"
        "  or counts.csv  frame,zone,count  with one row per zone of each frame\n"
        f"then: lobbywatch calibrate --config {config} --camera {shots.camera_id}"
        f" --source '{shots.pattern}' --stills --heads heads.json --out calibration.yaml"
    )


@app.command()
def version() -> None:
    """Print the lobbywatch and Python versions (as --version does)."""
    from edge.version import version_line

    typer.echo(version_line())


config_app = typer.Typer(help="The config file's reference and JSON Schema.")
app.add_typer(config_app, name="config")


@config_app.command("reference")
def config_reference(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for config.md and config.schema.json")
    ] = Path("docs"),
) -> None:
    """Write the config reference (config.md) and its JSON Schema for editors
    (config.schema.json) from the config models; docs/ holds the committed ones."""
    from edge.config_reference import write_reference

    try:
        written = write_reference(out)
    except OSError as exc:
        typer.echo(f"error: cannot write to {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    for path in written:
        typer.echo(f"written {path}")


scene_app = typer.Typer(
    help="What each camera learned of its scene (perspective, overlays, static clutter)."
)
app.add_typer(scene_app, name="scene")


@scene_app.command("reset")
def scene_reset(
    config: ConfigOption = Path(DEFAULT_CONFIG),
    camera: Annotated[str | None, typer.Option(help="Camera id (default: every camera)")] = None,
) -> None:
    """Forget what a camera learned of its scene; it learns afresh from the next start."""
    from datetime import datetime, timezone

    from edge.runtime.device_state import read_state, state_path
    from edge.storage.scene_file import scene_path

    cfg = _load(config)
    ids = [c.id for c in cfg.cameras]
    if camera is not None and camera not in ids:
        typer.echo(f"error: no camera {camera!r} in {config} (cameras: {', '.join(ids)})", err=True)
        raise typer.Exit(1)
    running = read_state(state_path(cfg.storage.path), datetime.now(timezone.utc))
    if running is not None and running.current:
        # It holds what it learned in memory and would save it again within minutes.
        typer.echo("error: the service is running: stop it first (systemctl stop lobbywatch)",
                   err=True)  # fmt: skip
        raise typer.Exit(1)
    for camera_id in [camera] if camera is not None else ids:
        path = scene_path(cfg.storage.path.parent, camera_id)
        if path.exists():
            path.unlink()
            typer.echo(f"camera {camera_id}: forgot its scene ({path} removed)")
        else:
            typer.echo(f"camera {camera_id}: nothing learned yet")


handheld_app = typer.Typer(add_completion=False)
app.add_typer(handheld_app, name="handheld")


@handheld_app.callback(invoke_without_command=True)
def handheld(
    ctx: typer.Context,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    name: Annotated[str, typer.Option(help="Who acknowledges (shown in reports)")] = "manager",
    username: Annotated[
        str | None, typer.Option(help="Broker user of the handheld (default: the config's)")
    ] = None,
    supervisor: Annotated[
        bool, typer.Option(help="Also listen on the supervisor's topic (escalations show once)")
    ] = False,
) -> None:
    """A terminal handheld: shows the open alerts and what becomes of them; `l` lists them,
    `a N` accepts alert N, `d N` reports its pass done. `pair`, `list` and `revoke` manage the
    phones of the web app.

    The password comes from LOBBYWATCH_HANDHELD_PASSWORD when --username is given.
    """
    if ctx.invoked_subcommand is not None:
        return
    from pydantic import SecretStr

    from edge.handheld import Handheld, LinkStatus, Terminal

    cfg = _load(config)
    _setup_logging("WARNING")
    mqtt_config = cfg.mqtt
    if username is not None:
        password = os.environ.get("LOBBYWATCH_HANDHELD_PASSWORD")
        # model_copy does not validate: the password must already be a SecretStr, or reading
        # it fails (--username crashed with AttributeError before).
        mqtt_config = mqtt_config.model_copy(
            update={
                "username": username,
                "password": None if password is None else SecretStr(password),
                "password_file": None,
            }
        )
    broker = f"{mqtt_config.host}:{mqtt_config.port}"

    def show_link(link: LinkStatus) -> None:
        # Said on every change, so a wrong port or a refused login is never a silent wait.
        if link.connected:
            typer.echo(f"connected to the broker at {broker}: waiting for alerts")
        else:
            typer.echo(
                f"NOT CONNECTED to the broker at {broker}: {link.reason}; retrying"
                f" (every {mqtt_config.reconnect_min_s:g}-{mqtt_config.reconnect_max_s:g} s)"
            )

    # Escalations are part of each alert's state (shown once): --supervisor only also listens
    # on the supervisor's topic, for a device that publishes no states.
    topics = ("alerts", "supervisor/alerts") if supervisor else ("alerts",)
    terminal = Terminal(typer.echo)
    client = Handheld(
        mqtt_config, cfg.site.id, name, topics=topics, timezone=cfg.site.timezone,
        on_change=terminal.show, on_status=show_link,
    )  # fmt: skip
    terminal.client = client
    typer.echo(
        f"handheld {name}: site {cfg.site.id}, times in {cfg.site.timezone}, connecting to"
        f" {broker} (l list, a N accept, d N pass done, q quit)"
    )
    client.start()
    try:
        terminal.run()
    finally:
        client.stop()


def _register_pairing() -> None:
    from edge.tools.handhelds import register

    register(handheld_app, _load, Path(DEFAULT_CONFIG))


_register_pairing()

PLUGIN_GROUP = "lobbywatch.cli"


def load_plugins(root: typer.Typer) -> None:
    """Add the commands other parts of the distribution register (the API, the doctor).

    Through entry points rather than imports, so edge/ never depends on api/.
    """
    for entry_point in entry_points(group=PLUGIN_GROUP):
        entry_point.load()(root)


load_plugins(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
