"""What an earning rule says, by kind (the `definition` of a rule and of each of its immutable
versions). Validated by pydantic, so a bad rule is a 422 naming the field."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vafa.kit.money import exponent


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Active only for purchases / interactions at or after starts_at and before ends_at.
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    # Limits by tier: applies only to members of these tiers (empty: everyone).
    tiers: list[str] = Field(default_factory=list, max_length=50)
    # How long the points it grants stay valid (default: the service's points_validity_days).
    validity_days: int | None = Field(default=None, ge=1, le=36500)

    @model_validator(mode="after")
    def _range(self) -> _Common:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class PerUnit(_Common):
    """Points per one major unit of a currency (overrides VAFA_LOYALTY_POINTS_PER_UNIT)."""

    kind: Literal["per_unit"] = "per_unit"
    currency: str = Field(min_length=3, max_length=3)
    points_per_unit: Decimal = Field(ge=0, le=1_000_000)

    @field_validator("currency")
    @classmethod
    def _iso(cls, value: str) -> str:
        code = value.upper()
        exponent(code)  # raises for anything that is not an ISO 4217 code
        return code


class Multiplier(_Common):
    """Multiplies the per-unit points of the lines that match every given criterion."""

    kind: Literal["multiplier"] = "multiplier"
    sku: str | None = None
    category: str | None = None
    brand: str | None = None
    tag: str | None = None
    factor: Decimal = Field(gt=0, le=100)

    @model_validator(mode="after")
    def _some_match(self) -> Multiplier:
        if not any((self.sku, self.category, self.brand, self.tag)):
            raise ValueError("a multiplier needs at least one of sku, category, brand, tag")
        return self


class FixedProduct(_Common):
    """Fixed points per unit bought of a product, instead of its per-unit points."""

    kind: Literal["fixed_product"] = "fixed_product"
    sku: str = Field(min_length=1)
    points: int = Field(ge=0, le=1_000_000)


class FirstPurchase(_Common):
    """A bonus on a customer's first paid order."""

    kind: Literal["first_purchase"] = "first_purchase"
    points: int = Field(gt=0, le=1_000_000)


class Interaction(_Common):
    """Points for an interaction on the profile timeline (InteractionRecorded)."""

    kind: Literal["interaction"] = "interaction"
    interaction_kind: str = Field(min_length=1)
    # "inbound" / "outbound"; None: either.
    direction: str | None = None
    points: int = Field(gt=0, le=1_000_000)


class Birthday(_Common):
    """A yearly bonus on the member's birthday (once per year per customer)."""

    kind: Literal["birthday"] = "birthday"
    points: int = Field(gt=0, le=1_000_000)


class Cap(_Common):
    """At most `points` earned through the rules per customer per day, week or month of the
    shop's calendar and time zone (VAFA_LOYALTY_CALENDAR, VAFA_LOYALTY_TIMEZONE)."""

    kind: Literal["cap"] = "cap"
    period: Literal["day", "week", "month"]
    points: int = Field(ge=0)


Definition = Annotated[
    PerUnit | Multiplier | FixedProduct | FirstPurchase | Interaction | Birthday | Cap,
    Field(discriminator="kind"),
]
KINDS = (
    "per_unit",
    "multiplier",
    "fixed_product",
    "first_purchase",
    "interaction",
    "birthday",
    "cap",
)
