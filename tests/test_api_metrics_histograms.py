"""Issue 15's metrics: alerts raised, build info, and the pipeline's histograms (detector time
per camera, alert latency from decision to PUBACK), counted in the service, carried in the
device state file and served by the API's /metrics as Prometheus histograms."""

from __future__ import annotations

import importlib.metadata
import platform
import queue
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from paho.mqtt.enums import MQTTErrorCode
from prometheus_client.parser import text_string_to_metric_families

from edge.alerts.outbox import OutboxPublisher
from edge.runtime.device_state import SIZE, StateFile, read_state, state_path
from edge.runtime.histogram import (
    ALERT_LATENCY_BOUNDS,
    DETECTOR_SECONDS_BOUNDS,
    Histogram,
    HistogramCounts,
)
from edge.service import CameraWorker, Service
from edge.store import OutboxMessage, Store
from tests.test_alerts import Rig, feed
from tests.test_api_support import T0, Clock, auth, client_for, insert_alert, site_config
from tests.test_service import make_config
from tests.test_service_overload import FakeClock, ScriptedCamera, ScriptedPipeline, Step
from tests.waiting import wait_for

NOW = T0 + timedelta(hours=10)


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def histogram_of(family: Any, **labels: str) -> tuple[list[tuple[float, float]], float, float]:
    """(le, cumulative count) pairs, sum, count of one labelled histogram in a parsed family."""
    samples = [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]
    buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]
    (total,) = [s.value for s in samples if s.name.endswith("_sum")]
    (count,) = [s.value for s in samples if s.name.endswith("_count")]
    return buckets, total, count


# --- the histogram itself ---------------------------------------------------------------------


def test_observations_fall_in_the_first_bucket_at_or_above_them_and_read_cumulatively():
    histogram = Histogram((0.01, 0.1, 1.0))
    for value in (0.0, 0.01, 0.010001, 0.1, 0.5, 1.0, 3.0, 9.0):
        histogram.observe(value)
    counts = histogram.counts()
    assert counts.buckets == (2, 4, 6)  # le=0.01 holds 0 and 0.01 itself (Prometheus' le)
    assert counts.count == 8 and counts.sum == pytest.approx(13.620001)
    assert HistogramCounts.from_json(counts.as_json()) == counts


@pytest.mark.parametrize("bounds", [(), (0.1, 0.1), (0.2, 0.1), (0.0, 1.0), (1.0, float("inf"))])
def test_bounds_must_be_positive_finite_and_strictly_ascending(bounds):
    with pytest.raises(ValueError, match="bound"):
        Histogram(bounds)


@pytest.mark.parametrize("value", [-0.001, float("nan"), float("inf")])
def test_a_value_no_duration_can_have_is_refused(value):
    histogram = Histogram((1.0,))
    with pytest.raises(ValueError, match="cannot observe"):
        histogram.observe(value)
    assert histogram.counts().count == 0


GOOD = {"le": [0.1, 1.0], "buckets": [1, 3], "count": 4, "sum": 5.5}


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {k: v for k, v in GOOD.items() if k != "sum"},
        GOOD | {"buckets": [3, 1]},  # not cumulative
        GOOD | {"count": 2},  # fewer in +Inf than at le=1
        GOOD | {"buckets": [1]},  # a bucket short
        GOOD | {"buckets": [1.5, 3]},
        GOOD | {"count": True},
        GOOD | {"le": [1.0, 0.1]},
        GOOD | {"sum": -1},
        GOOD | {"le": "0.1"},
    ],
)
def test_a_malformed_histogram_in_the_state_file_is_read_as_none(data):
    assert HistogramCounts.from_json(GOOD) == HistogramCounts((0.1, 1.0), (1, 3), 4, 5.5)
    assert HistogramCounts.from_json(data) is None


# --- where the service counts ----------------------------------------------------------------


