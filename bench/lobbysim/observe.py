"""What a detector would count: true per-zone counts through misses and false boxes.

Misses grow with the crowd (occlusion): each person present is found with probability
p(n) = max(p_min, p0 - slope * n), so a detector undercounts a full waiting area more than an
empty one, as the real one does (BENCHMARKS.md, the crowd probe). False boxes (a coat on a
chair, a poster) arrive as a Poisson count per frame. Seated people in the waiting area are
missed more often than standing ones: their own p0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from bench.lobbysim.lobby import ZONES


@dataclass(frozen=True)
class NoiseParams:
    p0: float = 0.95  # chance one person alone in a zone is found
    slope: float = 0.008  # less per person present
    p_min: float = 0.6
    false_per_frame: float = 0.05  # mean false boxes per zone per frame
    p0_by_zone: Mapping[str, float] = field(default_factory=lambda: {"waiting": 0.9})

    def detect_p(self, zone: str, n: int) -> float:
        return max(self.p_min, self.p0_by_zone.get(zone, self.p0) - self.slope * n)


class Detector:
    """Per-frame noisy counts; its own random stream, so noise never shifts the customers."""

    def __init__(self, params: NoiseParams, rng: np.random.Generator) -> None:
        self.params = params
        self._rng = rng

    def observe(self, true: Mapping[str, int]) -> dict[str, int]:
        n = np.array([true[z] for z in ZONES])
        p = np.array([self.params.detect_p(z, int(k)) for z, k in zip(ZONES, n, strict=True)])
        seen = self._rng.binomial(n, p) + self._rng.poisson(self.params.false_per_frame, len(n))
        return {z: int(k) for z, k in zip(ZONES, seen, strict=True)}
