import uuid
from typing import Annotated

from fastapi import APIRouter, Response

from vafa.kit.auth import MemberDep, Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound
from vafa.loyalty.models import EntryKind
from vafa.loyalty.points import service
from vafa.loyalty.points.schemas import (
    AdjustmentCreate,
    AdjustmentRead,
    EntryRead,
    PointsRead,
    ReconciliationRead,
)

router = APIRouter(tags=["loyalty"])


async def _points(session: SessionDep, customer_id: uuid.UUID) -> PointsRead:
    account = await service.get_account(session, customer_id=customer_id)
    if account is None:
        raise NotFound(
            f"No points account exists for customer {customer_id}.", customer_id=str(customer_id)
        )
    entries = await service.latest_entries(session, customer_id=customer_id, limit=50)
    return PointsRead(
        customer_id=account.customer_id,
        balance=account.balance,
        entries=[EntryRead.model_validate(e) for e in entries],
    )


@router.get(
    "/v1/customers/{customer_id}/points",
    response_model=PointsRead,
    summary="A customer's points balance and latest ledger entries",
)
async def get_points(customer_id: uuid.UUID, session: SessionDep, _: StaffRead) -> PointsRead:
    return await _points(session, customer_id)


@router.get(
    "/v1/club/me/points",
    response_model=PointsRead,
    summary="The signed-in member's own points balance and latest entries",
)
async def get_my_points(session: SessionDep, member: MemberDep) -> PointsRead:
    try:
        customer_id = uuid.UUID(member.id)
    except ValueError:
        raise NotFound("This member has no points account.") from None
    return await _points(session, customer_id)


@router.post(
    "/v1/customers/{customer_id}/points/adjustments",
    response_model=AdjustmentRead,
    status_code=201,
    summary="Add or take away points by hand, once per idempotency key",
)
async def create_adjustment(
    customer_id: uuid.UUID,
    body: AdjustmentCreate,
    session: SessionDep,
    response: Response,
    principal: Annotated[Principal, require("marketer")],
) -> AdjustmentRead:
    result = await service.adjust(
        session,
        customer_id=customer_id,
        points=body.points,
        reason=body.reason,
        idempotency_key=body.idempotency_key,
        author=principal.header_value(),
    )
    await session.commit()
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    entry = result.entry
    return AdjustmentRead(
        id=entry.id,
        customer_id=entry.customer_id,
        delta=entry.delta,
        kind=EntryKind(entry.kind),
        reason=entry.reason,
        order_ref=entry.order_ref,
        created_at=entry.created_at,
        balance=result.balance,
    )


@router.get(
    "/v1/loyalty/reconciliation",
    response_model=ReconciliationRead,
    summary="Every balance checked against the sum of its ledger entries",
)
async def get_reconciliation(
    session: SessionDep, _: Annotated[Principal, require("admin")]
) -> ReconciliationRead:
    return ReconciliationRead.model_validate(await service.reconcile(session))
