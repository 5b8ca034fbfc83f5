"""`lobbywatch models ...`: list, fetch, verify and locate model weights.

The lead CLI mounts `app` with `main_app.add_typer(app, name="models")`. Every expected failure
(unknown model, missing file, checksum, network, licence) exits 1 with one message on stderr
and no traceback, because the people running this are installers, not Python developers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from models.fetch import fetch as fetch_model
from models.manifest import ACKNOWLEDGE_KEY, LicenseNote, ModelError, load_manifest
from models.store import (
    ModelNotFoundError,
    default_dest_dir,
    exported_models,
    resolve_model,
    search_dirs,
    verify,
)

app = typer.Typer(
    help="Detector weights: list the manifest, fetch and verify files, print where they are.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelsDir = Annotated[
    Path | None,
    typer.Option(
        "--models-dir",
        help="Also search this directory (after $LOBBYWATCH_MODELS, before the user cache).",
        file_okay=False,
    ),
]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn expected failures into `error: ...` on stderr and exit code 1."""
    try:
        yield
    except (ModelError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("list")
def list_models(models_dir: ModelsDir = None) -> None:
    """List the models in the manifest, their licence, and where each is present."""
    with _user_errors():
        manifest = load_manifest()
        typer.echo(f"{'NAME':<34} {'FAMILY':<14} {'LICENCE':<24} LOCATION")
        for entry in manifest.models:
            try:
                where = str(
                    resolve_model(entry.name, models_dir=models_dir, manifest=manifest).path
                )
            except ModelNotFoundError:
                where = "missing"
            licence = entry.license if entry.shippable else f"{entry.license} (tests only)"
            if entry.license_note is not None:
                licence += ", see note"
            typer.echo(f"{entry.name:<34} {entry.family:<14} {licence:<24} {where}")
            if entry.license_note is not None:
                typer.echo(_note_lines(entry.license_note))
        for directory, exported in exported_models(models_dir):
            licence = (
                exported.license if exported.shippable else f"{exported.license} (not shipped)"
            )
            where = f"{directory / exported.primary.path} (exported {exported.export.format})"
            typer.echo(f"{exported.name:<34} {exported.family:<14} {licence:<24} {where}")


def _note_lines(note: LicenseNote) -> str:
    """A licence note under its model's row, indented, with how a config accepts it."""
    text = f"note: {note.text} A config runs it only with {ACKNOWLEDGE_KEY}: {note.acknowledge}"
    # Unbroken hyphens: the value to write must come out whole, to be copied.
    return textwrap.fill(
        text,
        width=96,
        initial_indent="    ",
        subsequent_indent="      ",
        break_on_hyphens=False,
        break_long_words=False,
    )


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Model name from `lobbywatch models list`.")],
    dest: Annotated[
        Path | None,
        typer.Option(help="Target directory [default: $LOBBYWATCH_MODELS or the user cache]."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Download even if a verified copy exists.")] = False,
    accept_license: Annotated[
        str | None,
        typer.Option(help="Licence to accept for non-shippable models, e.g. AGPL-3.0."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = True,
) -> None:
    """Download a model's files, verify their sha256, and print their paths."""
    with _user_errors():
        paths = fetch_model(
            name,
            dest if dest is not None else default_dest_dir(),
            force=force,
            accept_license=accept_license,
            progress=progress,
        )
        for path in paths:
            typer.echo(path)


@app.command("verify")
def verify_models(
    name: Annotated[
        str | None,
        typer.Argument(help="Model name or file; default: the models the config needs."),
    ] = None,
    models_dir: ModelsDir = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Site config: verify the models it uses (detector.model and the fused ones). "
            "Without it and without NAME, every model in the manifest is needed.",
        ),
    ] = None,
) -> None:
    """Check the sha256 of model files; exit 1 if a needed model is missing or any file differs.

    Exported models that are present are verified too, but are never needed.
    """
    failed = False
    with _user_errors():
        manifest = load_manifest()
        if name is not None:
            needed = [name]
        elif config is not None:
            needed = _config_models(config)
        else:
            needed = list(manifest.names)
        names = list(dict.fromkeys(needed))
        if name is None:
            names += [e.name for _, e in exported_models(models_dir) if e.name not in names]
        for each in names:
            try:
                resolved = resolve_model(each, models_dir=models_dir, manifest=manifest)
            except ModelNotFoundError:
                if name is not None:
                    raise
                dirs = ", ".join(str(d) for d in search_dirs(models_dir))
                typer.echo(f"{each}: MISSING")
                typer.echo(f"error: {each} not found in {dirs}", err=True)
                failed = failed or each in needed
                continue
            problems = verify(resolved)
            for problem in problems:
                typer.echo(f"error: {problem}", err=True)
            failed = failed or bool(problems)
            status = "sha256 MISMATCH" if problems else "ok"
            if resolved.entry is None:
                status = "not in the manifest, nothing to verify"
            typer.echo(f"{resolved.name}: {status} ({resolved.path})")
    if failed:
        raise typer.Exit(1)


def _config_models(path: Path) -> list[str]:
    """The models a site config runs: the main detector's, then the fused ones."""
    from edge.config import ConfigError, load_config  # edge imports this module: import late

    try:
        detector = load_config(path).detector
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    return [detector.model, *(m.model for m in detector.fusion.models)]


@app.command()
def path(
    name: Annotated[str, typer.Argument(help="Model name or file.")],
    models_dir: ModelsDir = None,
) -> None:
    """Print the path of the file a runtime loads (ONNX model or OpenVINO .xml)."""
    with _user_errors():
        typer.echo(resolve_model(name, models_dir=models_dir).path)


@app.command("export")
def export(
    name: Annotated[
        str,
        typer.Argument(
            help="Ultralytics model: a .pt checkpoint, or a model YAML such as yolo11n.yaml "
            "(random weights, for tests)."
        ),
    ],
    format: Annotated[
        str, typer.Option("--format", "-f", help="onnx, openvino (IR) or engine (TensorRT).")
    ] = "onnx",
    imgsz: Annotated[int, typer.Option(help="Square input size in pixels (multiple of 32).")] = 640,
    half: Annotated[bool, typer.Option("--half", help="FP16 (openvino, engine).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8, calibrated on --data.")] = False,
    data: Annotated[
        Path | None, typer.Option(help="Dataset YAML of calibration images, for --int8.")
    ] = None,
    out_name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Name to record (default: <model>_<imgsz>_<format>, then _fp16 or _int8).",
        ),
    ] = None,
    dest: Annotated[
        Path | None,
        typer.Option(
            help="Models directory to write to (default: $LOBBYWATCH_MODELS or the cache)."
        ),
    ] = None,
    samples: Annotated[
        list[Path] | None,
        typer.Option(
            "--samples",
            help="Frames (files or directories) to check the export on; repeatable "
            "(default: synthetic frames).",
        ),
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="Largest normalized output difference accepted (fp32 1e-3, fp16 2e-2, int8 0.1)."
        ),
    ] = None,
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset (default: ultralytics' choice).")
    ] = None,
    license_id: Annotated[
        str, typer.Option("--license", help="SPDX licence of the weights.")
    ] = "AGPL-3.0",
    shippable: Annotated[
        bool, typer.Option(help="The weights may be deployed (an Ultralytics enterprise licence).")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an export of the same name.")] = False,
) -> None:
    """Export with ultralytics, check against the original on sample frames, record the result.

    Runs in the export virtualenv (`make install-export`); the result is recorded in
    <models dir>/exports.yaml and used by name in the config (detector.model).
    """
    from models.export import FORMATS, ExportOptions, export_model

    if format not in FORMATS:
        typer.echo(f"error: --format must be one of {', '.join(FORMATS)}", err=True)
        raise typer.Exit(2)
    options = ExportOptions(
        source=name,
        format=format,  # checked against FORMATS above
        dest=dest if dest is not None else default_dest_dir(),
        imgsz=imgsz,
        half=half,
        int8=int8,
        data=data,
        name=out_name,
        opset=opset,
        samples=tuple(samples or ()),
        tolerance=tolerance,
        license=license_id,
        shippable=shippable,
        force=force,
    )
    with _user_errors():
        entry = export_model(options, log=lambda line: typer.echo(line, err=True))
        check = entry.export.check
        typer.echo(
            f"{entry.name}: {entry.primary.path} (max normalized diff {check.max_rel_diff:.2g} "
            f"on {check.frames} frame(s), tolerance {check.tolerance:g})"
        )
