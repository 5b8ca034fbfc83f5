"""What the lobby simulator's tests share."""

from __future__ import annotations

from bench.lobbysim.lobby import LobbyParams

#: Two hours at the lunchtime rate, two counters then three: a short day that builds a queue.
SHORT = LobbyParams(
    open_s=2 * 3600.0,
    profile=((0.0, 0.8), (2.0, 0.8)),
    staff=((0.0, 2), (3600.0, 3)),
    surges_per_day=0.0,
)
