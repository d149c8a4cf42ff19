"""Effective dates: recurrence on their own calendar across leap years (jdatetime), the
upcoming window, the announcing job (once per occurrence), households."""

import uuid
from datetime import date, timedelta

import httpx
import jdatetime
import pytest
from sqlalchemy import text

from vafa.events.v1 import profile_pb2
from vafa.kit.db import Database
from vafa.profile.dates import service
from vafa.profile.dates.recurrence import Calendar, days_in_month, next_occurrence, window_keys

from .test_api import MARKETER, VIEWER, assert_problem
from .test_file import customer_events, new_customer


def test_the_leap_years_used_here() -> None:
    assert jdatetime.date(1403, 1, 1).isleap() and not jdatetime.date(1404, 1, 1).isleap()
    assert jdatetime.date(1403, 12, 30).togregorian() == date(2025, 3, 20)


@pytest.mark.parametrize(
    ("cal", "month", "day", "after", "expected"),
    [
        # A Jalali birthday recurs on its Jalali day: 1 Farvardin moves in the Gregorian calendar.
        (Calendar.jalali, 1, 1, date(2025, 1, 1), date(2025, 3, 21)),  # 1404-01-01
        (Calendar.jalali, 1, 1, date(2025, 3, 22), date(2026, 3, 21)),  # 1405-01-01
        (Calendar.jalali, 1, 1, date(2024, 1, 1), date(2024, 3, 20)),  # 1403-01-01
        # Esfand 30: its own day in the leap year 1403, the last day (29) in 1404.
        (Calendar.jalali, 12, 30, date(2025, 1, 1), date(2025, 3, 20)),  # 1403-12-30
        (Calendar.jalali, 12, 30, date(2025, 3, 21), date(2026, 3, 20)),  # 1404-12-29
        (Calendar.jalali, 12, 29, date(2026, 3, 1), date(2026, 3, 20)),  # 1404-12-29 too
        (Calendar.jalali, 7, 15, date(2026, 1, 1), date(2026, 10, 7)),  # 1405-07-15
        # Feb 29: its own day in 2028, Feb 28 in other years.
        (Calendar.gregorian, 2, 29, date(2027, 1, 1), date(2027, 2, 28)),
        (Calendar.gregorian, 2, 29, date(2027, 3, 1), date(2028, 2, 29)),
        (Calendar.gregorian, 12, 31, date(2026, 12, 31), date(2026, 12, 31)),
        (Calendar.gregorian, 1, 1, date(2026, 12, 31), date(2027, 1, 1)),
    ],
)
def test_next_occurrence(cal: Calendar, month: int, day: int, after: date, expected: date) -> None:
    assert next_occurrence(cal, month, day, on_or_after=after) == expected
    # It falls on its own month, on its day or (a day the year lacks) the month's last day.
    if cal == Calendar.jalali:
        j = jdatetime.date.fromgregorian(date=expected)
        assert (j.month, j.day) == (month, min(day, days_in_month(cal, j.year, month)))
    else:
        assert (expected.month, expected.day) == (
            month,
            min(day, days_in_month(cal, expected.year, month)),
        )


def test_the_window_holds_each_form_once_per_day_it_falls_on() -> None:
    # 28 Feb 2027 .. 1 Mar 2027: Feb 29 falls on Feb 28 in 2027.
    keys = window_keys(date(2027, 2, 28), 1)
    assert keys[(Calendar.gregorian, 2, 29)] == [date(2027, 2, 28)]
    assert keys[(Calendar.gregorian, 3, 1)] == [date(2027, 3, 1)]
    # 20 Mar 2026 is 29 Esfand 1404, the last day of a non-leap year: Esfand 30 falls on it.
    keys = window_keys(date(2026, 3, 20), 0)
    assert keys[(Calendar.jalali, 12, 29)] == keys[(Calendar.jalali, 12, 30)] == [date(2026, 3, 20)]
    # Every day of a year, for every stored form, agrees with next_occurrence.
    start = date(2025, 3, 1)
    keys = window_keys(start, 400)
    for (cal, month, day), days in list(keys.items())[:200]:
        assert days[0] == next_occurrence(cal, month, day, on_or_after=start)


async def test_dates_are_validated(client: httpx.AsyncClient) -> None:
    c = await new_customer(client)
    url = f"/v1/customers/{c['id']}/effective-dates"
    body = assert_problem(
        await client.post(
            url,
            json={"kind": "birthday", "calendar": "jalali", "year": 1404, "month": 12, "day": 30},
            headers=MARKETER,
        ),
        422,
    )
    assert "no day 30" in body["detail"]
    r = await client.post(
        url,
        json={"kind": "birthday", "calendar": "jalali", "year": "۱۴۰۳", "month": "۱۲", "day": "۳۰"},
        headers=MARKETER,
    )
    assert r.status_code == 201, r.text
    assert (r.json()["year"], r.json()["month"], r.json()["day"]) == (1403, 12, 30)
    assert_problem(
        await client.post(
            url,
            json={"kind": "birthday", "calendar": "gregorian", "year": 2027, "month": 2, "day": 29},
            headers=MARKETER,
        ),
        422,
    )
    body = assert_problem(
        await client.post(
            url,
            json={"kind": "birthday", "calendar": "hijri", "month": 1, "day": 1},
            headers=MARKETER,
        ),
        422,
    )
    assert body["errors"][0]["pointer"] == "/body/calendar"


