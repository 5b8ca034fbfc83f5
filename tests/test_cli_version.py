"""`lobbywatch --version` and `lobbywatch version`: the installed package's version and Python."""

from __future__ import annotations

import importlib.metadata
import platform

import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.version import package_version, version_line


@pytest.mark.parametrize("args", [["--version"], ["version"]])
def test_version_prints_the_installed_package_and_python(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"lobbywatch {importlib.metadata.version('lobbywatch')}"
        f" (Python {platform.python_version()}, {platform.system()} {platform.machine()})\n"
    )


def test_version_runs_before_and_instead_of_a_command():
    # eager: a subcommand after it is not run (no config is read)
    result = CliRunner().invoke(app, ["--version", "run", "--config", "/nonexistent.yaml"])
    assert result.exit_code == 0
    assert result.output == version_line() + "\n"


def test_a_tree_that_is_not_installed_says_unknown(monkeypatch):
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert package_version() == "unknown"
