"""The API child process is brought back when it dies, with a growing, bounded backoff, and
left down, saying why, when it keeps dying."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import socket
import sys
import time

import pytest

from api.auth import hash_key
from edge.child import ChildProcess, describe_exit, error_line
from tests.test_api_cli import SITE
from tests.test_api_support import KEYS


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def wait_exit(child: ChildProcess) -> None:
    deadline = time.monotonic() + 10
    while child._proc is not None and child._proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_crashing_child_is_restarted_after_a_growing_backoff():
    clock = Clock()
    child = ChildProcess(
        "api",
        [sys.executable, "-c", "raise SystemExit(3)"],
        min_backoff_s=1,
        max_backoff_s=4,
        clock=clock,
    )
    child.start()
    delays = []
    for _ in range(4):
        wait_exit(child)
        child.poll()  # notices the exit, schedules the restart
        started = child.restarts
        waited = 0.0
        while child.restarts == started:
            clock.now += 0.5
            waited += 0.5
            child.poll()
        delays.append(waited)
    assert delays == [1.0, 2.0, 4.0, 4.0]
    child.stop()


def test_stop_terminates_a_running_child():
    child = ChildProcess("api", [sys.executable, "-c", "import time; time.sleep(60)"])
    child.start()
    proc = child._proc
    child.stop(timeout=5)
    assert proc is not None and proc.poll() is not None


# --- giving up loudly -----------------------------------------------------------------------


def run_until_settled(child: ChildProcess, timeout: float = 60.0) -> None:
    """Poll on the real clock until the child is failed (or the time is up)."""
    deadline = time.monotonic() + timeout
    while child.state.phase != "failed" and time.monotonic() < deadline:
        child.poll()
        time.sleep(0.02)


def test_an_api_on_a_taken_port_says_why_and_stops_restarting(tmp_path, caplog):
    """The real `python -m api`, as `lobbywatch run` starts it, on a port something holds."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        site = tmp_path / "site.yaml"
        site.write_text(SITE.format(db=tmp_path / "lw.db", port=port, sha=hash_key(KEYS["admin"])))
        child = ChildProcess(
            "api",
            [sys.executable, "-m", "api", "--config", str(site)],
            min_backoff_s=0.05,
            max_backoff_s=0.1,
            max_failures=3,
            failure_window_s=120,
        )
        with caplog.at_level(logging.INFO, logger="lobbywatch.child"):
            child.start()
            run_until_settled(child)
            state = child.state
            assert state.phase == "failed", state
            assert state.restarts == 2  # three starts, then no more
            for _ in range(10):
                child.poll()
                time.sleep(0.02)
            assert child.state.restarts == 2 and child.state.pid is None
    assert state.last_exit_code not in (None, 0)
    assert state.last_error is not None and "address already in use" in state.last_error
    assert "address already in use" in state.describe() and "failed" in state.describe()
    exits = [r for r in caplog.records if r.levelno == logging.ERROR and "exited" in r.message]
    assert len(exits) == 3
    assert all("address already in use" in r.message for r in exits)
    assert "not restarting" in exits[-1].message
    # The child's own lines come through the log too, its error as an error.
    forwarded = [r for r in caplog.records if r.message.startswith("api| ")]
    assert any("Started server process" in r.message for r in forwarded)
    assert any(r.levelno == logging.ERROR and "Errno" in r.message for r in forwarded)
    child.stop()
    assert child.state.phase == "failed"  # stopping keeps the reason visible


FAIL = [sys.executable, "-c", "import sys; sys.stderr.write('OSError: boom\\n'); sys.exit(3)"]


def test_failures_spread_wider_than_the_window_keep_being_restarted():
    clock = Clock()
    child = ChildProcess(
        "api",
        FAIL,
        min_backoff_s=1,
        max_backoff_s=1,
        max_failures=2,
        failure_window_s=10,
        clock=clock,
    )
    child.start()
    for _ in range(4):
        wait_exit(child)
        clock.now += 11  # the previous failure has left the window
        child.poll()  # notices the exit: the restart waits for the next poll after the backoff
        assert child.state.phase == "restarting", child.state
        clock.now += 1
        child.poll()
        assert child.state.phase == "running"
    assert child.restarts == 4
    child.stop()
    assert child.state.phase == "stopped"


def test_state_follows_the_child_through_exit_restart_and_failure():
    clock = Clock()
    wall = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.timezone.utc)
    child = ChildProcess(
        "api",
        FAIL,
        min_backoff_s=1,
        max_failures=2,
        failure_window_s=60,
        clock=clock,
        wall_clock=lambda: wall + dt.timedelta(seconds=clock.now),
    )
    assert child.state.phase == "stopped"
    clock.now = 5
    child.start()
    running = child.state
    assert (running.phase, running.since, running.last_exit_code) == ("running", 5, None)
    assert running.pid is not None and running.describe().startswith("api: running (pid ")
    wait_exit(child)
    clock.now = 6
    child.poll()
    restarting = child.state
    assert (restarting.phase, restarting.since, restarting.last_exit_code) == ("restarting", 6, 3)
    assert restarting.last_error == "OSError: boom"
    assert restarting.since_utc == wall + dt.timedelta(seconds=6)
    clock.now = 7
    child.poll()
    wait_exit(child)
    child.poll()
    failed = child.state
    assert (failed.phase, failed.restarts, failed.pid) == ("failed", 1, None)
    assert failed.describe() == "api: failed after exit code 3: OSError: boom"
    assert not failed.ok


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], None),
        (["only line"], "only line"),
        (
            [
                "2024-05-01 INFO uvicorn.error: Started server process [7]",
                "2024-05-01 ERROR uvicorn.error: [Errno 98] error while attempting to bind on"
                " address ('127.0.0.1', 8080): address already in use",
                "2024-05-01 INFO uvicorn.error: Application shutdown complete.",
            ],
            "2024-05-01 ERROR uvicorn.error: [Errno 98] error while attempting to bind on"
            " address ('127.0.0.1', 8080): address already in use",
        ),
        (
            ["Traceback (most recent call last):", '  File "x.py"', "ValueError: bad key"],
            "ValueError: bad key",
        ),
        (
            ["site.yaml: 1 error(s) in configuration", "  - api.port: too big"],
            "  - api.port: too big",
        ),
    ],
    ids=["nothing", "one-line", "uvicorn-bind", "traceback", "config-error"],
)
def test_the_error_line_is_the_last_one_naming_a_failure(lines, expected):
    assert error_line(lines) == expected


@pytest.mark.parametrize(
    ("code", "text"),
    [(3, "exit code 3"), (-signal.SIGKILL, "signal SIGKILL"), (None, "no exit")],
)
def test_exits_are_described_by_code_or_signal(code, text):
    assert describe_exit(code) == text
