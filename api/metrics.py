"""Prometheus metrics, read from the store at scrape time.

A custom collector rather than gauges set in the background: the pipeline may run in another
process, so the store is the only place the numbers are, and reading it when Prometheus asks
keeps them exactly as fresh as the store. Each app has its own registry (no global state).

An unknown zone count is left out of `lobbywatch_zone_occupancy` rather than exported as NaN
(NaN poisons sum() and averages); `lobbywatch_zone_occupancy_known` says which zones are known.

The histograms (detector time per camera, alert latency) are counted by the pipeline since it
started and read from its device state file (edge/runtime/histogram.py has the bucket bounds
and why); they are real Prometheus histograms, so histogram_quantile() works on them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from api.db import StoreAccess, StoreUnavailable
from api.live import camera_states, zone_states
from api.schemas import AlertStatus
from edge.config import LobbyConfig
from edge.runtime.device_state import read_state, state_path
from edge.runtime.histogram import HistogramCounts
from edge.store import ALERT_STATUS_SQL
from edge.version import package_version

CAMERA_STATES = ("online", "stale", "offline", "unknown")
ALERT_STATUSES: tuple[AlertStatus, ...] = ("open", "acknowledged", "pass_done", "cleared")
DELIVERY_STATES = ("waiting", "rate_limited", "sent", "failed", "expired")


def detector_models(config: LobbyConfig) -> str:
    """The detector's model and its fusion partners, as the service's start line names them."""
    return "+".join([config.detector.model, *(m.model for m in config.detector.fusion.models)])


class StoreCollector(Collector):
    def __init__(
        self,
        config: LobbyConfig,
        store: StoreAccess,
        clock: Callable[[], datetime],
        failed_auth: Callable[[], int],
        snapshot_views: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.failed_auth = failed_auth
        self.snapshot_views = snapshot_views

    def collect(self) -> Iterator[Metric]:
        store = self.store.store()
        now = self.clock()
        fps = GaugeMetricFamily(
            "lobbywatch_camera_fps", "Frames processed per second", labels=["camera"]
        )
        infer = GaugeMetricFamily(
            "lobbywatch_camera_inference_seconds",
            "Detector time of the latest frame, seconds",
            labels=["camera"],
        )
        status = GaugeMetricFamily(
            "lobbywatch_camera_status",
            "1 for the camera's current status (unknown: the pipeline's report is stale)",
            labels=["camera", "status"],
        )
        for camera in camera_states(self.config, store, now):
            for state in CAMERA_STATES:
                status.add_metric([camera.camera_id, state], 1.0 if camera.status == state else 0.0)
            if camera.fps is not None:
                fps.add_metric([camera.camera_id], camera.fps)
            if camera.inference_ms is not None:
                infer.add_metric([camera.camera_id], camera.inference_ms / 1000.0)
        yield from (fps, infer, status)
        yield self._build_info()
        yield from self._zones(now)
        yield from self._alerts()
        yield from self._deliveries()
        yield from self._device(now)
        yield CounterMetricFamily(
            "lobbywatch_api_failed_auth",
            "Requests refused for a wrong key since the API started",
            value=self.failed_auth(),
        )
        views = CounterMetricFamily(
            "lobbywatch_snapshot_views",
            "Times an admin looked at a camera's frame or its boxes since the API started",
            labels=["camera"],
        )
        for camera_id, seen in sorted(self.snapshot_views().items()):
            views.add_metric([camera_id], seen)
        yield views

    def _build_info(self) -> Metric:
        info = GaugeMetricFamily(
            "lobbywatch_build_info",
            "Always 1: the API's lobbywatch version, its Python, and the detector models configured",
            labels=["version", "python", "detector"],
        )
        info.add_metric(
            [package_version(), platform.python_version(), detector_models(self.config)], 1.0
        )
        return info

    def _zones(self, now: datetime) -> Iterator[Metric]:
        occupancy = GaugeMetricFamily(
            "lobbywatch_zone_occupancy",
            "People in the zone now (smoothed); absent while unknown",
            labels=["zone", "camera", "role"],
        )
        known = GaugeMetricFamily(
            "lobbywatch_zone_occupancy_known",
            "1 when the zone's count is known, 0 when unknown (camera down or data stale)",
            labels=["zone", "camera", "role"],
        )
        for zone in zone_states(self.config, self.store.store(), now):
            labels = [zone.zone_id, zone.camera_id, zone.role]
            known.add_metric(labels, 0.0 if zone.count is None else 1.0)
            if zone.count is not None:
                occupancy.add_metric(labels, zone.count)
        yield from (occupancy, known)

    def _alerts(self) -> Iterator[Metric]:
        alerts = GaugeMetricFamily(
            "lobbywatch_alerts",
            "Alerts in the store by kind and current status",
            labels=["kind", "status"],
        )
        with self.store.read() as db:
            rows = db.execute(
                f"SELECT kind, {ALERT_STATUS_SQL}, COUNT(*) FROM alerts GROUP BY 1, 2"
            ).fetchall()
        counts = {(str(kind), str(state)): int(n) for kind, state, n in rows}
        kinds = sorted({kind for kind, _ in counts} | {"diversion", "camera"})
        for kind in kinds:
            for state in ALERT_STATUSES:
                alerts.add_metric([kind, state], float(counts.get((kind, state), 0)))
        yield alerts
        raised = CounterMetricFamily(
            "lobbywatch_alerts_raised",
            "Alerts raised, by kind and rule, counted in the store's alerts table (alerts are "
            "never purged, so it only falls when the store is replaced)",
            labels=["kind", "rule"],
        )
        with self.store.read() as db:
            rows = db.execute("SELECT kind, rule, COUNT(*) FROM alerts GROUP BY 1, 2").fetchall()
        for kind, rule, n in sorted(rows):
            raised.add_metric([str(kind), str(rule)], float(n))
        yield raised

    def _deliveries(self) -> Iterator[Metric]:
        """Deliveries to the bank's channels in the store, by channel and state."""
        deliveries = GaugeMetricFamily(
            "lobbywatch_channel_deliveries",
            "Alert deliveries to the bank's channels in the store, by channel and state",
            labels=["channel", "state"],
        )
        try:
            with self.store.read() as db:
                rows = db.execute(
                    "SELECT channel, state, COUNT(*) FROM deliveries GROUP BY 1, 2"
                ).fetchall()
        except StoreUnavailable:
            rows = []  # a store from before the channels: none yet
        counts = {(str(channel), str(state)): int(n) for channel, state, n in rows}
        for c in self.config.alerts.channels:
            for state in DELIVERY_STATES:
                deliveries.add_metric([c.id, state], float(counts.get((c.id, state), 0)))
        yield deliveries

    def _device(self, now: datetime) -> Iterator[Metric]:
        """From the running pipeline's state file: absent (not 0) while it is not running."""
        device = read_state(state_path(self.store.path), now)
        running = device is not None and device.current
        yield GaugeMetricFamily(
            "lobbywatch_pipeline_running",
            "1 while the counting pipeline runs and reports its state",
            value=1.0 if running else 0.0,
        )
        if device is None or not running:
            return
        store, broker = device.section("store"), device.section("broker")
        outbox = device.section("outbox")
        yield GaugeMetricFamily(
            "lobbywatch_store_writable",
            "1 while the store takes the pipeline's writes, 0 while it refuses them (disk full)",
            value=1.0 if store.get("writable", True) else 0.0,
        )
        unsaved = GaugeMetricFamily(
            "lobbywatch_store_unsaved",
            "What the pipeline keeps in memory while the store refuses writes",
            labels=["kind"],
        )
        unsaved.add_metric(["history_rows"], float(store.get("unsaved_history_rows", 0)))
        unsaved.add_metric(["alert_writes"], float(store.get("unsaved_alert_writes", 0)))
        yield unsaved
        if broker:
            yield GaugeMetricFamily(
                "lobbywatch_broker_connected",
                "1 while the pipeline is connected to the MQTT broker",
                value=1.0 if broker.get("state") == "connected" else 0.0,
            )
        yield GaugeMetricFamily(
            "lobbywatch_outbox_backlog",
            "Alert messages the broker has not acknowledged yet",
            value=float(outbox.get("backlog", 0)),
        )
        yield from self._camera_rates(device.section("cameras"))
        yield from _histograms(device.section("histograms"))
        channels = device.section("channels")
        if channels:
            up = GaugeMetricFamily(
                "lobbywatch_channel_up",
                "1 while the channel's last delivery attempt succeeded (or none failed yet)",
                labels=["channel", "kind"],
            )
            for channel_id, channel in channels.items():
                kind = str(channel.get("kind")) if isinstance(channel, dict) else "?"
                ok = isinstance(channel, dict) and channel.get("state") == "ok"
                up.add_metric([channel_id, kind], 1.0 if ok else 0.0)
            yield up
        yield CounterMetricFamily(
            "lobbywatch_outbox_expired",
            "Alert messages given up (expired before the broker took them) since the pipeline started",
            value=float(outbox.get("expired", 0)),
        )

    def _camera_rates(self, cameras: dict[str, Any]) -> Iterator[Metric]:
        """What each camera is asked for and what the device could not keep up with, as the
        pipeline reports it over its last 30 s; a share without frames to take it of is absent."""
        families = {
            "target_fps": GaugeMetricFamily(
                "lobbywatch_camera_target_fps",
                "Frames per second the camera is asked for (cameras[].fps)",
                labels=["camera"],
            ),
            "dropped_share": GaugeMetricFamily(
                "lobbywatch_camera_dropped_share",
                "Share of the camera's frames over the last 30 s dropped because the device could "
                "not keep up (0..1; above 0.1 the camera is overloaded)",
                labels=["camera"],
            ),
            "detector_share": GaugeMetricFamily(
                "lobbywatch_camera_detector_share",
                "Share of the frames processed over the last 30 s that the detector ran on (0..1)",
                labels=["camera"],
            ),
        }
        for camera_id, info in cameras.items():
            if not isinstance(info, dict):
                continue
            for key, family in families.items():
                value = info.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    family.add_metric([camera_id], float(value))
        yield from families.values()


