import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from vafa.kit.auth import MemberId, StaffRead
from vafa.kit.db import SessionDep
from vafa.loyalty.config import Settings
from vafa.loyalty.models import ReferralStatus
from vafa.loyalty.referrals import service
from vafa.loyalty.referrals.schemas import ReferralCodeRead, ReferralRead, ReferralReport

router = APIRouter(tags=["referrals"])


@router.get(
    "/v1/club/me/referral",
    response_model=ReferralCodeRead,
    summary="The signed-in member's referral code (made on first asking)",
)
async def my_referral(
    request: Request, session: SessionDep, customer_id: MemberId
) -> ReferralCodeRead:
    code = await service.code_of(session, customer_id=customer_id)
    await session.commit()
    settings: Settings = request.app.state.settings
    return ReferralCodeRead(
        customer_id=customer_id,
        code=code.code,
        referrer_points=settings.referral_referrer_points,
        referred_points=settings.referral_referred_points,
    )


@router.get(
    "/v1/loyalty/referrals",
    response_model=ReferralReport,
    summary="Referrals, filtered, with totals by status and the points they gave",
)
async def referral_report(
    session: SessionDep,
    _: StaffRead,
    referrer_id: uuid.UUID | None = None,
    status: ReferralStatus | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ReferralReport:
    r = await service.report(
        session,
        referrer_id=referrer_id,
        status=status.value if status else None,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return ReferralReport(
        referrals=[ReferralRead.model_validate(x) for x in r.referrals],
        by_status=r.by_status,
        referrer_points=r.referrer_points,
        referred_points=r.referred_points,
    )
