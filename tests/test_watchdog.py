"""edge.watchdog: sd_notify datagrams on a real unix socket, a no-op without $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import watchdog


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    try:
        yield sock, {"NOTIFY_SOCKET": str(path)}
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (lambda env: watchdog.notify_ready(environ=env), "READY=1"),
        (lambda env: watchdog.notify_ready("2 cameras", environ=env), "READY=1\nSTATUS=2 cameras"),
        (lambda env: watchdog.notify_watchdog(environ=env), "WATCHDOG=1"),
        (lambda env: watchdog.notify_stopping(environ=env), "STOPPING=1"),
        (lambda env: watchdog.notify_status("a\nb", environ=env), "STATUS=a b"),
    ],
)
def test_each_call_sends_one_datagram(listener, send, expected) -> None:  # type: ignore[no-untyped-def]
    sock, env = listener
    assert send(env) is True
    assert sock.recv(4096).decode() == expected


def test_abstract_namespace_socket_is_supported() -> None:
    name = f"lobbywatch-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2.0)
        assert watchdog.notify_watchdog(environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(64) == b"WATCHDOG=1"


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_without_a_usable_socket_every_call_is_a_no_op(value: str | None) -> None:
    env = {} if value is None else {"NOTIFY_SOCKET": value}
    assert watchdog.notify_ready(environ=env) is False
    assert watchdog.notify_watchdog(environ=env) is False


def test_a_socket_that_is_gone_does_not_raise(tmp_path: Path) -> None:
    assert watchdog.notify_watchdog(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_process_environment_is_used_by_default(listener, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sock, env = listener
    monkeypatch.setenv("NOTIFY_SOCKET", env["NOTIFY_SOCKET"])
    assert watchdog.notify_ready() is True
    assert sock.recv(64) == b"READY=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "x"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_sec(env: dict[str, str], expected: float) -> None:
    assert watchdog.watchdog_interval_s(env) == expected
