"""A batch is the same as its events one at a time: whatever paid / placed / cancelled /
refunded events (and copies of them under new event ids) arrive for a few customers and orders,
after whatever history, the purchases batch handler given them as one batch writes the same
ledger, the same balances and the same outbox events (ids, order, payloads, traceparents) as
given them one event per call — which is what the consumer does when it replays a failed batch.
And a batch with a broken event raises, so the consumer replays it and dead-letters that one."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, loyalty_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.cloudevents import Envelope
from vafa.kit.db import Database
from vafa.loyalty.config import Settings
from vafa.loyalty.points import service
from vafa.loyalty.points.handlers import purchases_handler

SETTINGS = Settings()
HANDLER = purchases_handler(SETTINGS)
CUSTOMERS = 3
ORDERS = 3
PURCHASE_TYPE = profile_pb2.PurchaseAttributed.DESCRIPTOR.full_name


@dataclass(frozen=True)
class Paid:
    customer: int
    order: int


@dataclass(frozen=True)
class Placed:
    customer: int
    order: int


@dataclass(frozen=True)
class Cancelled:
    customer: int
    order: int


@dataclass(frozen=True)
class Refunded:
    customer: int
    order: int
    refund: int
    per_mille: int


@dataclass(frozen=True)
class Again:
    """A copy of an earlier event under a new event id (the inbox lets it through)."""

    which: int


@dataclass(frozen=True)
class StaffTakes:
    customer: int
    points: int


customer_ix = st.integers(0, CUSTOMERS - 1)
order_ix = st.integers(0, ORDERS - 1)
per_mille = st.sampled_from([0, 1, 250, 500, 999, 1000, 1500]) | st.integers(0, 1500)
purchase_step = st.one_of(
    st.builds(Paid, customer_ix, order_ix),
    st.builds(Paid, customer_ix, order_ix),
    st.builds(Placed, customer_ix, order_ix),
    st.builds(Cancelled, customer_ix, order_ix),
    st.builds(Refunded, customer_ix, order_ix, st.integers(0, 2), per_mille),
    st.builds(Refunded, customer_ix, order_ix, st.integers(0, 2), per_mille),
    st.builds(Again, st.integers(0, 1000)),
)
history_steps = st.lists(
    st.one_of(purchase_step, st.builds(StaffTakes, customer_ix, st.integers(1, 300))),
    max_size=10,
)
batch_steps = st.lists(purchase_step, min_size=1, max_size=25)
totals = st.lists(
    st.tuples(
        st.sampled_from([10_000, 40_495, 1_000_000]) | st.integers(0, 2_000_000),
        st.sampled_from(["USD", "USD", "IRR", "JPY"]),
    ),
    min_size=ORDERS,
    max_size=ORDERS,
)


def purchase(
    customers: list[uuid.UUID],
    step: Paid | Placed | Cancelled | Refunded,
    orders: list[tuple[int, str]],
) -> profile_pb2.PurchaseAttributed:
    total, currency = orders[step.order]
    # Order refs are shared by the customers on purpose: keys are global, order points are not.
    o = shop_orders_pb2.Order(
        order_ref=f"batch:{customers[0]}:{step.order}",
        currency=currency,
        total=common_pb2.Money(amount_minor=total, currency=currency),
    )
    msg = profile_pb2.PurchaseAttributed(customer_id=str(customers[step.customer]), order=o)
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


def envelope(n: int, msg: profile_pb2.PurchaseAttributed) -> Envelope:
    return Envelope(
        id=f"evt-{n}",
        source="/vafa/profile",
        type=PURCHASE_TYPE,
        time=datetime.now(UTC),
        subject=msg.customer_id,
        message=msg,
        traceparent=f"00-{n + 1:032x}-{n + 1:016x}-01",
    )


def events_of(
    customers: list[uuid.UUID],
    steps: list[Any],
    orders: list[tuple[int, str]],
    start: int,
    sent: list[profile_pb2.PurchaseAttributed],
) -> list[Envelope | StaffTakes]:
    """The steps as envelopes (staff adjustments as they are); `sent` is what was sent before,
    the pool of copies, and grows."""
    out: list[Envelope | StaffTakes] = []
    for step in steps:
        if isinstance(step, StaffTakes):
            out.append(step)
            continue
        if isinstance(step, Again):
            if not sent:
                continue
            msg = sent[step.which % len(sent)]
        else:
            msg = purchase(customers, step, orders)
        sent.append(msg)
        out.append(envelope(start + len(out), msg))
    return out


async def snapshot(session: AsyncSession, customers: list[uuid.UUID]) -> dict[str, Any]:
    ids = [str(c) for c in customers]
    balances = (
        await session.execute(
            text(
                "SELECT customer_id::text, balance FROM accounts "
                "WHERE customer_id::text = ANY(:ids) ORDER BY customer_id"
            ),
            {"ids": ids},
        )
    ).all()
    rows = (
        await session.execute(
            text(
                "SELECT id, customer_id::text, kind, delta, reason, order_ref, idempotency_key, "
                "author FROM ledger_entries WHERE customer_id::text = ANY(:ids) ORDER BY id"
            ),
            {"ids": ids},
        )
    ).all()
    position = {r[0]: i for i, r in enumerate(rows)}  # ids differ between runs; order must not
    outbox = (
        await session.execute(
            text("SELECT event_id, headers, payload FROM outbox WHERE key = ANY(:ids) ORDER BY id"),
            {"ids": ids},
        )
    ).all()
    events = []
    for event_id, headers, payload in outbox:
        env = cloudevents.decode([(k, v.encode()) for k, v in headers], payload)
        msg = env.message
        assert isinstance(
            msg, loyalty_pb2.PointsEarned | loyalty_pb2.PointsReversed | loyalty_pb2.PointsAdjusted
        )
        order_ref = "" if isinstance(msg, loyalty_pb2.PointsAdjusted) else msg.order_ref
        events.append(
            (
                event_id,
                env.type,
                env.subject,
                env.traceparent,
                msg.customer_id,
                msg.points,
                msg.balance,
                msg.reason,
                order_ref,
                position[int(msg.entry_id)],
            )
        )
    return {
        "balances": [tuple(b) for b in balances],
        "ledger": [tuple(r[1:]) for r in rows],
        "events": events,
    }


async def run(
    db: Database,
    customers: list[uuid.UUID],
    history: list[Envelope | StaffTakes],
    batch: list[Envelope],
    *,
    as_one_batch: bool,
) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
        try:
            taken = 0
            for item in history:
                if isinstance(item, StaffTakes):
                    account = await service.get_account(
                        session, customer_id=customers[item.customer]
                    )
                    if account is not None and account.balance >= item.points:
                        taken += 1
                        await service.adjust(
                            session,
                            customer_id=customers[item.customer],
                            points=-item.points,
                            reason="history",
                            idempotency_key=f"take-{taken}",
                            author="test",
                        )
                else:
                    await HANDLER(session, [item])
            if as_one_batch:
                await HANDLER(session, batch)
            else:
                for env in batch:
                    await HANDLER(session, [env])
            return await snapshot(session, customers)
        finally:
            await session.close()
            await outer.rollback()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history_steps=history_steps, steps=batch_steps, orders=totals)
async def test_one_batch_equals_one_event_at_a_time(
    db: Database, history_steps: list[Any], steps: list[Any], orders: list[tuple[int, str]]
) -> None:
    customers = [uuid.uuid4() for _ in range(CUSTOMERS)]
    sent: list[profile_pb2.PurchaseAttributed] = []
    history = events_of(customers, history_steps, orders, start=0, sent=sent)
    batch = [
        e
        for e in events_of(customers, steps, orders, start=1000, sent=sent)
        if isinstance(e, Envelope)
    ]
    batched = await run(db, customers, history, batch, as_one_batch=True)
    singly = await run(db, customers, history, batch, as_one_batch=False)
    assert batched == singly
    # Each event carries the trace of the purchase that caused it (an adjustment's: none).
    causes = {e.traceparent for e in history + batch if isinstance(e, Envelope)}
    for event in batched["events"]:
        traceparent, adjusted = event[3], event[1].endswith("PointsAdjusted")
        assert traceparent in causes if not adjusted else traceparent is None
    for customer, balance in batched["balances"]:
        assert balance == sum(d for c, _, d, *_ in batched["ledger"] if c == customer)
        assert balance >= 0


async def test_a_batch_applies_in_log_order_with_duplicate_keys_once(
    session: AsyncSession,
) -> None:
    c = uuid.uuid4()
    order = shop_orders_pb2.Order(
        order_ref=f"batch:{c}",
        currency="USD",
        total=common_pb2.Money(amount_minor=40_495, currency="USD"),
    )
    paid = profile_pb2.PurchaseAttributed(
        customer_id=str(c), kind=profile_pb2.PURCHASE_KIND_PAID, order=order
    )
    refund = profile_pb2.PurchaseAttributed(
        customer_id=str(c), kind=profile_pb2.PURCHASE_KIND_REFUNDED, order=order
    )
    refund.refund.refund_id = "r1"
    refund.refund.amount.amount_minor = 10_000
    refund.refund.amount.currency = "USD"
    cancel = profile_pb2.PurchaseAttributed(
        customer_id=str(c), kind=profile_pb2.PURCHASE_KIND_CANCELLED, order=order
    )
    batch = [envelope(i, m) for i, m in enumerate([paid, refund, refund, cancel, paid])]
    await HANDLER(session, batch)
    entries = (
        await session.execute(
            text(
                "SELECT kind, delta, idempotency_key FROM ledger_entries "
                "WHERE customer_id = :c ORDER BY id"
            ),
            {"c": c},
        )
    ).all()
    assert [tuple(e) for e in entries] == [
        ("earn", 404, f"earn:order:batch:{c}"),
        ("reverse", -99, f"reverse:refund:batch:{c}:r1"),
        ("reverse", -305, f"reverse:cancel:batch:{c}"),
    ]
    account = await service.get_account(session, customer_id=c)
    assert account is not None and account.balance == 0
    snap = await snapshot(session, [c])
    assert [(e[1], e[3], e[5], e[6]) for e in snap["events"]] == [
        ("vafa.events.v1.PointsEarned", batch[0].traceparent, 404, 404),
        ("vafa.events.v1.PointsReversed", batch[1].traceparent, 99, 305),
        ("vafa.events.v1.PointsReversed", batch[3].traceparent, 305, 0),
    ]


@pytest.mark.parametrize("broken", ["customer", "order_ref", "refund_id", "currency"])
async def test_a_batch_with_a_broken_event_raises_before_writing(
    session: AsyncSession, broken: str
) -> None:
    c = uuid.uuid4()
    order = shop_orders_pb2.Order(
        order_ref=f"broken:{c}", total=common_pb2.Money(amount_minor=10_000, currency="USD")
    )
    good = profile_pb2.PurchaseAttributed(
        customer_id=str(c), kind=profile_pb2.PURCHASE_KIND_PAID, order=order
    )
    bad = profile_pb2.PurchaseAttributed(
        customer_id=str(c), kind=profile_pb2.PURCHASE_KIND_REFUNDED, order=order
    )
    bad.refund.refund_id = "r1"
    bad.refund.amount.amount_minor = 100
    if broken == "customer":
        bad.customer_id = "not-a-uuid"
    elif broken == "order_ref":
        bad.order.order_ref = ""
    elif broken == "refund_id":
        bad.refund.refund_id = ""
    else:
        bad.refund.amount.currency = "EUR"
    with pytest.raises(ValueError):
        await HANDLER(session, [envelope(0, good), envelope(1, bad)])
    assert await service.get_account(session, customer_id=c) is None
