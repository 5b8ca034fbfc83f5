"""What this install is: the package version and the Python running it (`lobbywatch --version`).

Read from the installed distribution's metadata, so it is the version pip installed, not a
constant that a release can forget to bump.
"""

from __future__ import annotations

import importlib.metadata
import platform

DISTRIBUTION = "lobbywatch"


def package_version() -> str:
    """The installed lobbywatch's version ("unknown" when run from a tree not installed)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def version_line() -> str:
    """One line for a bug report: `lobbywatch 0.1.0 (Python 3.11.2, Linux x86_64)`."""
    return (
        f"{DISTRIBUTION} {package_version()} (Python {platform.python_version()},"
        f" {platform.system()} {platform.machine()})"
    )
