"""One detector pool for all cameras: each detector lent to one thread at a time, the cameras
served first come first served, and the service's cameras sharing one pool (issue 14)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import edge.pipeline as pipeline
import edge.service as service
from edge.config import DetectorConfig, parse_config
from edge.detect.pool import DetectorPool
from edge.types import Detections

IMAGE = np.zeros((8, 8, 3), np.uint8)


def wait_until(condition, what: str) -> None:
    done = threading.Event()
    for _ in range(2000):
        if condition():
            return
        done.wait(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class Gate:
    """A detector that holds each call until released, and records who it served."""

    provider = "fake"

    def __init__(self, served: list[str]) -> None:
        self.served = served
        self.release = threading.Event()
        self.busy = False

    def detect(self, image: np.ndarray) -> Detections:
        assert not self.busy, "one detector lent to two threads at once"
        self.busy = True
        try:
            self.served.append(threading.current_thread().name)
            self.release.wait(10)
            return Detections.empty()
        finally:
            self.busy = False


def test_a_pool_builds_its_detectors_at_once_and_refuses_no_slots():
    built = []
    pool = DetectorPool(lambda: built.append(1) or Gate([]), 3)
    assert len(built) == 3 and pool.slots == 3 and pool.provider == "fake"
    with pytest.raises(ValueError, match="at least one slot"):
        DetectorPool(lambda: Gate([]), 0)


def test_cameras_waiting_for_the_one_detector_are_served_in_the_order_they_asked():
    served: list[str] = []
    detector = Gate(served)
    pool = DetectorPool(lambda: detector, 1)
    threads = [threading.Thread(target=pool.detect, args=(IMAGE,), name=n) for n in "ABCD"]
    threads[0].start()
    wait_until(lambda: served == ["A"], "A to hold the detector")
    for k, thread in enumerate(threads[1:], start=1):
        thread.start()
        wait_until(lambda k=k: pool.waiting == k, f"{k} calls in line")
    detector.release.set()
    for thread in threads:
        thread.join(10)
    assert served == ["A", "B", "C", "D"]
    assert pool.waiting == 0


def test_two_slots_serve_two_cameras_at_once_never_one_detector_twice():
    served: list[str] = []
    detectors = [Gate(served), Gate(served)]
    pool = DetectorPool(iter(detectors).__next__, 2)
    threads = [threading.Thread(target=pool.detect, args=(IMAGE,), name=n) for n in "ABC"]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(served) == 2 and pool.waiting == 1, "two served, one in line")
    for detector in detectors:
        detector.release.set()
    for thread in threads:
        thread.join(10)
    assert sorted(served) == ["A", "B", "C"]


def test_the_wait_for_a_slot_is_measured_per_thread():
    served: list[str] = []
    detector = Gate(served)
    pool = DetectorPool(lambda: detector, 1)
    waits: dict[str, float] = {}

    def call() -> None:
        pool.detect(IMAGE)
        waits[threading.current_thread().name] = pool.waited_s()

    first = threading.Thread(target=call, name="first")
    first.start()
    wait_until(lambda: served == ["first"], "the first call to hold the detector")
    second = threading.Thread(target=call, name="second")
    second.start()
    wait_until(lambda: pool.waiting == 1, "the second call in line")
    detector.release.set()
    first.join(10)
    second.join(10)
    assert waits["second"] > 0 and waits["second"] > waits["first"]
    assert pool.waited_s() == 0.0  # this thread never called


@pytest.mark.parametrize(("slots", "cameras", "cores", "built"), [(0, 4, 2, 2), (0, 1, 8, 1), (0, 6, 16, 6), (3, 4, 2, 3)])  # fmt: skip
def test_the_pool_has_a_detector_per_core_or_camera_unless_the_config_says(
    monkeypatch, slots, cameras, cores, built
):
    made: list[int] = []
    monkeypatch.setattr(pipeline, "box_cores", lambda: cores)
    monkeypatch.setattr(
        pipeline,
        "build_detector",
        lambda config, cache_dir, cameras: made.append(cameras) or Gate([]),
    )
    pool = pipeline.build_pool(DetectorConfig(slots=slots), cameras=cameras)
    assert pool.slots == built
    assert made == [built] * built  # each sized (threads: 0) for `built` detectors at once


def test_the_service_s_cameras_share_one_pool(monkeypatch, tmp_path):
    text = """\
site: {id: s1}
cameras:
  - {id: a, source: a.mp4, zones: [{id: za, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}]}
  - {id: b, source: b.mp4, zones: [{id: zb, role: waiting, polygon: [[0, 0], [1, 0], [1, 1]]}]}
mqtt: {enabled: false}
api: {enabled: false}
"""
    config = parse_config(text, base_dir=tmp_path, environ={})
    made: list[int] = []
    monkeypatch.setattr(
        service, "build_pool", lambda config, cache_dir, cameras: made.append(cameras) or Gate([])
    )
    one = service.Service(config)
    assert one._detector_factory() is one._detector_factory()
    assert made == [2]  # built once, for both cameras
