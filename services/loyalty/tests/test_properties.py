"""Property: whatever sequence of paid / cancelled / refunded events arrives, however often each
is redelivered, and whatever staff take away meanwhile, the balance equals the sum of the
ledger, never goes below zero, an order never gives back more than it earned, and replaying
any prefix of what was delivered changes nothing."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
from vafa.kit.db import Database
from vafa.loyalty import ledger
from vafa.loyalty.config import Settings
from vafa.loyalty.models import Account, LedgerEntry
from vafa.loyalty.points import jobs, rules, service, store

RATES = Settings().points_per_unit
ORDERS = 3


@dataclass(frozen=True)
class Paid:
    order: int


@dataclass(frozen=True)
class Placed:
    order: int


@dataclass(frozen=True)
class Cancelled:
    order: int


@dataclass(frozen=True)
class Refunded:
    order: int
    refund: int
    per_mille: int  # of the order total; above 1000 refunds more than the order cost


@dataclass(frozen=True)
class Redeliver:
    which: int  # an index into what was delivered so far (modulo its length)


@dataclass(frozen=True)
class StaffTakes:
    points: int


order_ix = st.sampled_from(range(ORDERS))
per_mille = st.sampled_from([0, 1, 250, 333, 500, 999, 1000, 1001, 1500]) | st.integers(0, 1500)
step_of_kind = {
    "paid": st.builds(Paid, order_ix),
    "placed": st.builds(Placed, order_ix),
    "cancelled": st.builds(Cancelled, order_ix),
    "refunded": st.builds(Refunded, order_ix, st.sampled_from(range(3)), per_mille),
    "redeliver": st.builds(Redeliver, st.integers(0, 1000)),
    "staff_takes": st.builds(StaffTakes, st.integers(1, 400)),
}
# Paid and refunded twice as likely as the rest, so most streams earn on several orders and
# refund them more than once.
kinds = st.sampled_from(
    ["paid", "paid", "placed", "cancelled", "refunded", "refunded", "redeliver", "staff_takes"]
)
steps = st.lists(kinds.flatmap(step_of_kind.__getitem__), min_size=6, max_size=40)
totals = st.lists(
    st.tuples(
        # Mostly totals that earn something; now and then nothing (0, or a currency without rate).
        st.sampled_from([10_000, 40_495, 1_000_000]) | st.integers(0, 5_000_000),
        st.sampled_from(["USD", "USD", "IRR", "AMD", "JPY"]),
    ),
    min_size=ORDERS,
    max_size=ORDERS,
)


def message(
    customer: uuid.UUID, step: Paid | Placed | Cancelled | Refunded, orders: list[tuple[int, str]]
) -> profile_pb2.PurchaseAttributed:
    total, currency = orders[step.order]
    o = shop_orders_pb2.Order(
        order_ref=f"prop:{step.order}",
        currency=currency,
        total=common_pb2.Money(amount_minor=total, currency=currency),
    )
    msg = profile_pb2.PurchaseAttributed(customer_id=str(customer), order=o)
    if isinstance(step, Paid):
        msg.kind = profile_pb2.PURCHASE_KIND_PAID
    elif isinstance(step, Placed):
        msg.kind = profile_pb2.PURCHASE_KIND_PLACED
    elif isinstance(step, Cancelled):
        msg.kind = profile_pb2.PURCHASE_KIND_CANCELLED
    else:
        msg.kind = profile_pb2.PURCHASE_KIND_REFUNDED
        msg.refund.refund_id = f"r{step.refund}"
        msg.refund.amount.amount_minor = total * step.per_mille // 1000
        msg.refund.amount.currency = currency
    return msg


async def snapshot(session: AsyncSession, customer: uuid.UUID) -> tuple[int, list[tuple]]:  # type: ignore[type-arg]
    account = await session.scalar(
        select(Account)
        .where(Account.customer_id == customer)
        .execution_options(populate_existing=True)
    )
    rows = await session.execute(
        select(LedgerEntry.id, LedgerEntry.kind, LedgerEntry.delta, LedgerEntry.idempotency_key)
        .where(LedgerEntry.customer_id == customer)
        .order_by(LedgerEntry.id)
    )
    return (account.balance if account else 0), [tuple(r) for r in rows.all()]


async def check_invariants(session: AsyncSession, customer: uuid.UUID) -> None:
    balance, entries = await snapshot(session, customer)
    assert balance == sum(delta for _, _, delta, _ in entries)
    assert balance >= 0
    per_order = await session.execute(
        select(
            LedgerEntry.order_ref,
            func.sum(LedgerEntry.delta).filter(LedgerEntry.kind == "earn"),
            func.sum(LedgerEntry.delta),
        )
        .where(LedgerEntry.customer_id == customer, LedgerEntry.order_ref.is_not(None))
        .group_by(LedgerEntry.order_ref)
    )
    for ref, earned, net in per_order.all():
        assert net >= 0, f"{ref} gave back more than it earned"
        assert net <= (earned or 0)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=steps, orders=totals, data=st.data())
async def test_balance_is_the_ledger_under_any_event_stream(
    db: Database, stream: list, orders: list[tuple[int, str]], data: st.DataObject
) -> None:
    customer = uuid.uuid4()
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
        try:
            delivered: list[profile_pb2.PurchaseAttributed] = []
            taken = 0
            for step in stream:
                if isinstance(step, Redeliver):
                    if not delivered:
                        continue
                    msg = delivered[step.which % len(delivered)]
                elif isinstance(step, StaffTakes):
                    if (await snapshot(session, customer))[0] >= step.points:
                        taken += 1
                        await service.adjust(
                            session,
                            customer_id=customer,
                            points=-step.points,
                            reason="property",
                            idempotency_key=f"take-{taken}",
                            author="test",
                        )
                    continue
                else:
                    msg = message(customer, step, orders)
                await service.apply_purchase(session, purchase=msg, rates=RATES)
                delivered.append(msg)
                await check_invariants(session, customer)

            before = await snapshot(session, customer)
            k = data.draw(st.integers(0, len(delivered)), label="prefix replayed")
            for msg in delivered[:k]:
                await service.apply_purchase(session, purchase=msg, rates=RATES)
            assert await snapshot(session, customer) == before
            await check_invariants(session, customer)
        finally:
            await session.close()
            await outer.rollback()


# --- with lots: earn, spend, cancel, refund (per line), fulfil, expire, over time ------------


@dataclass(frozen=True)
class Spend:
    points: int


@dataclass(frozen=True)
class Fulfilled:
    order: int


@dataclass(frozen=True)
class Advance:
    days: int


@dataclass(frozen=True)
class Expire:
    pass


@dataclass(frozen=True)
class LineRefund:
    order: int
    refund: int
    line: int  # 0 or 1
    per_mille: int


lot_kinds = st.sampled_from(
    [
        "paid",
        "paid",
        "cancelled",
        "refunded",
        "line_refund",
        "spend",
        "spend",
        "fulfilled",
        "advance",
        "expire",
        "redeliver",
    ]
)
lot_step_of_kind = {
    "paid": st.builds(Paid, order_ix),
    "cancelled": st.builds(Cancelled, order_ix),
    "refunded": st.builds(Refunded, order_ix, st.sampled_from(range(3)), per_mille),
    "line_refund": st.builds(
        LineRefund, order_ix, st.sampled_from(range(3, 5)), st.sampled_from([0, 1]), per_mille
    ),
    "spend": st.builds(Spend, st.integers(1, 300)),
    "fulfilled": st.builds(Fulfilled, order_ix),
    "advance": st.builds(Advance, st.sampled_from([1, 5, 11, 30, 200, 364, 366])),
    "expire": st.just(Expire()),
    "redeliver": st.builds(Redeliver, st.integers(0, 1000)),
}
lot_steps = st.lists(lot_kinds.flatmap(lot_step_of_kind.__getitem__), min_size=6, max_size=40)
usd_totals = st.lists(
    st.tuples(
        st.sampled_from([10_000, 40_495, 99_999]) | st.integers(0, 200_000), st.integers(0, 100)
    ),
    min_size=ORDERS,
    max_size=ORDERS,
)
policies = st.sampled_from(
    [
        store.Policy(default_rates=RATES),
        store.Policy(default_rates=RATES, pending_days=10),
        store.Policy(default_rates=RATES, pending_until_fulfilled=True),
        store.Policy(default_rates=RATES, validity_days=30),
    ]
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def lot_message(
    customer: uuid.UUID,
    step: Paid | Cancelled | Refunded | LineRefund | Fulfilled,
    orders: list[tuple[int, int]],
) -> profile_pb2.PurchaseAttributed:
    """Orders of two lines (the first `share`% of the total, the second the rest)."""
    total, share = orders[step.order]
    first = total * share // 100
    o = shop_orders_pb2.Order(
        order_ref=f"lots:{step.order}",
        currency="USD",
        total=common_pb2.Money(amount_minor=total, currency="USD"),
        line_items=[
            shop_orders_pb2.LineItem(
                line_id="a",
                sku="A",
                quantity=1,
                total=common_pb2.Money(amount_minor=first, currency="USD"),
            ),
            shop_orders_pb2.LineItem(
                line_id="b",
                sku="B",
                quantity=1,
                total=common_pb2.Money(amount_minor=total - first, currency="USD"),
            ),
        ],
    )
    msg = profile_pb2.PurchaseAttributed(customer_id=str(customer), order=o)
    if isinstance(step, Paid):
        msg.kind = profile_pb2.PURCHASE_KIND_PAID
    elif isinstance(step, Cancelled):
        msg.kind = profile_pb2.PURCHASE_KIND_CANCELLED
    elif isinstance(step, Fulfilled):
        msg.kind = profile_pb2.PURCHASE_KIND_FULFILLED
    elif isinstance(step, Refunded):
        msg.kind = profile_pb2.PURCHASE_KIND_REFUNDED
        msg.refund.refund_id = f"r{step.refund}"
        msg.refund.amount.amount_minor = total * step.per_mille // 1000
        msg.refund.amount.currency = "USD"
    else:
        msg.kind = profile_pb2.PURCHASE_KIND_REFUNDED
        line_total = first if step.line == 0 else total - first
        amount = line_total * step.per_mille // 1000
        msg.refund.refund_id = f"r{step.refund}"
        msg.refund.amount.amount_minor = amount
        msg.refund.amount.currency = "USD"
        msg.refund.lines.append(
            shop_orders_pb2.RefundLine(
                line_id="ab"[step.line],
                amount=common_pb2.Money(amount_minor=amount, currency="USD"),
            )
        )
    return msg


async def lot_state(session: AsyncSession, customer: uuid.UUID) -> tuple[Any, ...]:
    """Everything a write could change for the customer, to compare before / after replays."""
    account = (
        await session.execute(
            text("SELECT balance, pending FROM accounts WHERE customer_id = :c"), {"c": customer}
        )
    ).one_or_none()
    entries = (
        await session.execute(
            text(
                "SELECT id, kind, delta, pending_delta, idempotency_key FROM ledger_entries "
                "WHERE customer_id = :c ORDER BY id"
            ),
            {"c": customer},
        )
    ).all()
    lots = (
        await session.execute(
            text("SELECT id, remaining, status FROM lots WHERE customer_id = :c ORDER BY id"),
            {"c": customer},
        )
    ).all()
    draws = (
        await session.execute(
            text(
                "SELECT d.entry_id, d.lot_id, d.points FROM lot_draws d "
                "JOIN lots l ON l.id = d.lot_id WHERE l.customer_id = :c ORDER BY 1, 2"
            ),
            {"c": customer},
        )
    ).all()
    return (tuple(account) if account else None, entries, lots, draws)


async def check_lot_invariants(session: AsyncSession, customer: uuid.UUID) -> None:
    row = (
        await session.execute(
            text(
                "SELECT a.balance, a.pending,"
                " (SELECT COALESCE(SUM(delta), 0) FROM ledger_entries WHERE customer_id = :c),"
                " (SELECT COALESCE(SUM(pending_delta), 0) FROM ledger_entries"
                "  WHERE customer_id = :c),"
                " (SELECT COALESCE(SUM(remaining), 0) FROM lots"
                "  WHERE customer_id = :c AND status = 'available'),"
                " (SELECT COALESCE(SUM(remaining), 0) FROM lots"
                "  WHERE customer_id = :c AND status = 'pending'),"
                " (SELECT count(*) FROM lots l WHERE customer_id = :c AND l.points - l.remaining"
                "  <> (SELECT COALESCE(SUM(points), 0) FROM lot_draws d WHERE d.lot_id = l.id))"
                " FROM accounts a WHERE a.customer_id = :c"
            ),
            {"c": customer},
        )
    ).one_or_none()
    if row is None:
        return
    balance, pending, ledger_sum, pending_sum, lots_available, lots_pending, bad_lots = row
    assert balance == ledger_sum == lots_available, row
    assert pending == pending_sum == lots_pending, row
    assert balance >= 0 and pending >= 0
    assert bad_lots == 0
    lines = await session.execute(
        text(
            "SELECT order_ref, line_id, points, reversed FROM order_line_points WHERE customer_id = :c"
        ),
        {"c": customer},
    )
    for ref, line_id, points, reversed_ in lines.all():
        assert 0 <= reversed_ <= points, f"{ref}/{line_id} gave back more than it earned"


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=lot_steps, orders=usd_totals, policy=policies, data=st.data())
async def test_lots_balance_is_the_ledger_under_any_stream_with_spends_and_expiry(
    db: Database,
    stream: list[Any],
    orders: list[tuple[int, int]],
    policy: store.Policy,
    data: st.DataObject,
) -> None:
    """Earn, spend, cancel, refund (whole or per line), fulfil and expire, over time, with
    redeliveries: balance == sum(ledger) == sum(available lots), pending likewise, every lot's
    draws add up, nothing negative, a short spend is a 409 that writes nothing; then replaying
    any prefix of what was done (events, spends, expiry runs at their instant) changes nothing."""
    customer = uuid.uuid4()
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
        try:
            clock = T0
            done: list[tuple[str, Any, datetime]] = []

            async def run(kind: str, value: Any, at: datetime) -> None:
                if kind == "event":
                    msg = value
                    await store.apply_purchases(
                        session, [rules.read_purchase(msg, at=at)], policy=policy
                    )
                elif kind == "spend":
                    n, key = value
                    try:
                        await ledger.spend(
                            session,
                            customer_id=customer,
                            points=n,
                            idempotency_key=key,
                            reason="reward",
                            ref=key,
                        )
                    except ledger.InsufficientPoints as short:
                        assert short.extensions["requested"] == n
                        assert short.extensions["balance"] < n
                else:
                    await jobs.expire_and_unlock(session, now=at, only=[customer])

            for i, step in enumerate(stream):
                if isinstance(step, Advance):
                    clock += timedelta(days=step.days)
                    continue
                if isinstance(step, Redeliver):
                    events = [d for d in done if d[0] == "event"]
                    if not events:
                        continue
                    _, msg, _ = events[step.which % len(events)]
                    item: tuple[str, Any, datetime] = ("event", msg, clock)
                elif isinstance(step, Spend):
                    item = ("spend", (step.points, f"spend:{customer}:{i}"), clock)
                elif isinstance(step, Expire):
                    item = ("expire", None, clock)
                else:
                    item = ("event", lot_message(customer, step, orders), clock)
                await run(*item)
                done.append(item)
                await check_lot_invariants(session, customer)

            before = await lot_state(session, customer)
            k = data.draw(st.integers(0, len(done)), label="prefix replayed")
            for item in done[:k]:
                if item[0] == "spend":
                    _, key = item[1]
                    # A spend replayed: its first result, or (if it was short) short again, or
                    # now affordable — so only replay the ones that went through.
                    found = await session.scalar(
                        text("SELECT 1 FROM ledger_entries WHERE idempotency_key = :k"), {"k": key}
                    )
                    if found is None:
                        continue
                await run(*item)
            assert await lot_state(session, customer) == before
            await check_lot_invariants(session, customer)
        finally:
            await session.close()
            await outer.rollback()
