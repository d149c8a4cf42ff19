import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Self

import jdatetime
from pydantic import BaseModel, Field, field_validator, model_validator

from vafa.profile.consents.schemas import ConsentRead
from vafa.profile.customers.identities import ascii_digits
from vafa.profile.dates.schemas import EffectiveDateRead
from vafa.profile.timeline.schemas import TimelineEntryRead


class IdentityKindName(StrEnum):
    email = "email"
    phone = "phone"
    shop = "shop"


class LifecycleStage(StrEnum):
    lead = "lead"
    customer = "customer"
    repeat = "repeat"
    lapsed = "lapsed"


class Kind(StrEnum):
    lead = "lead"
    customer = "customer"


class AcquisitionChannel(StrEnum):
    direct = "direct"
    social = "social"
    referral = "referral"
    campaign = "campaign"


class Gender(StrEnum):
    female = "female"
    male = "male"
    other = "other"


class CustomerCreate(BaseModel):
    """A customer entered by staff or sent by the shop's backend. At least one of email and
    phone is required, and neither may already belong to another customer."""

    first_name: str | None = Field(default=None, max_length=200, description="Given name.")
    last_name: str | None = Field(default=None, max_length=200, description="Family name.")
    email: str | None = Field(
        default=None, max_length=320, description="Email address; stored lower-cased."
    )
    phone: str | None = Field(
        default=None,
        max_length=64,
        description="Phone number in any common form (09121234567, +98 912 123 4567, "
        "Persian digits); stored as E.164. Local forms are read in `country_code`'s region.",
    )
    country_code: str | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        pattern="^[A-Za-z]{2}$",
        description="ISO 3166-1 alpha-2 country, e.g. IR or AM.",
    )
    city: str | None = Field(default=None, max_length=200, description="City.")
    acquisition_channel: AcquisitionChannel | None = Field(
        default=None, description="How the person found the shop."
    )
    acquisition_campaign: str | None = Field(
        default=None, max_length=200, description="The campaign (code) that brought them."
    )

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if not (self.email or "").strip() and not (self.phone or "").strip():
            raise ValueError("give at least one of email and phone")
        return self


class IdentitiesRead(BaseModel):
    emails: list[str] = Field(description="Lower-cased email addresses.")
    phones: list[str] = Field(description="Phone numbers in E.164.")
    shop_ids: list[str] = Field(
        description='Shop customer ids as "<platform>:<shop>:<shop_customer_id>".'
    )


class SpendRead(BaseModel):
    currency: str = Field(description="ISO 4217 code.")
    amount_minor: int = Field(description="Paid order totals net of refunds, in minor units.")
    amount: str = Field(description='The same as a decimal string in major units, e.g. "404.95".')


class CustomerMatch(BaseModel):
    """Who an email or phone belongs to: enough for a storefront or a call-centre screen to
    greet the customer and fetch the whole file (`GET /v1/customers/{id}`) when it needs it."""

    id: uuid.UUID = Field(description="The customer id every service uses.")
    first_name: str | None = Field(description="Given name.")
    last_name: str | None = Field(description="Family name.")
    kind: str = Field(description="lead (no paid order yet) or customer.")
    lifecycle_stage: str
    identities: IdentitiesRead
    order_count: int = Field(description="Orders not cancelled.")
    created_at: datetime


