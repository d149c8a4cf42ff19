"""The rewards catalogue, redemption, and the shop's checkout of coupons.

Redemption is one transaction: lock the member's account (the ledger's lock, so the member's
redemptions run one at a time: the per-member limit and the balance read stay true until the
commit), check the limit and the balance, pick a pool code with FOR UPDATE SKIP LOCKED (or
generate one), spend the points through the ledger, write the redemption, the coupon and
`RewardIssued` to the outbox, and last take one from the reward's stock with a conditional
UPDATE (`stock > 0`, so concurrent members never oversell it; last, so the hot row's lock is
held only until the commit just after). Any refusal raises and rolls it all back. The same idempotency key returns the first redemption and changes nothing.

A coupon is consumed by a conditional UPDATE (`consumed_order_ref IS NULL`): the same order
again is a replay, another order a 409 naming the order it was used on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2
from vafa.kit.cloudevents import deterministic_id, timestamp
from vafa.kit.errors import Conflict, NotFound, Problem
from vafa.loyalty import codes, ledger
from vafa.loyalty.events import LOYALTY_TOPIC, outbox
from vafa.loyalty.ledger import store
from vafa.loyalty.models import CodeSource, Coupon, Redemption, Reward, RewardCode
from vafa.loyalty.rewards import rules
from vafa.loyalty.rewards.schemas import RewardCreate, RewardUpdate

log = structlog.get_logger(__name__)

REDEEM_REASON = "reward"

# --- the catalogue -------------------------------------------------------------------------


def _check(data: RewardCreate | RewardUpdate) -> None:
    errors = rules.field_errors(data)
    if errors:
        raise Problem(
            422,
            f"/body/{errors[0][0]}: {errors[0][1]}",
            title="Your request is not valid",
            type="validation",
            errors=[
                {"pointer": f"/body/{f}", "detail": d, "type": "value_error"} for f, d in errors
            ],
        )


def _values(data: RewardCreate | RewardUpdate) -> dict[str, object]:
    values = data.model_dump()
    values["kind"] = data.kind.value
    values["code_source"] = data.code_source.value
    return values


async def create_reward(session: AsyncSession, *, data: RewardCreate) -> Reward:
    _check(data)
    reward = Reward(**_values(data))
    session.add(reward)
    await session.flush()
    await session.refresh(reward)
    return reward


async def get_reward(session: AsyncSession, *, reward_id: uuid.UUID, pointer: str = "") -> Reward:
    reward = await session.get(Reward, reward_id)
    if reward is None:
        extra = {"pointer": pointer} if pointer else {}
        raise NotFound(f"No reward has the id {reward_id}.", reward_id=str(reward_id), **extra)
    return reward


async def update_reward(
    session: AsyncSession, *, reward_id: uuid.UUID, data: RewardUpdate
) -> Reward:
    _check(data)
    reward = await get_reward(session, reward_id=reward_id)
    # Under the row lock a redemption takes, so a stock set by staff is not lost to one.
    await session.execute(select(Reward.id).where(Reward.id == reward_id).with_for_update())
    for key, value in _values(data).items():
        setattr(reward, key, value)
    await session.flush()
    await session.refresh(reward)
    return reward


async def withdraw_reward(session: AsyncSession, *, reward_id: uuid.UUID) -> None:
    """Rewards are never deleted (coupons and redemptions refer to them): withdrawn, they are no
    longer on offer, nor issued after purchases."""
    reward = await get_reward(session, reward_id=reward_id)
    reward.active = False
    await session.flush()


async def list_rewards(session: AsyncSession) -> list[Reward]:
    return list((await session.scalars(select(Reward).order_by(Reward.created_at))).all())


async def issued_counts(
    session: AsyncSession, reward_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(Redemption.reward_id, func.count())
        .where(Redemption.reward_id.in_(reward_ids))
        .group_by(Redemption.reward_id)
    )
    return {r: int(n) for r, n in rows}


async def codes_left(
    session: AsyncSession, reward_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(RewardCode.reward_id, func.count())
        .where(RewardCode.reward_id.in_(reward_ids), RewardCode.redemption_id.is_(None))
        .group_by(RewardCode.reward_id)
    )
    return {r: int(n) for r, n in rows}


_IMPORT = text(
    "INSERT INTO reward_codes (reward_id, code) SELECT :reward_id, unnest(CAST(:codes AS text[]))"
)
_TAKEN = text(
    "SELECT code FROM reward_codes WHERE code = ANY(CAST(:codes AS text[])) "
    "UNION SELECT code FROM coupons WHERE code = ANY(CAST(:codes AS text[]))"
)


async def import_codes(session: AsyncSession, *, reward_id: uuid.UUID, raw: Sequence[str]) -> int:
    """Adds codes to a pool reward, all or none: a blank code, a duplicate in the list or a
    code already known is a 422 naming its position (/body/codes/<i>)."""
    reward = await get_reward(session, reward_id=reward_id)
    if reward.code_source != CodeSource.pool:
        raise Conflict(
            "This reward generates its codes; set code_source to pool to import codes.",
            reward_id=str(reward_id),
        )
    normalised = [codes.normalise(c) for c in raw]
    errors: list[dict[str, str]] = []
    first_at: dict[str, int] = {}
    for i, code in enumerate(normalised):
        if not code:
            errors.append({"pointer": f"/body/codes/{i}", "detail": "blank code"})
        elif code in first_at:
            errors.append(
                {"pointer": f"/body/codes/{i}", "detail": f"repeats /body/codes/{first_at[code]}"}
            )
        else:
            first_at[code] = i
    # Serialise imports, so two at once cannot both find a code new.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('loyalty.reward_codes'))"))
    for code in (await session.execute(_TAKEN, {"codes": list(first_at)})).scalars():
        errors.append({"pointer": f"/body/codes/{first_at[code]}", "detail": f"{code} exists"})
    if errors:
        errors.sort(key=lambda e: int(e["pointer"].rsplit("/", 1)[1]))
        raise Problem(
            422,
            f"{errors[0]['pointer']}: {errors[0]['detail']} ({len(errors)} codes refused, "
            "none imported)",
            title="Your request is not valid",
            type="validation",
            errors=[{**e, "type": "value_error"} for e in errors[:1000]],
        )
    await session.execute(_IMPORT, {"reward_id": reward_id, "codes": list(first_at)})
    return len(first_at)


# --- redemption -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issued:
    redemption: Redemption
    coupon: Coupon
    reward: Reward
    balance: int
    replayed: bool


_LOCK_ACCOUNT = text("SELECT balance FROM accounts WHERE customer_id = :id FOR UPDATE")
_TAKE_STOCK = text(
    "UPDATE rewards SET stock = stock - 1 WHERE id = :id AND stock > 0 RETURNING stock"
)
_PICK_CODE = text(
    "SELECT id, code FROM reward_codes WHERE reward_id = :id AND redemption_id IS NULL "
    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_MARK_CODE = text("UPDATE reward_codes SET redemption_id = :redemption WHERE id = :id")
# A generated code must be new among coupons and pool codes alike; ON CONFLICT covers a code
# another transaction issues at the same moment.
_NEW_COUPON = text(
    "INSERT INTO coupons (code, reward_id, redemption_id, customer_id, expires_at) "
    "SELECT :code, :reward_id, :redemption_id, :customer_id, :expires_at "
    "WHERE NOT EXISTS (SELECT 1 FROM reward_codes WHERE code = :code) "
    "ON CONFLICT (code) DO NOTHING RETURNING code, issued_at"
)
_POOL_COUPON = text(
    "INSERT INTO coupons (code, reward_id, redemption_id, customer_id, expires_at) "
    "VALUES (:code, :reward_id, :redemption_id, :customer_id, :expires_at) "
    "RETURNING code, issued_at"
)


class InsufficientPoints(Problem):
    def __init__(self, *, balance: int, price: int) -> None:
        super().__init__(
            409,
            f"The reward costs {price} points; the balance is {balance}.",
            type="insufficient-points",
            balance=balance,
            points=price,
        )


async def _existing(session: AsyncSession, key: str) -> Redemption | None:
    return await session.scalar(select(Redemption).where(Redemption.idempotency_key == key))


async def _issued(session: AsyncSession, redemption: Redemption, balance: int) -> Issued:
    coupon = await session.scalar(select(Coupon).where(Coupon.redemption_id == redemption.id))
    reward = await session.get(Reward, redemption.reward_id)
    assert coupon is not None and reward is not None
    return Issued(redemption, coupon, reward, balance, replayed=True)


async def issue(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    reward_id: uuid.UUID,
    key: str,
    spend_points: bool,
    order_ref: str | None = None,
    now: datetime | None = None,
) -> Issued:
    """Issues the reward to the member once per `key` (see the module docstring). With
    `spend_points` false (the after-purchase reward) no points are taken."""
    now = now or datetime.now(UTC)
    locked = (await session.execute(_LOCK_ACCOUNT, {"id": customer_id})).scalar_one_or_none()
    if locked is None:  # a customer with no account yet (an after-purchase reward): open it
        await store.open_accounts(session, [customer_id])
        locked = (await session.execute(_LOCK_ACCOUNT, {"id": customer_id})).scalar_one()
    balance = int(locked)
    found = await _existing(session, key)
    if found is not None:
        if found.reward_id != reward_id or found.customer_id != customer_id:
            raise Conflict(
                "This idempotency key was already used for another redemption.",
                idempotency_key=key.rsplit(":", 1)[-1],
            )
        return await _issued(session, found, balance)
    reward = await get_reward(session, reward_id=reward_id, pointer="/body/reward_id")
    if not reward.active or not rules.on_offer(reward.starts_at, reward.ends_at, now):
        raise Problem(
            409, f"The reward {reward.name!r} is not on offer now.", type="reward-not-available"
        )
    if spend_points and reward.after_purchase:
        raise Problem(
            409,
            f"The reward {reward.name!r} is given after purchases; it cannot be redeemed.",
            type="reward-not-available",
        )
    if reward.per_member_limit is not None:
        mine = await session.scalar(
            select(func.count()).where(
                Redemption.customer_id == customer_id, Redemption.reward_id == reward_id
            )
        )
        if (mine or 0) >= reward.per_member_limit:
            raise Problem(
                409,
                f"You have had the reward {reward.name!r} {mine} times, its limit per member.",
                type="reward-limit-reached",
                limit=reward.per_member_limit,
            )
    price = reward.points_price if spend_points else 0
    if price > balance:
        raise InsufficientPoints(balance=balance, price=price)
    if reward.stock is not None and reward.stock <= 0:  # fail fast; the UPDATE below decides
        raise _out_of_stock(reward)
    redemption = Redemption(
        id=uuid.uuid4(),
        customer_id=customer_id,
        reward_id=reward_id,
        idempotency_key=key,
        points=price,
        order_ref=order_ref,
    )
    session.add(redemption)
    await session.flush()
    if price > 0:
        written = await ledger.spend(
            session,
            customer_id=customer_id,
            points=price,
            idempotency_key=f"redeem:{redemption.id}",
            reason=REDEEM_REASON,
            ref=str(redemption.id),
        )
        balance = written.balance
    expires_at = (
        now + timedelta(days=reward.coupon_valid_days) if reward.coupon_valid_days else None
    )
    coupon = await _coupon(session, reward, redemption, expires_at)
    await outbox.add(
        session,
        topic=LOYALTY_TOPIC,
        key=str(customer_id),
        message=reward_issued(reward, redemption, coupon, now=now),
        event_id=deterministic_id("loyalty", "reward-issued", str(redemption.id)),
    )
    if reward.stock is not None:
        # Last, just before the commit: every redemption of this reward queues on its row lock,
        # so it is held for one statement and the commit rather than the whole transaction.
        left = (await session.execute(_TAKE_STOCK, {"id": reward_id})).scalar_one_or_none()
        if left is None:
            raise _out_of_stock(reward)  # rolls back the spend and the coupon with it
        reward.stock = left  # what the UPDATE left, without another read
    return Issued(redemption, coupon, reward, balance, replayed=False)


def _out_of_stock(reward: Reward) -> Problem:
    return Problem(409, f"The reward {reward.name!r} is out of stock.", type="reward-out-of-stock")


async def _coupon(
    session: AsyncSession, reward: Reward, redemption: Redemption, expires_at: datetime | None
) -> Coupon:
    """Writes the member's coupon: the next free pool code, or a new generated one."""
    params = {
        "reward_id": reward.id,
        "redemption_id": redemption.id,
        "customer_id": redemption.customer_id,
        "expires_at": expires_at,
    }
    row = None
    if reward.code_source == CodeSource.pool:
        picked = (await session.execute(_PICK_CODE, {"id": reward.id})).one_or_none()
        if picked is None:
            raise Problem(
                409, f"The reward {reward.name!r} has no codes left.", type="reward-out-of-stock"
            )
        await session.execute(_MARK_CODE, {"redemption": redemption.id, "id": picked.id})
        row = (await session.execute(_POOL_COUPON, {**params, "code": picked.code})).one()
    else:
        for _ in range(8):  # 32^10 codes: one clash is unlikely already, eight are not real
            made = await session.execute(_NEW_COUPON, {**params, "code": codes.generate()})
            row = made.one_or_none()
            if row is not None:
                break
        else:
            raise RuntimeError("could not generate a unique coupon code")
    return Coupon(
        code=row.code,
        reward_id=reward.id,
        redemption_id=redemption.id,
        customer_id=redemption.customer_id,
        issued_at=row.issued_at,
        expires_at=expires_at,
        consumed_order_ref=None,
        consumed_at=None,
    )


