"""The wait estimate on scripted queues: Little's law, the fallbacks, unknown, online time, the
dwell cross-check, the ticket feed, the cap, and the wait forecast."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from edge.queueing.forecast import CountForecast
from edge.queueing.tickets import TicketBook, TicketEvent
from edge.queueing.wait import WaitEstimate, WaitEstimator, WaitSettings, ahead, forecast_wait

OPENS = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


class Clock:
    """Steady seconds and the matching UTC time, moved by the test."""

    def __init__(self) -> None:
        self.t = 0.0

    def utc(self) -> datetime:
        return OPENS + timedelta(seconds=self.t)


def steady_line(
    est: WaitEstimator,
    minutes: int,
    line: float,
    *,
    departures_per_min: float = 0.0,
    arrivals_per_min: float = 0.0,
    online: bool = True,
    start_s: float = 0.0,
) -> float:
    """Feed `minutes` of one observation a second with departures and arrivals spread evenly;
    returns the time of the last observation."""
    owed_d = owed_a = 0.0
    t = start_s
    for second in range(1, minutes * 60 + 1):
        t = start_s + second
        est.observe(t, line if online else None, 1.0 if online else 0.0)
        owed_d += departures_per_min / 60.0
        owed_a += arrivals_per_min / 60.0
        if owed_d >= 1.0:
            est.departure(t)
            owed_d -= 1.0
        if owed_a >= 1.0:
            est.arrival(t)
            owed_a -= 1.0
    return t


def test_littles_law_on_a_steady_queue_of_ten_served_one_a_minute():
    est = WaitEstimator()
    now = steady_line(est, 20, 10.0, departures_per_min=1.0)
    w = est.estimate(now)
    assert w.method == "departures" and w.confidence == "high"
    assert w.throughput_per_min == pytest.approx(1.0, rel=0.05)
    # Ten ahead plus the service that must end to free a counter: 11 minutes.
    assert w.wait_s == pytest.approx(ahead(10.0) * 60.0, rel=0.05)
    assert w.wait_s == pytest.approx(11 * 60.0, rel=0.05)
    assert w.low_s is not None and w.high_s is not None
    assert w.low_s < w.wait_s < w.high_s
    assert w.reason == ""


def test_without_departures_littles_law_on_arrivals_gives_a_low_confidence_figure():
    est = WaitEstimator()
    now = steady_line(est, 20, 10.0, arrivals_per_min=2.0)
    w = est.estimate(now)
    assert w.method == "arrivals" and w.confidence == "low"
    assert w.throughput_per_min is None
    assert w.arrivals_per_min == pytest.approx(2.0, rel=0.05)
    assert w.wait_s == pytest.approx(5 * 60.0, rel=0.05)  # L = lambda W: 10 / 2 per minute


def test_unknown_while_the_line_count_is_unknown_and_before_any_count():
    est = WaitEstimator()
    first = est.estimate(0.0)
    assert first.wait_s is None and first.confidence == "unknown" and first.reason
    now = steady_line(est, 20, 10.0, departures_per_min=1.0)
    est.observe(now + 1, None, 0.0)  # the camera goes down
    w = est.estimate(now + 1)
    assert not w.known and w.confidence == "unknown" and w.method == "none"
    assert "offline" in w.reason
    assert w.throughput_per_min is not None  # the flows are still reported


def test_too_few_departures_arrivals_and_visits_is_unknown_with_the_counts_in_the_reason():
    est = WaitEstimator()
    est.observe(1.0, 6.0, 1.0)
    est.departure(1.0)
    w = est.estimate(1.0)
    assert not w.known and "departures (1)" in w.reason and w.line_count == 6.0


def test_an_empty_line_waits_zero():
    est = WaitEstimator()
    now = steady_line(est, 5, 0.0)
    w = est.estimate(now)
    assert w.wait_s == 0.0 and w.confidence == "high"


def test_throughput_is_over_the_online_minutes_so_an_outage_does_not_halve_it():
    est = WaitEstimator()
    # 10 minutes online serving 1 a minute, then 10 minutes with the camera down (no tracks,
    # so no departures seen), then one frame online again.
    t = steady_line(est, 10, 10.0, departures_per_min=1.0)
    t = steady_line(est, 10, 10.0, online=False, start_s=t)
    est.observe(t + 1, 10.0, 1.0)
    w = est.estimate(t + 1)
    # About 1 (10 departures over the 9.5 minutes the line stood past its first 30 s), not 0.5.
    assert w.throughput_per_min == pytest.approx(1.0, rel=0.06)
    assert w.wait_s == pytest.approx(ahead(10.0) / w.throughput_per_min * 60.0)


def test_departures_older_than_the_window_are_forgotten():
    est = WaitEstimator(WaitSettings(window_s=600.0))
    t = steady_line(est, 10, 10.0, departures_per_min=3.0)
    t = steady_line(est, 10, 10.0, departures_per_min=1.0, start_s=t)
    w = est.estimate(t)
    assert w.throughput_per_min == pytest.approx(1.0, rel=0.1)
    assert len(est._departures) <= 10  # bounded by the window, not the day


def test_a_dwell_that_disagrees_with_the_estimate_lowers_confidence_and_says_so():
    agree, disagree = WaitEstimator(), WaitEstimator()
    for est, dwell in ((agree, 600.0), (disagree, 120.0)):
        now = steady_line(est, 20, 10.0, departures_per_min=1.0)
        for k in range(5):
            est.line_visit(now - 60.0 * k, dwell)
    a, d = agree.estimate(now), disagree.estimate(now)
    assert a.confidence == "high" and a.reason == "" and a.dwell_p50_s == 600.0
    assert d.confidence == "medium" and d.wait_s == a.wait_s
    assert a.wait_s is not None and 600 < a.wait_s < 700
    assert "2.0 min" in d.reason and f"{a.wait_s / 60:.1f} min" in d.reason


def test_finished_visits_alone_give_a_low_confidence_dwell_figure():
    est = WaitEstimator()
    now = steady_line(est, 5, 4.0)
    for k, dwell in enumerate((200.0, 300.0, 400.0)):
        est.line_visit(now - k, dwell)
    w = est.estimate(now)
    assert w.method == "dwell" and w.confidence == "low" and w.wait_s == 300.0


def test_the_estimate_is_capped_and_the_reason_says_so():
    est = WaitEstimator(WaitSettings(max_wait_s=1800.0))
    now = steady_line(est, 20, 60.0, departures_per_min=0.2)  # 4 departures in 20 min
    w = est.estimate(now)
    assert w.wait_s == 1800.0 and w.high_s == 1800.0 and "capped at 30.0 min" in w.reason


def issued(ticket: str, at: datetime) -> TicketEvent:
    return TicketEvent(kind="issued", ticket=ticket, at=at)


def called(ticket: str, at: datetime) -> TicketEvent:
    return TicketEvent(kind="called", ticket=ticket, at=at, counter="1")


def test_a_live_ticket_feed_is_exact_and_wins_over_the_camera():
    clock = Clock()
    est = WaitEstimator(wall_clock=clock.utc)
    book = TicketBook()
    est.tickets(book)
    for k in range(20):  # a ticket a minute, each called two minutes later... for 20 minutes
        book.apply(issued(f"A{k:03}", OPENS + timedelta(minutes=k)))
    for k in range(10):
        book.apply(called(f"A{k:03}", OPENS + timedelta(minutes=2 * k + 1)))
    clock.t = now = steady_line(est, 20, 3.0, departures_per_min=1.0)
    w = est.estimate(now)
    assert w.method == "tickets" and w.confidence == "exact"
    assert w.line_count == 10.0  # tickets waiting, not the camera's 3
    # Calls every 2 minutes while tickets waited (the first 30 s of the line left out).
    assert w.throughput_per_min == pytest.approx(0.5, rel=0.05)
    assert w.wait_s == pytest.approx(ahead(10.0) / w.throughput_per_min * 60.0)


def test_a_silent_or_thin_ticket_feed_falls_back_to_the_camera():
    clock = Clock()
    est = WaitEstimator(wall_clock=clock.utc)
    book = TicketBook()
    est.tickets(book)
    book.apply(issued("A001", OPENS))
    book.apply(called("A001", OPENS + timedelta(minutes=1)))
    clock.t = now = steady_line(est, 20, 10.0, departures_per_min=1.0)
    assert est.estimate(now).method == "departures"  # one call: too few
    for k in range(2, 6):
        book.apply(called(f"A{k:03}", OPENS + timedelta(minutes=k)))
    assert est.estimate(now).method == "departures"  # silent for 15 minutes: stale
    book.apply(called("A009", OPENS + timedelta(minutes=19)))
    assert est.estimate(now).method == "tickets"


def test_the_ticket_path_stands_without_the_camera():
    clock = Clock()
    est = WaitEstimator(wall_clock=clock.utc)
    book = TicketBook()
    est.tickets(book)
    for k in range(5):
        book.apply(issued(f"A{k}", OPENS + timedelta(minutes=k)))
        book.apply(called(f"A{k}", OPENS + timedelta(minutes=k, seconds=30)))
    clock.t = 300.0
    est.observe(300.0, None, 0.0)
    w = est.estimate(300.0)
    assert w.method == "tickets" and w.wait_s == 0.0  # nobody waiting


def count_forecast(point: float | None, low: float | None, high: float | None) -> CountForecast:
    return CountForecast(900, 0, 900, 0.8, point=point, low=low, high=high)


def known(throughput: float | None, arrivals: float | None) -> WaitEstimate:
    return WaitEstimate(300.0, 200.0, 400.0, "high", "departures", 5.0, throughput, arrivals, None)


def test_forecast_wait_is_the_forecast_count_over_the_current_throughput():
    f = forecast_wait(count_forecast(9.0, 6.0, 14.0), known(2.0, 3.0))
    assert f.horizon_s == 900 and f.reason == ""
    assert f.wait_s == pytest.approx(ahead(9.0) / 2.0 * 60.0)
    assert f.low_s == pytest.approx(ahead(6.0) / 2.0 * 60.0)
    assert f.high_s == pytest.approx(ahead(14.0) / 2.0 * 60.0)
    assert (f.count, f.count_low, f.count_high) == (9.0, 6.0, 14.0)


def test_forecast_wait_falls_back_to_the_arrival_rate_then_to_unknown():
    by_arrivals = forecast_wait(count_forecast(9.0, 6.0, 14.0), known(None, 3.0), 1800)
    assert by_arrivals.horizon_s == 1800 and by_arrivals.wait_s == pytest.approx(180.0)
    none = forecast_wait(count_forecast(9.0, 6.0, 14.0), known(None, None))
    assert none.wait_s is None and none.count == 9.0 and "no throughput" in none.reason
    unknown_count = CountForecast(900, 0, 900, 0.8, reason="history too short")
    f = forecast_wait(unknown_count, known(2.0, 3.0))
    assert f.wait_s is None and f.count is None and f.reason == "history too short"


def test_people_at_counters_over_the_mean_service_time_give_the_rate():
    est = WaitEstimator()
    t = 0.0
    for k in range(1, 11):  # ten services of 230 s, two counters busy, 10 s walks between
        t = float(k * 120)
        est.observe(t, 10.0, 120.0, serving=2.0)
        est.departure(t, service_s=230.0)
    w = est.estimate(t)
    assert w.method == "departures" and w.confidence == "high"
    assert w.throughput_per_min == pytest.approx(2 / 230 * 60)  # 2 counters / 230 s
    # Equal services (cv 0): half a service left of those in progress, then 10 more.
    assert ahead(10.0, cv=0.0) == 10.5
    assert w.wait_s == pytest.approx(10.5 * 230.0 / 2)
    assert w.low_s is not None and w.high_s is not None and w.low_s < w.wait_s < w.high_s


def test_a_closed_counter_shows_within_two_minutes_through_the_people_at_counters():
    est = WaitEstimator()
    for k in range(1, 11):
        est.observe(float(k * 60), 10.0, 60.0, serving=3.0)
        est.departure(float(k * 60), service_s=180.0)
    before = est.estimate(600.0)
    est.observe(610.0, 10.0, 10.0, serving=2.0)  # a counter between customers: still 3 in use
    assert est.estimate(610.0).wait_s == before.wait_s
    for t in range(611, 731):  # one counter has closed: 2 at counters for two minutes
        est.observe(float(t), 10.0, 1.0, serving=2.0)
    after = est.estimate(730.0)
    assert before.wait_s is not None
    assert after.wait_s == pytest.approx(before.wait_s * 3 / 2)


def test_departures_while_the_line_was_empty_do_not_slow_the_rate():
    """Counters idle half the window serve fewer: their departures are not what the counters
    can do. Only those while a line stood count, over the minutes it stood."""
    est = WaitEstimator()
    t = steady_line(est, 10, 0.0, departures_per_min=0.5)  # quiet: served as they come
    t = steady_line(est, 10, 6.0, departures_per_min=1.5, start_s=t)  # a line: counters flat out
    w = est.estimate(t)
    assert w.throughput_per_min == pytest.approx(1.5, rel=0.1)  # not (5 + 15) / 20 = 1.0


def test_a_ticket_feed_with_serves_uses_the_counters_busy_and_their_service_time():
    clock = Clock()
    est = WaitEstimator(wall_clock=clock.utc)
    book = TicketBook()
    est.tickets(book)
    for k in range(12):
        book.apply(issued(f"A{k:02}", OPENS))
    for k in range(5):  # counters 1 and 2 serve 5 tickets of 5 minutes each
        at = OPENS + timedelta(minutes=5 * k)
        for c, ticket in ((1, 2 * k), (2, 2 * k + 1)):
            book.apply(TicketEvent(kind="called", ticket=f"A{ticket:02}", at=at, counter=str(c)))
            done = TicketEvent(kind="served", ticket=f"A{ticket:02}", at=at + timedelta(minutes=5))
            if k < 4:
                book.apply(done)
    clock.t = 20 * 60.0
    assert book.in_service() == 2 and book.waiting() == 2
    w = est.estimate(clock.t)
    assert w.method == "tickets" and w.confidence == "exact"
    assert w.throughput_per_min == pytest.approx(2 / 5)
    assert w.wait_s == pytest.approx(ahead(2.0, cv=0.0) * 300.0 / 2)


def test_a_service_split_by_an_id_switch_is_one_departure_and_short_visits_none():
    est = WaitEstimator()
    for k in range(3):
        t0 = 400.0 * k
        est.observe(t0 + 300.0, 5.0, 300.0, serving=1.0)
        est.departure(t0 + 100.0, service_s=100.0)  # the id switches at 100 s...
        est.departure(t0 + 300.0, service_s=198.0)  # ...and the new one is found 2 s later
        est.departure(t0 + 390.0, service_s=5.0)  # a passer-by
    w = est.estimate(1100.0)
    assert len(est._departures) == 3 and list(est._services) == [300.0] * 3
    assert w.throughput_per_min == pytest.approx(60 / 300)


def test_a_customer_sitting_down_at_another_counter_as_one_leaves_is_not_an_id_switch():
    # Two counters, 240 s services; at counter 2 a customer sits down 1 s after counter 1's
    # customer left. Different zones: two services, not one of 481 s (that made the mean
    # service half as long again and the rate two thirds of what it is).
    est = WaitEstimator()
    for k in range(5):
        t0 = 500.0 * k
        est.observe(t0 + 240.0, 6.0, 240.0, serving=2.0)
        est.departure(t0 + 240.0, service_s=240.0, zone="counter-1")
        est.observe(t0 + 481.0, 6.0, 241.0, serving=2.0)
        est.departure(t0 + 481.0, service_s=240.0, zone="counter-2")
    assert list(est._services) == [240.0] * 10
    w = est.estimate(2481.0)
    assert w.throughput_per_min == pytest.approx(2 / 4)


def test_forecast_wait_is_capped_where_the_site_caps_the_wait():
    # a near-stopped line: the site's max_wait_s caps its forecast as it caps the wait now
    f = forecast_wait(count_forecast(90.0, 60.0, 140.0), known(0.1, None), max_wait_s=3600.0)
    assert (f.wait_s, f.low_s, f.high_s) == (3600.0, 3600.0, 3600.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_forecast_count_that_is_not_finite_is_unknown_never_nan_in_json(bad):
    point = forecast_wait(count_forecast(bad, 6.0, 14.0), known(2.0, 3.0))
    assert (point.wait_s, point.low_s, point.high_s, point.count) == (None, None, None, None)
    assert point.reason
    edge = forecast_wait(count_forecast(9.0, 6.0, bad), known(2.0, 3.0))
    assert edge.wait_s == pytest.approx(ahead(9.0) / 2.0 * 60.0)
    assert edge.high_s is None and edge.count_high is None
    nan_rate = forecast_wait(count_forecast(9.0, 6.0, 14.0), known(bad, None))
    assert nan_rate.wait_s is None


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_line_count_that_is_not_finite_is_unknown_not_a_capped_wait(bad):
    # min(cap, nan) is the cap: a NaN count must not read as a 3-hour wait (and raise)
    est = WaitEstimator()
    for k in range(1, 13):
        est.observe(k * 100.0, 6.0, 100.0, serving=1.0)
        est.departure(k * 100.0, service_s=90.0)
    assert est.estimate(1200.0).wait_s == pytest.approx(ahead(6.0, 0.0) * 90.0)
    est.observe(1300.0, bad, 100.0, serving=1.0)
    w = est.estimate(1300.0)
    assert w.wait_s is None and w.confidence == "unknown" and w.line_count is None
    est.observe(1301.0, 6.0, 1.0, serving=bad)  # the counters' count: unknown, not NaN
    w = est.estimate(1301.0)
    assert w.wait_s is not None and math.isfinite(w.wait_s) and w.wait_s < 3600.0
    assert w.throughput_per_min is not None and math.isfinite(w.throughput_per_min)


def test_no_forecast_wait_while_the_line_count_is_unknown():
    # the line's camera is down: the rate in the window is from before it went down, and a
    # forecast_wait rule must not raise on it; the count forecast (from the history) stays
    down = WaitEstimate(
        None, None, None, "unknown", "none", None, 2.0, 3.0, None,
        "the line's cameras are offline",
    )  # fmt: skip
    f = forecast_wait(count_forecast(9.0, 6.0, 14.0), down)
    assert (f.wait_s, f.low_s, f.high_s) == (None, None, None)
    assert (f.count, f.count_low, f.count_high) == (9.0, 6.0, 14.0)
    assert "offline" in f.reason
