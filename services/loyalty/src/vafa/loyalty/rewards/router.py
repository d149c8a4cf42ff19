import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Response

from vafa.kit.auth import MemberId, Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.kit.errors import Problem
from vafa.loyalty.models import Coupon, Reward
from vafa.loyalty.rewards import rules, service
from vafa.loyalty.rewards.schemas import (
    CodesImport,
    CodesImported,
    CouponCheck,
    CouponConsume,
    CouponRead,
    CouponValidation,
    MemberRewardRead,
    RedemptionCreate,
    RedemptionRead,
    RewardCreate,
    RewardRead,
    RewardUpdate,
)

router = APIRouter(tags=["rewards"])
Marketer = Annotated[Principal, require("marketer")]
Shop = Annotated[Principal, require("shop")]


async def _reward_read(session: SessionDep, reward: Reward) -> RewardRead:
    issued = await service.issued_counts(session, [reward.id])
    left = await service.codes_left(session, [reward.id])
    read = RewardRead.model_validate(reward)
    read.issued = issued.get(reward.id, 0)
    read.codes_left = left.get(reward.id, 0) if reward.code_source == "pool" else None
    return read


@router.get("/v1/loyalty/rewards", response_model=list[RewardRead], summary="The catalogue")
async def list_rewards(session: SessionDep, _: StaffRead) -> list[RewardRead]:
    rewards = await service.list_rewards(session)
    ids = [r.id for r in rewards]
    issued, left = await service.issued_counts(session, ids), await service.codes_left(session, ids)
    out = []
    for r in rewards:
        read = RewardRead.model_validate(r)
        read.issued = issued.get(r.id, 0)
        read.codes_left = left.get(r.id, 0) if r.code_source == "pool" else None
        out.append(read)
    return out


@router.post(
    "/v1/loyalty/rewards", response_model=RewardRead, status_code=201, summary="Add a reward"
)
async def create_reward(body: RewardCreate, session: SessionDep, _: Marketer) -> RewardRead:
    reward = await service.create_reward(session, data=body)
    await session.commit()
    return await _reward_read(session, reward)


@router.get("/v1/loyalty/rewards/{reward_id}", response_model=RewardRead, summary="One reward")
async def get_reward(reward_id: uuid.UUID, session: SessionDep, _: StaffRead) -> RewardRead:
    return await _reward_read(session, await service.get_reward(session, reward_id=reward_id))


@router.put("/v1/loyalty/rewards/{reward_id}", response_model=RewardRead, summary="Change a reward")
async def update_reward(
    reward_id: uuid.UUID, body: RewardUpdate, session: SessionDep, _: Marketer
) -> RewardRead:
    reward = await service.update_reward(session, reward_id=reward_id, data=body)
    await session.commit()
    return await _reward_read(session, reward)


@router.delete(
    "/v1/loyalty/rewards/{reward_id}",
    status_code=204,
    summary="Withdraw a reward: no longer on offer; coupons already issued stay valid",
)
async def delete_reward(reward_id: uuid.UUID, session: SessionDep, _: Marketer) -> Response:
    await service.withdraw_reward(session, reward_id=reward_id)
    await session.commit()
    return Response(status_code=204)


@router.post(
    "/v1/loyalty/rewards/{reward_id}/codes",
    response_model=CodesImported,
    status_code=201,
    summary="Import codes into a pool reward (all or none)",
)
async def import_codes(
    reward_id: uuid.UUID, body: CodesImport, session: SessionDep, _: Marketer
) -> CodesImported:
    n = await service.import_codes(session, reward_id=reward_id, raw=body.codes)
    await session.commit()
    left = await service.codes_left(session, [reward_id])
    return CodesImported(imported=n, codes_left=left.get(reward_id, 0))


# --- members ------------------------------------------------------------------------------


def coupon_read(coupon: Coupon, reward: Reward, now: datetime | None = None) -> CouponRead:
    now = now or datetime.now(UTC)
    return CouponRead(
        code=coupon.code,
        reward_id=reward.id,
        reward_name=reward.name,
        kind=reward.kind,
        percent_off=reward.percent_off,
        amount_minor=reward.amount_minor,
        currency=reward.currency,
        gift_sku=reward.gift_sku,
        min_order_minor=reward.min_order_minor,
        customer_id=coupon.customer_id,
        issued_at=coupon.issued_at,
        expires_at=coupon.expires_at,
        status=rules.coupon_status(coupon.consumed_order_ref, coupon.expires_at, now),
        consumed_order_ref=coupon.consumed_order_ref,
        consumed_at=coupon.consumed_at,
    )


