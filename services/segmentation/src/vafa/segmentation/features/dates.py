"""Birth dates and effective dates: reading them from profile's snapshots and finding their next
occurrence. A Gregorian date recurs on its Gregorian day, a Jalali one on its Jalali day; a day
the year lacks falls back to the month's last day (Esfand 30 in a common Jalali year is Esfand
29, Feb 29 in a common Gregorian year is Feb 28), as profile does. Pure functions."""

from __future__ import annotations

import calendar as gregorian
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import jdatetime

from vafa.kit.identity import ascii_digits


def parse_birth_date(value: str) -> date | None:
    """The snapshot's ISO date ("1990-03-21"). Profile sends Gregorian, but a year before 1700
    is read as Jalali ("1370-05-12", in any digits) as profile's own input rules do. Empty or
    unreadable: unknown (a bad date must not hold up the customer's other features)."""
    raw = ascii_digits(value or "").strip().replace("/", "-")
    if not raw:
        return None
    try:
        y, m, d = (int(p) for p in raw.split("-"))
        if y < 1700:
            return jdatetime.date(y, m, d).togregorian()
        return date(y, m, d)
    except ValueError:
        return None


def _days_in_month(cal: str, year: int, month: int) -> int:
    if cal == "jalali":
        if month <= 6:
            return 31
        if month <= 11:
            return 30
        return 30 if jdatetime.date(year, 1, 1).isleap() else 29
    return gregorian.monthrange(year, month)[1]


def _in_year(cal: str, year: int, month: int, day: int) -> date:
    day = min(day, _days_in_month(cal, year, month))
    if cal == "jalali":
        return jdatetime.date(year, month, day).togregorian()
    return date(year, month, day)


def next_occurrence(cal: str, month: int, day: int, *, on_or_after: date) -> date | None:
    """The first day on or after `on_or_after` a (month, day) of `cal` falls on; None for a
    month/day no calendar has."""
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    year = (
        jdatetime.date.fromgregorian(date=on_or_after).year
        if cal == "jalali"
        else (on_or_after.year)
    )
    try:
        when = _in_year(cal, year, month, day)
        return when if when >= on_or_after else _in_year(cal, year + 1, month, day)
    except ValueError:
        return None


def next_birthday(birth_date: date | None, *, calendar: str, today: date) -> date | None:
    """The next birthday on or after `today`, recurring on the shop's calendar: in a Jalali
    shop a birthday is kept on its Jalali day, so its Gregorian day moves from year to year."""
    if birth_date is None:
        return None
    if calendar == "jalali":
        j = jdatetime.date.fromgregorian(date=birth_date)
        return next_occurrence("jalali", j.month, j.day, on_or_after=today)
    return next_occurrence("gregorian", birth_date.month, birth_date.day, on_or_after=today)


def next_effective_date(dates: Iterable[Mapping[str, Any]], *, today: date) -> date | None:
    """The soonest next occurrence of any of the customer's effective dates."""
    found = [
        next_occurrence(
            "jalali" if d.get("calendar") == "jalali" else "gregorian",
            int(d.get("month") or 0),
            int(d.get("day") or 0),
            on_or_after=today,
        )
        for d in dates
    ]
    return min((f for f in found if f is not None), default=None)