async def test_upcoming_and_the_announcing_job(client: httpx.AsyncClient, db: Database) -> None:
    c = await new_customer(client)
    url = f"/v1/customers/{c['id']}/effective-dates"
    # 29 Esfand 1404 = 2026-03-20; 1 Farvardin 1405 = 2026-03-21.
    esfand = (
        await client.post(
            url,
            json={
                "kind": "wedding_anniversary",
                "calendar": "jalali",
                "month": 12,
                "day": 30,
                "label": "Wedding",
            },
            headers=MARKETER,
        )
    ).json()
    nowruz = (
        await client.post(
            url,
            json={
                "kind": "child_birthday",
                "calendar": "jalali",
                "year": 1398,
                "month": 1,
                "day": 1,
                "related_person": "daughter Sara",
            },
            headers=MARKETER,
        )
    ).json()
    far = (
        await client.post(
            url,
            json={"kind": "trip", "calendar": "gregorian", "month": 9, "day": 1},
            headers=MARKETER,
        )
    ).json()
    snap = [
        m for m in await customer_events(db, c["id"]) if isinstance(m, profile_pb2.CustomerUpdated)
    ][-1]
    assert {d.date_id for d in snap.customer.effective_dates} == {
        esfand["id"],
        nowruz["id"],
        far["id"],
    }
    assert [
        d.related_person for d in snap.customer.effective_dates if d.date_id == nowruz["id"]
    ] == ["daughter Sara"]

    today = date(2026, 3, 18)
    async with db.sessionmaker() as s:
        found = [
            u
            for u in await service.upcoming(s, today=today, days=5)
            if str(u.customer.id) == c["id"]
        ]
    assert [(str(u.date.id), u.occurs_on, u.days_ahead) for u in found] == [
        (esfand["id"], date(2026, 3, 20), 2),
        (nowruz["id"], date(2026, 3, 21), 3),
    ]

    for _ in range(2):  # a second run (or an overlapping one) announces nothing more
        async with db.sessionmaker() as s, s.begin():
            await service.announce_upcoming(s, today=today, days=5)
    async with db.sessionmaker() as s, s.begin():
        await service.announce_upcoming(s, today=today + timedelta(days=1), days=5)
    announced = [
        m
        for m in await customer_events(db, c["id"])
        if isinstance(m, profile_pb2.EffectiveDateUpcoming)
    ]
    # Sorted by the day it falls on (the ids are random, so sorting by id would shuffle them).
    assert sorted((m.occurs_on, m.date.date_id, m.days_ahead) for m in announced) == [
        ("2026-03-20", esfand["id"], 2),
        ("2026-03-21", nowruz["id"], 3),
    ]
    assert {m.date.calendar for m in announced} == {"jalali"}

    # Next year the same date is announced again (a new occurrence).
    async with db.sessionmaker() as s, s.begin():
        await service.announce_upcoming(s, today=date(2027, 3, 19), days=3)
    announced = [
        m
        for m in await customer_events(db, c["id"])
        if isinstance(m, profile_pb2.EffectiveDateUpcoming)
    ]
    # 1405 is not leap either: Esfand 30 falls on 29 Esfand 1405 = 2027-03-20.
    assert ("2027-03-20", esfand["id"]) in {(m.occurs_on, m.date.date_id) for m in announced}

    r = await client.get("/v1/effective-dates/upcoming", params={"days": 366}, headers=VIEWER)
    assert r.status_code == 200
    mine = [i for i in r.json()["items"] if i["customer_id"] == c["id"]]
    assert {i["date"]["id"] for i in mine} == {esfand["id"], nowruz["id"], far["id"]}
    assert all(0 <= i["days_ahead"] <= 366 for i in mine)
    assert all(len(i["occurs_on_jalali"]) == 10 for i in mine)
    assert_problem(
        await client.get("/v1/effective-dates/upcoming", params={"days": 400}, headers=VIEWER), 422
    )

    r = await client.delete(f"{url}/{far['id']}", headers=MARKETER)
    assert r.status_code == 204
    assert_problem(await client.delete(f"{url}/{far['id']}", headers=MARKETER), 404)


async def test_households(client: httpx.AsyncClient, db: Database) -> None:
    a, b, c = [await new_customer(client) for _ in range(3)]
    r = await client.post(
        "/v1/households",
        json={"name": "Ahmadi family", "member_ids": [a["id"], b["id"]]},
        headers=MARKETER,
    )
    assert r.status_code == 201, r.text
    household = r.json()
    assert set(household["member_ids"]) == {a["id"], b["id"]}
    r = await client.post(
        f"/v1/households/{household['id']}/members", json={"customer_id": c["id"]}, headers=MARKETER
    )
    assert len(r.json()["member_ids"]) == 3
    r = await client.delete(f"/v1/households/{household['id']}/members/{a['id']}", headers=MARKETER)
    assert set(r.json()["member_ids"]) == {b["id"], c["id"]}
    got = (await client.get(f"/v1/customers/{b['id']}", headers=VIEWER)).json()
    assert got["household_id"] == household["id"]
    snap = [
        m for m in await customer_events(db, c["id"]) if isinstance(m, profile_pb2.CustomerUpdated)
    ][-1]
    assert snap.customer.household_id == household["id"]
    assert_problem(await client.get(f"/v1/households/{uuid.uuid4()}", headers=VIEWER), 404)
    assert_problem(
        await client.post(
            "/v1/households", json={"member_ids": [a["id"], str(uuid.uuid4())]}, headers=MARKETER
        ),
        404,
    )
    async with db.sessionmaker() as s:
        # The failed request left nothing half-written.
        assert (
            await s.scalar(
                text("SELECT household_id FROM customers WHERE id = :id"),
                {"id": uuid.UUID(a["id"])},
            )
            is None
        )