def _histograms(section: dict[str, Any]) -> Iterator[Metric]:
    """The pipeline's histograms (cumulative since it started); a malformed one is left out."""
    detector = HistogramMetricFamily(
        "lobbywatch_detector_seconds",
        "Detector time on each frame the detector ran on, seconds, since the pipeline started",
        labels=["camera"],
    )
    cameras = section.get("detector_seconds")
    for camera_id, data in cameras.items() if isinstance(cameras, dict) else ():
        counts = HistogramCounts.from_json(data)
        if counts is not None:
            detector.add_metric([str(camera_id)], _buckets(counts), counts.sum)
    yield detector
    latency = HistogramMetricFamily(
        "lobbywatch_alert_latency_seconds",
        "Seconds from an alert's decision to the broker's PUBACK of its message, since the "
        "pipeline started",
    )
    counts = HistogramCounts.from_json(section.get("alert_latency_seconds"))
    if counts is not None:  # absent with MQTT off
        latency.add_metric([], _buckets(counts), counts.sum)
    yield latency


def _buckets(counts: HistogramCounts) -> list[tuple[str, float]]:
    pairs = [(str(le), float(n)) for le, n in zip(counts.bounds, counts.buckets, strict=True)]
    return [*pairs, ("+Inf", float(counts.count))]


def make_registry(collector: StoreCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