class CustomerRead(BaseModel):
    """The customer file."""

    id: uuid.UUID = Field(description="The customer id every service uses.")
    first_name: str | None = Field(description="Given name.")
    last_name: str | None = Field(description="Family name.")
    lifecycle_stage: LifecycleStage = Field(
        description="lead: known, never bought; customer: at least one shop order."
    )
    kind: Kind = Field(description="lead: registered only; customer: has a paid order.")
    first_paid_at: datetime | None = Field(description="When the first paid order came.")
    acquisition_channel: AcquisitionChannel | None
    acquisition_campaign: str | None
    referred_by_code: str | None
    country_code: str | None = Field(description="ISO 3166-1 alpha-2 country.")
    province: str | None
    city: str | None = Field(description="City.")
    address: str | None
    birth_date: date | None
    gender: Gender | None
    education: str | None
    personality_type: str | None
    custom_fields: dict[str, Any] = Field(description="Values by custom field key.")
    tags: list[str]
    consents: list[ConsentRead] = Field(description="Per channel, the consent in force.")
    effective_dates: list[EffectiveDateRead]
    household_id: uuid.UUID | None
    erased_at: datetime | None = Field(description="Set when the file was anonymised.")
    created_at: datetime = Field(description="When the file was opened (UTC).")
    updated_at: datetime = Field(description="When the file last changed (UTC).")
    identities: IdentitiesRead = Field(description="How the customer is recognised.")
    order_count: int = Field(description="Orders on file, cancelled ones excluded.")
    total_spend: list[SpendRead] = Field(
        description="Per currency: paid orders net of refunds (placed-only and cancelled "
        "orders do not count)."
    )
    timeline: list[TimelineEntryRead] = Field(description="The latest 20 entries, newest first.")
    timeline_next_cursor: str | None = Field(
        description="Cursor for GET /v1/customers/{id}/timeline to read further back."
    )


def check_birth_date(value: date | None) -> date | None:
    """A birth date a person can have: from 1900 to today."""
    if value is not None and not (date(1900, 1, 1) <= value <= date.today()):
        raise ValueError("a birth date between 1900-01-01 and today")
    return value


def parse_birth_date(value: Any) -> Any:
    """ISO dates in any digits; a year before 1700 is read as Jalali ("۱۳۷۰-۰۱-۰۱")."""
    if not isinstance(value, str):
        return value
    raw = ascii_digits(value).strip().replace("/", "-")
    try:
        y, m, d = (int(p) for p in raw.split("-"))
    except ValueError:
        return value
    if y < 1700:
        try:
            return jdatetime.date(y, m, d).togregorian()
        except ValueError as exc:
            raise ValueError(f"not a Jalali date: {exc}") from exc
    return raw


class CustomerUpdate(BaseModel):
    """Fields to change; a field left out is unchanged, null clears it. `custom_fields` merges
    by key (null removes a value); each value is validated against its field's type."""

    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    lifecycle_stage: LifecycleStage | None = Field(
        default=None,
        description="Staff may mark 'repeat' or 'lapsed'; 'lead'/'customer' follow orders.",
    )
    acquisition_channel: AcquisitionChannel | None = None
    acquisition_campaign: str | None = Field(default=None, max_length=200)
    referred_by_code: str | None = Field(default=None, max_length=64)
    country_code: str | None = Field(
        default=None, min_length=2, max_length=2, pattern="^[A-Za-z]{2}$"
    )
    province: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=1000)
    birth_date: date | None = Field(
        default=None,
        description="ISO 8601; Persian digits accepted; a year before 1700 is read as Jalali.",
    )
    gender: Gender | None = None
    education: str | None = Field(default=None, max_length=200)
    personality_type: str | None = Field(
        default=None, max_length=64, description='E.g. an MBTI type ("INFJ") or the shop\'s own.'
    )
    custom_fields: dict[str, Any] | None = Field(
        default=None, description="Values by custom field key (see /v1/custom-fields)."
    )

    _birth = field_validator("birth_date", mode="before")(parse_birth_date)

    @field_validator("lifecycle_stage", mode="before")
    @classmethod
    def _stage_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("a file always has a lifecycle stage")
        return value

    _birth_range = field_validator("birth_date")(check_birth_date)


class IdentityCreate(BaseModel):
    kind: IdentityKindName = Field(description="email, phone or shop.")
    value: str = Field(
        min_length=1,
        max_length=320,
        description='An email, a phone in any common form, or "<platform>:<shop>:<id>".',
    )
    country_code: str | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        pattern="^[A-Za-z]{2}$",
        description="Reads a local phone number in this country (default: the service's).",
    )
