from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from vafa.inventory.stock.schemas import Sku


class ReservationLineCreate(BaseModel):
    sku: Sku
    quantity: int = Field(ge=1, le=1_000_000)


class ReservationCreate(BaseModel):
    """Hold units for an order until it is confirmed (paid), released, or the hold expires.
    All or nothing: a line that cannot be met refuses the whole request (409)."""

    order_ref: str = Field(min_length=1, max_length=200, description="The order's unique id.")
    lines: list[ReservationLineCreate] = Field(min_length=1, max_length=200)
    hold_seconds: int | None = Field(
        default=None, ge=1, le=7 * 24 * 3600, description="Defaults to the service's setting."
    )


class AllocationRead(BaseModel):
    location_id: str
    held: int
    sold: int


class ReservationLineRead(BaseModel):
    sku: str
    requested: int
    allocated: int
    allocations: list[AllocationRead]


class ReservationRead(BaseModel):
    order_ref: str
    state: Literal["held", "confirmed", "released", "expired"]
    source: str
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    lines: list[ReservationLineRead]
