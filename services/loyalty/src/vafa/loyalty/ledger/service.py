"""The ledger API for the rest of the service (the rewards part calls `grant` and `spend`).

Both take the caller's session and do not commit: the caller commits its own unit of work
(a redemption: spend + coupon in one transaction). Both lock the account row (serialised per
account), are idempotent by key (a repeat returns the first result, `replayed=True`, and has no
second effect; the same key for a different write is a 409), append a ledger entry, keep
balance == sum(ledger) == sum(available lots), and put PointsEarned / PointsRedeemed in the
outbox in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.loyalty.ledger import store
from vafa.loyalty.ledger.book import IdempotencyKeyReused, InsufficientPoints
from vafa.loyalty.ledger.store import Entry
from vafa.loyalty.models import EntryKind

__all__ = ["IdempotencyKeyReused", "InsufficientPoints", "LedgerWrite", "grant", "spend"]

# The default validity of a lot when the caller gives no expiry (config: points_validity_days).
DEFAULT_VALIDITY = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class LedgerWrite:
    """The result of a ledger write (or of its first run, when `replayed`)."""

    entry_id: int
    customer_id: uuid.UUID
    kind: str
    # Signed: what the spendable balance moved by (negative for a spend).
    points: int
    pending_points: int
    # The account right after the entry.
    balance: int
    pending: int
    idempotency_key: str
    created_at: datetime
    # The lot a grant opened.
    lot_id: int | None
    replayed: bool

    @classmethod
    def of(cls, entry: Entry, *, replayed: bool) -> LedgerWrite:
        return cls(
            entry_id=entry.id,
            customer_id=entry.customer_id,
            kind=entry.kind,
            points=entry.delta,
            pending_points=entry.pending_delta,
            balance=entry.balance_after if entry.balance_after is not None else 0,
            pending=entry.pending_after if entry.pending_after is not None else 0,
            idempotency_key=entry.idempotency_key,
            created_at=entry.created_at,
            lot_id=entry.lot_id,
            replayed=replayed,
        )


async def _replay(
    session: AsyncSession, key: str, *, customer_id: uuid.UUID, kind: str, delta: int
) -> LedgerWrite | None:
    existing = await store.entry_by_key(session, key)
    if existing is None:
        return None
    if (existing.customer_id, existing.kind, existing.delta + existing.pending_delta) != (
        customer_id,
        kind,
        delta,
    ):
        raise IdempotencyKeyReused(key)
    return LedgerWrite.of(existing, replayed=True)


async def grant(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    points: int,
    idempotency_key: str,
    reason: str,
    ref: str | None = None,
    expires_at: datetime | None = None,
    pending_until: datetime | None = None,
    author: str | None = None,
    now: datetime | None = None,
    validity: timedelta = DEFAULT_VALIDITY,
) -> LedgerWrite:
    """Grants `points` (> 0) as a new lot: spendable at once, or pending until
    `pending_until` (the expiry job unlocks it then, → PointsUnlocked). `expires_at` None:
    `now + validity`. `ref` is kept on the entry (e.g. a referral or order ref). Opens the
    account if needed. → PointsEarned (reason `reason`)."""
    if points <= 0:
        raise ValueError("grant: points must be positive")
    now = now or datetime.now(UTC)
    book = await store.load(session, customers=[customer_id], keys=[idempotency_key])
    if idempotency_key in book.used_keys:
        replay = await _replay(
            session, idempotency_key, customer_id=customer_id, kind="earn", delta=points
        )
        assert replay is not None
        return replay
    pending = pending_until is not None and pending_until > now
    book.grant(
        customer_id,
        points=points,
        key=idempotency_key,
        reason=reason,
        now=now,
        kind=EntryKind.earn,
        order_ref=None,
        ref=ref,
        expires_at=expires_at or now + validity,
        pending=pending,
        pending_until=pending_until if pending else None,
        author=author,
    )
    [entry] = await store.save(session, book)
    return LedgerWrite.of(entry, replayed=False)


async def spend(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    points: int,
    idempotency_key: str,
    reason: str,
    ref: str,
    author: str | None = None,
) -> LedgerWrite:
    """Spends `points` (> 0) from the spendable balance, soonest-to-expire lots first (the
    draws are recorded in lot_draws). Raises InsufficientPoints (409 problem+json, type
    "insufficient-points", with `balance` and `requested`) when short; pending points are not
    spendable. → PointsRedeemed (reason `reason`, ref `ref`)."""
    if points <= 0:
        raise ValueError("spend: points must be positive")
    book = await store.load(
        session, customers=[customer_id], keys=[idempotency_key], lots_of=[customer_id]
    )
    if idempotency_key in book.used_keys:
        replay = await _replay(
            session, idempotency_key, customer_id=customer_id, kind="spend", delta=-points
        )
        assert replay is not None
        return replay
    book.spend(
        customer_id, points=points, key=idempotency_key, reason=reason, ref=ref, author=author
    )
    [entry] = await store.save(session, book)
    return LedgerWrite.of(entry, replayed=False)