def reward_issued(
    reward: Reward, redemption: Redemption, coupon: Coupon, *, now: datetime
) -> loyalty_pb2.RewardIssued:
    msg = loyalty_pb2.RewardIssued(
        customer_id=str(redemption.customer_id),
        redemption_id=str(redemption.id),
        reward_id=str(reward.id),
        reward_name=reward.name,
        reward_kind="next_purchase_discount" if reward.after_purchase else reward.kind,
        coupon_code=coupon.code,
        points_spent=redemption.points,
        occurred_at=timestamp(now),
    )
    if coupon.expires_at is not None:
        msg.expires_at.CopyFrom(timestamp(coupon.expires_at))
    return msg


async def after_purchase(
    session: AsyncSession, *, customer_id: uuid.UUID, order_ref: str, now: datetime | None = None
) -> list[Issued]:
    """The next-purchase discount: every active after-purchase reward, at no points, once per
    (order, reward). One that cannot be issued (out of stock, limit reached) is skipped, its
    partial writes undone by a savepoint, and the others still are."""
    now = now or datetime.now(UTC)
    rewards = (
        await session.scalars(
            select(Reward).where(Reward.after_purchase.is_(True), Reward.active.is_(True))
        )
    ).all()
    done: list[Issued] = []
    for reward in rewards:
        if not rules.on_offer(reward.starts_at, reward.ends_at, now):
            continue
        try:
            async with session.begin_nested():
                issued = await issue(
                    session,
                    customer_id=customer_id,
                    reward_id=reward.id,
                    key=f"after-purchase:{order_ref}:{reward.id}",
                    spend_points=False,
                    order_ref=order_ref,
                    now=now,
                )
        except Problem as exc:
            log.info(
                "after_purchase_reward_skipped",
                reward_id=str(reward.id),
                order_ref=order_ref,
                reason=exc.type,
            )
            continue
        if not issued.replayed:
            done.append(issued)
    return done


