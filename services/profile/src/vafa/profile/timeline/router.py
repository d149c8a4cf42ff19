from typing import Annotated

from fastapi import APIRouter, Query

from vafa.kit.auth import StaffRead
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound
from vafa.profile.customers import service as customers
from vafa.profile.customers.router import CustomerId, invalid
from vafa.profile.timeline import service
from vafa.profile.timeline.schemas import TimelineEntryRead, TimelinePage

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
) -> TimelinePage:
    if await customers.get_customer(session, customer_id) is None:
        raise NotFound(f"No customer has the id {customer_id}.", customer_id=str(customer_id))
    try:
        entries, next_cursor = await service.list_entries(
            session, customer_id=customer_id, limit=limit, cursor=cursor, kinds=kind
        )
    except service.InvalidCursor as exc:
        raise invalid("query", "cursor", message=str(exc)) from exc
    return TimelinePage(
        items=[TimelineEntryRead.model_validate(e) for e in entries], next_cursor=next_cursor
    )
