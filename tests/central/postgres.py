"""A real PostgreSQL for the central tests (docs/central.md, "Central store").

Debian's PostgreSQL binaries (initdb, pg_ctl; found on PATH or under /usr/lib/postgresql/*/bin),
a cluster initialised in a fresh temporary directory, listening on a free loopback port with
its unix socket in that directory, trust authentication for the test superuser. initdb and
the server refuse to run as root, and CI runs as root: then they run as the `postgres` user
(created if missing) through runuser, and the directory is handed to that user. The data
directory lives outside pytest's tmp_path because that path (/tmp/pytest-of-root, mode 0700)
cannot be entered by another user.

stop() and restart() keep the same data directory and port, so a restart shows what survives.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mqtt_broker import free_port

SUPERUSER = "lobbywatch"
SERVICE_USER = "postgres"


def find_binary(name: str) -> str | None:
    """The newest Debian build of `name` (/usr/lib/postgresql/<major>/bin), else PATH's."""
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return candidates[-1] if candidates else shutil.which(name)


def _service_user() -> str | None:
    """The user to run the server as: None when not root, else `postgres` (created if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SERVICE_USER


class Postgres:
    """One PostgreSQL cluster in its own directory; `dsn` names its `postgres` database."""

    def __init__(self, initdb: str, pg_ctl: str) -> None:
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.user = _service_user()
        self.root = Path(tempfile.mkdtemp(prefix="lobbywatch-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                self.initdb,
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # a test cluster: durability across a crash of the OS is not tested
            ]
        )

    def _run(self, argv: list[str]) -> None:
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{argv} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}"
            )

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def start(self) -> Postgres:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off -c full_page_writes=off"  # committed data still survives a server restart
        )
        self._run(
            [
                self.pg_ctl,
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "30",
                "-o",
                options,
                "start",
            ]
        )
        return self

    def stop(self) -> None:
        """A clean (fast) shutdown: running transactions are rolled back, committed ones kept."""
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One cluster for the session (initdb takes a second or two); tests use fresh databases."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = Postgres(initdb, pg_ctl).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_dsn(postgres_server: Postgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """The DSN of an empty database of this test's own, dropped afterwards."""
    import psycopg

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.dsn(name)
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
