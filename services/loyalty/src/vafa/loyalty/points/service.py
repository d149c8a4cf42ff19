"""The points ledger: every change of a balance is one append-only entry.

How a write works, for every kind of entry (and the kinds a later issue adds: lots, expiry,
redemptions, referral bonuses), one event or a whole batch of them alike (`store.py`):
1. Lock the account rows (`SELECT ... FOR UPDATE` in customer_id order, after
   `INSERT ... ON CONFLICT DO NOTHING` creates those an event is the first we hear of), so
   writes to one account are serialised and a decision taken on a balance stays true until the
   commit; read the idempotency keys already used and what the orders being reversed earned.
2. Decide the entries in memory, in order (`rules.py`): an entry's key is the business key of
   what caused it, so a replayed event or a retried request appends nothing.
3. Append the entries, move the balances and put the events in the outbox, in the same
   transaction.

Reversals never take a balance below zero: when the points to take back exceed the balance
(they were adjusted away by staff in the meantime, or a later issue lets members spend them),
the reversal takes the balance only and records that capped amount as its delta, possibly 0.
Reversals are recorded even when they take nothing, so their key is claimed: replaying a
cancellation after the order earned (out of order) still takes nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2, shop_orders_pb2
from vafa.kit.errors import Conflict, NotFound
from vafa.loyalty.models import Account, LedgerEntry
from vafa.loyalty.points import rules, store
from vafa.loyalty.points.rules import (
    ADJUST_EVENT_REASON,
    CANCEL_REASON,
    EARN_REASON,
    REFUND_REASON,
    InsufficientBalance,
    _warned_currencies,
    points_for,
)
from vafa.loyalty.points.store import Entry

__all__ = [
    "ADJUST_EVENT_REASON",
    "CANCEL_REASON",
    "EARN_REASON",
    "REFUND_REASON",
    "Adjusted",
    "Entry",
    "IdempotencyKeyReused",
    "InsufficientBalance",
    "Mismatch",
    "Reconciliation",
    "_warned_currencies",
    "adjust",
    "apply_purchase",
    "earn_for_order",
    "get_account",
    "latest_entries",
    "open_account",
    "points_for",
    "reconcile",
    "reverse_cancelled",
    "reverse_refunded",
]


# --- reads --------------------------------------------------------------------------------


async def get_account(session: AsyncSession, *, customer_id: uuid.UUID) -> Account | None:
    return await session.get(Account, customer_id, populate_existing=True)


async def latest_entries(
    session: AsyncSession, *, customer_id: uuid.UUID, limit: int = 50
) -> list[LedgerEntry]:
    rows = await session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.customer_id == customer_id)
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
    )
    return list(rows)


# --- one event at a time (the worker applies whole batches: store.apply_purchases) ---------


async def open_account(session: AsyncSession, *, customer_id: uuid.UUID) -> None:
    """Creates the account with balance 0 unless it exists (a registered customer)."""
    await store.open_accounts(session, [customer_id])


async def _one(session: AsyncSession, purchase: rules.Purchase) -> Entry | None:
    return (await store.apply_purchases(session, [purchase]))[0]


async def earn_for_order(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    order: shop_orders_pb2.Order,
    rates: Mapping[str, Decimal],
) -> Entry | None:
    """A paid order earns points on its total, once per order."""
    return await _one(session, rules.earn(customer_id, order, rates=rates))


async def reverse_cancelled(
    session: AsyncSession, *, customer_id: uuid.UUID, order: shop_orders_pb2.Order
) -> Entry | None:
    """A cancelled order gives back everything it still has earned."""
    return await _one(session, rules.cancel(customer_id, order))


async def reverse_refunded(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    order: shop_orders_pb2.Order,
    refund: shop_orders_pb2.Refund,
) -> Entry | None:
    """A refund gives back floor(earned × refunded / total), never more than the order still
    has earned."""
    return await _one(session, rules.refund(customer_id, order, refund))


async def apply_purchase(
    session: AsyncSession,
    *,
    purchase: profile_pb2.PurchaseAttributed,
    rates: Mapping[str, Decimal],
) -> Entry | None:
    """One purchase event; raises for one that cannot be keyed (see rules.read_purchase)."""
    return await _one(session, rules.read_purchase(purchase, rates=rates))


# --- manual adjustments -------------------------------------------------------------------


class IdempotencyKeyReused(Conflict):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"The idempotency key {key!r} was already used for a different adjustment.",
            idempotency_key=key,
        )


@dataclass(frozen=True, slots=True)
class Adjusted:
    entry: Entry
    balance: int
    # True when the request was a retry of one already applied: nothing changed.
    replayed: bool


async def adjust(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    points: int,
    reason: str,
    idempotency_key: str,
    author: str,
) -> Adjusted:
    """Adds (or takes, when negative) points by hand, once per idempotency key. Refuses an
    unknown customer and a result below zero."""
    ledger = await store.load(session, customers=[customer_id], create=False)
    if customer_id not in ledger.balances:
        raise NotFound(
            f"No points account exists for customer {customer_id}.", customer_id=str(customer_id)
        )
    key = f"adjust:{customer_id}:{idempotency_key}"
    existing = await store.entry_by_key(session, key)  # under the account lock
    if existing is not None:
        if (existing.delta, existing.reason) != (points, reason):
            raise IdempotencyKeyReused(idempotency_key)
        return Adjusted(entry=existing, balance=ledger.balances[customer_id], replayed=True)
    appended = ledger.adjust(customer_id, points=points, reason=reason, key=key, author=author)
    [entry] = await store.save(session, [appended])
    return Adjusted(entry=entry, balance=appended.balance, replayed=False)


# --- reconciliation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mismatch:
    customer_id: uuid.UUID
    balance: int
    ledger_sum: int


@dataclass(frozen=True, slots=True)
class Reconciliation:
    accounts: int
    balance_total: int
    ledger_total: int
    mismatch_count: int
    mismatches: list[Mismatch]


# One statement, so balances and entries are read from one snapshot.
_RECONCILE = text(
    """
    WITH per AS (
        SELECT a.customer_id, a.balance, COALESCE(l.total, 0)::bigint AS ledger_sum
        FROM accounts a
        LEFT JOIN (
            SELECT customer_id, SUM(delta) AS total FROM ledger_entries GROUP BY customer_id
        ) l ON l.customer_id = a.customer_id
    ), bad AS (
        SELECT * FROM per WHERE balance <> ledger_sum
    )
    SELECT
        (SELECT count(*) FROM per) AS accounts,
        (SELECT COALESCE(SUM(balance), 0)::bigint FROM per) AS balance_total,
        (SELECT COALESCE(SUM(delta), 0)::bigint FROM ledger_entries) AS ledger_total,
        (SELECT count(*) FROM bad) AS mismatch_count,
        (SELECT COALESCE(json_agg(json_build_object(
            'customer_id', customer_id, 'balance', balance, 'ledger_sum', ledger_sum)), '[]')
         FROM (SELECT * FROM bad ORDER BY customer_id LIMIT :limit) b) AS mismatches
    """
)


async def reconcile(session: AsyncSession, *, limit: int = 1000) -> Reconciliation:
    """Every account's balance against the sum of its ledger entries; lists up to `limit`
    accounts where they differ (there must be none)."""
    row = (await session.execute(_RECONCILE, {"limit": limit})).one()
    return Reconciliation(
        accounts=int(row.accounts),
        balance_total=int(row.balance_total),
        ledger_total=int(row.ledger_total),
        mismatch_count=int(row.mismatch_count),
        mismatches=[
            Mismatch(
                customer_id=uuid.UUID(m["customer_id"]),
                balance=int(m["balance"]),
                ledger_sum=int(m["ledger_sum"]),
            )
            for m in row.mismatches
        ],
    )
