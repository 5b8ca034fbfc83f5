"""`python -m api --config FILE [--host H] [--port P]`: the API alone, as `lobbywatch run`
starts it when api.enabled. Also `python -m api hash-key` and `python -m api new-key`."""

from __future__ import annotations

import sys

import typer

from api.cli import register


def main() -> None:
    root = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(root)
    root(args=["api", *sys.argv[1:]], prog_name="python -m")  # usage: python -m api ...


if __name__ == "__main__":
    main()
