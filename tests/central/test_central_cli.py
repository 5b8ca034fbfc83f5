"""`lobbywatch central ...` as IT runs it: real processes on a real NATS cluster and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import psycopg

from central.ingest import subjects
from central.simulate import Branch, encode
from tests.central.nats_cluster import NatsCluster, nats_cluster
from tests.central.postgres import postgres_dsn, postgres_server
from tests.waiting import wait_for

__all__ = ["nats_cluster", "postgres_dsn", "postgres_server"]  # fixtures, imported for pytest

DAY = Branch("branch-cli").interval


def lobbywatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "central", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


def write_config(path: Path, dsn: str, servers: list[str]) -> Path:
    path.write_text(
        "database: {dsn: '${CENTRAL_TEST_DSN}'}\n"
        f"broker: {{servers: {json.dumps(servers)}, stream: LOBBYWATCH_CLI, consumer: cli}}\n"
        "ingest: {status_interval_s: 1}\n"
    )
    return path


def test_migrate_then_a_bad_config_says_what_is_wrong(tmp_path: Path, postgres_dsn: str) -> None:
    config = write_config(tmp_path / "central.yaml", postgres_dsn, ["nats://127.0.0.1:1"])
    done = lobbywatch("migrate", "--config", str(config), env={"CENTRAL_TEST_DSN": postgres_dsn})
    assert done.returncode == 0, done.stderr
    assert "schema version 2" in done.stdout
    done = lobbywatch("migrate", "--config", str(config), env={"CENTRAL_TEST_DSN": postgres_dsn})
    assert "applied nothing" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("database: {dsn: x}\nbroker: {servers: []}\n")
    done = lobbywatch("migrate", "--config", str(bad))
    assert done.returncode == 1
    assert "broker.servers" in done.stderr and "Traceback" not in done.stderr
    done = lobbywatch("migrate", env={"LOBBYWATCH_CENTRAL_CONFIG": str(tmp_path / "none.yaml")})
    assert done.returncode == 1 and "cannot read file" in done.stderr


def test_ingest_stores_what_a_branch_sent_and_stops_on_sigterm(
    tmp_path: Path, postgres_dsn: str, nats_cluster: NatsCluster
) -> None:
    from datetime import datetime, timezone

    nats_cluster.drop_streams()
    config = write_config(tmp_path / "central.yaml", postgres_dsn, nats_cluster.urls)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "central", "ingest", "--config", str(config)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "CENTRAL_TEST_DSN": postgres_dsn},
    )  # fmt: skip
    message = DAY(datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc))

    async def publish() -> None:
        nc = await nats.connect(servers=nats_cluster.urls)
        js = nc.jetstream()

        async def ready() -> bool:
            try:
                await js.stream_info("LOBBYWATCH_CLI")
                return True
            except Exception:
                return False

        for _ in range(300):
            if await ready():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the ingestion made no stream within 30 s")
        for _ in range(100):  # the new stream's leader may take a moment to answer
            try:
                await js.publish("lobbywatch.branch-cli.history.intervals", encode(message))
                break
            except nats.errors.Error:
                await asyncio.sleep(0.1)
        await nc.close()

    try:
        try:
            asyncio.run(publish())
        except AssertionError:
            proc.kill()
            raise AssertionError(proc.communicate(timeout=10)[1]) from None

        def stored() -> int:
            with psycopg.connect(postgres_dsn) as conn:
                if conn.execute("SELECT to_regclass('occupancy_intervals')").fetchone() == (None,):
                    return 0
                row = conn.execute("SELECT count(*) FROM occupancy_intervals").fetchone()
                return int(row[0]) if row else 0

        wait_for(lambda: stored() == 3, 30, "the branch's bucket stored")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "consuming LOBBYWATCH_CLI as cli" in err
    assert subjects("lobbywatch")[0] in err or "created stream" in err or "consuming" in err
