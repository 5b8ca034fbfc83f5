"""`lobbywatch central ...`: the head office's commands (docs/central.md).

Registered through the `lobbywatch.cli` entry-point group, as `lobbywatch api` is: the device's
runtime never imports central/ (nor psycopg or nats-py, which only the head office installs).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer

from central.config import CONFIG_ENV, CentralConfig, load_central_config
from edge.config import ConfigError

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help=f"Head-office config (YAML). Env: {CONFIG_ENV}."),
]

app = typer.Typer(no_args_is_help=True, help="The head office: ingestion, API, backfill.")


def _config(path: Path | None) -> CentralConfig:
    try:
        return load_central_config(path)
    except (ConfigError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOBBYWATCH_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def ingest(
    config: ConfigOption = None,
    instances: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Consumers in this process; they share one core: for throughput run more processes",
        ),
    ] = 1,
) -> None:
    """Consume the branches' messages from NATS into PostgreSQL until stopped."""
    from central.ingest import run_ingest

    _logging()
    run_ingest(_config(config), instances)


@app.command()
def api(config: ConfigOption = None) -> None:
    """Serve the head-office API (api.host:api.port of the config)."""
    from central.api import run_api

    _logging()
    run_api(_config(config))


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Create or update the central store's schema and this month's partitions."""
    from central.store import CentralStore

    with CentralStore(_config(config).database.dsn) as store:
        applied = store.migrate()
        created = store.ensure_partitions(datetime.now(timezone.utc))
    typer.echo(f"schema version {store.schema_version()}: applied {applied or 'nothing'}, "
               f"partitions created {created or 'none'}")  # fmt: skip


def _when(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no UTC offset (e.g. 2026-12-01T08:00:00+08:00)")
    return at


@app.command()
def backfill(
    site: Annotated[str, typer.Option(help="The branch's site id")],
    device: Annotated[str, typer.Option(help="The device's API, e.g. https://branch-7:8080")],
    key_env: Annotated[
        str, typer.Option(help="Environment variable holding a viewer key of the device")
    ],
    start: Annotated[str, typer.Option(help="From (ISO time with offset)")],
    end: Annotated[str | None, typer.Option(help="To (ISO time with offset; default now)")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA of the device's certificate")] = None,
    config: ConfigOption = None,
) -> None:
    """Fetch a branch's 15-minute buckets from its device and store those the centre lacks."""
    from central.backfill import BackfillError, http_fetch
    from central.backfill import backfill as run_backfill
    from central.store import CentralStore

    key = os.environ.get(key_env)
    if not key:
        typer.echo(f"error: ${key_env} is not set", err=True)
        raise typer.Exit(1)
    until = _when(end) if end else datetime.now(timezone.utc)
    since = _when(start)
    if until - since > timedelta(days=400):
        typer.echo("error: at most 400 days at once", err=True)
        raise typer.Exit(1)
    with CentralStore(_config(config).database.dsn) as store:
        try:
            result = run_backfill(store, site, http_fetch(device, key, ca_file), since, until)
        except (BackfillError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"{site}: {result.buckets} buckets from the device, {result.new_rows} rows new")


def register(root: typer.Typer) -> None:
    """Add `central` to the root command (entry point group `lobbywatch.cli`)."""
    root.add_typer(app, name="central")