class TimedPipeline(ScriptedPipeline):
    """The detector on every other frame, taking 4 ms, 30 ms, 700 ms or 3 s in turn."""

    TIMES = (0.004, 0.03, 0.7, 3.0)

    def process(self, frame: Any, now: float) -> Any:
        result = super().process(frame, now)
        ran = frame.index % 2 == 0
        took = self.TIMES[(frame.index // 2) % len(self.TIMES)] if ran else 0.0
        return type(result)(result.occupancy, result.raw, took, ran)


def run_worker(tmp_path, frames: int) -> CameraWorker:
    config = make_config(tmp_path, fps=2)
    clock = FakeClock()
    camera = ScriptedCamera([Step() for _ in range(frames)], clock)
    store = Store(config.storage.path, site_id=config.site.id)
    worker = CameraWorker(
        config.cameras[0], camera, TimedPipeline(lambda _index: True), store, 1,
        clock=clock, wall_clock=lambda: T0 + timedelta(seconds=clock.now),
    )  # fmt: skip
    camera.worker = worker
    worker.start()
    worker.join(10)
    store.close()
    assert not worker.alive and worker.error is None
    return worker


def test_the_worker_counts_the_detector_time_of_the_frames_it_ran_on_only(tmp_path):
    worker = run_worker(tmp_path, frames=16)  # frames 1..16: the detector on the 8 even ones
    counts = worker.detector_seconds.counts()
    assert counts.bounds == DETECTOR_SECONDS_BOUNDS
    assert counts.count == 8  # the 8 reused detections took no detector time and are not in it
    assert counts.sum == pytest.approx(2 * (0.004 + 0.03 + 0.7 + 3.0))
    by_bound = dict(zip(counts.bounds, counts.buckets, strict=True))
    assert by_bound[0.005] == 2 and by_bound[0.035] == 4 and by_bound[1.0] == 6
    assert by_bound[2.0] == 6  # the two 3 s frames are only in +Inf


class FakeLink:
    """What the outbox publisher uses of MqttLink: publish() hands out mids, `acked` is filled
    by the test as paho's thread fills it on each PUBACK (mid, ok, monotonic time)."""

    def __init__(self) -> None:
        self.acked: queue.SimpleQueue[tuple[int, bool, float]] = queue.SimpleQueue()
        self.published: list[str] = []

    def publish(self, topic: str, payload: str, qos: int, expiry_s: int | None) -> Any:
        self.published.append(topic)
        return SimpleNamespace(rc=MQTTErrorCode.MQTT_ERR_SUCCESS, mid=len(self.published))


def test_alert_latency_runs_from_the_decision_to_the_puback_of_the_messages_made_here(tmp_path):
    store = Store(tmp_path / "lw.db", site_id="branch-1")
    messages = [OutboxMessage(f"a1:{i}", "t", "{}", 1, NOW) for i in range(4)]
    store.enqueue(messages)
    link, clock = FakeLink(), FakeClock(100.0)
    # a1:3 was made before a restart: no monotonic birth, so no latency to count
    born = {"a1:0": 100.0, "a1:1": 100.0, "a1:2": 99.0}
    outbox = OutboxPublisher(store, link, lambda: NOW, clock=clock, born=born)  # type: ignore[arg-type]
    assert outbox.pump() == 4
    link.acked.put((1, True, 100.003))
    link.acked.put((2, True, 100.4))
    link.acked.put((3, False, 100.01))  # refused by the broker's ACL: not delivered
    link.acked.put((4, True, 100.02))
    link.acked.put((99, True, 100.02))  # a retained state message, not the outbox's
    outbox.pump()
    counts = outbox.latency.counts()
    assert counts.bounds == ALERT_LATENCY_BOUNDS
    assert counts.count == 2 and counts.sum == pytest.approx(0.403)
    by_bound = dict(zip(counts.bounds, counts.buckets, strict=True))
    assert by_bound[0.0025] == 0 and by_bound[0.005] == 1 and by_bound[0.25] == 1
    assert by_bound[0.5] == 2
    assert store.unsent_count() == 0  # and every PUBACK was recorded as before
    store.close()


# --- through the state file to /metrics, from a running service's parts ------------------------


def test_a_real_puback_and_real_frames_reach_metrics_as_consistent_histograms(tmp_path, broker):
    """A camera worker's frames and a notifier's alert on a real Mosquitto, the service's
    snapshot in the state file, and the API's /metrics read by Prometheus' own parser."""
    worker = run_worker(tmp_path / "camera", frames=16)
    (tmp_path / "device").mkdir()
    rig = Rig(tmp_path / "device", broker).start()
    try:
        feed(rig.board, 15)
        wait_for(lambda: rig.alerts_of("raised"), what="raised alert")
        wait_for(lambda: rig.store.unsent_count() == 0, what="outbox acknowledged")
        assert rig.notifier.outbox is not None
        wait_for(lambda: rig.notifier.outbox.latency.counts().count >= 1, what="latency counted")
        service = Service(rig.config)
        service.workers = [worker]
        snapshot = service.snapshot(rig.store, rig.notifier)
    finally:
        rig.stop()
    sent = snapshot["histograms"]["alert_latency_seconds"]["count"]

    (tmp_path / "api").mkdir()
    config = site_config(tmp_path / "api")
    client = client_for(config, Clock(NOW))
    state = StateFile(state_path(config.storage.path))
    try:
        assert state.write(snapshot | {"at": NOW.isoformat()})
        response = client.get("/metrics", headers=auth("viewer"))
    finally:
        state.close()
    assert response.status_code == 200
    # what the notifier said while connected with nothing left to deliver
    assert "lobbywatch_broker_connected 1.0" in response.text
    assert "lobbywatch_outbox_backlog 0.0" in response.text
    metrics = families(response.text)
    assert metrics["lobbywatch_detector_seconds"].type == "histogram"
    buckets, total, count = histogram_of(
        metrics["lobbywatch_detector_seconds"], camera=worker.camera_id
    )
    assert [le for le, _ in buckets] == [*DETECTOR_SECONDS_BOUNDS, float("inf")]
    assert count == 8 and total == pytest.approx(2 * (0.004 + 0.03 + 0.7 + 3.0))
    assert_cumulative(buckets, count)
    assert metrics["lobbywatch_alert_latency_seconds"].type == "histogram"
    buckets, total, count = histogram_of(metrics["lobbywatch_alert_latency_seconds"])
    assert [le for le, _ in buckets] == [*ALERT_LATENCY_BOUNDS, float("inf")]
    assert count == sent >= 1 and total >= 0
    assert_cumulative(buckets, count)


def assert_cumulative(buckets: list[tuple[float, float]], count: float) -> None:
    values = [n for _, n in buckets]
    assert values == sorted(values) and values[-1] == count


def test_without_a_running_pipeline_the_histograms_are_absent_not_zero(tmp_path):
    client = client_for(site_config(tmp_path), Clock(NOW))
    text = client.get("/metrics", headers=auth("viewer")).text
    assert "lobbywatch_detector_seconds_bucket" not in text
    assert "lobbywatch_alert_latency_seconds_count" not in text


def test_a_malformed_histogram_is_left_out_and_the_rest_served(tmp_path):
    config = site_config(tmp_path)
    client = client_for(config, Clock(NOW))
    good = Histogram(DETECTOR_SECONDS_BOUNDS)
    good.observe(0.02)
    snapshot = {
        "pid": 1, "at": NOW.isoformat(), "running": True, "store": {"writable": True},
        "broker": {"state": "connected"}, "outbox": {"backlog": 0, "expired": 0},
        "histograms": {
            "detector_seconds": {"lobby": good.counts().as_json(), "door": {"le": [1]}},
            "alert_latency_seconds": {"le": [0.1], "buckets": [5], "count": 2, "sum": 1.0},
        },
    }  # fmt: skip
    state = StateFile(state_path(config.storage.path))
    try:
        assert state.write(snapshot)
        text = client.get("/metrics", headers=auth("viewer")).text
    finally:
        state.close()
    assert 'lobbywatch_detector_seconds_count{camera="lobby"} 1.0' in text
    detector = families(text)["lobbywatch_detector_seconds"]
    assert {s.labels["camera"] for s in detector.samples} == {"lobby"}  # door's is malformed
    assert "lobbywatch_alert_latency_seconds_count" not in text
    assert "lobbywatch_broker_connected 1.0" in text


def test_histograms_of_64_cameras_keep_the_state_file_under_its_size(tmp_path):
    """The file is preallocated at SIZE; a snapshot over it loses its cameras (truncated)."""
    config = site_config(tmp_path)
    workers = []
    for i in range(64):
        histogram = Histogram(DETECTOR_SECONDS_BOUNDS)
        for j, bound in enumerate(DETECTOR_SECONDS_BOUNDS):
            for _ in range(j + 1):
                histogram.observe(bound * 0.9)
        histogram.observe(123.456789)
        workers.append(SimpleNamespace(camera_id=f"camera-{i:02d}", detector_seconds=histogram))
    histograms = {
        "detector_seconds": {w.camera_id: w.detector_seconds.counts().as_json() for w in workers},
        "alert_latency_seconds": Histogram(ALERT_LATENCY_BOUNDS).counts().as_json(),
    }
    cameras = {
        w.camera_id: {"status": "online", "fps": 1.95, "target_fps": 2.0, "dropped_share": 0.125,
                      "detector_share": 0.333, "overloaded": True}
        for w in workers
    }  # fmt: skip
    snapshot = {"pid": 1, "at": NOW.isoformat(), "running": True, "store": {"writable": True},
                "cameras": cameras, "histograms": histograms}  # fmt: skip
    state = StateFile(state_path(config.storage.path))
    try:
        assert state.write(snapshot)
    finally:
        state.close()
    back = read_state(state_path(config.storage.path), NOW)
    assert back is not None and "truncated" not in back.data
    assert len(back.section("histograms")["detector_seconds"]) == 64
    assert SIZE == 64 * 1024


# --- alerts raised and build info -----------------------------------------------------------


def test_alerts_raised_count_every_alert_by_kind_and_rule_and_do_not_fall_when_they_clear(
    tmp_path,
):
    config = site_config(tmp_path)
    client = client_for(config, Clock(NOW))
    store = client.app.state.lobbywatch.store.store()
    insert_alert(store, "a1", NOW - timedelta(hours=2))
    insert_alert(store, "a2", NOW - timedelta(hours=1))
    insert_alert(store, "c1", NOW, kind="camera")

    def raised() -> dict[tuple[str, str], float]:
        text = client.get("/metrics", headers=auth("viewer")).text
        family = families(text)["lobbywatch_alerts_raised"]
        assert family.type == "counter"
        return {(s.labels["kind"], s.labels["rule"]): s.value for s in family.samples
                if s.name == "lobbywatch_alerts_raised_total"}  # fmt: skip

    assert raised() == {("diversion", "waiting-full"): 2.0, ("camera", "waiting-full"): 1.0}
    store.clear_alert("a1", NOW, 3.0, [])
    text = client.get("/metrics", headers=auth("viewer")).text
    assert 'lobbywatch_alerts{kind="diversion",status="cleared"} 1.0' in text
    assert raised() == {("diversion", "waiting-full"): 2.0, ("camera", "waiting-full"): 1.0}


def test_build_info_names_the_version_python_and_detector_models(tmp_path):
    config = site_config(tmp_path)
    client = client_for(config, Clock(NOW))
    family = families(client.get("/metrics", headers=auth("viewer")).text)["lobbywatch_build_info"]
    fusion = config.detector.fusion.models
    (sample,) = family.samples
    assert sample.value == 1.0
    assert sample.labels == {
        "version": importlib.metadata.version("lobbywatch"),
        "python": platform.python_version(),
        "detector": "+".join([config.detector.model, *(m.model for m in fusion)]),
    }
    assert fusion and fusion[0].model in sample.labels["detector"]  # the default fuses two
