"""The worker's periodic jobs over lots: unlock pending lots whose date has come
(→ PointsUnlocked), expire lots past their expiry (→ PointsExpired), warn ahead of expiry
(→ PointsExpiryWarning, once per lot per threshold), and the yearly birthday bonus.

Each works in chunks of accounts, one transaction per chunk, through the same Book as every
other write (account locks, keys). Keys: `unlock:<grant key>`, `expire:lot:<lot id>`,
`earn:birthday:<customer id>:<year>`; warnings are recorded in expiry_warnings (lot, days).
So running a job twice at the same instant, or two workers at once, has no second effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vafa.events.v1 import loyalty_pb2
from vafa.kit.cloudevents import deterministic_id
from vafa.kit.outbox import OutboxEvent
from vafa.loyalty.events import LOYALTY_TOPIC, outbox
from vafa.loyalty.ledger import store as ledger_store
from vafa.loyalty.models import LotStatus
from vafa.loyalty.points.rules import BIRTHDAY_REASON, UNLOCK_REASON
from vafa.loyalty.points.store import Policy
from vafa.loyalty.rules import engine
from vafa.loyalty.rules import service as rules_service
from vafa.loyalty.rules.definitions import Birthday

CHUNK = 500

_DUE_CUSTOMERS = text(
    "SELECT DISTINCT customer_id FROM ("
    " SELECT customer_id FROM lots WHERE remaining > 0 AND expires_at <= :now"
    " UNION ALL"
    " SELECT customer_id FROM lots WHERE status = 'pending' AND remaining > 0"
    " AND pending_until <= :now"
    ") d WHERE CAST(:only AS uuid[]) IS NULL OR customer_id = ANY(CAST(:only AS uuid[])) "
    "ORDER BY customer_id LIMIT :limit"
)


@dataclass(frozen=True, slots=True)
class ExpiryRun:
    unlocked_lots: int
    expired_lots: int
    expired_points: int
    warnings: int


async def expire_and_unlock(
    session: AsyncSession, *, now: datetime, only: Sequence[uuid.UUID] | None = None
) -> tuple[int, int, int]:
    """One chunk: unlocks and expires the due lots of up to CHUNK accounts (of `only`, when
    given); the caller commits. Returns (lots unlocked, lots expired, points expired);
    (0, 0, 0): nothing due."""
    params = {"now": now, "limit": CHUNK, "only": list(only) if only is not None else None}
    ids = list((await session.execute(_DUE_CUSTOMERS, params)).scalars())
    if not ids:
        return 0, 0, 0
    book = await ledger_store.load(session, customers=ids, lots_of=ids, create=False)
    unlocked = expired = points = 0
    for cid in sorted(book.lots):
        # Unlock first: a lot that is due both is unlocked, then expired (the events say so).
        for lot in sorted(book.lots[cid], key=lambda lot: lot.order):
            if (
                lot.status == LotStatus.pending
                and lot.pending_until is not None
                and lot.pending_until <= now
                and book.unlock(lot, key=f"unlock:{lot.grant_key or lot.id}", reason=UNLOCK_REASON)
            ):
                unlocked += 1
        for lot in sorted(book.lots[cid], key=lambda lot: lot.order):
            if lot.expires_at is not None and lot.expires_at <= now and lot.remaining > 0:
                n = lot.remaining
                if book.expire(lot, key=f"expire:lot:{lot.id}"):
                    expired += 1
                    points += n
    await ledger_store.save(session, book)
    return unlocked, expired, points


_TO_WARN = text(
    "SELECT l.id, l.customer_id, l.remaining, l.expires_at, a.balance FROM lots l "
    "JOIN accounts a ON a.customer_id = l.customer_id "
    "WHERE l.remaining > 0 AND l.status = 'available' "
    "AND l.expires_at > :now AND l.expires_at <= :horizon "
    "AND NOT EXISTS (SELECT 1 FROM expiry_warnings w WHERE w.lot_id = l.id AND w.days_ahead = :d) "
    "ORDER BY l.id LIMIT :limit"
)
_WARNED = text(
    "INSERT INTO expiry_warnings (lot_id, days_ahead) "
    "SELECT * FROM unnest(CAST(:lots AS bigint[]), CAST(:days AS int[])) "
    "ON CONFLICT DO NOTHING RETURNING lot_id, days_ahead"
)


async def warn(session: AsyncSession, *, now: datetime, days: Sequence[int]) -> int:
    """One chunk of expiry warnings; the caller commits. For each threshold (largest first), a
    lot expiring within it that has not been warned for it yet is recorded (and so are the
    larger thresholds it is already inside); only its nearest threshold is published, so a lot
    found 5 days ahead with thresholds [30, 7] gets one warning (7), not two."""
    sent = 0
    for d in sorted(days):  # nearest first: the warning a lot gets is its nearest threshold
        rows = (
            await session.execute(
                _TO_WARN, {"now": now, "horizon": now + timedelta(days=d), "d": d, "limit": CHUNK}
            )
        ).all()
        if not rows:
            continue
        larger = [x for x in days if x >= d]
        lots = [r.id for r in rows for _ in larger]
        claimed = {
            (lot, dd)
            for lot, dd in await session.execute(
                _WARNED, {"lots": lots, "days": [x for _ in rows for x in larger]}
            )
        }
        events = []
        for r in rows:
            if (r.id, d) not in claimed:
                continue  # another run took it
            expires = Timestamp()
            expires.FromDatetime(r.expires_at)
            events.append(
                OutboxEvent(
                    topic=LOYALTY_TOPIC,
                    key=str(r.customer_id),
                    message=loyalty_pb2.PointsExpiryWarning(
                        customer_id=str(r.customer_id),
                        points=int(r.remaining),
                        expires_at=expires,
                        days_ahead=d,
                        balance=int(r.balance),
                    ),
                    event_id=deterministic_id("loyalty", "expiry-warning", str(r.id), str(d)),
                )
            )
        await outbox.add_many(session, events)
        sent += len(events)
    return sent


async def run_expiry(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    warning_days: Sequence[int] = (30, 7),
) -> ExpiryRun:
    """The periodic job: chunks of unlock + expiry, then chunks of warnings, each chunk its
    own transaction, until nothing is due."""
    now = now or datetime.now(UTC)
    unlocked = expired = points = warnings = 0
    while True:
        async with sessionmaker() as session:
            u, e, p = await expire_and_unlock(session, now=now)
            await session.commit()
        unlocked, expired, points = unlocked + u, expired + e, points + p
        if (u, e) == (0, 0):
            break
    while warning_days:
        async with sessionmaker() as session:
            n = await warn(session, now=now, days=warning_days)
            await session.commit()
        warnings += n
        if n == 0:
            break
    return ExpiryRun(unlocked, expired, points, warnings)


# --- birthdays ----------------------------------------------------------------------------

_BIRTHDAYS = text(
    "SELECT customer_id FROM accounts "
    "WHERE birth_date IS NOT NULL AND merged_into IS NULL AND erased_at IS NULL "
    "AND EXTRACT(MONTH FROM birth_date) = :month AND EXTRACT(DAY FROM birth_date) = ANY(:days) "
    "AND customer_id > :after ORDER BY customer_id LIMIT :limit"
)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


async def grant_birthdays(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    policy: Policy,
    now: datetime | None = None,
) -> int:
    """Grants the active birthday rule's points to every member whose birthday is today (in the
    shop's time zone; 29 February birthdays on 28 February in other years), once per customer
    per year (key `earn:birthday:<customer>:<year>`). Returns the number of grants."""
    now = now or datetime.now(UTC)
    today: date = now.astimezone(ZoneInfo(policy.timezone)).date()
    async with sessionmaker() as session:
        rules = await rules_service.active_rules(session, since=now, until=now)
    if not any(isinstance(r.definition, Birthday) for r in rules):
        return 0
    days = [today.day]
    if today.month == 2 and today.day == 28 and not _is_leap(today.year):
        days.append(29)
    granted = 0
    after = uuid.UUID(int=0)
    while True:
        async with sessionmaker() as session:
            ids = list(
                (
                    await session.execute(
                        _BIRTHDAYS,
                        {"month": today.month, "days": days, "after": after, "limit": CHUNK},
                    )
                ).scalars()
            )
            if not ids:
                break
            after = ids[-1]
            keys = {cid: f"earn:birthday:{cid}:{today.year}" for cid in ids}
            book = await ledger_store.load(
                session, customers=ids, keys=list(keys.values()), create=False
            )
            for cid in ids:
                account = book.accounts.get(cid)
                if account is None:
                    continue
                rule = engine.birthday_rule(rules, at=now, tier=account.tier)
                if rule is None:
                    continue
                assert isinstance(rule.definition, Birthday)
                points = rule.definition.points
                validity = rule.definition.validity_days or policy.validity_days
                if book.grant(
                    cid,
                    points=points,
                    key=keys[cid],
                    reason=BIRTHDAY_REASON,
                    now=now,
                    ref=str(today.year),
                    expires_at=now + timedelta(days=validity),
                ):
                    granted += 1
            await ledger_store.save(session, book)
            await session.commit()
    return granted
