import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from vafa.loyalty.models import TierMeasure, TierWindow

Code = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z0-9_-]{1,32}$")
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Currency = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{3}$")
]


class TierBase(BaseModel):
    name: Name
    threshold: int = Field(
        ge=0,
        le=10**15,
        description="Points, or minor units of `currency`, to reach within the window.",
    )
    measure: TierMeasure = Field(description="points earned, or spend (money paid)")
    currency: Currency | None = Field(default=None, description="Required when measure=spend.")
    window: TierWindow
    earn_multiplier: Decimal = Field(
        default=Decimal(1), gt=0, le=100, max_digits=6, decimal_places=3
    )
    free_shipping: bool = False
    perks: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=20
    )

    @model_validator(mode="after")
    def _currency_for_spend(self) -> "TierBase":
        if self.measure is TierMeasure.spend and not self.currency:
            raise ValueError("currency is required when measure is spend")
        if self.measure is TierMeasure.points:
            self.currency = None
        return self


class TierCreate(TierBase):
    code: Code = Field(description="Stable code used in events and accounts, e.g. 'gold'.")


class TierUpdate(TierBase):
    """A full replacement of the tier's settings (the code stays)."""


class TierRead(TierCreate):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class TierRef(BaseModel):
    code: str
    name: str
    threshold: int


class TierProgressRead(BaseModel):
    customer_id: uuid.UUID
    tier: TierRef | None
    earn_multiplier: Decimal
    measure: TierMeasure | None
    window: TierWindow | None
    currency: str | None
    value: int = Field(description="The member's measure within the current window.")
    next_tier: TierRef | None
    to_next: int = Field(description="How much more to reach next_tier (0 at the top).")
    to_keep: int = Field(
        description="How much more within the window to keep the current tier (0: kept)."
    )
    message: str = Field(description='e.g. "120 more to reach Gold, 30 to keep Silver".')


class ReevaluationRead(BaseModel):
    evaluated: int
    upgraded: int
    downgraded: int
