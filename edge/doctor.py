"""`lobbywatch doctor`: checks of a deployed device (placeholder while it is written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `doctor` to the root CLI (entry point group `lobbywatch.cli`)."""

    @app.command()
    def doctor() -> None:
        """Check the device."""
        typer.echo("doctor: not yet implemented")
