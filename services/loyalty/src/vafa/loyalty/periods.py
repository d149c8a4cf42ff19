"""Periods of the shop's calendar (`VAFA_LOYALTY_TIMEZONE`, `VAFA_LOYALTY_CALENDAR`), as UTC
instants: where a week, month or year began at local midnight. Gregorian weeks start on Monday
(ISO), Jalali ones on Saturday; Jalali months and years are the Solar Hijri ones (the year from
Nowruz). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import jdatetime

from vafa.loyalty.config import Settings


@dataclass(frozen=True, slots=True)
class ShopCalendar:
    timezone: str = "UTC"
    calendar: str = "gregorian"

    @classmethod
    def of(cls, settings: Settings) -> ShopCalendar:
        return cls(settings.timezone, settings.calendar)


def period_start(
    period: str, now: datetime, *, timezone: str = "UTC", calendar: str = "gregorian"
) -> datetime:
    """When the cap period holding `now` began, as a UTC instant: the week (Monday first; in
    the Jalali calendar Saturday first), the month or the year (Gregorian, or Solar Hijri)
    at midnight in the shop's time zone."""
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date()
    if period == "week":
        back = (day.weekday() + 2) % 7 if calendar == "jalali" else day.weekday()
        first = day - timedelta(days=back)
    elif calendar == "jalali":
        j = jdatetime.date.fromgregorian(date=day)
        first = jdatetime.date(j.year, 1 if period == "year" else j.month, 1).togregorian()
    else:
        first = date(day.year, 1 if period == "year" else day.month, 1)
    return datetime.combine(first, time(), tzinfo=zone).astimezone(UTC)


def previous_year_start(
    now: datetime, *, timezone: str = "UTC", calendar: str = "gregorian"
) -> datetime:
    """Where the year before the one holding `now` began."""
    this_year = period_start("year", now, timezone=timezone, calendar=calendar)
    return period_start("year", this_year - timedelta(days=1), timezone=timezone, calendar=calendar)