# --- what members see ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    reward: Reward
    redeemed: int
    balance: int

    @property
    def affordable(self) -> bool:
        return self.balance >= self.reward.points_price

    @property
    def available(self) -> bool:
        r = self.reward
        return (
            self.affordable
            and (r.stock is None or r.stock > 0)
            and (r.per_member_limit is None or self.redeemed < r.per_member_limit)
        )


async def offers(
    session: AsyncSession, *, customer_id: uuid.UUID, now: datetime | None = None
) -> list[Offer]:
    now = now or datetime.now(UTC)
    balance = await session.scalar(
        text("SELECT balance FROM accounts WHERE customer_id = :id"), {"id": customer_id}
    )
    rewards = [
        r
        for r in (
            await session.scalars(
                select(Reward)
                .where(Reward.active.is_(True), Reward.after_purchase.is_(False))
                .order_by(Reward.points_price, Reward.name)
            )
        ).all()
        if rules.on_offer(r.starts_at, r.ends_at, now)
    ]
    counted = await session.execute(
        select(Redemption.reward_id, func.count())
        .where(Redemption.customer_id == customer_id)
        .group_by(Redemption.reward_id)
    )
    mine = {reward_id: int(n) for reward_id, n in counted}
    return [Offer(r, int(mine.get(r.id, 0)), int(balance or 0)) for r in rewards]


