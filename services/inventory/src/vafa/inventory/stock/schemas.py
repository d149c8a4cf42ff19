from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class StockStatus(StrEnum):
    in_stock = "in_stock"
    low_stock = "low_stock"
    out_of_stock = "out_of_stock"


class StockUpdate(BaseModel):
    """Sets the counted level of a SKU (creating it if new); the difference is recorded as a
    movement with the reason and the author."""

    on_hand: int = Field(ge=0, le=1_000_000_000, description="Units on hand after the count.")
    low_stock_threshold: int | None = Field(
        default=None, ge=0, description="At or below this level the SKU shows as low stock."
    )
    reason: str = Field(default="count", min_length=1, max_length=200)


class StockRead(BaseModel):
    sku: str
    on_hand: int
    status: StockStatus
    low_stock_threshold: int
    updated_at: datetime
