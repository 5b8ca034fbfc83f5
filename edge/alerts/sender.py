"""Sends channel messages from a process of its own, so that no receiver can hurt the device.

A receiver may never answer, drip its answer a byte at a time, answer with a gigabyte, redirect
elsewhere, or make a library hang. So every send runs in a sender process
(`python -m edge.alerts.sender`) that the delivery worker talks to through its pipes, one JSON
line per job and per answer. Inside it, every HTTP request (apprise's and the webhook's) goes
through one guard: redirects refused, the answer read to at most MAX_RESPONSE_BYTES and within
the job's deadline, and the robot's own error code read (WeCom, DingTalk and Feishu refuse with
HTTP 200 and an `errcode`, which apprise takes for success). Its data segment is capped. An
answer that has not come back by the job's timeout and a grace gets the process killed; the
next job starts another. A hostile receiver costs one timeout, never memory, a thread of the
service or the camera.

Nothing of apprise's is logged (its debug lines quote URLs with their keys): errors come back
as short texts with every part of the channel's secrets taken out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from edge.alerts.channels import (
    DELIVERY_HEADER,
    OFFICIAL_HOSTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    instantiate,
    redact,
    secret_parts,
    sign_webhook,
)
from edge.child import describe_exit
from edge.logsafe import shorten

log = logging.getLogger("lobbywatch.sender")

#: Bytes of a receiver's answer read at most: robots answer with a few dozen.
MAX_RESPONSE_BYTES = 64 * 1024
#: The sender's data segment at most (it needs about 60 MiB).
MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
#: Seconds past a job's timeout before the worker kills a sender that has not answered.
GRACE_S = 5.0
#: Jobs whose thread did not end by their timeout before the sender starts afresh.
MAX_ABANDONED = 3
CONNECT_TIMEOUT_S = 5.0
#: Robot error codes that mean "too many messages": retried after a minute.
RATE_LIMIT_CODES = {
    "wecom": {45009},
    "dingtalk": {130101, 410100},
    "feishu": {9499, 11232},
}


@dataclass(frozen=True)
class Job:
    """One message to one channel; `url` and `webhook_secret` are secrets."""

    id: int
    kind: str
    url: str
    title: str
    body: str
    timeout_s: float
    api_base: str | None = None
    webhook_body: str | None = None
    webhook_secret: str | None = None
    delivery_id: str | None = None

    def __repr__(self) -> str:
        return f"Job({self.id}, {self.kind})"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None
    retry_after_s: float | None = None
    permanent: bool = False  # the receiver refused it for good (a wrong key): retry slowly


# --- the sender process ------------------------------------------------------------------------


class _Refused(Exception):
    """The guard gave up on an answer."""


class _Attempt:
    """What the guard saw of one job's requests (one per job thread)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.deadline = time.monotonic() + job.timeout_s
        self.answers: list[tuple[int, bytes, str | None]] = []  # status, body, Retry-After
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problems.append(text)


_local = threading.local()


def _current() -> _Attempt | None:
    attempt: _Attempt | None = getattr(_local, "attempt", None)
    return attempt


def _install_guard() -> None:
    """Route every request of `requests` through `_guarded_send` (in the sender process only)."""
    import requests.adapters

    original = requests.adapters.HTTPAdapter.send

    def guarded_send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        attempt = _current()
        if attempt is None or args:  # requests passes its options by name
            return original(adapter, request, *args, **kwargs)
        return _guarded_send(original, adapter, request, attempt, kwargs)

    requests.adapters.HTTPAdapter.send = guarded_send  # type: ignore[method-assign,assignment]


def _guarded_send(
    original: Any, adapter: Any, request: Any, attempt: _Attempt, kwargs: dict[str, Any]
) -> Any:
    import requests

    job = attempt.job
    if job.api_base and job.kind in OFFICIAL_HOSTS:
        request.url = _rebase(request.url, OFFICIAL_HOSTS[job.kind], job.api_base)
    if job.kind == "dingtalk":
        request.url = _sign_once(request.url)
    request.headers["Accept-Encoding"] = "identity"  # a compressed answer could be a bomb
    left = attempt.deadline - time.monotonic()
    if left <= 0:
        attempt.problem("took longer than the channel's timeout_s")
        raise requests.Timeout("deadline")
    kwargs = {**kwargs, "stream": True, "timeout": (min(left, CONNECT_TIMEOUT_S), left)}
    try:
        response = original(adapter, request, **kwargs)
    except requests.RequestException as exc:
        attempt.problem(_describe(exc))
        raise
    status = response.status_code
    try:
        if 300 <= status < 400:
            attempt.problem(f"HTTP {status}: redirect refused")
            raise requests.TooManyRedirects("redirect refused")
        body = bytearray()
        for chunk in response.raw.stream(8192, decode_content=False):
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                attempt.problem(f"answer larger than {MAX_RESPONSE_BYTES // 1024} KiB: refused")
                raise requests.ConnectionError("answer too large")
            if time.monotonic() > attempt.deadline:
                attempt.problem("answer slower than the channel's timeout_s: refused")
                raise requests.Timeout("answer too slow")
    except requests.RequestException:
        raise
    except Exception as exc:  # urllib3's read errors, a reset mid-answer
        attempt.problem(_describe(exc))
        raise requests.ConnectionError("answer cut off") from None
    finally:
        response.close()
    response._content = bytes(body)
    response._content_consumed = True
    attempt.answers.append((status, bytes(body), response.headers.get("Retry-After")))
    return response


