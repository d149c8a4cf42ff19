"""GET /v1/customers (filtered, cursor-paged) and GET /v1/customers/export (the same filters,
streamed as CSV). Included before the customers router, so "export" is never read as an id."""

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import ColumnElement

from vafa.kit.auth import StaffRead
from vafa.kit.db import SessionDep
from vafa.profile.customers.router import invalid
from vafa.profile.search import service
from vafa.profile.search.schemas import (
    CustomerFilters,
    CustomerPage,
    CustomerSummary,
    ListParams,
)

router = APIRouter(prefix="/v1/customers", tags=["customers"])

EXPORT_COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "emails",
    "phones",
    "kind",
    "lifecycle_stage",
    "club_status",
    "city",
    "province",
    "country_code",
    "gender",
    "birth_date",
    "acquisition_channel",
    "created_at",
)


async def where_of(
    session: SessionDep, request: Request, filters: CustomerFilters
) -> list[ColumnElement[bool]]:
    settings = request.app.state.settings
    try:
        return await service.conditions(
            session,
            filters,
            default_region=settings.default_region,
            today=datetime.now(ZoneInfo(settings.timezone)).date(),
        )
    except service.InvalidFilter as exc:
        raise invalid("query", exc.field, message=str(exc)) from exc


@router.get(
    "",
    response_model=CustomerPage,
    summary="List and search customers",
    description="Filters on any field (see the parameters), newest first, with an opaque "
    "cursor. An unknown parameter, a malformed value or a foreign cursor is a 422 naming the "
    "parameter.",
)
async def list_customers(
    params: Annotated[ListParams, Query()],
    session: SessionDep,
    request: Request,
    _: StaffRead,
) -> CustomerPage:
    where = await where_of(session, request, params)
    try:
        got = await service.page(session, where=where, limit=params.limit, cursor=params.cursor)
    except service.InvalidCursor as exc:
        raise invalid("query", "cursor", message=str(exc)) from exc
    return CustomerPage(
        items=[CustomerSummary.model_validate(r) for r in got.rows], next_cursor=got.next_cursor
    )


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


def _cell(row: dict[str, Any], column: str) -> Any:
    if column == "email":
        return (row["emails"] or [""])[0]
    if column == "phone":
        return (row["phones"] or [""])[0]
    if column in ("emails", "phones"):
        return ";".join(row[column])
    value = row[column]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return "" if value is None else value


@router.get(
    "/export",
    summary="Export customers as CSV",
    description="The list's filters; every matching customer, newest first, streamed as "
    "UTF-8 CSV (with a BOM, so spreadsheet programs read Persian and Armenian correctly). "
    "`email`/`phone` hold the first of each; `emails`/`phones` all of them, ';'-separated. "
    "The columns read back by the import.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def export_customers(
    filters: Annotated[CustomerFilters, Query()],
    session: SessionDep,
    request: Request,
    _: StaffRead,
) -> StreamingResponse:
    where = await where_of(session, request, filters)
    db = request.app.state.db

    async def lines() -> AsyncIterator[str]:
        yield "\ufeff" + _csv_line(list(EXPORT_COLUMNS))
        # Its own session: the request's closes when the handler returns, before streaming.
        async with db.sessionmaker() as s:
            batch: list[str] = []
            async for row in service.every_row(s, where=where):
                batch.append(_csv_line([_cell(row, c) for c in EXPORT_COLUMNS]))
                if len(batch) >= 500:
                    yield "".join(batch)
                    batch = []
            if batch:
                yield "".join(batch)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="customers-{stamp}.csv"'},
    )
