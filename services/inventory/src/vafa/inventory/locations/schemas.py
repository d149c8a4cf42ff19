from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LocationUpsert(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["warehouse", "store"]
    priority: int = Field(
        default=100,
        ge=0,
        le=1_000_000,
        description="Reservations take units from locations in ascending priority.",
    )
    active: bool = Field(default=True, description="An inactive location is never allocated.")


class LocationRead(LocationUpsert):
    model_config = ConfigDict(from_attributes=True)

    id: str
    updated_at: datetime
