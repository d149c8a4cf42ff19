import datetime as dt
import uuid
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vafa.profile.customers.identities import ascii_digits
from vafa.profile.dates.recurrence import Calendar, days_in_month


class DateKind(StrEnum):
    birthday = "birthday"
    wedding_anniversary = "wedding_anniversary"
    child_birthday = "child_birthday"
    company_founding = "company_founding"
    trip = "trip"
    other = "other"


class EffectiveDateCreate(BaseModel):
    kind: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*$",
        description='"birthday", "wedding_anniversary", "child_birthday", "company_founding", '
        '"trip", or the shop\'s own kind.',
    )
    label: str | None = Field(default=None, max_length=200, description='E.g. "Sara\'s birthday".')
    calendar: Calendar = Field(description="The calendar year/month/day are in; it recurs in it.")
    year: int | None = Field(default=None, ge=1, le=3000, description="Omit when unknown.")
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    related_person: str | None = Field(
        default=None, max_length=200, description='The family member, e.g. "daughter Sara".'
    )

    @field_validator("year", "month", "day", mode="before")
    @classmethod
    def _any_digits(cls, value: object) -> object:
        # Forms send "۱۴۰۳" as often as 1403.
        return ascii_digits(value).strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _real_day(self) -> Self:
        # Without a year, the longest form of the month is allowed (Esfand 30, Feb 29).
        if self.day > days_in_month(self.calendar, self.year, self.month):
            where = f"{self.year}-{self.month:02d}" if self.year else f"month {self.month}"
            raise ValueError(f"{where} of the {self.calendar.value} calendar has no day {self.day}")
        return self


class EffectiveDateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    label: str | None
    calendar: Calendar
    year: int | None
    month: int
    day: int
    related_person: str | None
    created_at: dt.datetime


class UpcomingDate(BaseModel):
    customer_id: uuid.UUID
    first_name: str | None
    last_name: str | None
    date: EffectiveDateRead
    occurs_on: dt.date = Field(description="The Gregorian day it falls on this time.")
    occurs_on_jalali: str = Field(description="The same day in the Jalali calendar (YYYY-MM-DD).")
    days_ahead: int = Field(description="0 is today.")


class UpcomingPage(BaseModel):
    items: list[UpcomingDate]


class HouseholdCreate(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    member_ids: list[uuid.UUID] = Field(min_length=1, max_length=50)


class HouseholdMember(BaseModel):
    customer_id: uuid.UUID


class HouseholdRead(BaseModel):
    id: uuid.UUID
    name: str | None
    member_ids: list[uuid.UUID]
    created_at: dt.datetime
