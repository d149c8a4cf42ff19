from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TimelineEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Entry id; higher is newer among entries at the same instant.")
    kind: str = Field(description='What happened: "order.paid", "points.earned", ...')
    occurred_at: datetime = Field(description="When it happened (UTC).")
    source: str = Field(description='Who reported it: "shop", "loyalty", "api", ...')
    summary: str = Field(description="One line for people.")
    data: dict[str, Any] = Field(description="The details, as reported.")


class TimelinePage(BaseModel):
    items: list[TimelineEntryRead] = Field(description="Entries, newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )
