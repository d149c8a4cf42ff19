"""Referrals: a code per member, the referral a new customer's `referred_by_code` opens, and
its completion when the referred customer's first order is paid: both sides earn through the
ledger, once (grant keys "referral:<referred_id>:referrer" / ":referred").

- One referral per referred customer (its primary key), so a replayed registration opens none.
- A registration and a first payment can arrive in either order (two topics): both take the
  same per-customer advisory lock, and whichever comes second completes the referral.
- Refused: an unknown code; self-referral — the same customer, or the two sharing a phone, an
  email or an address (from profile's snapshots, kept in `customer_contacts`), checked when the
  referral opens and again when it completes.
- Cap: a referrer earns for at most `referral_cap` referrals per calendar period; beyond it the
  referred customer still earns, the referrer gets 0 (note "referrer_capped"). The count is
  taken under the referrer's code row lock, so concurrent completions cannot both slip under.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2, profile_pb2
from vafa.kit.cloudevents import deterministic_id
from vafa.loyalty import codes, ledger, periods
from vafa.loyalty.config import Settings
from vafa.loyalty.events import LOYALTY_TOPIC, outbox
from vafa.loyalty.ledger import store as ledger_store
from vafa.loyalty.models import CustomerContact, Referral, ReferralCode, ReferralStatus
from vafa.loyalty.referrals import rules

REFERRER_REASON = "referral"
REFERRED_REASON = "referred"

# --- codes -------------------------------------------------------------------------------------


async def code_of(session: AsyncSession, *, customer_id: uuid.UUID) -> ReferralCode:
    """The member's referral code, made on first asking (a concurrent first ask gets the same)."""
    found = await session.get(ReferralCode, customer_id)
    if found is not None:
        return found
    for _ in range(8):
        stmt = (
            insert(ReferralCode)
            .values(customer_id=customer_id, code=codes.generate(8))
            .on_conflict_do_nothing()
        )
        await session.execute(stmt)
        found = await session.get(ReferralCode, customer_id, populate_existing=True)
        if found is not None:
            return found
    raise RuntimeError("could not generate a unique referral code")


# --- contacts ----------------------------------------------------------------------------------


async def record_contacts(
    session: AsyncSession, snapshot: profile_pb2.CustomerSnapshot
) -> uuid.UUID:
    customer_id = uuid.UUID(snapshot.customer_id)
    c = rules.Contacts.of(snapshot.phones, snapshot.emails, snapshot.address or None)
    values = {"phones": sorted(c.phones), "emails": sorted(c.emails), "address": c.address}
    stmt = insert(CustomerContact).values(customer_id=customer_id, **values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[CustomerContact.customer_id], set_={**values, "updated_at": func.now()}
        )
    )
    return customer_id


async def forget_contacts(session: AsyncSession, *, customer_id: uuid.UUID) -> None:
    """An erased customer's phones, emails and address go; the referrals (ids only) stay, so
    the points they gave remain explained."""
    await session.execute(delete(CustomerContact).where(CustomerContact.customer_id == customer_id))


async def _contacts(session: AsyncSession, customer_id: uuid.UUID) -> rules.Contacts:
    row = await session.get(CustomerContact, customer_id, populate_existing=True)
    if row is None:
        return rules.Contacts(frozenset(), frozenset(), None)
    return rules.Contacts(frozenset(row.phones), frozenset(row.emails), row.address)


async def _self_referral(
    session: AsyncSession, referrer: uuid.UUID, referred: uuid.UUID
) -> str | None:
    if referrer == referred:
        return "self_referral:same_customer"
    same = rules.shared(await _contacts(session, referrer), await _contacts(session, referred))
    return f"self_referral:{same}" if same else None


# --- opening and completing ------------------------------------------------------------------


async def _lock_customer(session: AsyncSession, customer_id: uuid.UUID) -> None:
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('loyalty.referral:' || :id))"),
        {"id": str(customer_id)},
    )