def _rebase(url: str, official_host: str, api_base: str) -> str:
    """`url` at `api_base` (scheme and host) when it is addressed to the official host."""
    parts = urlsplit(url)
    if parts.hostname != official_host:
        return url
    base = urlsplit(api_base)
    return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))


def _sign_once(url: str) -> str:
    """DingTalk's `sign` %-encoded once. apprise (2.2) quotes the signature and then lets
    requests quote it again; DingTalk decodes once and answers 310000 "sign not match"."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "sign" and "%" in v for k, v in query):
        return url
    fixed = [(k, unquote(v) if k == "sign" else v) for k, v in query]
    return urlunsplit(parts._replace(query=urlencode(fixed)))


def _describe(exc: BaseException) -> str:
    """An exception as a short text: its kind and the innermost reason, not the URL."""
    reason: BaseException = exc
    while reason.__context__ is not None and reason.__context__ is not reason:
        reason = reason.__context__
    text = str(reason.args[-1] if reason.args else reason)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _ProblemHandler(logging.Handler):
    """apprise's warnings, kept as the job's error text, never printed."""

    def emit(self, record: logging.LogRecord) -> None:
        attempt = _current()
        if attempt is not None and record.levelno >= logging.WARNING:
            attempt.problem(record.getMessage())


def _quiet_apprise() -> None:
    logger = logging.getLogger("apprise")
    logger.handlers = [_ProblemHandler()]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def run_job(job: Job) -> Outcome:
    """Send `job` with the guard watching (in the sender process)."""
    attempt = _Attempt(job)
    _local.attempt = attempt
    secrets = secret_parts([job.url] + ([job.webhook_secret] if job.webhook_secret else []))
    try:
        if job.kind == "webhook":
            said_ok = _post_webhook(job)
        else:
            plugin = instantiate(job.url)
            if plugin is None:
                return Outcome(False, "the URL is no longer one apprise can use", permanent=True)
            said_ok = bool(plugin.notify(body=job.body, title=job.title))
        outcome = _judge(job.kind, said_ok, attempt)
    except Exception as exc:
        outcome = Outcome(False, _describe(exc))
    finally:
        _local.attempt = None
    if outcome.error:
        outcome = Outcome(
            outcome.ok,
            shorten(redact(outcome.error, secrets), 300),
            outcome.retry_after_s,
            outcome.permanent,
        )
    return outcome


def _post_webhook(job: Job) -> bool:
    import requests

    assert job.webhook_body is not None and job.webhook_secret is not None
    body = job.webhook_body.encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "lobbywatch",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign_webhook(job.webhook_secret, timestamp, body),
        DELIVERY_HEADER: job.delivery_id or "",
    }
    try:
        with requests.Session() as session:
            response = session.post(
                job.url, data=body, headers=headers, timeout=job.timeout_s, allow_redirects=False
            )
    except requests.RequestException:
        return False
    return 200 <= response.status_code < 300


def _judge(kind: str, said_ok: bool, attempt: _Attempt) -> Outcome:
    """Whether the receiver took the message, from its last answer as the service means it."""
    answer = attempt.answers[-1] if attempt.answers else None
    if answer is not None:
        status, body, retry_after = answer
        if status == 429 or status >= 500:
            wait = _seconds(retry_after) if status == 429 else None
            return Outcome(
                False, f"HTTP {status}", retry_after_s=wait or (60.0 if status == 429 else None)
            )
        if status >= 400:
            return Outcome(False, f"HTTP {status}: {_answer_text(body)}", permanent=status != 408)
        code, message = _robot_code(kind, body)
        if code:
            limited = code in RATE_LIMIT_CODES.get(kind, set())
            return Outcome(
                False,
                f"{kind} refused it: code {code} {message}".rstrip(),
                retry_after_s=60.0 if limited else None,
                permanent=not limited,
            )
    if said_ok and not attempt.problems:
        return Outcome(True)
    if said_ok and answer is not None and 200 <= answer[0] < 300:
        return Outcome(True)
    return Outcome(False, "; ".join(dict.fromkeys(attempt.problems)) or "not delivered")


def _robot_code(kind: str, body: bytes) -> tuple[int, str]:
    """The robot's error code and message (0 when it took the message, or says nothing)."""
    if kind not in ("wecom", "dingtalk", "feishu"):
        return 0, ""
    try:
        data = json.loads(body)
    except ValueError:
        return 0, ""
    if not isinstance(data, dict):
        return 0, ""
    for key, text in (("errcode", "errmsg"), ("code", "msg"), ("StatusCode", "StatusMessage")):
        code = data.get(key)
        if isinstance(code, int) and not isinstance(code, bool):
            return code, str(data.get(text, ""))[:200]
    return 0, ""


