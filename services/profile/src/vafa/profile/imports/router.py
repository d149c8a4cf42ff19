"""POST /v1/customers/imports (a CSV body), GET .../{id} (progress and the row-level error
report), POST .../{id}/resume. Small files are imported in the request; larger ones by the
worker (see imports.service)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from vafa.kit.auth import StaffRead, StaffWrite
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound, Problem
from vafa.profile.config import Settings
from vafa.profile.imports import rows as csvrows
from vafa.profile.imports import service
from vafa.profile.imports.schemas import ImportErrorRead, ImportRead

router = APIRouter(prefix="/v1/customers/imports", tags=["customers"])

ImportId = Annotated[uuid.UUID, Path(description="The import id.")]
CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/vnd.ms-excel")
ERRORS_PAGE = 1000


def settings_of(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def too_large(limit: int) -> Problem:
    return Problem(
        413,
        f"The file is larger than the import limit of {limit} bytes "
        f"({limit / 1024 / 1024:.1f} MiB); split it into smaller files.",
        title="Import too large",
        type="import-too-large",
        limit_bytes=limit,
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` (by Content-Length up front, else counting)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def bad_file(exc: csvrows.BadFile) -> RequestValidationError:
    loc: tuple[str, ...] = ("body",) if exc.column is None else ("body", "header", exc.column)
    return RequestValidationError([{"loc": loc, "msg": str(exc), "type": "value_error.csv"}])


async def read(
    session: SessionDep, import_id: uuid.UUID, *, after_row: int = 0, limit: int = ERRORS_PAGE
) -> ImportRead:
    found = await service.report(session, import_id, after_row=after_row, limit=limit + 1)
    if found is None:
        raise NotFound(f"No import has the id {import_id}.", import_id=str(import_id))
    imp, errors = found
    more = len(errors) > limit
    errors = errors[:limit]
    next_after = None
    if more:  # a page ends on a whole row, so `after_row` never skips part of one
        whole = [e for e in errors if e.row < errors[-1].row]
        errors = whole or errors
        next_after = errors[-1].row
    return ImportRead(
        id=imp.id,
        status=imp.status,
        filename=imp.filename,
        total_rows=imp.total_rows,
        processed_rows=min(imp.next_row - 1, imp.total_rows)
        if imp.status != "done"
        else imp.total_rows,
        created=imp.created_count,
        updated=imp.updated_count,
        rejected_rows=imp.error_count,
        failure=imp.failure,
        created_at=imp.created_at,
        finished_at=imp.finished_at,
        errors=[ImportErrorRead(row=e.row, column=e.column, message=e.message) for e in errors],
        errors_next_after_row=next_after,
    )


async def run_or_queue(request: Request, import_id: uuid.UUID, remaining: int) -> bool:
    """Imports in the request when few rows remain; else leaves it to the worker. True when
    it ran here."""
    settings = settings_of(request)
    if remaining > settings.import_inline_rows:
        return False
    await service.run(request.app.state.db, import_id, settings=settings)
    return True


@router.post(
    "",
    response_model=ImportRead,
    status_code=201,
    summary="Import customers from CSV",
    description="The body is the CSV file itself (Content-Type text/csv), UTF-8 with or "
    "without a BOM. Columns: email, phone (each row needs one; an existing file is found by "
    "email, then phone, and updated; otherwise a lead is opened), first_name, last_name, "
    "city, province, country_code, address, birth_date (Gregorian or Jalali, any digits), "
    "gender, education, personality_type, acquisition_channel, acquisition_campaign, "
    "referred_by_code, tags (';'-separated), custom.<key>. Empty cells change nothing. "
    "A row with an error writes nothing and is reported (GET .../{id}). Files of up to "
    "`import_inline_rows` rows are imported before the answer (201); larger ones are queued "
    "for the worker (202). The same file posted again is the same import (200), continued "
    "if it was interrupted. 413 past `import_max_bytes`; 422 naming the header cell for a "
    "file that cannot be imported at all.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={200: {"model": ImportRead}, 202: {"model": ImportRead}},
)
async def create_import(
    session: SessionDep,
    request: Request,
    response: Response,
    staff: StaffWrite,
    filename: Annotated[
        str | None, Query(max_length=255, description="The file's name, for people.")
    ] = None,
) -> ImportRead:
    settings = settings_of(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in CSV_TYPES:
        raise Problem(
            415,
            f"Send the CSV file as the body with Content-Type text/csv (got {media or 'none'}).",
            type="unsupported-media-type",
        )
    content = await read_body(request, settings.import_max_bytes)
    try:
        imp, new = await service.register(
            session, content=content, filename=filename, created_by=staff.header_value()
        )
    except csvrows.BadFile as exc:
        raise bad_file(exc) from exc
    await session.commit()
    import_id, remaining, status = imp.id, imp.total_rows - imp.next_row + 1, imp.status
    ran = status in ("pending", "running") and await run_or_queue(request, import_id, remaining)
    response.headers["Location"] = f"/v1/customers/imports/{import_id}"
    if not new:
        response.status_code = 200
    elif not ran and status in ("pending", "running"):
        response.status_code = 202
    return await read(session, import_id)


@router.get(
    "/{import_id}",
    response_model=ImportRead,
    summary="An import's progress and its row errors",
)
async def get_import(
    import_id: ImportId,
    session: SessionDep,
    _: StaffRead,
    after_row: Annotated[int, Query(ge=0, description="Errors of rows after this one.")] = 0,
    limit: Annotated[int, Query(ge=1, le=ERRORS_PAGE, description="Errors per page.")] = 100,
) -> ImportRead:
    return await read(session, import_id, after_row=after_row, limit=limit)


@router.post(
    "/{import_id}/resume",
    response_model=ImportRead,
    summary="Continue an interrupted import",
    description="Continues from the first row not yet applied (never applying a row twice): "
    "in the request when few rows remain, else by the worker (202). A finished import is "
    "returned as it is.",
    responses={202: {"model": ImportRead}},
)
async def resume_import(
    import_id: ImportId, session: SessionDep, request: Request, response: Response, _: StaffWrite
) -> ImportRead:
    current = await read(session, import_id, limit=1)
    await session.rollback()
    if current.status in ("pending", "running"):
        remaining = current.total_rows - current.processed_rows
        if not await run_or_queue(request, import_id, remaining):
            response.status_code = 202
    return await read(session, import_id)
