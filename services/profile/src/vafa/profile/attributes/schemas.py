from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FieldType(StrEnum):
    text = "text"
    number = "number"
    date = "date"
    boolean = "boolean"
    picklist = "picklist"
    multi_picklist = "multi_picklist"


PICKLISTS = (FieldType.picklist, FieldType.multi_picklist)


class CustomFieldCreate(BaseModel):
    key: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,62}$",
        description='Stable machine key, e.g. "favourite_genre" (lower-case, digits, _).',
    )
    label: str = Field(min_length=1, max_length=200, description="Shown to staff and members.")
    type: FieldType = Field(description="The type every value is validated against on write.")
    options: list[str] = Field(
        default_factory=list,
        max_length=500,
        description="The allowed values of a picklist or multi_picklist (required for those).",
    )

    @model_validator(mode="after")
    def _options(self) -> Self:
        self.options = list(dict.fromkeys(o.strip() for o in self.options if o.strip()))
        if self.type in PICKLISTS and not self.options:
            raise ValueError("a picklist needs at least one option")
        if self.type not in PICKLISTS and self.options:
            raise ValueError("only picklists have options")
        return self


class CustomFieldUpdate(BaseModel):
    label: str | None = Field(default=None, min_length=1, max_length=200)
    options: list[str] | None = Field(
        default=None,
        max_length=500,
        description="The new option list of a picklist (values already stored are kept).",
    )


class CustomFieldRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    label: str
    type: FieldType
    options: list[str]
    created_at: datetime
    updated_at: datetime


class TagCount(BaseModel):
    tag: str
    count: int = Field(description="Customer files carrying the tag (merged files excluded).")


class TagsWrite(BaseModel):
    tags: list[str] = Field(max_length=100, description="Tags; trimmed, at most 64 characters.")


class NoteCreate(BaseModel):
    body: str = Field(min_length=1, max_length=10_000)


class NoteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    body: str
    author: str = Field(description='Who wrote it, as the gateway named them ("staff:sara").')
    created_at: datetime
