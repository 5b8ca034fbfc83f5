"""The API child process is brought back when it dies, with a growing, bounded backoff."""

from __future__ import annotations

import sys
import time

from edge.child import ChildProcess


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
