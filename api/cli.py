"""`lobbywatch api`: run the API, and make keys for it.

Registered through the `lobbywatch.cli` entry-point group (edge/ never imports api/). Importing
this module is cheap: FastAPI and uvicorn load only when the server starts.
"""

from __future__ import annotations

import getpass
import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.auth import Role, hash_key

DEFAULT_CONFIG = os.environ.get("LOBBYWATCH_CONFIG", "/etc/lobbywatch/lobbywatch.yaml")

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Site config (YAML). Env: LOBBYWATCH_CONFIG.")
]
HostOption = Annotated[
    str | None, typer.Option(help="Listen address (default: api.host in the config)")
]
PortOption = Annotated[int | None, typer.Option(help="Port (default: api.port in the config)")]


def serve_command(
    ctx: typer.Context,
    config: ConfigOption = Path(DEFAULT_CONFIG),
    host: HostOption = None,
    port: PortOption = None,
) -> None:
    """Run the supervisor REST API against the config's store (alone, or beside `run`)."""
    if ctx.invoked_subcommand is not None:
        return
    from api.server import serve
    from edge.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    serve(cfg, host, port, config_path=config)


def hash_key_command() -> None:
    """Read a key from stdin (hidden when typed) and print its sha256 for api.keys[].sha256."""
    typed = sys.stdin.isatty()
    key = getpass.getpass("key: ") if typed else sys.stdin.readline().rstrip("\r\n")
    if not key:
        typer.echo("error: empty key", err=True)
        raise typer.Exit(1)
    typer.echo(hash_key(key))


def new_key_command(
    key_id: Annotated[str, typer.Option("--id", help="Who will hold the key, e.g. supervisor")],
    role: Annotated[Role, typer.Option(help="viewer, manager or admin")] = "viewer",
) -> None:
    """Make a random key; prints it (give it to its holder: it is not kept) and its config line."""
    key = secrets.token_urlsafe(32)
    typer.echo(f"key: {key}")
    typer.echo(f"config (api.keys): - {{id: {key_id}, role: {role}, sha256: {hash_key(key)}}}")


def register(app: typer.Typer) -> None:
    """Add `api` (run the server), `api hash-key` and `api new-key` to the root command."""
    api_app = typer.Typer(help="The supervisor REST API.", add_completion=False)
    api_app.callback(invoke_without_command=True)(serve_command)
    api_app.command("hash-key")(hash_key_command)
    api_app.command("new-key")(new_key_command)
    app.add_typer(api_app, name="api")
