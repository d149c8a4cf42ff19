import uuid
from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, Field, model_validator

from vafa.profile.timeline.schemas import TimelineEntryRead


class LifecycleStage(StrEnum):
    lead = "lead"
    customer = "customer"
    repeat = "repeat"
    lapsed = "lapsed"


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


class CustomerRead(BaseModel):
    """The customer file."""

    id: uuid.UUID = Field(description="The customer id every service uses.")
    first_name: str | None = Field(description="Given name.")
    last_name: str | None = Field(description="Family name.")
    lifecycle_stage: LifecycleStage = Field(
        description="lead: known, never bought; customer: at least one shop order."
    )
    country_code: str | None = Field(description="ISO 3166-1 alpha-2 country.")
    city: str | None = Field(description="City.")
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
