from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from vafa.inventory.stock import service
from vafa.inventory.stock.schemas import (
    AvailabilityQuery,
    AvailabilityRead,
    ClubSubscriptionCreate,
    MovementCreate,
    MovementRead,
    MovementResult,
    StockRead,
    StockUpdate,
    SubscriptionCreate,
    SubscriptionRead,
)
from vafa.kit.auth import MemberDep, Principal, StaffRead, StaffWrite, require
from vafa.kit.db import SessionDep

router = APIRouter(tags=["stock"])

Sku = Annotated[str, Path(min_length=1, max_length=128, description="The shop's SKU.")]
LocationId = Annotated[str, Path(min_length=1, max_length=64, description="The location's id.")]


def _threshold(request: Request) -> int:
    return int(request.app.state.settings.default_low_stock_threshold)


@router.get(
    "/v1/products/{sku}/stock",
    response_model=StockRead,
    summary="Stock of a SKU: totals, status and the breakdown per location",
)
async def get_stock(sku: Sku, session: SessionDep, request: Request, _: StaffRead) -> StockRead:
    return await service.get_stock(session, sku, default_threshold=_threshold(request))


@router.put(
    "/v1/products/{sku}/stock",
    response_model=StockRead,
    summary="Set the counted stock of a SKU at the default location",
)
async def put_stock(
    sku: Sku,
    body: StockUpdate,
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, require("shop")],
) -> StockRead:
    threshold = _threshold(request)
    await service.set_level(
        session,
        sku=sku,
        on_hand=body.on_hand,
        low_stock_threshold=body.low_stock_threshold,
        reason=body.reason,
        author=principal.header_value(),
        default_threshold=threshold,
    )
    await session.commit()
    return await service.get_stock(session, sku, default_threshold=threshold)


@router.post(
    "/v1/locations/{location_id}/movements",
    response_model=MovementResult,
    summary="Record a receipt, damage or count correction at a location",
)
async def create_movement(
    location_id: LocationId,
    body: MovementCreate,
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, require("shop")],
) -> MovementResult:
    threshold = _threshold(request)
    applied = await service.move(
        session,
        location_id=location_id,
        kind=body.kind,
        lines=body.lines,
        reason=body.reason,
        reference=body.reference,
        author=principal.header_value(),
        default_threshold=threshold,
    )
    await session.commit()
    stock = await service.read_stock(
        session, [li.sku for li in body.lines], default_threshold=threshold
    )
    return MovementResult(location_id=location_id, kind=body.kind, applied=applied, stock=stock)


@router.get(
    "/v1/products/{sku}/movements",
    response_model=list[MovementRead],
    summary="A SKU's movement ledger, newest first",
)
async def list_movements(
    sku: Sku,
    session: SessionDep,
    _: StaffRead,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[int | None, Query(ge=1, description="Page: ids below this.")] = None,
) -> list[MovementRead]:
    return await service.list_movements(session, sku, limit=limit, before_id=before_id)


@router.post(
    "/v1/availability",
    response_model=AvailabilityRead,
    summary="Status and available units of up to 500 SKUs (public: the storefront shows it)",
    openapi_extra={"security": []},
)
async def post_availability(
    body: AvailabilityQuery, session: SessionDep, request: Request
) -> AvailabilityRead:
    items = await service.availability(session, body.skus, default_threshold=_threshold(request))
    return AvailabilityRead(items=items)


@router.post(
    "/v1/products/{sku}/subscriptions",
    response_model=SubscriptionRead,
    status_code=201,
    summary="Subscribe a customer to an out-of-stock SKU's return",
)
async def create_subscription(
    sku: Sku,
    body: SubscriptionCreate,
    session: SessionDep,
    request: Request,
    response: Response,
    _: StaffWrite,
) -> SubscriptionRead:
    sub, created = await service.subscribe(
        session, sku=sku, customer_id=body.customer_id, default_threshold=_threshold(request)
    )
    await session.commit()
    if not created:
        response.status_code = 200
    return sub


@router.post(
    "/v1/club/me/back-in-stock",
    response_model=SubscriptionRead,
    status_code=201,
    summary="The signed-in member asks to hear when an out-of-stock SKU returns",
)
async def create_my_subscription(
    body: ClubSubscriptionCreate,
    session: SessionDep,
    request: Request,
    response: Response,
    member: MemberDep,
) -> SubscriptionRead:
    sub, created = await service.subscribe(
        session, sku=body.sku, customer_id=member.id, default_threshold=_threshold(request)
    )
    await session.commit()
    if not created:
        response.status_code = 200
    return sub