async def member_coupons(
    session: AsyncSession, *, customer_id: uuid.UUID
) -> list[tuple[Coupon, Reward]]:
    rows = await session.execute(
        select(Coupon, Reward)
        .join(Reward, Reward.id == Coupon.reward_id)
        .where(Coupon.customer_id == customer_id)
        .order_by(Coupon.issued_at.desc())
    )
    return [(c, r) for c, r in rows]


# --- checkout: validate and consume ---------------------------------------------------------


async def find_coupon(session: AsyncSession, *, code: str) -> tuple[Coupon, Reward]:
    normalised = codes.normalise(code)
    row = (
        await session.execute(
            select(Coupon, Reward)
            .join(Reward, Reward.id == Coupon.reward_id)
            .where(Coupon.code == normalised)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"No coupon has the code {code!r}.", code=code)
    return row[0], row[1]


@dataclass(frozen=True, slots=True)
class Consumed:
    coupon: Coupon
    reward: Reward
    replayed: bool


_CONSUME = text(
    "UPDATE coupons SET consumed_order_ref = :order_ref, consumed_at = now() "
    "WHERE code = :code AND consumed_order_ref IS NULL "
    "AND (expires_at IS NULL OR expires_at > :now) RETURNING consumed_at"
)


class CouponAlreadyUsed(Problem):
    def __init__(self, *, code: str, order_ref: str, at: datetime | None) -> None:
        super().__init__(
            409,
            f"The coupon {code} was already used on order {order_ref}.",
            type="coupon-already-used",
            code=code,
            order_ref=order_ref,
            consumed_at=at.isoformat() if at else None,
        )


async def consume(
    session: AsyncSession,
    *,
    code: str,
    order_ref: str,
    total_minor: int | None = None,
    currency: str | None = None,
    now: datetime | None = None,
) -> Consumed:
    """Uses the coupon on the order, once: the same order again is a replay (nothing changes),
    another order a 409 naming the order it was used on."""
    now = now or datetime.now(UTC)
    coupon, reward = await find_coupon(session, code=code)
    if total_minor is not None and currency is not None:
        value = rules.value_on(reward, total_minor=total_minor, currency=currency)
        if not value.valid and coupon.consumed_order_ref is None:
            raise Problem(
                409,
                f"The coupon {coupon.code} does not apply to this order ({value.reason}).",
                type="coupon-not-applicable",
                code=coupon.code,
                reason=value.reason,
            )
    consumed_at = (
        await session.execute(_CONSUME, {"code": coupon.code, "order_ref": order_ref, "now": now})
    ).scalar_one_or_none()
    if consumed_at is None:
        await session.refresh(coupon, with_for_update=True)
        if coupon.consumed_order_ref == order_ref:
            return Consumed(coupon, reward, replayed=True)
        if coupon.consumed_order_ref is not None:
            raise CouponAlreadyUsed(
                code=coupon.code, order_ref=coupon.consumed_order_ref, at=coupon.consumed_at
            )
        raise Problem(
            409,
            f"The coupon {coupon.code} expired at {coupon.expires_at}.",
            type="coupon-expired",
            code=coupon.code,
            expires_at=coupon.expires_at.isoformat() if coupon.expires_at else None,
        )
    await session.refresh(coupon)
    await outbox.add(
        session,
        topic=LOYALTY_TOPIC,
        key=str(coupon.customer_id),
        message=loyalty_pb2.CouponRedeemed(
            customer_id=str(coupon.customer_id),
            coupon_code=coupon.code,
            reward_id=str(reward.id),
            order_ref=order_ref,
            occurred_at=timestamp(consumed_at),
        ),
        event_id=deterministic_id("loyalty", "coupon-redeemed", coupon.code),
    )
    return Consumed(coupon, reward, replayed=False)


# --- merges ---------------------------------------------------------------------------------


async def follow_merge(
    session: AsyncSession, *, survivor_id: uuid.UUID, merged_id: uuid.UUID
) -> None:
    """The merged file's redemptions and coupons are the survivor's from now on (so the member
    sees them, and per-member limits count them). Idempotent."""
    params = {"survivor": survivor_id, "merged": merged_id}
    await session.execute(
        text("UPDATE redemptions SET customer_id = :survivor WHERE customer_id = :merged"), params
    )
    await session.execute(
        text("UPDATE coupons SET customer_id = :survivor WHERE customer_id = :merged"), params
    )
