"""What bench/capacity.py measures beside the cameras (issue #14): how late alerts reach a
subscriber under load, and how the API answers while it is polled.

Alert latency is bench/alert_latency.py's definition, measured on the real service: from the
moment the camera worker hands the deciding frame's counts to the board (the rules are stepped
in that call, in the worker's thread) to the moment a paho subscriber's on_message runs for the
alert. The service's child records each frame's hand-off (CLOCK_MONOTONIC, system-wide on Linux
so the parent's clock too, and the wall time); an alert's payload carries `at`, the wall time its
message was made, inside that hand-off. The deciding hand-off of an alert is therefore the last
one of its rule's camera at or before `at`: the next one only starts after the rules have run.

A site's real rules raise a few times a day; to get a p99 out of a minute, `probe_rules` gives a
camera a ladder of rules that flap by design: one per whole count k (1..PROBE_TOP), raised at k,
cleared at k - 0.5 (clear_at must be below raise_at; counts are medians of whole counts, so
steps of 0.5), no sustain, no cooldown, no escalation, no re-ask. Each move of the camera's
smoothed count by one person raises or clears one rule. The alert engine has no limit of its own
on how often a rule raises; the price is about one open alert per person counted on that camera
(each with its retained state message), more alert traffic than a real site has.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

#: The ladder's top rule: the BRT stills hold up to 64 people, the Mall frames up to 53.
PROBE_TOP = 64

#: What the API poller asks once a second: the live counts, health (no key) and the metrics.
API_ENDPOINTS = ("/v1/occupancy", "/v1/health", "/metrics")


@dataclass(frozen=True)
class Latency:
    """Milliseconds; percentiles by nearest rank below (bench/alert_path.summary's)."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def latency(values_ms: Iterable[float]) -> Latency | None:
    """None for no values: a percentile of nothing is not 0."""
    ordered = sorted(values_ms)
    if not ordered:
        return None

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return Latency(len(ordered), rank(0.5), rank(0.9), rank(0.99), round(ordered[-1], 1))


def format_latency(stats: Latency | None) -> str:
    if stats is None:
        return "none"
    return (
        f"p50 {stats.p50_ms:.1f} ms, p90 {stats.p90_ms:.1f}, p99 {stats.p99_ms:.1f},"
        f" max {stats.max_ms:.1f} (n {stats.count})"
    )


# ----------------------------------------------------------------------------- alert latency


def probe_rules(camera_id: str, zone_id: str, top: int = PROBE_TOP) -> list[dict[str, Any]]:
    """The flapping ladder for one camera's zone (config dicts, as a site's YAML gives them)."""
    return [
        {
            "id": f"{camera_id}-probe-{k}",
            "name": f"Latency probe {k}",
            "zones": [zone_id],
            "raise_at": float(k),
            "clear_at": k - 0.5,
            "raise_after_s": 0,
            "clear_after_s": 0,
            "cooldown_s": 0,
            "escalate_after_s": None,
            "reask_after_s": None,
        }
        for k in range(1, top + 1)
    ]


@dataclass(frozen=True)
class Handoff:
    """A frame's counts handed to the board: camera, monotonic seconds, wall seconds (epoch)."""

    camera: str
    t: float
    wall: float


@dataclass(frozen=True)
class Received:
    """An alert message as the subscriber got it: its payload's `at` (wall seconds, epoch)
    and the monotonic time on_message ran."""

    message_id: str
    kind: str  # raised, cleared, escalated, reasked
    rule: str
    at: float
    t: float


@dataclass
class AlertReport:
    """The alerts of one run: received (the whole run), decided in the window (by frame), the
    ones no frame of their camera could be found for, the latency of those in the window, and
    how many the service made in the window (its outbox) that never reached the subscriber: a
    p99 of the ones that came says nothing of the ones that did not."""

    received: int
    in_window: int
    kinds: dict[str, int]
    unmatched: int
    latency: Latency | None
    missing: int | None = None  # None: the outbox was not read


def parse_alert(payload: bytes, t: float) -> Received | None:
    """An `alerts` message; None for anything else (an empty or foreign payload)."""
    try:
        data = json.loads(payload)
        at = datetime.fromisoformat(str(data["at"]).replace("Z", "+00:00")).timestamp()
        return Received(str(data["message_id"]), str(data["kind"]), str(data["rule"]), at, t)
    except (ValueError, KeyError, TypeError):
        return None


def deciding(
    alert: Received, handoffs: Mapping[str, Sequence[Handoff]], camera_of_rule: Mapping[str, str]
) -> Handoff | None:
    """The hand-off that decided `alert`: its camera's last at or before the payload's `at`.
    handoffs: per camera, in the order they happened (wall time ascending)."""
    mine = handoffs.get(camera_of_rule.get(alert.rule, ""), ())
    walls = [h.wall for h in mine]
    i = bisect.bisect_right(walls, alert.at) - 1
    return mine[i] if i >= 0 else None


def alert_report(
    received: Sequence[Received],
    handoffs: Iterable[Handoff],
    camera_of_rule: Mapping[str, str],
    window: tuple[float, float],
    made: Sequence[Received] | None = None,
) -> AlertReport:
    """Join each alert to its deciding frame; the latency of those decided in `window`
    (monotonic seconds, both ends included). made: the alert messages the service stored (its
    outbox; their `t` unused), to count those decided in the window that never came."""
    by_camera: dict[str, list[Handoff]] = {}
    for h in handoffs:
        by_camera.setdefault(h.camera, []).append(h)
    for mine in by_camera.values():
        mine.sort(key=lambda h: h.wall)
    kinds: dict[str, int] = {}
    unmatched, values = 0, []
    for alert in received:
        frame = deciding(alert, by_camera, camera_of_rule)
        if frame is None:
            unmatched += 1
            continue
        if window[0] <= frame.t <= window[1]:
            kinds[alert.kind] = kinds.get(alert.kind, 0) + 1
            values.append(1000 * (alert.t - frame.t))
    missing = None
    if made is not None:
        came = {a.message_id for a in received}
        missing = 0
        for alert in made:
            frame = deciding(alert, by_camera, camera_of_rule)
            in_window = frame is not None and window[0] <= frame.t <= window[1]
            missing += in_window and alert.message_id not in came
    return AlertReport(len(received), len(values), kinds, unmatched, latency(values), missing)


def stored_alerts(store: Path, topic: str) -> list[Received]:
    """The messages the service put in its outbox for `topic` (read after it stopped)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT payload FROM outbox WHERE topic = ?", (topic,)).fetchall()
    parsed = (parse_alert(str(payload).encode(), float("nan")) for (payload,) in rows)
    return [a for a in parsed if a is not None]


class AlertSubscriber:
    """A handheld's view: a paho client on the site's `alerts` topic (QoS 1, MQTT v5), in the
    parent process, so its CPU is not the service's."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.topic = topic
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._host, self._port = host, port

    def _on_connect(self, client: Any, _u: Any, _f: Any, _rc: Any, _p: Any = None) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        t = time.monotonic()  # first: parsing is the subscriber's, not the path's
        alert = parse_alert(message.payload, t)
        if alert is not None:
            with self._lock:
                self.received.append(alert)

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect (the broker may still be starting) and wait for the subscription."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._client.connect(self._host, self._port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._client.loop_start()
        if not self._subscribed.wait(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"no subscription to {self.topic} within {timeout_s:g} s")

    def stop(self) -> list[Received]:
        self._client.loop_stop()
        self._client.disconnect()
        with self._lock:
            return list(self.received)


# ----------------------------------------------------------------------------- API polling


@dataclass(frozen=True)
class Poll:
    endpoint: str
    ms: float
    status: int | None  # None: no answer (refused, timed out)


@dataclass
class EndpointReport:
    endpoint: str
    polls: int
    errors: int  # anything but 200, and no answer
    statuses: dict[str, int]
    latency: Latency | None  # of every answer, errors included


def endpoint_reports(polls: Iterable[Poll], endpoints: Sequence[str]) -> list[EndpointReport]:
    reports = []
    for endpoint in endpoints:
        mine = [p for p in polls if p.endpoint == endpoint]
        statuses: dict[str, int] = {}
        for p in mine:
            key = "none" if p.status is None else str(p.status)
            statuses[key] = statuses.get(key, 0) + 1
        answered = [p.ms for p in mine if p.status is not None]
        errors = sum(1 for p in mine if p.status != 200)
        reports.append(EndpointReport(endpoint, len(mine), errors, statuses, latency(answered)))
    return reports


@dataclass
class ApiPoller:
    """GETs each endpoint in turn once every `every_s`, as a supervisor's dashboard and a
    Prometheus scrape would; a new connection each time, as they make. Runs in a thread of
    the parent: the client's CPU is not the service's, the API's answer is."""

    base_url: str
    headers: dict[str, str]
    endpoints: Sequence[str] = API_ENDPOINTS
    every_s: float = 1.0
    timeout_s: float = 5.0
    polls: list[Poll] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[Poll]:
        self._stop.set()
        self._thread.join(self.timeout_s * len(self.endpoints) + 1)
        return list(self.polls)

    def _run(self) -> None:
        start = time.monotonic()
        rounds = 0
        while not self._stop.is_set():
            for endpoint in self.endpoints:
                self.polls.append(self.get(endpoint))
            rounds += 1
            self._stop.wait(max(0.0, start + rounds * self.every_s - time.monotonic()))

    def get(self, endpoint: str) -> Poll:
        request = urllib.request.Request(self.base_url + endpoint, headers=self.headers)
        t0 = time.perf_counter()
        status: int | None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                answer.read()
                status = int(answer.status)
        except urllib.error.HTTPError as exc:  # an answer all the same (503 health, 401)
            exc.read()
            status = int(exc.code)
        except (OSError, urllib.error.URLError):
            status = None
        return Poll(endpoint, (time.perf_counter() - t0) * 1000, status)
