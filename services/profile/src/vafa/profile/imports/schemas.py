import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class ImportErrorRead(BaseModel):
    row: int = Field(description="The data row (1 is the first row after the header).")
    column: str = Field(description='The column at fault; "" for the row as a whole.')
    message: str


class ImportRead(BaseModel):
    id: uuid.UUID
    status: Literal["pending", "running", "done", "failed"] = Field(
        description="pending: waiting for the worker; running: being applied (or interrupted, "
        "to be resumed); done; failed: the file could not be read (see `failure`)."
    )
    filename: str | None
    total_rows: int = Field(description="Data rows in the file.")
    processed_rows: int = Field(description="Rows applied or rejected so far.")
    created: int = Field(description="Customer files opened.")
    updated: int = Field(description="Existing files changed.")
    rejected_rows: int = Field(description="Rows not written because of an error.")
    failure: str | None
    created_at: datetime
    finished_at: datetime | None
    errors: list[ImportErrorRead] = Field(description="Row errors, by row, from `after_row`.")
    errors_next_after_row: int | None = Field(
        description="Pass as `after_row` for the next page of errors; null on the last."
    )