@router.get(
    "/v1/club/me/rewards",
    response_model=list[MemberRewardRead],
    summary="Rewards on offer to the signed-in member, with what they can afford",
)
async def my_rewards(session: SessionDep, customer_id: MemberId) -> list[MemberRewardRead]:
    offers = await service.offers(session, customer_id=customer_id)
    return [
        MemberRewardRead(
            id=o.reward.id,
            name=o.reward.name,
            description=o.reward.description,
            kind=o.reward.kind,
            percent_off=o.reward.percent_off,
            amount_minor=o.reward.amount_minor,
            currency=o.reward.currency,
            gift_sku=o.reward.gift_sku,
            points_price=o.reward.points_price,
            stock=o.reward.stock,
            per_member_limit=o.reward.per_member_limit,
            redeemed=o.redeemed,
            affordable=o.affordable,
            points_short=max(0, o.reward.points_price - o.balance),
            available=o.available,
        )
        for o in offers
    ]


@router.post(
    "/v1/club/me/redemptions",
    response_model=RedemptionRead,
    status_code=201,
    summary="Spend points on a reward and get its coupon, once per idempotency key",
)
async def redeem(
    body: RedemptionCreate,
    session: SessionDep,
    customer_id: MemberId,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RedemptionRead:
    key = idempotency_key or body.idempotency_key
    if not key or not key.strip():
        raise Problem(
            422,
            "An Idempotency-Key header or an idempotency_key in the body is required.",
            title="Your request is not valid",
            type="validation",
            errors=[
                {
                    "pointer": "/body/idempotency_key",
                    "detail": "required (or the Idempotency-Key header)",
                    "type": "missing",
                }
            ],
        )
    issued = await service.issue(
        session,
        customer_id=customer_id,
        reward_id=body.reward_id,
        key=f"redeem:{customer_id}:{key.strip()}",
        spend_points=True,
    )
    await session.commit()
    if issued.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    r = issued.redemption
    return RedemptionRead(
        id=r.id,
        reward_id=r.reward_id,
        points=r.points,
        balance=issued.balance,
        order_ref=r.order_ref,
        created_at=r.created_at,
        coupon=coupon_read(issued.coupon, issued.reward),
    )


@router.get(
    "/v1/club/me/coupons",
    response_model=list[CouponRead],
    summary="The signed-in member's coupons, newest first",
)
async def my_coupons(session: SessionDep, customer_id: MemberId) -> list[CouponRead]:
    rows = await service.member_coupons(session, customer_id=customer_id)
    now = datetime.now(UTC)
    return [coupon_read(c, r, now) for c, r in rows]


@router.get(
    "/v1/customers/{customer_id}/coupons",
    response_model=list[CouponRead],
    summary="A customer's coupons, newest first (for support)",
)
async def customer_coupons(
    customer_id: uuid.UUID, session: SessionDep, _: StaffRead
) -> list[CouponRead]:
    rows = await service.member_coupons(session, customer_id=customer_id)
    now = datetime.now(UTC)
    return [coupon_read(c, r, now) for c, r in rows]


# --- the shop's checkout ------------------------------------------------------------------


@router.post(
    "/v1/coupons/{code}/validate",
    response_model=CouponValidation,
    summary="Is the coupon valid for this order, and what does it take off?",
)
async def validate_coupon(
    code: str, body: CouponCheck, session: SessionDep, _: Shop
) -> CouponValidation:
    coupon, reward = await service.find_coupon(session, code=code)
    now = datetime.now(UTC)
    read = coupon_read(coupon, reward, now)
    value = rules.value_on(reward, total_minor=body.total_minor, currency=body.currency)
    reason = (
        "used" if read.status == "used" else "expired" if read.status == "expired" else None
    ) or value.reason
    valid = reason is None
    return CouponValidation(
        code=coupon.code,
        valid=valid,
        reason=reason,
        discount_minor=value.discount_minor if valid else 0,
        currency=body.currency,
        free_shipping=value.free_shipping and valid,
        gift_sku=reward.gift_sku if valid else None,
        coupon=read,
    )


@router.post(
    "/v1/coupons/{code}/consume",
    response_model=CouponRead,
    summary="Use the coupon on an order: once; the same order again is a replay",
)
async def consume_coupon(
    code: str, body: CouponConsume, session: SessionDep, response: Response, _: Shop
) -> CouponRead:
    if (body.total_minor is None) != (body.currency is None):
        missing = "currency" if body.currency is None else "total_minor"
        raise Problem(
            422,
            f"/body/{missing}: total_minor and currency go together",
            title="Your request is not valid",
            type="validation",
            errors=[{"pointer": f"/body/{missing}", "detail": "required", "type": "missing"}],
        )
    done = await service.consume(
        session,
        code=code,
        order_ref=body.order_ref,
        total_minor=body.total_minor,
        currency=body.currency,
    )
    await session.commit()
    if done.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return coupon_read(done.coupon, done.reward)