_LOCK_PAIR = text(
    "SELECT customer_id FROM accounts WHERE customer_id = ANY(CAST(:ids AS uuid[])) "
    "ORDER BY customer_id FOR UPDATE"
)
_SURVIVOR = text("SELECT merged_into FROM accounts WHERE customer_id = :id")
_FIRST_PAID = text(
    "SELECT order_ref FROM club_orders WHERE customer_id = :id AND NOT cancelled "
    "ORDER BY paid_at, order_ref LIMIT 1"
)


async def open_referral(
    session: AsyncSession,
    *,
    referred_id: uuid.UUID,
    code: str,
    settings: Settings,
    now: datetime | None = None,
) -> Referral | None:
    """The referral a registration with a code opens (None when the customer has one already)."""
    now = now or datetime.now(UTC)
    await _lock_customer(session, referred_id)
    if await session.get(Referral, referred_id) is not None:
        return None
    normalised = codes.normalise(code)
    owner = await session.scalar(
        select(ReferralCode.customer_id).where(ReferralCode.code == normalised)
    )
    if owner is not None:  # a code of a file since merged belongs to the survivor
        owner = await session.scalar(_SURVIVOR, {"id": owner}) or owner
    referral = Referral(
        referred_id=referred_id,
        referrer_id=owner,
        code=normalised or code,
        status=ReferralStatus.pending.value,
    )
    if owner is None:
        referral.status, referral.note = ReferralStatus.refused.value, "unknown_code"
    elif (why := await _self_referral(session, owner, referred_id)) is not None:
        referral.status, referral.note = ReferralStatus.refused.value, why
    session.add(referral)
    await session.flush()
    if referral.status == ReferralStatus.pending:
        first = await session.scalar(_FIRST_PAID, {"id": referred_id})
        if first is not None:
            await _complete(session, referral, order_ref=first, settings=settings, now=now)
    return referral


async def on_paid(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    settings: Settings,
    now: datetime | None = None,
) -> Referral | None:
    """Completes the customer's pending referral on their first paid order (recorded in
    club_orders before this is called)."""
    await _lock_customer(session, customer_id)
    referral = await session.get(Referral, customer_id, populate_existing=True)
    if referral is None or referral.status != ReferralStatus.pending:
        return None
    first = await session.scalar(_FIRST_PAID, {"id": customer_id})
    if first is None:
        return None
    await _complete(session, referral, order_ref=first, settings=settings, now=now)
    return referral


async def _complete(
    session: AsyncSession,
    referral: Referral,
    *,
    order_ref: str,
    settings: Settings,
    now: datetime | None,
) -> None:
    now = now or datetime.now(UTC)
    referrer = referral.referrer_id
    assert referrer is not None
    why = await _self_referral(session, referrer, referral.referred_id)
    if why is not None:  # the contacts changed since it opened
        referral.status, referral.note = ReferralStatus.refused.value, why
        await session.flush()
        return
    # The referrer's code row: their completions are counted one at a time.
    await session.execute(
        select(ReferralCode.customer_id)
        .where(ReferralCode.customer_id == referrer)
        .with_for_update()
    )
    counted = await session.scalar(
        select(func.count()).where(
            Referral.referrer_id == referrer,
            Referral.status == ReferralStatus.completed.value,
            Referral.referrer_points > 0,
            Referral.completed_at
            >= periods.period_start(
                settings.referral_cap_period,
                now,
                timezone=settings.timezone,
                calendar=settings.calendar,
            ),
        )
    )
    referrer_points = settings.referral_referrer_points
    if (counted or 0) >= settings.referral_cap:
        referrer_points = 0
        referral.note = "referrer_capped"
    referred_points = settings.referral_referred_points
    key = f"referral:{referral.referred_id}"
    # Both accounts locked now, in customer-id order like every ledger writer, so the two
    # grants below cannot deadlock with a batch that locks the same pair.
    await ledger_store.open_accounts(session, [referrer, referral.referred_id])
    await session.execute(_LOCK_PAIR, {"ids": sorted([referrer, referral.referred_id])})
    if referred_points > 0:
        await ledger.grant(
            session,
            customer_id=referral.referred_id,
            points=referred_points,
            idempotency_key=f"{key}:referred",
            reason=REFERRED_REASON,
            ref=order_ref,
        )
    if referrer_points > 0:
        await ledger.grant(
            session,
            customer_id=referrer,
            points=referrer_points,
            idempotency_key=f"{key}:referrer",
            reason=REFERRER_REASON,
            ref=str(referral.referred_id),
        )
    referral.status = ReferralStatus.completed.value
    referral.order_ref = order_ref
    referral.referrer_points = referrer_points
    referral.referred_points = referred_points
    referral.completed_at = now
    await session.flush()
    occurred_at = Timestamp()
    occurred_at.FromDatetime(now)
    await outbox.add(
        session,
        topic=LOYALTY_TOPIC,
        key=str(referrer),
        message=loyalty_pb2.ReferralCompleted(
            referrer_id=str(referrer),
            referred_id=str(referral.referred_id),
            referral_code=referral.code,
            order_ref=order_ref,
            referrer_points=referrer_points,
            referred_points=referred_points,
            occurred_at=occurred_at,
        ),
        event_id=deterministic_id("loyalty", "referral-completed", str(referral.referred_id)),
    )


