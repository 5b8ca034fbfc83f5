"""The usual day for a weekday (GET /v1/reports/usual-day) and the CSVs the dashboard offers:
over a real store, through the real app."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.schemas import UsualDayOut
from tests.test_api_support import (
    Clock,
    auth,
    client_for,
    insert_alert,
    site_config,
    write_history,
)

BERLIN = ZoneInfo("Europe/Berlin")
#: A Monday, 10:00 in Berlin; the 8 Mondays before it are the usual one's.
NOW = datetime(2024, 7, 1, 10, 0, tzinfo=BERLIN)
SLOT_ROWS = 90  # 10 s intervals in a quarter hour


def monday(weeks_before: int) -> date:
    return NOW.date() - timedelta(days=7 * weeks_before)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN)


@pytest.fixture
def client(tmp_path):
    config = site_config(tmp_path)
    holiday = monday(8)  # its 100 people must not count: a holiday is not a usual Monday
    schedule = config.alerts.schedule.model_copy(update={"holidays": [holiday]})
    alerts = config.alerts.model_copy(update={"schedule": schedule})
    client = client_for(config.model_copy(update={"alerts": alerts}), Clock(NOW))
    store = client.app.state.lobbywatch.store.store()
    for weeks_before, people in zip(range(1, 9), [1, 2, 3, 4, 5, 6, 7, 100], strict=True):
        write_history(store, "waiting", at(monday(weeks_before), 9), [float(people)] * SLOT_ROWS)
    for weeks_before in (1, 2):  # 10:00 seen on two Mondays only
        write_history(store, "waiting", at(monday(weeks_before), 10), [3.0] * SLOT_ROWS)
    write_history(store, "waiting", at(NOW.date(), 9), [50.0] * SLOT_ROWS)  # today's own
    return client


def usual(client, **params):
    response = client.get("/v1/reports/usual-day", params=params, headers=auth("viewer"))
    assert response.status_code == 200, response.text
    return response


def slots_of(document: UsualDayOut, zone: str) -> dict[str, tuple[float | None, int]]:
    (found,) = [z for z in document.zones if z.zone_id == zone]
    return {s.time: (s.median, s.weeks) for s in found.slots}


def test_the_usual_day_is_the_median_of_past_same_weekdays_without_holidays_or_today(client):
    got = UsualDayOut.model_validate(usual(client, zone="waiting").json())
    assert (got.weekday, got.day, got.weeks, got.timezone) == (
        "mon",
        NOW.date(),
        8,
        "Europe/Berlin",
    )
    slots = slots_of(got, "waiting")
    assert len(slots) == 96 and next(iter(slots)) == "00:00"
    assert slots["09:00"] == (4.0, 7)  # median of 1..7: the holiday's 100, today's 50 left out
    assert slots["10:00"] == (None, 2)  # two Mondays are too few: unknown, not 0
    assert slots["03:00"] == (None, 0)


def test_another_weekday_is_the_usual_of_its_next_day(client):
    got = UsualDayOut.model_validate(usual(client, weekday="tue").json())
    assert (got.weekday, got.day) == ("tue", NOW.date() + timedelta(days=1))
    assert [z.zone_id for z in got.zones] == ["waiting", "queue", "entrance"]
    assert slots_of(got, "waiting")["09:00"] == (None, 0)  # nothing was seen on Tuesdays


@pytest.mark.parametrize(
    ("params", "fragment"), [({"weekday": "monday"}, "weekday"), ({"zone": "hall"}, "hall")]
)
def test_a_bad_weekday_or_zone_is_refused_naming_it(client, params, fragment):
    response = client.get("/v1/reports/usual-day", params=params, headers=auth("viewer"))
    assert response.status_code == 422 and fragment in response.text


def test_the_usual_day_needs_a_key(client):
    assert client.get("/v1/reports/usual-day").status_code == 401


def csv_rows(response) -> list[dict[str, str]]:
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for UTF-8
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_the_usual_day_as_csv(client):
    rows = csv_rows(usual(client, zone="waiting", format="csv"))
    nine = next(r for r in rows if r["time"] == "09:00")
    assert nine == {"zone_id": "waiting", "weekday": "mon", "time": "09:00", "median": "4.0",
                    "weeks": "7"}  # fmt: skip
    assert next(r for r in rows if r["time"] == "10:00")["median"] == ""


def test_history_csv_is_in_site_time_rounded_and_opens_as_utf8(client):
    store = client.app.state.lobbywatch.store.store()
    write_history(store, "queue", at(NOW.date(), 8), [1.0, 2.0, 2.0] + [None] * 87)
    response = client.get(
        "/v1/occupancy/history",
        params={"zone": "queue", "bucket": "15m", "format": "csv",
                "start": at(NOW.date(), 8).isoformat(), "end": at(NOW.date(), 8, 15).isoformat()},
        headers=auth("viewer"),
    )  # fmt: skip
    (row,) = csv_rows(response)
    assert (row["start"], row["end"]) == ("2024-07-01 08:00:00", "2024-07-01 08:15:00")
    assert row["mean"] == "1.67"  # 5/3, rounded
    assert response.content.endswith(b"\r\n")


def test_a_chinese_zone_name_survives_the_alert_csv(client):
    store = client.app.state.lobbywatch.store.store()
    insert_alert(store, "a1", NOW.astimezone(BERLIN) - timedelta(minutes=30))
    store.record_ack("a1", "王经理", "accepted", NOW - timedelta(minutes=28))
    response = client.get("/v1/alerts", params={"format": "csv"}, headers=auth("viewer"))
    (row,) = csv_rows(response)
    assert row["acknowledged_by"] == "王经理"
    assert (row["raised_at"], row["seconds_to_ack"]) == ("2024-07-01 09:30:00", "120.0")


def test_the_busiest_hours_as_csv_by_local_weekday_and_hour(client):
    response = client.get(
        "/v1/reports/busiest-hours",
        params={"zone": "waiting", "format": "csv", "start": at(monday(1), 0).isoformat(),
                "end": at(monday(1), 0).replace(day=monday(1).day + 1).isoformat()},
        headers=auth("viewer"),
    )  # fmt: skip
    rows = csv_rows(response)
    nine = next(r for r in rows if r["hour"] == "9")
    assert (nine["weekday"], nine["mean"], nine["coverage"]) == ("mon", "1.0", "0.25")
    assert next(r for r in rows if r["hour"] == "3")["mean"] == ""  # not seen: empty, not 0
