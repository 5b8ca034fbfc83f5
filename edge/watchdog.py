"""A tiny sd_notify client: tell systemd the service is ready, alive, stopping, or what it does.

systemd passes `$NOTIFY_SOCKET` (a unix datagram socket; a leading `@` is the abstract namespace)
to a `Type=notify` service. Each message is a datagram of `KEY=VALUE` lines. Without the variable
(a developer's shell, a container without systemd) every call is a no-op that returns False, so
the service loop calls these unconditionally. Standard library only: no systemd Python package
on a Jetson or a NUC.

How the service uses it (see deploy/systemd/lobbywatch.service):

- `notify_ready()` once the store is open and the detectors are built (a TensorRT engine build
  can take minutes; `TimeoutStartSec` in the unit allows for it);
- `notify_watchdog()` from the main loop only while the pipeline is healthy (frames flowing).
  When no ping arrives within `WatchdogSec`, systemd kills the service with SIGABRT and
  `Restart=on-failure` starts it again: a hung detector or a wedged capture is restarted rather
  than left reporting stale counts;
- `notify_stopping()` when SIGTERM arrives, `notify_status(text)` for `systemctl status`.

Sending never raises: a watchdog that cannot be fed shows up as a restart, which is what it is for,
and must not take the service down on its own.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def _address(raw: str) -> str | bytes | None:
    """The socket address in `$NOTIFY_SOCKET`: a path, or an abstract name (leading '@')."""
    if not raw:
        return None
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # systemd also allows vsock: addresses (VMs); lobbywatch runs on the host, so ignore them.
    return None


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify datagram (e.g. "READY=1"); True when it was sent.

    A no-op returning False without `$NOTIFY_SOCKET`; a send error is logged at DEBUG and
    returns False.
    """
    env = os.environ if environ is None else environ
    address = _address(env.get(NOTIFY_SOCKET, ""))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify %r failed: %s", message.split("=", 1)[0], exc)
        return False
    return True


def notify_ready(status: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """READY=1: start-up is complete (systemd then starts the units ordered after this one)."""
    return notify(_with_status("READY=1", status), environ)


def notify_watchdog(environ: Mapping[str, str] | None = None) -> bool:
    """WATCHDOG=1: the pipeline is alive. Call at least every `watchdog_interval_s()` seconds."""
    return notify("WATCHDOG=1", environ)


def notify_stopping(status: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """STOPPING=1: a clean stop has begun (no watchdog kill while the last interval is written)."""
    return notify(_with_status("STOPPING=1", status), environ)


def notify_status(text: str, environ: Mapping[str, str] | None = None) -> bool:
    """STATUS=...: one line shown by `systemctl status` (newlines are replaced by spaces)."""
    return notify(_with_status("", text), environ)


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings: half of `WatchdogSec` (as systemd recommends), None when off.

    systemd sets `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, the process meant; a child process that
    inherited the variables must not feed the parent's watchdog).
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return usec / 1e6 / 2.0


def _with_status(head: str, status: str | None) -> str:
    if status is None:
        return head
    line = "STATUS=" + " ".join(status.splitlines())
    return f"{head}\n{line}" if head else line