# --- merges ---------------------------------------------------------------------------------

_FOLLOW_MERGE = [
    # The survivor keeps their own code; takes the merged file's when they had none (a code
    # left with the merged file still refers to the survivor, see open_referral).
    "UPDATE referral_codes SET customer_id = :survivor WHERE customer_id = :merged "
    "AND NOT EXISTS (SELECT 1 FROM referral_codes WHERE customer_id = :survivor)",
    "UPDATE referrals SET referrer_id = :survivor WHERE referrer_id = :merged",
    "UPDATE referrals SET referred_id = :survivor WHERE referred_id = :merged "
    "AND NOT EXISTS (SELECT 1 FROM referrals WHERE referred_id = :survivor)",
    "UPDATE club_orders SET customer_id = :survivor WHERE customer_id = :merged",
    # The survivor's next snapshot carries the contacts of both.
    "DELETE FROM customer_contacts WHERE customer_id = :merged",
]


async def follow_merge(
    session: AsyncSession, *, survivor_id: uuid.UUID, merged_id: uuid.UUID
) -> None:
    """What the merged file had here becomes the survivor's: its referral code (unless the
    survivor has one), the referrals it made or was made by, its paid orders (spend tiers,
    first order). Idempotent. A pending referral between the two files is refused when it
    would complete (self-referral)."""
    if survivor_id == merged_id:
        return
    await _lock_customer(session, merged_id)
    await _lock_customer(session, survivor_id)
    params = {"survivor": survivor_id, "merged": merged_id}
    for statement in _FOLLOW_MERGE:
        await session.execute(text(statement), params)


# --- the staff report --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    referrals: list[Referral]
    by_status: dict[str, int]
    referrer_points: int
    referred_points: int


async def report(
    session: AsyncSession,
    *,
    referrer_id: uuid.UUID | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Report:
    conditions = []
    if referrer_id is not None:
        conditions.append(Referral.referrer_id == referrer_id)
    if status is not None:
        conditions.append(Referral.status == status)
    if since is not None:
        conditions.append(Referral.created_at >= since)
    if until is not None:
        conditions.append(Referral.created_at < until)
    rows = (
        await session.scalars(
            select(Referral)
            .where(*conditions)
            .order_by(Referral.created_at.desc(), Referral.referred_id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    totals = (
        await session.execute(
            select(
                Referral.status,
                func.count(),
                func.coalesce(func.sum(Referral.referrer_points), 0),
                func.coalesce(func.sum(Referral.referred_points), 0),
            )
            .where(*conditions)
            .group_by(Referral.status)
        )
    ).all()
    return Report(
        referrals=list(rows),
        by_status={s: int(n) for s, n, _, _ in totals},
        referrer_points=sum(int(a) for _, _, a, _ in totals),
        referred_points=sum(int(b) for _, _, _, b in totals),
    )
