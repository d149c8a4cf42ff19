import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CandidateStatus(StrEnum):
    open = "open"
    dismissed = "dismissed"
    merged = "merged"


class FileBrief(BaseModel):
    id: uuid.UUID
    first_name: str | None
    last_name: str | None
    emails: list[str]
    phones: list[str]
    created_at: datetime


class CandidateRead(BaseModel):
    id: int
    reason: str = Field(
        description='"shared_identity" (one order named identities of both files), '
        '"similar_name", "similar_name_phone".'
    )
    score: float = Field(description="0..1, higher is likelier the same person.")
    details: dict[str, Any]
    status: CandidateStatus
    customer_a: FileBrief
    customer_b: FileBrief
    created_at: datetime
    resolved_by: str | None
    resolved_at: datetime | None


class CandidatePage(BaseModel):
    items: list[CandidateRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class CandidateMerge(BaseModel):
    survivor_id: uuid.UUID | None = Field(
        default=None, description="Which of the two files survives (default: the older one)."
    )


class MergeCreate(BaseModel):
    merged_id: uuid.UUID = Field(description="The file merged into this one (it then redirects).")


class ScanRequest(BaseModel):
    customer_id: uuid.UUID


class MergeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    survivor_id: uuid.UUID
    merged_id: uuid.UUID
    status: str = Field(description='"merged" or "unmerged".')
    decisions: dict[str, Any] = Field(
        description="Per field, which file's value survived and by which rule."
    )
    moved: dict[str, Any] = Field(description="What moved from the merged file, by kind.")
    survivor_before: dict[str, Any]
    merged_before: dict[str, Any]
    merged_by: str
    merged_at: datetime
    unmerged_by: str | None
    unmerged_at: datetime | None
