from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class TimelineEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Entry id; higher is newer among entries at the same instant.")
    kind: str = Field(description='What happened: "order.paid", "points.earned", ...')
    occurred_at: datetime = Field(description="When it happened (UTC).")
    source: str = Field(description='Who reported it: "shop", "loyalty", "api", ...')
    source_id: str = Field(description="The reporter's own id of what happened.")
    direction: str | None = Field(default=None, description='"inbound", "outbound" or null.')
    duration_seconds: int | None = Field(default=None, description="A call's length.")
    agent: str | None = Field(default=None, description="The agent or staff member involved.")
    summary: str = Field(description="One line for people.")
    data: dict[str, Any] = Field(description="The details, as reported.")


class TimelinePage(BaseModel):
    items: list[TimelineEntryRead] = Field(description="Entries, newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class Direction(StrEnum):
    inbound = "inbound"
    outbound = "outbound"


class InteractionCreate(BaseModel):
    """A touchpoint reported by an integration (PBX, call centre, SMS panel, survey tool).
    Idempotent by (source, source_id): a repeat returns the entry already recorded."""

    kind: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_.]*$",
        description='"call", "sms", "email", "club_visit", "club_click", "ticket", '
        '"survey_answer", "review", ...',
    )
    direction: Direction | None = None
    duration_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    agent: str | None = Field(default=None, max_length=200)
    source: str = Field(
        min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description='E.g. "pbx".'
    )
    source_id: str = Field(min_length=1, max_length=200, description='E.g. "call-8812".')
    occurred_at: AwareDatetime = Field(description="When it happened, with a time zone.")
    summary: str | None = Field(default=None, max_length=500, description="One line for people.")
    attributes: dict[str, str] = Field(
        default_factory=dict, max_length=50, description="Extra details, string values."
    )
