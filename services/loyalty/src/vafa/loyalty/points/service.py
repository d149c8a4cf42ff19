"""The points ledger: every change of a balance is one append-only entry.

How a write works, for every kind of entry (and the kinds a later issue adds: lots, expiry,
redemptions, referral bonuses):
1. Lock the account row (`SELECT ... FOR UPDATE`, after `INSERT ... ON CONFLICT DO NOTHING`
   creates it when an event is the first we hear of the customer), so writes to one account are
   serialised and a decision taken on the balance stays true until the commit.
2. Append the entry with `ON CONFLICT (idempotency_key) DO NOTHING`. The key is the business key
   of what caused the entry, so a replayed event or a retried request appends nothing.
3. Only when the entry was appended: move the balance by its delta and put the event in the
   outbox, in the same transaction.

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
from decimal import ROUND_FLOOR, Decimal, localcontext

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2, profile_pb2, shop_orders_pb2
from vafa.kit.cloudevents import deterministic_id
from vafa.kit.errors import Conflict, NotFound
from vafa.kit.money import MoneyError, to_major
from vafa.loyalty.events import LOYALTY_TOPIC, outbox
from vafa.loyalty.models import Account, EntryKind, LedgerEntry

log = structlog.get_logger(__name__)

EARN_REASON = "order"
CANCEL_REASON = "order_cancelled"
REFUND_REASON = "order_refunded"
ADJUST_EVENT_REASON = "adjustment"

_warned_currencies: set[str] = set()


# --- points from money --------------------------------------------------------------------


def points_for(amount_minor: int, currency: str, *, rates: Mapping[str, Decimal]) -> int:
    """floor(major amount × rate), in Decimal from the integer minor units: 40495 USD at 1 -> 404.
    A currency without a rate earns 0 (warned once per process); a negative amount earns 0."""
    code = currency.upper()
    rate = rates.get(code)
    if rate is None:
        if code not in _warned_currencies:
            _warned_currencies.add(code)
            log.warning("no_points_rate_for_currency", currency=code)
        return 0
    if amount_minor <= 0:
        return 0
    try:
        major = to_major(amount_minor, code)
    except MoneyError:
        return 0
    with localcontext() as ctx:
        ctx.prec = 60  # int64 minor units times any sane rate, exactly
        return int((major * rate).to_integral_value(rounding=ROUND_FLOOR))


# --- reads --------------------------------------------------------------------------------


async def get_account(session: AsyncSession, *, customer_id: uuid.UUID) -> Account | None:
    return await session.get(Account, customer_id)


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


# --- the write path -----------------------------------------------------------------------


async def open_account(session: AsyncSession, *, customer_id: uuid.UUID) -> None:
    """Creates the account with balance 0 unless it exists (a registered customer)."""
    await session.execute(
        insert(Account)
        .values(customer_id=customer_id, balance=0)
        .on_conflict_do_nothing(index_elements=[Account.customer_id])
    )


async def _lock(session: AsyncSession, customer_id: uuid.UUID, *, create: bool) -> Account | None:
    if create:
        await open_account(session, customer_id=customer_id)
    return (
        await session.scalars(
            select(Account)
            .where(Account.customer_id == customer_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one_or_none()


async def _append(
    session: AsyncSession,
    account: Account,
    *,
    delta: int,
    kind: EntryKind,
    reason: str,
    key: str,
    order_ref: str | None = None,
    author: str | None = None,
    event_reason: str | None = None,
) -> LedgerEntry | None:
    """Appends one entry to a locked account, once per key; moves the balance and publishes.
    Returns the entry, or None when the key was already used."""
    entry = (
        await session.scalars(
            insert(LedgerEntry)
            .values(
                customer_id=account.customer_id,
                delta=delta,
                kind=kind.value,
                reason=reason,
                order_ref=order_ref,
                idempotency_key=key,
                author=author,
            )
            .on_conflict_do_nothing(index_elements=[LedgerEntry.idempotency_key])
            .returning(LedgerEntry)
        )
    ).one_or_none()
    if entry is None:
        return None
    if delta != 0:
        account.balance += delta
        await session.flush()
        await _publish(session, account, entry, reason=event_reason or reason)
    return entry


async def _publish(
    session: AsyncSession, account: Account, entry: LedgerEntry, *, reason: str
) -> None:
    occurred_at = Timestamp()
    occurred_at.FromDatetime(entry.created_at)
    fields = dict(
        customer_id=str(account.customer_id),
        points=abs(entry.delta),
        balance=account.balance,
        reason=reason,
        order_ref=entry.order_ref or "",
        entry_id=str(entry.id),
        occurred_at=occurred_at,
    )
    message: loyalty_pb2.PointsEarned | loyalty_pb2.PointsReversed = (
        loyalty_pb2.PointsEarned(**fields)
        if entry.delta > 0
        else loyalty_pb2.PointsReversed(**fields)
    )
    await outbox.add(
        session,
        topic=LOYALTY_TOPIC,
        key=str(account.customer_id),
        message=message,
        # One entry, one event: the same id however often the relay has to send it.
        event_id=deterministic_id("loyalty", entry.idempotency_key),
    )


# --- purchases ----------------------------------------------------------------------------


def _order_total(order: shop_orders_pb2.Order) -> tuple[int, str]:
    return order.total.amount_minor, (order.total.currency or order.currency)


async def _order_points(
    session: AsyncSession, *, customer_id: uuid.UUID, order_ref: str
) -> tuple[int, int]:
    """(earned, net): what the order earned, and what of it has not been reversed yet."""
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(LedgerEntry.delta).filter(LedgerEntry.kind == "earn"), 0),
                func.coalesce(func.sum(LedgerEntry.delta), 0),
            ).where(
                LedgerEntry.customer_id == customer_id,
                LedgerEntry.order_ref == order_ref,
                LedgerEntry.kind.in_(("earn", "reverse")),
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def earn_for_order(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    order: shop_orders_pb2.Order,
    rates: Mapping[str, Decimal],
) -> LedgerEntry | None:
    """A paid order earns points on its total, once per order."""
    amount, currency = _order_total(order)
    points = points_for(amount, currency, rates=rates)
    account = await _lock(session, customer_id, create=True)
    assert account is not None
    if points <= 0:
        return None
    return await _append(
        session,
        account,
        delta=points,
        kind=EntryKind.earn,
        reason=EARN_REASON,
        key=f"earn:order:{order.order_ref}",
        order_ref=order.order_ref,
    )


async def _reverse(
    session: AsyncSession, account: Account, *, order_ref: str, wanted: int, reason: str, key: str
) -> LedgerEntry | None:
    taken = max(0, min(wanted, account.balance))  # never below zero: capped, and recorded so
    if taken < wanted:
        log.info(
            "reversal_capped_at_balance",
            customer_id=str(account.customer_id),
            order_ref=order_ref,
            wanted=wanted,
            taken=taken,
        )
    return await _append(
        session,
        account,
        delta=-taken,
        kind=EntryKind.reverse,
        reason=reason,
        key=key,
        order_ref=order_ref,
    )


async def reverse_cancelled(
    session: AsyncSession, *, customer_id: uuid.UUID, order: shop_orders_pb2.Order
) -> LedgerEntry | None:
    """A cancelled order gives back everything it still has earned."""
    account = await _lock(session, customer_id, create=True)
    assert account is not None
    _, net = await _order_points(session, customer_id=customer_id, order_ref=order.order_ref)
    return await _reverse(
        session,
        account,
        order_ref=order.order_ref,
        wanted=max(net, 0),
        reason=CANCEL_REASON,
        key=f"reverse:cancel:{order.order_ref}",
    )


async def reverse_refunded(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    order: shop_orders_pb2.Order,
    refund: shop_orders_pb2.Refund,
) -> LedgerEntry | None:
    """A refund gives back floor(earned × refunded / total), and never more than the order
    still has earned, so refunds together never take back more than it earned."""
    total, currency = _order_total(order)
    refunded = refund.amount.amount_minor or sum(line.amount.amount_minor for line in refund.lines)
    refund_currency = refund.amount.currency or currency
    if refund_currency.upper() != currency.upper():
        raise ValueError(
            f"refund {refund.refund_id!r} of {order.order_ref!r} is in {refund_currency}, "
            f"the order in {currency}"
        )
    account = await _lock(session, customer_id, create=True)
    assert account is not None
    earned, net = await _order_points(session, customer_id=customer_id, order_ref=order.order_ref)
    proportional = earned * max(refunded, 0) // total if total > 0 else 0
    return await _reverse(
        session,
        account,
        order_ref=order.order_ref,
        wanted=max(0, min(proportional, net)),
        reason=REFUND_REASON,
        key=f"reverse:refund:{order.order_ref}:{refund.refund_id}",
    )


async def apply_purchase(
    session: AsyncSession,
    *,
    purchase: profile_pb2.PurchaseAttributed,
    rates: Mapping[str, Decimal],
) -> LedgerEntry | None:
    # A broken event raises, so the consumer dead-letters it rather than guessing: keys built
    # from an empty order_ref or refund_id would make different orders or refunds one.
    customer_id = uuid.UUID(purchase.customer_id)
    if not purchase.order.order_ref:
        raise ValueError("PurchaseAttributed without an order_ref")
    kind = purchase.kind
    if kind == profile_pb2.PURCHASE_KIND_REFUNDED and not purchase.refund.refund_id:
        raise ValueError(f"refund of {purchase.order.order_ref!r} without a refund_id")
    if kind == profile_pb2.PURCHASE_KIND_PAID:
        return await earn_for_order(
            session, customer_id=customer_id, order=purchase.order, rates=rates
        )
    if kind == profile_pb2.PURCHASE_KIND_CANCELLED:
        return await reverse_cancelled(session, customer_id=customer_id, order=purchase.order)
    if kind == profile_pb2.PURCHASE_KIND_REFUNDED:
        return await reverse_refunded(
            session, customer_id=customer_id, order=purchase.order, refund=purchase.refund
        )
    # Placed, not paid yet: earns nothing, but the customer is known from now on.
    await open_account(session, customer_id=customer_id)
    return None


# --- manual adjustments -------------------------------------------------------------------


class InsufficientBalance(Conflict):
    def __init__(self, *, balance: int, points: int) -> None:
        super().__init__(
            f"The balance is {balance} points; taking {-points} would make it negative.",
            balance=balance,
            points=points,
        )


class IdempotencyKeyReused(Conflict):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"The idempotency key {key!r} was already used for a different adjustment.",
            idempotency_key=key,
        )


@dataclass(frozen=True, slots=True)
class Adjusted:
    entry: LedgerEntry
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
    account = await _lock(session, customer_id, create=False)
    if account is None:
        raise NotFound(
            f"No points account exists for customer {customer_id}.", customer_id=str(customer_id)
        )
    key = f"adjust:{customer_id}:{idempotency_key}"
    existing = (
        await session.scalars(select(LedgerEntry).where(LedgerEntry.idempotency_key == key))
    ).one_or_none()
    if existing is not None:
        if (existing.delta, existing.reason) != (points, reason):
            raise IdempotencyKeyReused(idempotency_key)
        return Adjusted(entry=existing, balance=account.balance, replayed=True)
    if account.balance + points < 0:
        raise InsufficientBalance(balance=account.balance, points=points)
    entry = await _append(
        session,
        account,
        delta=points,
        kind=EntryKind.adjust,
        reason=reason,
        key=key,
        author=author,
        event_reason=ADJUST_EVENT_REASON,
    )
    assert entry is not None  # the key is checked above under the account lock
    return Adjusted(entry=entry, balance=account.balance, replayed=False)


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
