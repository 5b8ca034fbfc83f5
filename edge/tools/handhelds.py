"""`lobbywatch handheld pair | list | revoke`: paired phones, managed by IT on the device.

`pair` prints a QR code and a short code that the phone's web app exchanges for a manager
credential of its own (edge/storage/handhelds.py); the code works once, for 10 minutes. The
QR code holds `<api.public_url>/app/pair#<code>`: the code sits after the `#`, so the phone's
browser never sends it to the server and it is in no access log.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from edge.config import LobbyConfig
from edge.storage.handhelds import CODE_TTL_S, Handheld, HandheldError, HandheldRegistry
from edge.store import Store

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Module level: typer reads the annotations of the commands below by name from here.
ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Site config (YAML). Env: LOBBYWATCH_CONFIG.")
]


def app_url(config: LobbyConfig) -> str:
    """Where phones reach the API: api.public_url, else this machine's name and api.port
    (https when api.tls is set)."""
    if config.api.public_url:
        return config.api.public_url
    scheme = "https" if config.api.tls.enabled else "http"
    return f"{scheme}://{socket.getfqdn()}:{config.api.port}"


def open_registry(config: LobbyConfig) -> HandheldRegistry:
    # The store first: it creates the file with its schema and refuses another site's store.
    with Store(config.storage.path, site_id=config.site.id):
        pass
    return HandheldRegistry(config.storage.path)


def qr_text(data: str) -> str:
    """A QR code in block characters, light modules drawn: for a terminal with a dark
    background (the usual). `--png` writes one for paper or a light terminal."""
    import segno

    out = io.StringIO()
    segno.make(data, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def pair_command(config: LobbyConfig, name: str, replace: bool, png: Path | None) -> None:
    if name in {key.id for key in config.api.keys}:
        typer.echo(
            f"error: {name!r} is an API key's id: a handheld needs a name of its own, so "
            "every ack says which one sent it",
            err=True,
        )
        raise typer.Exit(1)
    try:
        with open_registry(config) as registry:
            pairing = registry.pair(name, replace=replace)
    except HandheldError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    base = app_url(config)
    url = f"{base}/app/pair#{pairing.display_code}"
    until = _site_time(pairing.expires_at, config)
    typer.echo(qr_text(url), nl=False)
    typer.echo(
        f"handheld {name} (manager) for site {config.site.id}: scan the code with the phone,"
    )
    typer.echo(f"or open {base}/app/pair on it and type the code")
    typer.echo("")
    typer.echo(f"    {pairing.display_code}")
    typer.echo("")
    typer.echo(
        f"It works once, until {until} ({CODE_TTL_S / 60:g} minutes). "
        f"`lobbywatch handheld revoke {name}` logs the phone out."
    )
    if png is not None:
        import segno

        segno.make(url, error="m").save(str(png), scale=8, border=4)
        typer.echo(f"QR code also written to {png} (it holds the code: delete it once used)")
    if not base.startswith("https://") and not base.split("://", 1)[1].startswith(LOOPBACK_HOSTS):
        typer.echo(
            "warning: the phone app needs https (the API refuses to pair over plain http): set "
            "api.tls (the device's certificate) and api.public_url in the config",
            err=True,
        )


def list_command(config: LobbyConfig) -> None:
    with open_registry(config) as registry:
        handhelds = registry.handhelds()
        waiting = {h.name: registry.waiting_code(h.name) for h in handhelds if not h.paired}
    if not handhelds:
        typer.echo("no handhelds: `lobbywatch handheld pair --name mgr-1` pairs one")
        return
    typer.echo(f"{'name':<20} {'state':<32} {'created':<17} last seen")
    for handheld in handhelds:
        state = _state(handheld, waiting.get(handheld.name), config)
        created = _site_time(handheld.created_at, config)
        seen = _site_time(handheld.last_seen_at, config) if handheld.last_seen_at else "never"
        typer.echo(f"{handheld.name:<20} {state:<32} {created:<17} {seen}")


def _state(handheld: Handheld, code_until: datetime | None, config: LobbyConfig) -> str:
    if handheld.revoked_at is not None:
        return f"revoked {_site_time(handheld.revoked_at, config)}"
    if handheld.paired:
        return "paired"
    if code_until is not None:
        return f"code valid until {_site_time(code_until, config)[11:]}"
    return "code expired: pair again"


def revoke_command(config: LobbyConfig, name: str) -> None:
    with open_registry(config) as registry:
        revoked = registry.revoke(name)
    if not revoked:
        typer.echo(f"error: no paired handheld {name!r} (see `lobbywatch handheld list`)", err=True)
        raise typer.Exit(1)
    typer.echo(f"handheld {name} revoked: its next request is refused and the app shows it is "
               "logged out")  # fmt: skip


def _site_time(at: datetime, config: LobbyConfig) -> str:
    return at.astimezone(ZoneInfo(config.site.timezone)).strftime("%Y-%m-%d %H:%M")


def register(handheld_app: typer.Typer, load: Callable[[Path], LobbyConfig], default: Path) -> None:
    """Add pair, list and revoke to `lobbywatch handheld` (load: the CLI's config loader)."""

    @handheld_app.command("pair")
    def pair(
        name: Annotated[
            str, typer.Option(help="The phone's name, e.g. mgr-1: what its acks record")
        ],
        config: ConfigOption = default,
        replace: Annotated[
            bool, typer.Option(help="Pair a new phone under a paired name (logs the old one out)")
        ] = False,
        png: Annotated[
            Path | None, typer.Option(help="Also write the QR code to this PNG file")
        ] = None,
    ) -> None:
        """Pair a phone: print a QR code and a short code for the phone web app (single use,
        10 minutes), giving that phone a manager credential of its own."""
        pair_command(load(config), name, replace, png)

    @handheld_app.command("list")
    def list_(config: ConfigOption = default) -> None:
        """List the paired handhelds: paired, waiting for its code, or revoked; last seen."""
        list_command(load(config))

    @handheld_app.command("revoke")
    def revoke(
        name: Annotated[str, typer.Argument(help="The handheld's name")],
        config: ConfigOption = default,
    ) -> None:
        """Revoke a handheld: its next request is refused and the phone app logs out."""
        revoke_command(load(config), name)
