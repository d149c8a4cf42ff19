import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from vafa.segmentation.segments.language import SegmentDefinition


def _json_object(value: Any) -> dict[str, Any]:
    # The walk in language.parse checks it, pointing at the offending node; pydantic would
    # report a union's errors against every member at once.
    if not isinstance(value, dict):
        raise ValueError("a definition is a JSON object")
    return value


# Documented as the SegmentDefinition schema, checked by language.parse.
Definition = Annotated[
    dict[str, Any], PlainValidator(_json_object, json_schema_input_type=SegmentDefinition)
]

KEY = r"^[a-z0-9][a-z0-9_-]{0,99}$"


class SegmentCreate(BaseModel):
    """A dynamic segment (a `definition`, or a `template` with its `parameters`) or a static one
    (members uploaded as CSV). A dynamic segment is evaluated at once."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=KEY, description="Stable slug others refer to, e.g. fantasy-readers.")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    kind: Literal["dynamic", "static"] = "dynamic"
    definition: Definition | None = None
    template: str | None = Field(default=None, description="GET /v1/segment-templates.")
    parameters: dict[str, Any] | None = None


class SegmentUpdate(BaseModel):
    """A new definition is a new version and a full re-evaluation."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    definition: Definition | None = None


class SegmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    key: str
    name: str
    description: str
    kind: str
    definition: dict[str, Any] | None
    version: int
    template: str | None
    archived: bool
    member_count: int
    evaluated_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class SegmentVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    definition: dict[str, Any] | None
    author: str
    created_at: datetime


class SegmentDetail(SegmentRead):
    versions: list[SegmentVersionRead]


class PreviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: Definition
    sample: int = Field(default=20, ge=0, le=200)


class PreviewRead(BaseModel):
    count: int
    sample: list[uuid.UUID]


class EvaluationRead(BaseModel):
    segment: SegmentRead
    entered: int
    exited: int


class MembershipRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: uuid.UUID
    segment_version: int
    entered_at: datetime
    entered_cause: str
    exited_at: datetime | None
    exited_cause: str | None


class MembershipPage(BaseModel):
    items: list[MembershipRead]
    next_cursor: str | None


class CustomerMembershipRead(MembershipRead):
    segment_id: uuid.UUID
    segment_key: str
    segment_name: str


class CustomerSegmentsRead(BaseModel):
    customer_id: uuid.UUID
    current: list[CustomerMembershipRead]
    past: list[CustomerMembershipRead]


class ExplainedNodeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    path: str = Field(description="JSON pointer of the node inside the definition.")
    kind: str
    condition: dict[str, Any] = Field(description="The node itself (children listed below).")
    result: bool
    seen: Any = Field(
        description="What it looked at: the field's value, the purchase measure, the bucket."
    )
    children: list["ExplainedNodeRead"]


class ExplanationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    segment_id: uuid.UUID
    customer_id: uuid.UUID
    verdict: bool = Field(description="Whether the definition matches the customer now.")
    known: bool = Field(description="Whether the feature store knows the customer.")
    removed: bool
    member: bool
    member_since: datetime | None
    evaluated_at: datetime
    tree: ExplainedNodeRead | None


class FieldRead(BaseModel):
    name: str
    type: str
    operators: list[str]
    nullable: bool
    description: str


class FieldCatalogue(BaseModel):
    fields: list[FieldRead]
    rfm_segments: list[str]
    clv_bands: list[str]
    purchased_measures: list[str]
    purchased_operators: list[str]


class RejectedRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line: int
    column: str
    value: str
    detail: str


class ImportRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rows: int
    matched: int
    added: int
    removed: int
    rejected: list[RejectedRow]


class TemplateRead(BaseModel):
    key: str
    name: str
    description: str
    parameters: dict[str, Any] = Field(description="JSON schema of the parameters.")
    example: dict[str, Any] = Field(description="Example parameters.")
    example_definition: dict[str, Any]
