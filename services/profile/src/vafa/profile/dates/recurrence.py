"""When a named date falls: a Gregorian date recurs on its Gregorian day, a Jalali date on its
Jalali day (so its Gregorian day moves from year to year). A day the year lacks falls back to
the last day of the month: Esfand 30 in a non-leap Jalali year is Esfand 29, Feb 29 in a
non-leap Gregorian year is Feb 28. Pure functions (jdatetime for the Jalali calendar)."""

from __future__ import annotations

import calendar as gregorian_calendar
from datetime import date, timedelta
from enum import StrEnum

import jdatetime


class Calendar(StrEnum):
    gregorian = "gregorian"
    jalali = "jalali"


def days_in_month(cal: Calendar, year: int | None, month: int) -> int:
    """The month's length in that year; without a year, its longest (leap-year) length."""
    if cal == Calendar.gregorian:
        return gregorian_calendar.monthrange(year or 2000, month)[1]
    if month <= 6:
        return 31
    if month <= 11:
        return 30
    if year is None:
        return 30
    return 30 if jdatetime.date(year, 1, 1).isleap() else 29


def in_year(cal: Calendar, year: int, month: int, day: int) -> date:
    """The Gregorian day this month/day falls on in `year` of its calendar (clamped)."""
    day = min(day, days_in_month(cal, year, month))
    if cal == Calendar.gregorian:
        return date(year, month, day)
    return jdatetime.date(year, month, day).togregorian()


def calendar_year(cal: Calendar, on: date) -> int:
    return on.year if cal == Calendar.gregorian else jdatetime.date.fromgregorian(date=on).year


def next_occurrence(cal: Calendar, month: int, day: int, *, on_or_after: date) -> date:
    """The first day on or after `on_or_after` the date falls on."""
    year = calendar_year(cal, on_or_after)
    when = in_year(cal, year, month, day)
    return when if when >= on_or_after else in_year(cal, year + 1, month, day)


def window_keys(start: date, days: int) -> dict[tuple[Calendar, int, int], list[date]]:
    """For the window [start, start + days], every (calendar, month, day) stored form that falls
    in it, with the day(s) it falls on: the lookup keys of the upcoming query. The last day of
    a short month also stands for the missing days (Esfand 29 of 1404 for Esfand 30)."""
    keys: dict[tuple[Calendar, int, int], list[date]] = {}
    for n in range(days + 1):
        on = start + timedelta(days=n)
        g_len = days_in_month(Calendar.gregorian, on.year, on.month)
        for d in range(on.day, (31 if on.day == g_len else on.day) + 1):
            if (on.month == 2 and d > 29) or d > 31:
                break
            keys.setdefault((Calendar.gregorian, on.month, d), []).append(on)
        j = jdatetime.date.fromgregorian(date=on)
        j_len = days_in_month(Calendar.jalali, j.year, j.month)
        top = (31 if j.month <= 6 else 30) if j.day == j_len else j.day
        for d in range(j.day, top + 1):
            keys.setdefault((Calendar.jalali, j.month, d), []).append(on)
    return keys


def jalali_iso(on: date) -> str:
    j = jdatetime.date.fromgregorian(date=on)
    return f"{j.year:04d}-{j.month:02d}-{j.day:02d}"
