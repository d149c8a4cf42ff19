import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vafa.loyalty.models import EntryKind

MAX_ADJUSTMENT = 1_000_000_000


class EntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    delta: int = Field(description="Signed: positive added points, negative took them away.")
    kind: EntryKind
    reason: str
    order_ref: str | None
    created_at: datetime


class PointsRead(BaseModel):
    customer_id: uuid.UUID
    balance: int
    entries: list[EntryRead] = Field(description="The latest 50 ledger entries, newest first.")


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


class ReconciliationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    accounts: int = Field(description="Accounts checked.")
    balance_total: int
    ledger_total: int
    mismatch_count: int
    mismatches: list[MismatchRead] = Field(
        description="Accounts whose balance differs from the sum of their entries (at most "
        "1000 listed). Empty when the ledger is sound."
    )
