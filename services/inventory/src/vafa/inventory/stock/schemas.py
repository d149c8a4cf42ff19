from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

Sku = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class StockStatus(StrEnum):
    in_stock = "in_stock"
    low_stock = "low_stock"
    out_of_stock = "out_of_stock"


class StockUpdate(BaseModel):
    """Sets the counted level of a SKU at the default location (creating the SKU if new); the
    difference is recorded as a `correction` movement with the reason and the author."""

    on_hand: int = Field(ge=0, le=1_000_000_000, description="Units on hand after the count.")
    low_stock_threshold: int | None = Field(
        default=None, ge=0, description="At or below this many available units: low stock."
    )
    reason: str = Field(default="count", min_length=1, max_length=200)


class LocationStock(BaseModel):
    location_id: str
    on_hand: int
    reserved: int
    available: int


class StockRead(BaseModel):
    sku: str
    on_hand: int
    reserved: int
    available: int
    status: StockStatus
    low_stock_threshold: int
    updated_at: datetime
    locations: list[LocationStock]


class MovementLine(BaseModel):
    sku: Sku
    quantity: int = Field(
        ge=0,
        le=1_000_000_000,
        description="Units received or damaged; for a correction, the counted level.",
    )


class MovementCreate(BaseModel):
    """Staff moving stock at a location: a receipt, damage, or a count correction."""

    kind: Literal["receipt", "damage", "correction"]
    reason: str = Field(min_length=1, max_length=200, description="Why, in words.")
    lines: list[MovementLine] = Field(min_length=1, max_length=500)
    reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The delivery note or count sheet: the same reference again moves nothing.",
    )


class MovementRead(BaseModel):
    id: int
    sku: str
    location_id: str
    kind: str
    delta: int
    reserved_delta: int
    order_ref: str | None
    author: str | None
    note: str
    created_at: datetime


class MovementResult(BaseModel):
    location_id: str
    kind: str
    applied: bool = Field(description="False when this reference had been applied before.")
    stock: list[StockRead]


class AvailabilityQuery(BaseModel):
    skus: list[Sku] = Field(min_length=1, max_length=500)


class Availability(BaseModel):
    sku: str
    status: StockStatus
    available: int
    known: bool = Field(description="False for a SKU whose stock is not kept here.")


class AvailabilityRead(BaseModel):
    items: list[Availability]


class SubscriptionCreate(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64)


class ClubSubscriptionCreate(BaseModel):
    sku: Sku


class SubscriptionRead(BaseModel):
    id: int
    sku: str
    customer_id: str
    created_at: datetime
    notified_at: datetime | None
