"""Property: whatever sequence of paid / cancelled / refunded events arrives, however often each
is redelivered, and whatever staff take away meanwhile, the balance equals the sum of the
ledger, never goes below zero, an order never gives back more than it earned, and replaying
any prefix of what was delivered changes nothing."""

import uuid
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
from vafa.kit.db import Database
from vafa.loyalty.config import Settings
from vafa.loyalty.models import Account, LedgerEntry
from vafa.loyalty.points import service

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
