"""A discrete-event simulator of a bank branch lobby, for judging lobbywatch (issue #13).

No public footage has ground-truth waits, so the simulator is the yardstick: it makes customers
arrive over a bank day, take tickets, wait, get served at counters or kiosks, and be moved to the
kiosks by a manager's diversion pass; it emits what the counting stage would see (noisy per-zone
counts per frame) and the truth (each customer's times, the true counts per frame).

Not part of the edge runtime. It may import numpy and, in `engine` only, the product (edge/),
whose own board, rules and store it drives with a simulated clock.

    lobby     the model: parameters, customers, the event loop (pure, seeded)
    observe   detection noise: what a detector would count in each zone
    run       one day frame by frame, with controllers (a manager, an estimator) plugged in
    engine    the adapter that feeds the product's OccupancyBoard + AlertService + Store
"""
