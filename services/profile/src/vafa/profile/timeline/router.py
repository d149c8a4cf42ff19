from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from vafa.kit.auth import Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.kit.errors import Conflict
from vafa.profile.customers import service as customers
from vafa.profile.customers.router import CustomerId, invalid
from vafa.profile.timeline import service
from vafa.profile.timeline.schemas import InteractionCreate, TimelineEntryRead, TimelinePage

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get(
    "/{customer_id}/timeline",
    response_model=TimelinePage,
    summary="A customer's timeline, newest first",
)
async def get_timeline(
    customer_id: CustomerId,
    session: SessionDep,
    _: StaffRead,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200, description="`next_cursor` of the previous page; omit for the first."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Entries per page.")] = 20,
    kind: Annotated[
        list[str] | None,
        Query(
            max_length=20,
            description='Only these kinds ("order.paid", "points.earned", ...); repeatable.',
        ),
    ] = None,
    since: Annotated[
        datetime | None, Query(alias="from", description="Only entries at or after this time.")
    ] = None,
    until: Annotated[
        datetime | None, Query(alias="to", description="Only entries before this time.")
    ] = None,
) -> TimelinePage:
    await customers.get_file(session, customer_id)
    try:
        entries, next_cursor = await service.list_entries(
            session,
            customer_id=customer_id,
            limit=limit,
            cursor=cursor,
            kinds=kind,
            since=since,
            until=until,
        )
    except service.InvalidCursor as exc:
        raise invalid("query", "cursor", message=str(exc)) from exc
    return TimelinePage(
        items=[TimelineEntryRead.model_validate(e) for e in entries], next_cursor=next_cursor
    )


# Call centres and PBXs report with a shop API key or an agent's staff token.
RecordInteraction = Annotated[Principal, require("agent", "marketer", "shop")]


@router.post(
    "/{customer_id}/timeline",
    response_model=TimelineEntryRead,
    status_code=201,
    summary="Record a touchpoint (call, SMS, email, visit...) from an integration",
    description="Idempotent by (source, source_id): the first call records the entry (201) "
    "and publishes InteractionRecorded; a repeat returns the same entry (200) and publishes "
    "nothing. 409 when that (source, source_id) is on another customer's timeline.",
)
async def record_interaction(
    customer_id: CustomerId,
    body: InteractionCreate,
    session: SessionDep,
    response: Response,
    _: RecordInteraction,
) -> TimelineEntryRead:
    await customers.get_file(session, customer_id)
    try:
        entry, created = await service.record_interaction(
            session,
            customer_id=customer_id,
            kind=body.kind,
            source=body.source,
            source_id=body.source_id,
            occurred_at=body.occurred_at,
            direction=body.direction.value if body.direction else None,
            duration_seconds=body.duration_seconds,
            agent=body.agent,
            summary=body.summary,
            attributes=body.attributes,
        )
    except service.EntryElsewhere as exc:
        raise Conflict(
            "This source_id was recorded for another customer.",
            customer_id=str(exc.customer_id),
        ) from exc
    await session.commit()
    if not created:
        response.status_code = 200
    return TimelineEntryRead.model_validate(entry)
