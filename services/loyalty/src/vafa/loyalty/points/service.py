"""Points: what the API and the handlers ask of the ledger (ledger/ holds the rules and the
write path; points/store.py runs purchases and interactions through it, set-based).

Reversals never take a balance below zero: when the points to take back exceed what the
order's lots and the balance still hold (the member spent them, or staff took them away), the
reversal takes what there is and records that amount, possibly 0; the shortfall is forgiven.
No rule allows a negative balance (a CHECK constraint refuses one).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import jdatetime
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2, shop_orders_pb2
from vafa.kit.errors import NotFound
from vafa.loyalty.ledger import store as ledger_store
from vafa.loyalty.ledger.book import IdempotencyKeyReused, InsufficientPoints
from vafa.loyalty.models import Account, LedgerEntry
from vafa.loyalty.points import rules, store
from vafa.loyalty.points.rules import (
    ADJUST_EVENT_REASON,
    CANCEL_REASON,
    EARN_REASON,
    REFUND_REASON,
    _warned_currencies,
    points_for,
)
from vafa.loyalty.points.store import Entry, Policy

# The old name of the 409 of an adjustment below zero.
InsufficientBalance = InsufficientPoints

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
    "history",
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


def _policy(rates: Mapping[str, Decimal] | None) -> Policy:
    return Policy(default_rates=rates) if rates is not None else Policy()


async def _one(
    session: AsyncSession, purchase: rules.Purchase, rates: Mapping[str, Decimal] | None = None
) -> Entry | None:
    return (await store.apply_purchases(session, [purchase], policy=_policy(rates)))[0]


def _wrap(
    customer_id: uuid.UUID,
    kind: profile_pb2.PurchaseKind.ValueType,
    order: shop_orders_pb2.Order,
    refund: shop_orders_pb2.Refund | None = None,
) -> rules.Purchase:
    msg = profile_pb2.PurchaseAttributed(customer_id=str(customer_id), kind=kind, order=order)
    if refund is not None:
        msg.refund.CopyFrom(refund)
    return rules.read_purchase(msg)


async def earn_for_order(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    order: shop_orders_pb2.Order,
    rates: Mapping[str, Decimal],
) -> Entry | None:
    """A paid order earns points on its total, once per order."""
    return await _one(session, _wrap(customer_id, profile_pb2.PURCHASE_KIND_PAID, order), rates)


async def reverse_cancelled(
    session: AsyncSession, *, customer_id: uuid.UUID, order: shop_orders_pb2.Order
) -> Entry | None:
    """A cancelled order gives back everything it still has earned."""
    return await _one(session, _wrap(customer_id, profile_pb2.PURCHASE_KIND_CANCELLED, order))


async def reverse_refunded(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    order: shop_orders_pb2.Order,
    refund: shop_orders_pb2.Refund,
) -> Entry | None:
    """A refund gives back floor(earned × refunded / total), never more than the order still
    has earned."""
    return await _one(
        session, _wrap(customer_id, profile_pb2.PURCHASE_KIND_REFUNDED, order, refund)
    )


async def apply_purchase(
    session: AsyncSession,
    *,
    purchase: profile_pb2.PurchaseAttributed,
    rates: Mapping[str, Decimal] | None = None,
    at: datetime | None = None,
) -> Entry | None:
    """One purchase event; raises for one that cannot be keyed (see rules.read_purchase)."""
    return await _one(session, rules.read_purchase(purchase, at=at), rates)


# --- manual adjustments -------------------------------------------------------------------


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
    validity_days: int = 365,
    now: datetime | None = None,
) -> Adjusted:
    """Adds (a new lot, valid `validity_days`) or takes (soonest expiry first) points by hand,
    with its mandatory reason and author, once per idempotency key → PointsAdjusted. Refuses
    an unknown customer (404) and a result below zero (409 insufficient-points)."""
    if not reason.strip() or not author.strip():
        raise ValueError("an adjustment needs a reason and an author")
    now = now or datetime.now(UTC)
    key = f"adjust:{customer_id}:{idempotency_key}"
    book = await ledger_store.load(
        session,
        customers=[customer_id],
        keys=[key],
        lots_of=[customer_id] if points < 0 else (),
        create=False,
    )
    if customer_id not in book.accounts:
        raise NotFound(
            f"No points account exists for customer {customer_id}.", customer_id=str(customer_id)
        )
    if key in book.used_keys:
        existing = await ledger_store.entry_by_key(session, key)  # under the account lock
        assert existing is not None
        if (existing.delta, existing.reason) != (points, reason):
            raise IdempotencyKeyReused(idempotency_key)
        return Adjusted(entry=existing, balance=book.accounts[customer_id].balance, replayed=True)
    appended = book.adjust(
        customer_id,
        points=points,
        reason=reason,
        key=key,
        author=author,
        now=now,
        expires_at=now + timedelta(days=validity_days),
        event_reason=ADJUST_EVENT_REASON,
    )
    assert appended is not None
    [entry] = await ledger_store.save(session, book)
    return Adjusted(entry=entry, balance=appended.balance, replayed=False)


# --- reconciliation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mismatch:
    customer_id: uuid.UUID
    balance: int
    ledger_sum: int
    lots_available: int
    pending: int
    pending_sum: int
    lots_pending: int


@dataclass(frozen=True, slots=True)
class Reconciliation:
    accounts: int
    balance_total: int
    ledger_total: int
    pending_total: int
    lots_total: int
    mismatch_count: int
    mismatches: list[Mismatch]
    # Lots whose points - remaining differs from what the entries drew from them.
    lot_mismatch_count: int


# One statement, so balances, entries and lots are read from one snapshot. Per account:
# balance == sum(delta) == sum(remaining of available lots) and
# pending == sum(pending_delta) == sum(remaining of pending lots); per lot:
# points - remaining == sum(draws) (a merge moves a lot whole, an unlock draws nothing).
_RECONCILE = text(
    """
    WITH l AS (
        SELECT customer_id, SUM(delta) AS total, SUM(pending_delta) AS pending_total
        FROM ledger_entries GROUP BY customer_id
    ), t AS (
        SELECT customer_id,
               SUM(remaining) FILTER (WHERE status = 'available') AS available,
               SUM(remaining) FILTER (WHERE status = 'pending') AS pending
        FROM lots GROUP BY customer_id
    ), per AS (
        SELECT a.customer_id, a.balance, a.pending,
               COALESCE(l.total, 0)::bigint AS ledger_sum,
               COALESCE(l.pending_total, 0)::bigint AS pending_sum,
               COALESCE(t.available, 0)::bigint AS lots_available,
               COALESCE(t.pending, 0)::bigint AS lots_pending
        FROM accounts a
        LEFT JOIN l ON l.customer_id = a.customer_id
        LEFT JOIN t ON t.customer_id = a.customer_id
    ), bad AS (
        SELECT * FROM per
        WHERE balance <> ledger_sum OR balance <> lots_available
           OR pending <> pending_sum OR pending <> lots_pending
    ), bad_lots AS (
        SELECT lo.id FROM lots lo
        LEFT JOIN (SELECT lot_id, SUM(points) AS drawn FROM lot_draws GROUP BY lot_id) d
          ON d.lot_id = lo.id
        WHERE lo.points - lo.remaining <> COALESCE(d.drawn, 0)
    )
    SELECT
        (SELECT count(*) FROM per) AS accounts,
        (SELECT COALESCE(SUM(balance), 0)::bigint FROM per) AS balance_total,
        (SELECT COALESCE(SUM(delta), 0)::bigint FROM ledger_entries) AS ledger_total,
        (SELECT COALESCE(SUM(pending), 0)::bigint FROM per) AS pending_total,
        (SELECT COALESCE(SUM(remaining), 0)::bigint FROM lots) AS lots_total,
        (SELECT count(*) FROM bad) AS mismatch_count,
        (SELECT COALESCE(json_agg(json_build_object(
            'customer_id', customer_id, 'balance', balance, 'ledger_sum', ledger_sum,
            'lots_available', lots_available, 'pending', pending, 'pending_sum', pending_sum,
            'lots_pending', lots_pending)), '[]')
         FROM (SELECT * FROM bad ORDER BY customer_id LIMIT :limit) b) AS mismatches,
        (SELECT count(*) FROM bad_lots) AS lot_mismatch_count
    """
)


async def reconcile(session: AsyncSession, *, limit: int = 1000) -> Reconciliation:
    """Every account's balance and pending points against its ledger and its lots, and every
    lot against its draws; lists up to `limit` accounts where they differ (there must be
    none)."""
    row = (await session.execute(_RECONCILE, {"limit": limit})).one()
    return Reconciliation(
        accounts=int(row.accounts),
        balance_total=int(row.balance_total),
        ledger_total=int(row.ledger_total),
        pending_total=int(row.pending_total),
        lots_total=int(row.lots_total),
        mismatch_count=int(row.mismatch_count),
        mismatches=[
            Mismatch(
                customer_id=uuid.UUID(m["customer_id"]),
                balance=int(m["balance"]),
                ledger_sum=int(m["ledger_sum"]),
                lots_available=int(m["lots_available"]),
                pending=int(m["pending"]),
                pending_sum=int(m["pending_sum"]),
                lots_pending=int(m["lots_pending"]),
            )
            for m in row.mismatches
        ],
        lot_mismatch_count=int(row.lot_mismatch_count),
    )


# --- history, summary, liability -----------------------------------------------------------


async def history(
    session: AsyncSession, *, customer_id: uuid.UUID, before: int | None = None, limit: int = 50
) -> list[LedgerEntry]:
    """The account's entries, newest first, `limit` at a time: pass the last id seen as
    `before` for the next page (keyset pagination, stable while entries are appended)."""
    stmt = select(LedgerEntry).where(LedgerEntry.customer_id == customer_id)
    if before is not None:
        stmt = stmt.where(LedgerEntry.id < before)
    rows = await session.scalars(stmt.order_by(LedgerEntry.id.desc()).limit(limit))
    return list(rows)


@dataclass(frozen=True, slots=True)
class Summary:
    balance: int
    pending: int
    # The soonest expiry among the spendable lots, and how many points expire then.
    next_expiry_at: datetime | None
    next_expiry_points: int


_NEXT_EXPIRY = text(
    "SELECT expires_at, SUM(remaining) FROM lots WHERE customer_id = :c AND remaining > 0 "
    "AND status = 'available' AND expires_at IS NOT NULL "
    "GROUP BY expires_at ORDER BY expires_at LIMIT 1"
)


async def summary(session: AsyncSession, *, account: Account) -> Summary:
    row = (await session.execute(_NEXT_EXPIRY, {"c": account.customer_id})).one_or_none()
    return Summary(
        balance=account.balance,
        pending=account.pending,
        next_expiry_at=row[0] if row else None,
        next_expiry_points=int(row[1]) if row else 0,
    )


@dataclass(frozen=True, slots=True)
class LiabilityMonth:
    month: str  # "2027-03" / Jalali "1405-12", or "never" for lots without expiry
    points: int
    value_minor: int


@dataclass(frozen=True, slots=True)
class Liability:
    calendar: str
    outstanding_points: int
    available_points: int
    pending_points: int
    currency: str
    point_value_minor: Decimal
    value_minor: int
    by_expiry_month: list[LiabilityMonth]


# Per expiry day in the report's time zone; months are made from days in Python, so the Jalali
# calendar needs no SQL of its own.
_LIABILITY = text(
    "SELECT CAST(expires_at AT TIME ZONE :tz AS date) AS day, "
    "COALESCE(SUM(remaining) FILTER (WHERE status = 'available'), 0) AS available, "
    "COALESCE(SUM(remaining) FILTER (WHERE status = 'pending'), 0) AS pending "
    "FROM lots WHERE remaining > 0 GROUP BY 1 ORDER BY 1 NULLS LAST"
)


def month_of(day: date | None, calendar: str) -> str:
    """ "2027-03" (Gregorian) or "1405-12" (Jalali, Solar Hijri); "never" for no expiry."""
    if day is None:
        return "never"
    if calendar == "jalali":
        j = jdatetime.date.fromgregorian(date=day)
        return f"{j.year:04d}-{j.month:02d}"
    return f"{day.year:04d}-{day.month:02d}"


async def liability(
    session: AsyncSession,
    *,
    point_value_minor: Decimal,
    currency: str,
    calendar: str = "gregorian",
    timezone: str = "UTC",
) -> Liability:
    """Points outstanding (spendable and pending), by the month their lots expire (Gregorian
    or Jalali, in `timezone`), in points and in money (floor of points × value of a point, in
    minor units)."""
    per_month: dict[str, int] = {}
    available = pending = 0
    for day, avail, pend in await session.execute(_LIABILITY, {"tz": timezone}):
        a, p = int(avail), int(pend)
        available += a
        pending += p
        month = month_of(day, calendar)
        per_month[month] = per_month.get(month, 0) + a + p
    total = available + pending
    return Liability(
        calendar=calendar,
        outstanding_points=total,
        available_points=available,
        pending_points=pending,
        currency=currency,
        point_value_minor=point_value_minor,
        value_minor=int(total * point_value_minor),
        by_expiry_month=[
            LiabilityMonth(month, points, int(points * point_value_minor))
            for month, points in per_month.items()
        ],
    )
