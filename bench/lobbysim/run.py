"""One simulated day, frame by frame, with controllers and estimators plugged in.

The interface other slices plug into: each frame, a Controller sees the time and the noisy
per-zone counts (what the counting stage would hand on) and may act on the lobby (start a pass);
an Estimator sees the same and returns a number (a wait estimate, a forecast) that is recorded
per frame beside the truth, e.g. DayResult.wait_if_arriving for a wait estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bench.lobbysim.lobby import ZONES, Customer, Lobby, LobbyParams, draw_customers
from bench.lobbysim.observe import Detector, NoiseParams

Array = npt.NDArray[np.float64]


class Controller(Protocol):
    def on_frame(self, t: float, observed: Mapping[str, int], lobby: Lobby) -> None: ...


class Estimator(Protocol):
    def on_frame(self, t: float, observed: Mapping[str, int]) -> float | None: ...


@dataclass
class DayResult:
    """t: frame times (s since opening). true, observed: (frames, zones) counts, columns ZONES."""

    t: Array
    true: npt.NDArray[np.int64]
    observed: npt.NDArray[np.int64]
    customers: list[Customer]
    passes: list[tuple[float, float, int]]
    estimates: dict[str, Array] = field(default_factory=dict)
    #: Per frame, who is in which zone: (customer id, zone) pairs (with record_tracks). The hook
    #: for scripted tracks: a tracker test can place each id in its zone's polygon and box it.
    tracks: list[list[tuple[int, str]]] | None = None

    def zone(self, name: str, *, observed: bool = False) -> npt.NDArray[np.int64]:
        return (self.observed if observed else self.true)[:, ZONES.index(name)]

    def waits(self) -> Array:
        """True waits (s) of everyone who was served."""
        return np.array([c.wait for c in self.customers if c.wait is not None], dtype=np.float64)

    def wait_if_arriving(self, times: Array) -> Array:
        """The true wait (s) of a counter customer taking a ticket at each time: the wait of the
        next one who did (NaN after the last), the quantity a wait estimate is judged against."""
        served = sorted(
            (c.ticket_at, c.wait)
            for c in self.customers
            if c.ticket_at is not None and c.wait is not None and not c.diverted
        )
        tickets = np.array([s[0] for s in served])
        waits = np.array([s[1] for s in served] + [np.nan])
        return np.asarray(waits[np.searchsorted(tickets, times)], dtype=np.float64)

    def summary(self) -> dict[str, float]:
        w = self.waits() / 60.0
        line = self.zone("waiting") + self.zone("queue")
        return {
            "customers": float(len(self.customers)),
            "mean_wait_min": float(w.mean()) if len(w) else 0.0,
            "p90_wait_min": float(np.quantile(w, 0.9)) if len(w) else 0.0,
            "longest_queue": float(line.max()) if len(line) else 0.0,
            "passes": float(len(self.passes)),
            "moved": float(sum(m for _, _, m in self.passes)),
        }


def run_day(
    seed: int,
    params: LobbyParams | None = None,
    noise: NoiseParams | None = None,
    *,
    fps: float = 1.0,
    controllers: Sequence[Controller] = (),
    estimators: Mapping[str, Estimator] | None = None,
    overtime_s: float = 3 * 3600.0,
    record_tracks: bool = False,
) -> DayResult:
    """Simulate one day of `seed` until the last customer leaves (at most overtime_s after
    closing). The customers depend on the seed only, never on fps, noise or controllers."""
    params = params or LobbyParams()
    customer_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    lobby = Lobby(params, draw_customers(params, np.random.default_rng(customer_seed)))
    detector = Detector(noise or NoiseParams(), np.random.default_rng(noise_seed))
    estimators = estimators or {}
    times: list[float] = []
    true: list[list[int]] = []
    seen: list[list[int]] = []
    estimates: dict[str, list[float]] = {name: [] for name in estimators}
    tracks: list[list[tuple[int, str]]] | None = [] if record_tracks else None
    frame = 0
    while True:
        t = frame / fps
        lobby.advance_to(t)
        if (t >= params.open_s and lobby.done) or t > params.open_s + overtime_s:
            break
        counts = lobby.counts()
        observed = detector.observe(counts)
        for controller in controllers:
            controller.on_frame(t, observed, lobby)
        for name, estimator in estimators.items():
            value = estimator.on_frame(t, observed)
            estimates[name].append(np.nan if value is None else value)
        times.append(t)
        true.append([counts[z] for z in ZONES])
        seen.append([observed[z] for z in ZONES])
        if tracks is not None:
            tracks.append([(cid, str(zone)) for cid, zone in lobby.present()])
        frame += 1
    return DayResult(
        t=np.array(times),
        true=np.array(true, dtype=np.int64).reshape(-1, len(ZONES)),
        observed=np.array(seen, dtype=np.int64).reshape(-1, len(ZONES)),
        customers=lobby.customers,
        passes=lobby.passes,
        estimates={k: np.array(v) for k, v in estimates.items()},
        tracks=tracks,
    )
