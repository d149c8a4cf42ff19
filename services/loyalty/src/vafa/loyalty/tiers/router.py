import uuid
from typing import Annotated

from fastapi import APIRouter, Request, Response

from vafa.kit.auth import MemberId, Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.loyalty.periods import ShopCalendar
from vafa.loyalty.tiers import service
from vafa.loyalty.tiers.schemas import (
    ReevaluationRead,
    TierCreate,
    TierProgressRead,
    TierRead,
    TierRef,
    TierUpdate,
)

router = APIRouter(tags=["tiers"])
Marketer = Annotated[Principal, require("marketer")]


@router.get("/v1/loyalty/tiers", response_model=list[TierRead], summary="The tier ladder")
async def list_tiers(session: SessionDep, _: StaffRead) -> list[TierRead]:
    return [TierRead.model_validate(t) for t in await service.list_tiers(session)]


@router.post("/v1/loyalty/tiers", response_model=TierRead, status_code=201, summary="Add a tier")
async def create_tier(body: TierCreate, session: SessionDep, _: Marketer) -> TierRead:
    tier = await service.create_tier(session, data=body)
    await session.commit()
    return TierRead.model_validate(tier)


@router.get("/v1/loyalty/tiers/{code}", response_model=TierRead, summary="One tier")
async def get_tier(code: str, session: SessionDep, _: StaffRead) -> TierRead:
    return TierRead.model_validate(await service.get_tier(session, code=code))


@router.put("/v1/loyalty/tiers/{code}", response_model=TierRead, summary="Change a tier")
async def update_tier(code: str, body: TierUpdate, session: SessionDep, _: Marketer) -> TierRead:
    tier = await service.update_tier(session, code=code, data=body)
    await session.commit()
    return TierRead.model_validate(tier)


@router.delete("/v1/loyalty/tiers/{code}", status_code=204, summary="Remove a tier")
async def delete_tier(code: str, session: SessionDep, _: Marketer) -> Response:
    await service.delete_tier(session, code=code)
    await session.commit()
    return Response(status_code=204)


@router.post(
    "/v1/loyalty/tiers/reevaluation",
    response_model=ReevaluationRead,
    summary="Re-evaluate every member's tier now (downgrades included), as the periodic job does",
)
async def reevaluate(
    request: Request, _: Annotated[Principal, require("admin")]
) -> ReevaluationRead:
    # Paged in transactions of its own, like the periodic job.
    done = await service.reevaluate_all(
        request.app.state.db, cal=ShopCalendar.of(request.app.state.settings)
    )
    return ReevaluationRead(
        evaluated=done.evaluated, upgraded=done.upgraded, downgraded=done.downgraded
    )


def _progress_read(m: service.MemberTier) -> TierProgressRead:
    p = m.progress
    unit = "points" if m.ladder is None or m.ladder.measure == "points" else m.ladder.currency
    parts = []
    if p.next_tier is not None:
        parts.append(f"{p.to_next} {unit} more to reach {p.next_tier.name}")
    if p.tier is not None:
        parts.append(f"{p.to_keep} to keep {p.tier.name}")
    return TierProgressRead(
        customer_id=m.customer_id,
        tier=TierRef(code=p.tier.code, name=p.tier.name, threshold=p.tier.threshold)
        if p.tier
        else None,
        earn_multiplier=m.earn_multiplier,
        measure=m.ladder.measure if m.ladder else None,
        window=m.ladder.window if m.ladder else None,
        currency=m.ladder.currency if m.ladder else None,
        value=p.measure,
        next_tier=TierRef(
            code=p.next_tier.code, name=p.next_tier.name, threshold=p.next_tier.threshold
        )
        if p.next_tier
        else None,
        to_next=p.to_next,
        to_keep=p.to_keep,
        message=", ".join(parts),
    )


@router.get(
    "/v1/customers/{customer_id}/tier",
    response_model=TierProgressRead,
    summary="A customer's tier and progress",
)
async def get_customer_tier(
    customer_id: uuid.UUID, request: Request, session: SessionDep, _: StaffRead
) -> TierProgressRead:
    cal = ShopCalendar.of(request.app.state.settings)
    return _progress_read(await service.member_tier(session, customer_id=customer_id, cal=cal))


@router.get(
    "/v1/club/me/tier",
    response_model=TierProgressRead,
    summary="The signed-in member's tier and progress",
)
async def get_my_tier(
    request: Request, session: SessionDep, customer_id: MemberId
) -> TierProgressRead:
    cal = ShopCalendar.of(request.app.state.settings)
    return _progress_read(await service.member_tier(session, customer_id=customer_id, cal=cal))
