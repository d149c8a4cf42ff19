import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["sms", "email", "phone", "push"]


class CustomerFilters(BaseModel):
    """The filters of GET /v1/customers and its CSV export. Every filter narrows (AND); a
    repeatable filter matches any of its values, except `tag` and `custom`, which must all hold.
    An unknown parameter is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")

    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Name search over first and last name. Folded like the names are "
        "(ي/ی, ك/ک, Persian/Arabic/Latin digits, ZWNJ and case all read alike); every word must "
        "appear.",
    )
    first_name: str | None = Field(default=None, max_length=200, description="Folded, exact.")
    last_name: str | None = Field(default=None, max_length=200, description="Folded, exact.")
    email: str | None = Field(default=None, max_length=320, description="Any case.")
    phone: str | None = Field(
        default=None,
        max_length=64,
        description="Any form (0912..., +98..., 0098..., Persian or Arabic digits).",
    )
    city: list[str] = Field(default_factory=list, max_length=50, description="Folded; any of.")
    province: list[str] = Field(default_factory=list, max_length=50, description="Folded; any of.")
    country_code: list[str] = Field(
        default_factory=list, max_length=50, description="ISO 3166-1 alpha-2; any of."
    )
    gender: list[Literal["female", "male", "other"]] = Field(default_factory=list, max_length=3)
    kind: Literal["lead", "customer"] | None = Field(
        default=None, description="lead: registered only; customer: has a paid order."
    )
    lifecycle_stage: list[Literal["lead", "customer", "repeat", "lapsed"]] = Field(
        default_factory=list, max_length=4
    )
    acquisition_channel: list[Literal["direct", "social", "referral", "campaign"]] = Field(
        default_factory=list, max_length=4
    )
    acquisition_campaign: str | None = Field(default=None, max_length=200)
    club_status: list[Literal["none", "member", "verified"]] = Field(
        default_factory=list, max_length=3
    )
    created_from: datetime | None = Field(default=None, description="Created at or after.")
    created_to: datetime | None = Field(default=None, description="Created before.")
    registered_from: datetime | None = Field(
        default=None, description="Joined the club at or after."
    )
    registered_to: datetime | None = Field(default=None, description="Joined the club before.")
    birth_month: int | None = Field(default=None, ge=1, le=12, description="Gregorian month.")
    tag: list[str] = Field(
        default_factory=list, max_length=20, description="Has every one of these tags."
    )
    custom: list[str] = Field(
        default_factory=list,
        max_length=20,
        description='Custom field values as "key:value" ("genre:fantasy", "vip:true", '
        '"children:2"); typed by the field\'s definition; every one must hold.',
    )
    consent: list[Channel] = Field(
        default_factory=list, max_length=4, description="Has granted consent on each channel."
    )
    no_consent: list[Channel] = Field(
        default_factory=list,
        max_length=4,
        description="Has not granted consent on each channel (denied or never asked).",
    )
    date_kind: str | None = Field(
        default=None,
        max_length=100,
        description='Has an effective date of this kind ("birthday", "wedding_anniversary", ...).',
    )
    date_within_days: int | None = Field(
        default=None,
        ge=0,
        le=366,
        description="Has an effective date (of `date_kind`, if given) falling within this many "
        "days from today (Tehran), each on its own calendar.",
    )


class ListParams(CustomerFilters):
    cursor: str | None = Field(
        default=None, max_length=200, description="`next_cursor` of the previous page."
    )
    limit: int = Field(default=50, ge=1, le=200, description="Customers per page.")


class CustomerSummary(BaseModel):
    id: uuid.UUID
    first_name: str | None
    last_name: str | None
    kind: str
    lifecycle_stage: str
    emails: list[str]
    phones: list[str]
    city: str | None
    province: str | None
    country_code: str | None
    gender: str | None
    birth_date: date | None
    acquisition_channel: str | None
    club_status: Literal["none", "member", "verified"]
    created_at: datetime


class CustomerPage(BaseModel):
    items: list[CustomerSummary] = Field(description="Newest first (created_at, then id).")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )
