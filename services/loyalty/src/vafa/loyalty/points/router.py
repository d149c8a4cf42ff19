import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from vafa.kit.auth import MemberId, Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound
from vafa.loyalty.config import Settings
from vafa.loyalty.models import EntryKind
from vafa.loyalty.points import service
from vafa.loyalty.points.schemas import (
    AdjustmentCreate,
    AdjustmentRead,
    EntryRead,
    HistoryPage,
    LiabilityRead,
    PointsRead,
    ReconciliationRead,
)

router = APIRouter(tags=["loyalty"])


def _settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _points(session: SessionDep, customer_id: uuid.UUID) -> PointsRead:
    account = await service.get_account(session, customer_id=customer_id)
    if account is None:
        raise NotFound(
            f"No points account exists for customer {customer_id}.", customer_id=str(customer_id)
        )
    summary = await service.summary(session, account=account)
    entries = await service.latest_entries(session, customer_id=customer_id, limit=50)
    return PointsRead(
        customer_id=account.customer_id,
        balance=summary.balance,
        pending=summary.pending,
        next_expiry_at=summary.next_expiry_at,
        next_expiry_points=summary.next_expiry_points,
        entries=[EntryRead.model_validate(e) for e in entries],
    )


async def _history(
    session: SessionDep, customer_id: uuid.UUID, before: int | None, limit: int
) -> HistoryPage:
    if await service.get_account(session, customer_id=customer_id) is None:
        raise NotFound(
            f"No points account exists for customer {customer_id}.", customer_id=str(customer_id)
        )
    rows = await service.history(session, customer_id=customer_id, before=before, limit=limit)
    return HistoryPage(
        items=[EntryRead.model_validate(e) for e in rows],
        next_before=rows[-1].id if len(rows) == limit else None,
    )


Before = Annotated[
    int | None, Query(ge=1, description="Entries older than this id (the previous next_before).")
]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.get(
    "/v1/customers/{customer_id}/points",
    response_model=PointsRead,
    summary="A customer's points: balance, pending, soonest expiry and latest entries",
)
async def get_points(customer_id: uuid.UUID, session: SessionDep, _: StaffRead) -> PointsRead:
    return await _points(session, customer_id)


@router.get(
    "/v1/customers/{customer_id}/points/history",
    response_model=HistoryPage,
    summary="A customer's ledger, newest first, page by page",
)
async def get_history(
    customer_id: uuid.UUID,
    session: SessionDep,
    _: StaffRead,
    before: Before = None,
    limit: Limit = 50,
) -> HistoryPage:
    return await _history(session, customer_id, before, limit)


@router.get(
    "/v1/club/me/points",
    response_model=PointsRead,
    summary="The signed-in member's own points: balance, pending, soonest expiry",
)
async def get_my_points(session: SessionDep, customer_id: MemberId) -> PointsRead:
    return await _points(session, customer_id)


@router.get(
    "/v1/club/me/points/history",
    response_model=HistoryPage,
    summary="The signed-in member's own ledger with reasons, newest first, page by page",
)
async def get_my_history(
    session: SessionDep, customer_id: MemberId, before: Before = None, limit: Limit = 50
) -> HistoryPage:
    return await _history(session, customer_id, before, limit)


@router.post(
    "/v1/customers/{customer_id}/points/adjustments",
    response_model=AdjustmentRead,
    status_code=201,
    summary="Add or take away points by hand, with a reason, once per idempotency key",
)
async def create_adjustment(
    customer_id: uuid.UUID,
    body: AdjustmentCreate,
    session: SessionDep,
    response: Response,
    settings: SettingsDep,
    principal: Annotated[Principal, require("marketer")],
) -> AdjustmentRead:
    result = await service.adjust(
        session,
        customer_id=customer_id,
        points=body.points,
        reason=body.reason,
        idempotency_key=body.idempotency_key,
        author=principal.header_value(),
        validity_days=body.validity_days or settings.points_validity_days,
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
        balance_after=entry.balance_after,
        created_at=entry.created_at,
        balance=result.balance,
    )


@router.get(
    "/v1/loyalty/reconciliation",
    response_model=ReconciliationRead,
    summary="Every balance checked against its ledger entries and its lots",
)
async def get_reconciliation(
    session: SessionDep, _: Annotated[Principal, require("admin")]
) -> ReconciliationRead:
    return ReconciliationRead.model_validate(await service.reconcile(session))


@router.get(
    "/v1/loyalty/liability",
    response_model=LiabilityRead,
    summary="Points liability: outstanding points by expiry month, in points and in money",
)
async def get_liability(
    session: SessionDep,
    settings: SettingsDep,
    _: StaffRead,
    calendar: Annotated[
        Literal["gregorian", "jalali"] | None,
        Query(
            description="Months of the Gregorian or the Jalali (Solar Hijri) calendar "
            "(default: VAFA_LOYALTY_CALENDAR)."
        ),
    ] = None,
) -> LiabilityRead:
    return LiabilityRead.model_validate(
        await service.liability(
            session,
            point_value_minor=settings.point_value_minor,
            currency=settings.point_value_currency,
            calendar=calendar or settings.calendar,
            timezone=settings.timezone,
        )
    )
