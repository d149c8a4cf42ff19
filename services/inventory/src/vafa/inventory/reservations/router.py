from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from vafa.inventory.reservations import service
from vafa.inventory.reservations.combiner import Combiner
from vafa.inventory.reservations.schemas import ReservationCreate, ReservationRead
from vafa.kit.auth import Principal, StaffRead, require
from vafa.kit.db import SessionDep

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])

OrderRef = Annotated[str, Path(min_length=1, max_length=200, description="The order's id.")]
# The shop's checkout (and staff acting for it) reserve; members order through the shop.
Writer = Annotated[Principal, require("shop", "marketer")]


def _combiner(request: Request) -> Combiner:
    """One per app (per process), made on first use."""
    state = request.app.state
    combiner: Combiner | None = getattr(state, "reservation_combiner", None)
    if combiner is None:
        combiner = state.reservation_combiner = Combiner(
            state.db, default_threshold=int(state.settings.default_low_stock_threshold)
        )
    return combiner


def _settings(request: Request) -> tuple[int, int]:
    s = request.app.state.settings
    return int(s.default_low_stock_threshold), int(s.reservation_hold_seconds)


@router.post(
    "",
    response_model=ReservationRead,
    status_code=201,
    summary="Hold stock for an order (all or nothing; 409 insufficient-stock names what is left)",
)
async def create_reservation(
    body: ReservationCreate,
    session: SessionDep,
    request: Request,
    response: Response,
    principal: Writer,
) -> ReservationRead:
    _threshold, hold = _settings(request)
    reservation, created = await service.create(
        session,
        body,
        combiner=_combiner(request),
        hold_seconds=hold,
        source=principal.kind,
        author=principal.header_value(),
    )
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return reservation


@router.get("/{order_ref}", response_model=ReservationRead, summary="A reservation")
async def get_reservation(
    order_ref: OrderRef, session: SessionDep, _: StaffRead
) -> ReservationRead:
    return await service.get(session, order_ref)


@router.post(
    "/{order_ref}/confirm",
    response_model=ReservationRead,
    summary="Confirm a hold: its units are sold (on hand and reserved both drop)",
)
async def confirm_reservation(
    order_ref: OrderRef, session: SessionDep, request: Request, principal: Writer
) -> ReservationRead:
    threshold, _hold = _settings(request)
    await service.confirm(
        session, order_ref, default_threshold=threshold, author=principal.header_value()
    )
    await session.commit()
    return await service.get(session, order_ref)


@router.delete(
    "/{order_ref}",
    response_model=ReservationRead,
    summary="Release a hold: exactly what it holds becomes available again",
)
async def release_reservation(
    order_ref: OrderRef, session: SessionDep, request: Request, principal: Writer
) -> ReservationRead:
    threshold, _hold = _settings(request)
    await service.release(
        session, order_ref, default_threshold=threshold, author=principal.header_value()
    )
    await session.commit()
    return await service.get(session, order_ref)