def _answer_text(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace").strip() or "(no text)"


def _seconds(value: str | None) -> float | None:
    try:
        return min(max(float(value), 1.0), 3600.0) if value else None
    except ValueError:
        return None


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # not Linux, or a lower hard limit already: the guard still bounds answers


def main() -> int:
    """Answer jobs from stdin until it closes."""
    _limit_memory()
    _quiet_apprise()
    _install_guard()
    import apprise  # noqa: F401  (loaded before the first job, not during it)

    abandoned = 0
    for line in sys.stdin:
        try:
            job = Job(**json.loads(line))
        except (ValueError, TypeError):
            continue
        box: list[Outcome] = []
        thread = threading.Thread(target=lambda j=job, b=box: b.append(run_job(j)), daemon=True)
        thread.start()
        thread.join(job.timeout_s + 1.0)
        if box:
            outcome = box[0]
        else:
            abandoned += 1
            outcome = Outcome(False, f"no answer within {job.timeout_s:g} s")
        sys.stdout.write(json.dumps({"id": job.id, **asdict(outcome)}) + "\n")
        sys.stdout.flush()
        if abandoned >= MAX_ABANDONED:
            return 3  # threads held by hostile receivers: the worker starts a fresh sender
    return 0


# --- the worker's side -------------------------------------------------------------------------


class SenderProcess:
    """The delivery worker's handle on its sender process: one job at a time, started on the
    first job and again after it died or was killed."""

    def __init__(
        self,
        secrets: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
        grace_s: float = GRACE_S,
    ) -> None:
        self._secrets = secret_parts(secrets)
        self._command = list(command or [sys.executable, "-m", "edge.alerts.sender"])
        self._grace = grace_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._closing = threading.Event()
        self.restarts = 0

    def send(self, job: Job) -> Outcome:
        with self._lock:
            if self._closing.is_set():
                return Outcome(False, "not sent: the service is stopping")
            proc = self._ensure()
            assert proc.stdin is not None
            line = json.dumps(asdict(job), ensure_ascii=False).encode() + b"\n"
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except OSError:
                self._kill()
                return Outcome(False, "the sender process had gone: started again")
            deadline = time.monotonic() + job.timeout_s + self._grace
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._kill()
                    return Outcome(False, f"no answer within {job.timeout_s:g} s: sender restarted")
                try:
                    answer = self._lines.get(timeout=left)
                except queue.Empty:
                    continue
                if answer is None:
                    code = proc.wait()
                    self._proc = None
                    if self._closing.is_set():
                        return Outcome(False, "no answer before the service stopped")
                    return Outcome(False, f"the sender process ended ({describe_exit(code)})")
                try:
                    data = json.loads(answer)
                except ValueError:
                    continue
                if not isinstance(data, dict) or data.get("id") != job.id:
                    continue  # the late answer of a job given up on
                return Outcome(
                    ok=bool(data.get("ok")),
                    error=data.get("error"),
                    retry_after_s=data.get("retry_after_s"),
                    permanent=bool(data.get("permanent")),
                )

    def warm(self) -> None:
        """Start the sender process ahead of the first job."""
        with self._lock:
            if not self._closing.is_set():
                self._ensure()

    def close(self) -> None:
        """End the sender process; sends after this one fail at once.

        Without waiting for a send in flight: it holds the lock up to its timeout and the
        grace (65 s for a receiver that never answers), and stopping the service must not. The
        child is killed instead, and the waiting send woken: it returns at once, the delivery
        still waiting (and sent again after the restart: at least once)."""
        self._closing.set()
        if not self._lock.acquire(blocking=False):
            proc, lines = self._proc, self._lines  # the send in flight's: it holds the lock
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError):  # it ended meanwhile
                    proc.kill()
            lines.put(None)  # as the child's end would, without waiting for its pipe
            if not self._lock.acquire(timeout=2.0):
                log.warning("a send did not end when the sender was closed")
                return
        try:
            if self._proc is not None and self._proc.stdin is not None:
                try:
                    self._proc.stdin.close()
                    self._proc.wait(timeout=2.0)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._kill()
        finally:
            self._lock.release()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self.restarts += 1
        self._lines = queue.Queue()
        self._proc = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        lines = self._lines
        threading.Thread(
            target=_read_lines, args=(self._proc.stdout, lines), name="sender-out", daemon=True
        ).start()
        threading.Thread(
            target=self._forward, args=(self._proc.stderr,), name="sender-err", daemon=True
        ).start()
        return self._proc

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def _forward(self, stream: IO[bytes]) -> None:
        """The sender's stderr (a crash's traceback) into this log, secrets taken out."""
        for raw in stream:
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                log.warning("sender: %s", shorten(redact(text, self._secrets), 300))


def _read_lines(stream: IO[bytes], into: queue.Queue[bytes | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


if __name__ == "__main__":
    sys.exit(main())
