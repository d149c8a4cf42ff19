import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vafa.loyalty.models import RuleStatus
from vafa.loyalty.rules.definitions import Definition


class RuleCreate(BaseModel):
    """A draft earning rule; it earns nothing until published."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=100, ge=0, le=1_000_000, description="Lower applies first.")
    budget: int | None = Field(
        default=None, ge=0, description="At most this many points in total, ever (null: none)."
    )
    definition: Definition


class RuleUpdate(BaseModel):
    """Edits the draft (publish again to make it active); name, priority and budget too."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    budget: int | None = Field(default=None, ge=0)
    clear_budget: bool = False
    definition: Definition | None = None


class RuleVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    priority: int
    definition: dict[str, Any]
    valid_from: datetime
    valid_to: datetime | None
    published_by: str | None


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    status: RuleStatus
    priority: int
    definition: dict[str, Any] = Field(description="The draft (what the next publish makes).")
    current_version: int | None
    budget: int | None
    budget_used: int
    created_at: datetime
    updated_at: datetime


class RuleDetail(RuleRead):
    versions: list[RuleVersionRead]


class DryRunCreate(BaseModel):
    """A draft to preview against the purchases kept locally: a new rule's definition, or an
    existing rule's (`rule_id`) new definition replacing its published version."""

    model_config = ConfigDict(extra="forbid")

    definition: Definition
    rule_id: int | None = None
    priority: int = Field(default=100, ge=0, le=1_000_000)
    since: datetime | None = Field(default=None, description="Default: 90 days before `until`.")
    until: datetime | None = Field(default=None, description="Default: now.")


class DryRunSampleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    order_ref: str
    customer_id: uuid.UUID
    paid_at: datetime
    points_before: int
    points_after: int


class DryRunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    since: datetime
    until: datetime
    purchases: int = Field(description="Paid purchases in the span.")
    purchases_affected: int = Field(description="Purchases the draft changes the points of.")
    customers_affected: int
    points_before: int = Field(description="What they earn under the rules active then.")
    points_after: int = Field(description="What they would earn with the draft.")
    sample: list[DryRunSampleRead]
