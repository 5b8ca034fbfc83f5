"""One set of detectors for all of a box's cameras, lent out in the order the cameras asked.

Each camera used to build its own detector: every model loaded once per camera (about 60 MiB a
camera for the default pair, BENCHMARKS.md Capacity), and as many inferences at once as there
were cameras, on a box with fewer cores than that. The pool builds `slots` detectors (as many
as the box runs at once to good effect: its cores, or fewer cameras) and lends one to each
camera thread that asks, first come first served. Under overload every camera waits its turn
in one line, so each gets one frame through per round and the rate is shared out evenly,
instead of by whichever thread the scheduler happens to favour.

A detector reuses its input buffers, so one is never lent to two threads at once. Tiles and
cameras are not batched: the models have a static batch of 1.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from edge.detect.settings import Detector
from edge.types import Detections


class DetectorPool:
    """A Detector that runs each call on one of `slots` detectors built by `factory`."""

    def __init__(self, factory: Callable[[], Detector], slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a detector pool needs at least one slot, got {slots}")
        # Built now, not on first use: loading models (a TensorRT engine) can take minutes.
        self._detectors = tuple(factory() for _ in range(slots))
        self._free = list(self._detectors)
        self._line: deque[object] = deque()  # one ticket per waiting call, first come first
        self._cond = threading.Condition()
        self._local = threading.local()

    @property
    def slots(self) -> int:
        return len(self._detectors)

    @property
    def waiting(self) -> int:
        """Calls in line for a detector now."""
        with self._cond:
            return len(self._line)

    @property
    def provider(self) -> str:
        return self._detectors[0].provider

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        asked = time.perf_counter()
        detector = self._take()
        self._local.waited_s = time.perf_counter() - asked
        try:
            return detector.detect(image)
        finally:
            self._give_back(detector)

    def waited_s(self) -> float:
        """Seconds the calling thread's last detect() waited for a free detector."""
        waited: float = getattr(self._local, "waited_s", 0.0)
        return waited

    def _take(self) -> Detector:
        ticket = object()
        with self._cond:
            self._line.append(ticket)
            self._cond.wait_for(lambda: self._line[0] is ticket and bool(self._free))
            self._line.popleft()
            detector = self._free.pop()
            self._cond.notify_all()  # the next in line may take another free detector
            return detector

    def _give_back(self, detector: Detector) -> None:
        with self._cond:
            self._free.append(detector)
            self._cond.notify_all()
