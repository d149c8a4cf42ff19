import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vafa.loyalty.models import EntryKind

MAX_ADJUSTMENT = 1_000_000_000


class EntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    delta: int = Field(
        description="Signed change of the spendable balance: positive added points, negative "
        "took them away."
    )
    pending_delta: int = Field(
        default=0, description="Signed change of the pending (not yet spendable) points."
    )
    kind: EntryKind
    reason: str
    order_ref: str | None
    ref: str | None = Field(default=None, description="What a spend bought, or a merge id.")
    balance_after: int | None = Field(default=None, description="The balance after this entry.")
    created_at: datetime


class PointsRead(BaseModel):
    customer_id: uuid.UUID
    balance: int = Field(description="Spendable points.")
    pending: int = Field(default=0, description="Points granted but not spendable yet.")
    next_expiry_at: datetime | None = Field(
        default=None, description="When the soonest-expiring spendable points expire."
    )
    next_expiry_points: int = Field(default=0, description="How many points expire then.")
    entries: list[EntryRead] = Field(description="The latest 50 ledger entries, newest first.")


class HistoryPage(BaseModel):
    items: list[EntryRead] = Field(description="Ledger entries, newest first.")
    next_before: int | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )


class LiabilityMonthRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    month: str = Field(
        description='Month the lots expire ("2027-03", Jalali "1405-12"), or "never".'
    )
    points: int
    value_minor: int


class LiabilityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    calendar: str = Field(description="gregorian or jalali: the calendar of the months.")
    outstanding_points: int = Field(description="Spendable plus pending points of every member.")
    available_points: int
    pending_points: int
    currency: str
    point_value_minor: Decimal = Field(description="What one point is worth, in minor units.")
    value_minor: int = Field(description="floor(outstanding points × point value), minor units.")
    by_expiry_month: list[LiabilityMonthRead]


class AdjustmentCreate(BaseModel):
    """A manual correction of a balance, applied once per idempotency key: a retried request
    returns the entry it made the first time and changes nothing."""

    points: int = Field(
        ge=-MAX_ADJUSTMENT,
        le=MAX_ADJUSTMENT,
        description="Points to add (positive) or take away (negative); never 0.",
    )
    reason: str = Field(min_length=1, max_length=500)
    idempotency_key: str = Field(min_length=1, max_length=200)
    validity_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="How long added points stay valid (default: the service's validity).",
    )

    @field_validator("points")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("points must not be 0")
        return value

    @field_validator("reason", "idempotency_key")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class AdjustmentRead(EntryRead):
    customer_id: uuid.UUID
    balance: int = Field(description="The balance after the adjustment.")


class MismatchRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: uuid.UUID
    balance: int
    ledger_sum: int
    lots_available: int
    pending: int
    pending_sum: int
    lots_pending: int


class ReconciliationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    accounts: int = Field(description="Accounts checked.")
    balance_total: int
    ledger_total: int
    pending_total: int
    lots_total: int = Field(description="Points remaining in lots (spendable and pending).")
    mismatch_count: int
    mismatches: list[MismatchRead] = Field(
        description="Accounts whose balance differs from the sum of their entries (at most "
        "1000 listed), or from their lots. Empty when the ledger is sound."
    )
    lot_mismatch_count: int = Field(
        description="Lots whose points minus remaining differ from what entries drew on them."
    )
