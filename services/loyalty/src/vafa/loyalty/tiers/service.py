"""Tiers: the ladder (staff CRUD), each member's measure, and the decision applied to
`accounts.tier` / `accounts.tier_multiplier` (which the ledger's earning rules read).

Every change of a member's tier happens under the account's row lock (the ledger's lock, so
a tier change and an earn never interleave) and publishes `TierChanged` in the same
transaction. Events only raise a tier; `reevaluate` (the periodic job, or staff on demand)
also lowers it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2
from vafa.kit.db import Database
from vafa.kit.errors import Conflict, NotFound, Problem
from vafa.kit.outbox import OutboxEvent
from vafa.loyalty.events import LOYALTY_TOPIC, outbox
from vafa.loyalty.ledger import store
from vafa.loyalty.models import Tier, TierMeasure
from vafa.loyalty.periods import ShopCalendar
from vafa.loyalty.tiers import rules
from vafa.loyalty.tiers.schemas import TierCreate, TierUpdate

# --- the ladder ---------------------------------------------------------------------------


async def list_tiers(session: AsyncSession) -> list[Tier]:
    return list((await session.scalars(select(Tier).order_by(Tier.threshold))).all())


async def get_tier(session: AsyncSession, *, code: str) -> Tier:
    tier = await session.scalar(select(Tier).where(Tier.code == code))
    if tier is None:
        raise NotFound(f"No tier has the code {code!r}.", code=code)
    return tier


async def _check_ladder(session: AsyncSession, data: TierCreate | TierUpdate, *, code: str) -> None:
    """All tiers measure the same thing over the same window, or they would not form a ladder:
    a tier that differs from the others is a 409 naming the field."""
    others = [t for t in await list_tiers(session) if t.code != code]
    if not others:
        return
    first = others[0]
    for field in ("measure", "window", "currency"):
        theirs, mine = getattr(first, field), getattr(data, field)
        mine = mine.value if hasattr(mine, "value") else mine
        if theirs != mine:
            raise Problem(
                409,
                f"Every tier must have the same {field}: the ladder uses {theirs!r}, "
                f"this tier {mine!r}.",
                type="tier-ladder-mismatch",
                pointer=f"/body/{field}",
                expected=theirs,
            )
    for t in others:
        if t.threshold == data.threshold:
            raise Problem(
                409,
                f"Tier {t.code!r} already has the threshold {t.threshold}.",
                type="tier-threshold-taken",
                pointer="/body/threshold",
                tier=t.code,
            )


def _values(data: TierCreate | TierUpdate) -> dict[str, object]:
    return {
        "name": data.name,
        "threshold": data.threshold,
        "measure": data.measure.value,
        "currency": data.currency,
        "window": data.window.value,
        "earn_multiplier": data.earn_multiplier,
        "free_shipping": data.free_shipping,
        "perks": list(data.perks),
    }


async def create_tier(session: AsyncSession, *, data: TierCreate) -> Tier:
    # One writer of the ladder at a time, so two concurrent creations cannot break its rules.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('loyalty.tiers'))"))
    if await session.scalar(select(Tier.id).where(Tier.code == data.code)) is not None:
        raise Conflict(f"A tier with the code {data.code!r} exists.", code=data.code)
    await _check_ladder(session, data, code=data.code)
    tier = Tier(code=data.code, **_values(data))
    session.add(tier)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"A tier with the code {data.code!r} exists.", code=data.code) from None
    await session.refresh(tier)
    return tier


async def update_tier(session: AsyncSession, *, code: str, data: TierUpdate) -> Tier:
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('loyalty.tiers'))"))
    tier = await get_tier(session, code=code)
    await _check_ladder(session, data, code=code)
    for key, value in _values(data).items():
        setattr(tier, key, value)
    await session.flush()
    await session.refresh(tier)
    return tier


async def delete_tier(session: AsyncSession, *, code: str) -> None:
    """Members keep the code until the next re-evaluation moves them (a deleted tier ranks
    below every tier, so their next event upgrades them to where they qualify)."""
    await get_tier(session, code=code)
    await session.execute(delete(Tier).where(Tier.code == code))


# --- measures -------------------------------------------------------------------------------

# Points earned: every grant (orders, earning rules, referrals), pending or not, net of its
# reversals; adjustments, spending, expiry and unlocking (pending becoming spendable) do not
# move a tier.
# A member's points include those earned by the files merged into theirs (the ledger moves
# the merged balance with `merge` entries, which are not counted, so nothing counts twice).
_POINTS = text(
    "WITH members AS ("
    "  SELECT customer_id, COALESCE(merged_into, customer_id) AS member FROM accounts"
    "  WHERE customer_id = ANY(CAST(:ids AS uuid[])) OR merged_into = ANY(CAST(:ids AS uuid[]))"
    ") "
    "SELECT m.member, COALESCE(SUM(e.delta + e.pending_delta), 0)::bigint "
    "FROM members m JOIN ledger_entries e ON e.customer_id = m.customer_id "
    "WHERE e.kind IN ('earn', 'reverse') "
    "AND e.created_at >= COALESCE(CAST(:start AS timestamptz), '-infinity') "
    "AND e.created_at < COALESCE(CAST(:end AS timestamptz), 'infinity') "
    "GROUP BY m.member"
)
# club_orders follow a merge (referrals/service.merge moves them to the survivor).
_SPEND = text(
    "SELECT o.customer_id, "
    "COALESCE(SUM(GREATEST(o.total_minor - COALESCE(r.refunded, 0), 0)), 0)::bigint "
    "FROM club_orders o LEFT JOIN LATERAL ("
    "  SELECT SUM(amount_minor) AS refunded FROM club_order_refunds x"
    "  WHERE x.order_ref = o.order_ref"
    ") r ON true "
    "WHERE o.customer_id = ANY(CAST(:ids AS uuid[])) AND NOT o.cancelled "
    "AND o.currency = :currency "
    "AND o.paid_at >= COALESCE(CAST(:start AS timestamptz), '-infinity') "
    "AND o.paid_at < COALESCE(CAST(:end AS timestamptz), 'infinity') "
    "GROUP BY o.customer_id"
)


@dataclass(frozen=True, slots=True)
class Ladder:
    rungs: list[rules.Rung]
    measure: str
    window: str
    currency: str | None

    @classmethod
    def of(cls, tiers: Sequence[Tier]) -> Ladder | None:
        if not tiers:
            return None
        first = tiers[0]
        return cls(
            rungs=rules.ladder(
                [rules.Rung(t.code, t.name, t.threshold, t.earn_multiplier) for t in tiers]
            ),
            measure=first.measure,
            window=first.window,
            currency=first.currency,
        )


async def _measure(
    session: AsyncSession,
    ladder: Ladder,
    ids: Sequence[uuid.UUID],
    start: datetime | None,
    end: datetime | None = None,
) -> dict[uuid.UUID, int]:
    params: dict[str, object] = {"ids": list(ids), "start": start, "end": end}
    if ladder.measure == TierMeasure.spend:
        stmt = _SPEND
        params["currency"] = ladder.currency
    else:
        stmt = _POINTS
    found = {customer: int(v) for customer, v in await session.execute(stmt, params)}
    return {customer: found.get(customer, 0) for customer in ids}


async def measures(
    session: AsyncSession,
    ladder: Ladder,
    ids: Sequence[uuid.UUID],
    *,
    now: datetime,
    cal: ShopCalendar = ShopCalendar(),
) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, int]]:
    """Per member: the measure in the current window, and the one a re-evaluation keeps a tier
    on (for a calendar year, the better of this year and last)."""
    current = await _measure(session, ladder, ids, rules.window_start(ladder.window, now, cal))
    keep = dict(current)
    previous = rules.previous_window(ladder.window, now, cal)
    if previous is not None:
        last = await _measure(session, ladder, ids, *previous)
        keep = {c: max(current[c], last[c]) for c in ids}
    return current, keep


# --- applying decisions ---------------------------------------------------------------------

_LOCK = text(
    "SELECT customer_id, tier FROM accounts WHERE customer_id = ANY(CAST(:ids AS uuid[])) "
    "ORDER BY customer_id FOR UPDATE"
)
_SET_TIERS = text(
    "UPDATE accounts AS a SET tier = v.tier, tier_multiplier = v.multiplier, updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:tiers AS text[]), CAST(:multipliers AS numeric[])) "
    "AS v(customer_id, tier, multiplier) WHERE a.customer_id = v.customer_id"
)


@dataclass(frozen=True, slots=True)
class Evaluated:
    evaluated: int
    upgraded: int
    downgraded: int


def tier_changed(
    customer_id: uuid.UUID, decision: rules.Decision, *, at: datetime
) -> loyalty_pb2.TierChanged:
    occurred_at = Timestamp()
    occurred_at.FromDatetime(at)
    return loyalty_pb2.TierChanged(
        customer_id=str(customer_id),
        previous_tier=decision.previous or "",
        tier=decision.tier.code if decision.tier else "",
        direction=decision.direction,
        occurred_at=occurred_at,
    )


async def evaluate(
    session: AsyncSession,
    *,
    customer_ids: Sequence[uuid.UUID],
    allow_downgrade: bool,
    now: datetime | None = None,
    cal: ShopCalendar = ShopCalendar(),
) -> Evaluated:
    """Applies the tier rules to the members (set-based: a few statements for any number):
    events call it with allow_downgrade=False (only up), the re-evaluation with True."""
    now = now or datetime.now(UTC)
    ladder = Ladder.of(await list_tiers(session))
    ids = sorted(set(customer_ids))
    if not ids:
        return Evaluated(0, 0, 0)
    await store.open_accounts(session, ids)
    current = {c: t for c, t in await session.execute(_LOCK, {"ids": ids})}
    if ladder is None:
        return Evaluated(len(ids), 0, 0)
    value, keep = await measures(session, ladder, ids, now=now, cal=cal)
    changed: list[tuple[uuid.UUID, rules.Decision]] = []
    for c in ids:
        d = rules.decide(
            ladder.rungs,
            current[c],
            value[c],
            allow_downgrade=allow_downgrade,
            keep_measure=keep[c],
        )
        if d.direction:
            changed.append((c, d))
    if changed:
        await session.execute(
            _SET_TIERS,
            {
                "ids": [c for c, _ in changed],
                "tiers": [d.tier.code if d.tier else None for _, d in changed],
                "multipliers": [
                    d.tier.earn_multiplier if d.tier else Decimal(1) for _, d in changed
                ],
            },
        )
        await outbox.add_many(
            session,
            [
                OutboxEvent(topic=LOYALTY_TOPIC, key=str(c), message=tier_changed(c, d, at=now))
                for c, d in changed
            ],
        )
    return Evaluated(
        evaluated=len(ids),
        upgraded=sum(1 for _, d in changed if d.direction in ("upgrade", "initial")),
        downgraded=sum(1 for _, d in changed if d.direction == "downgrade"),
    )


_ACCOUNTS_PAGE = text(
    "SELECT customer_id FROM accounts WHERE customer_id > :after ORDER BY customer_id LIMIT :n"
)


async def reevaluate_all(
    db: Database,
    *,
    now: datetime | None = None,
    cal: ShopCalendar = ShopCalendar(),
    page: int = 500,
) -> Evaluated:
    """Every account, a page per transaction (so the job never holds many locks for long)."""
    after = uuid.UUID(int=0)
    total = Evaluated(0, 0, 0)
    while True:
        async with db.sessionmaker() as session:
            ids = list(
                (await session.execute(_ACCOUNTS_PAGE, {"after": after, "n": page})).scalars()
            )
            if not ids:
                return total
            done = await evaluate(session, customer_ids=ids, allow_downgrade=True, now=now, cal=cal)
            await session.commit()
        total = Evaluated(
            total.evaluated + done.evaluated,
            total.upgraded + done.upgraded,
            total.downgraded + done.downgraded,
        )
        after = ids[-1]


# --- a member's progress ------------------------------------------------------------------

_ACCOUNT_TIER = text("SELECT tier, tier_multiplier FROM accounts WHERE customer_id = :id")


@dataclass(frozen=True, slots=True)
class MemberTier:
    customer_id: uuid.UUID
    ladder: Ladder | None
    progress: rules.Progress
    earn_multiplier: Decimal


async def member_tier(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    now: datetime | None = None,
    cal: ShopCalendar = ShopCalendar(),
) -> MemberTier:
    now = now or datetime.now(UTC)
    row = (await session.execute(_ACCOUNT_TIER, {"id": customer_id})).one_or_none()
    if row is None:
        raise NotFound(
            f"No points account exists for customer {customer_id}.", customer_id=str(customer_id)
        )
    ladder = Ladder.of(await list_tiers(session))
    if ladder is None:
        return MemberTier(customer_id, None, rules.progress([], None, 0), Decimal(1))
    value, _ = await measures(session, ladder, [customer_id], now=now, cal=cal)
    return MemberTier(
        customer_id,
        ladder,
        rules.progress(ladder.rungs, row.tier, value[customer_id]),
        Decimal(row.tier_multiplier if row.tier_multiplier is not None else 1),
    )
