import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vafa.loyalty.models import CodeSource, RewardKind

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Currency = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{3}$")
]
MAX_MINOR = 10**15


class RewardBase(BaseModel):
    name: Name
    description: str = Field(default="", max_length=2000)
    kind: RewardKind
    percent_off: int | None = Field(default=None, ge=1, le=100, description="percent_discount")
    amount_minor: int | None = Field(
        default=None, gt=0, le=MAX_MINOR, description="fixed_discount, in minor units"
    )
    currency: Currency | None = Field(
        default=None, description="fixed_discount's currency; also of min_order_minor"
    )
    gift_sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)] | None = None
    min_order_minor: int | None = Field(default=None, ge=0, le=MAX_MINOR)
    points_price: int = Field(ge=0, le=10**12)
    stock: int | None = Field(default=None, ge=0, le=10**9, description="Left; null: unlimited.")
    per_member_limit: int | None = Field(default=None, ge=1, le=10**6)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    coupon_valid_days: int | None = Field(default=None, ge=1, le=3660)
    code_source: CodeSource = CodeSource.generated
    after_purchase: bool = Field(
        default=False,
        description="Issued at no points after every paid order (the next-purchase discount); "
        "not redeemable by members.",
    )
    active: bool = True


class RewardCreate(RewardBase):
    pass


class RewardUpdate(RewardBase):
    """A full replacement of the reward's settings."""


class RewardRead(RewardBase):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    issued: int = 0
    codes_left: int | None = Field(default=None, description="Unissued pool codes (pool only).")
    created_at: datetime
    updated_at: datetime


class CodesImport(BaseModel):
    codes: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=100_000
    )


class CodesImported(BaseModel):
    imported: int
    codes_left: int


class MemberRewardRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    kind: RewardKind
    percent_off: int | None
    amount_minor: int | None
    currency: str | None
    gift_sku: str | None
    points_price: int
    stock: int | None
    per_member_limit: int | None
    redeemed: int = Field(description="How many times this member has redeemed it.")
    affordable: bool
    points_short: int = Field(description="Points the member lacks (0 when affordable).")
    available: bool = Field(description="Affordable, in stock and within the member's limit.")


class RedemptionCreate(BaseModel):
    reward_id: uuid.UUID
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Or the Idempotency-Key header; one of them is required.",
    )


class CouponRead(BaseModel):
    code: str
    reward_id: uuid.UUID
    reward_name: str
    kind: RewardKind
    percent_off: int | None
    amount_minor: int | None
    currency: str | None
    gift_sku: str | None
    min_order_minor: int | None
    customer_id: uuid.UUID
    issued_at: datetime
    expires_at: datetime | None
    status: str = Field(description="active, used or expired")
    consumed_order_ref: str | None
    consumed_at: datetime | None


class RedemptionRead(BaseModel):
    id: uuid.UUID
    reward_id: uuid.UUID
    points: int
    balance: int = Field(description="The member's balance after the redemption.")
    order_ref: str | None
    created_at: datetime
    coupon: CouponRead


class CouponCheck(BaseModel):
    total_minor: int = Field(ge=0, le=MAX_MINOR, description="The order's total, minor units.")
    currency: Currency


class CouponValidation(BaseModel):
    code: str
    valid: bool
    reason: str | None = Field(
        description="Why not: used, expired, currency, minimum_order (null when valid)."
    )
    discount_minor: int
    currency: str
    free_shipping: bool
    gift_sku: str | None
    coupon: CouponRead


class CouponConsume(BaseModel):
    order_ref: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)
    ]
    total_minor: int | None = Field(default=None, ge=0, le=MAX_MINOR)
    currency: Currency | None = None
