import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class Money(BaseModel):
    amount_minor: int = Field(description="Integer amount in the currency's minor units.")
    currency: str = Field(description="ISO 4217 code; empty while the customer has no orders.")


class BoughtRead(BaseModel):
    value: str = Field(description="The category, brand or tag.")
    orders: int = Field(description="Distinct paid, not cancelled orders with such a line.")
    quantity: int = Field(description="Units bought.")
    spend: Money = Field(description="Line totals (after line discounts, before refunds).")


class PurchasesRead(BaseModel):
    categories: list[BoughtRead]
    brands: list[BoughtRead]
    tags: list[BoughtRead]


class FeaturesRead(BaseModel):
    """The customer's row of the feature store: what segment conditions test. Money fields
    carry the currency of the customer's orders."""

    customer_id: uuid.UUID
    removed: bool = Field(
        description="Merged into another customer or erased: in no segment, kept so replays "
        "of their older events are recognised."
    )
    # Profile.
    kind: str
    lifecycle_stage: str
    gender: str
    birth_date: date | None
    next_birthday: date | None = Field(description="Next birthday on or after today.")
    next_effective_date: date | None = Field(
        description="Soonest next occurrence of any effective date (anniversary, ...)."
    )
    effective_dates: list[dict[str, Any]]
    country_code: str
    province: str
    city: str
    education: str
    acquisition_channel: str
    acquisition_campaign: str
    referred_by_code: str
    club_status: str
    household_id: str
    tags: list[str]
    custom_fields: dict[str, str]
    consent_sms: bool
    consent_email: bool
    consent_phone: bool
    consent_push: bool
    registered_at: datetime | None
    cohort: str = Field(description='"YYYY-MM" of the first paid order, else of registration.')
    interactions: dict[str, int] = Field(description="Interactions recorded, by kind.")
    interactions_count: int
    last_interaction_at: datetime | None
    # Orders (paid or fulfilled, not cancelled; sums net of refunds).
    currency: str
    orders_count: int
    total_spent: Money
    avg_order_value: Money
    first_order_at: datetime | None
    last_order_at: datetime | None
    orders_30d: int
    spent_30d: Money
    orders_90d: int
    spent_90d: Money
    orders_365d: int
    spent_365d: Money
    discount_orders: int
    discount_share: float = Field(description="discount_orders / orders_count; 0 without orders.")
    refunds_count: int
    purchase_months: list[int] = Field(description="Months (1-12) of purchase, shop time zone.")
    purchase_weekdays: list[int] = Field(
        description="ISO weekdays (1 = Monday ... 7) of purchase, shop time zone."
    )
    mean_interval_days: float | None = Field(
        description="Mean days between consecutive orders; null under two orders."
    )
    next_expected_at: datetime | None = Field(description="Last order + the mean interval.")
    # Loyalty.
    points_balance: int
    tier: str
    referrals_made: int
    coupons_redeemed: int
    # Scores.
    rfm_r: int | None
    rfm_f: int | None
    rfm_m: int | None
    rfm_segment: str | None
    clv_expected_purchases: float | None
    clv_probability_alive: float | None
    clv_value: Money | None
    clv_band: str | None
    next_window_at: datetime | None = Field(
        description="When a time-based feature next changes with no event (an order leaving "
        "a 30/90/365-day window, a birthday or effective date passing)."
    )
    updated_at: datetime
    purchases: PurchasesRead = Field(description="What the customer bought, from their lines.")
