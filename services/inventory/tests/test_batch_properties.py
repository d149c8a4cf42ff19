"""Property: the same order events applied a batch at a time (the worker) and one at a time
(the single-movement service, as the consumer's replay of a failed batch would) leave the same
stock: the same levels, the same movements in the same order, the same StockChanged events with
the same traceparents; and every SKU's ledger sums to its level.

The events are random: placed / paid / cancelled / refunded (restock or not), the same content
again under a new event id, lines on unknown and empty SKUs, repeated line ids, non-positive
quantities, amended orders, staff counts between batches, and random batch boundaries."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import shop_orders_pb2
from vafa.inventory.config import Settings
from vafa.inventory.stock import batch, service
from vafa.kit import cloudevents
from vafa.kit.cloudevents import Envelope
from vafa.kit.db import Database

T = 5
SETTINGS = Settings(default_low_stock_threshold=T)
# Known SKUs with their starting level and threshold; U-1 and "" are never known.
KNOWN = {"K-1": (10, None), "K-2": (3, 5), "K-3": (0, 2)}
SKUS = [*KNOWN, "U-1", ""]
REFS = ["prop:1", "prop:2", "prop:3"]

Line = tuple[str, str, int]  # line_id, sku, quantity


@dataclass(frozen=True)
class OrderEvent:
    kind: str  # placed | paid | cancelled
    ref: int
    amended: bool  # the shop edited the order: its other set of lines


@dataclass(frozen=True)
class Refunded:
    ref: int
    refund_id: str
    lines: tuple[tuple[str, str, int, bool], ...]


@dataclass(frozen=True)
class Again:
    which: int  # an earlier event's content under a new event id


@dataclass(frozen=True)
class StaffCount:
    sku: str
    on_hand: int
    threshold: int | None


line = st.tuples(st.sampled_from(["1", "2", "3"]), st.sampled_from(SKUS), st.integers(-1, 4))
lines = st.lists(line, min_size=0, max_size=4).map(tuple)
ref_ix = st.integers(0, len(REFS) - 1)
step_of_kind = {
    "order": st.builds(
        OrderEvent, st.sampled_from(["placed", "paid", "paid", "cancelled"]), ref_ix, st.booleans()
    ),
    "refunded": st.builds(
        Refunded,
        ref_ix,
        st.sampled_from(["r1", "r2"]),
        st.lists(
            st.tuples(
                st.sampled_from(["1", "2", "3"]),
                st.sampled_from(SKUS),
                st.integers(-1, 3),
                st.booleans(),
            ),
            max_size=3,
        ).map(tuple),
    ),
    "again": st.builds(Again, st.integers(0, 1000)),
    "staff": st.builds(
        StaffCount,
        st.sampled_from([*KNOWN, "NEW-1"]),
        st.integers(0, 20),
        st.none() | st.integers(0, 6),
    ),
}
kinds = st.sampled_from(["order", "order", "order", "order", "refunded", "again", "staff"])
steps = st.lists(
    st.tuples(kinds.flatmap(step_of_kind.__getitem__), st.booleans()),  # (step, batch ends)
    min_size=1,
    max_size=30,
)
# Per order, its lines and its amended lines.
order_lines = st.lists(st.tuples(lines, lines), min_size=len(REFS), max_size=len(REFS))


def build(
    steps: list[tuple[object, bool]], orders: list[tuple[tuple[Line, ...], tuple[Line, ...]]]
) -> list[tuple[Envelope | StaffCount, bool]]:
    """The steps as envelopes (each with its own id and traceparent) or staff counts."""
    out: list[tuple[Envelope | StaffCount, bool]] = []
    messages: list[object] = []
    for i, (step, cut) in enumerate(steps):
        if isinstance(step, StaffCount):
            out.append((step, cut))
            continue
        msg: object
        if isinstance(step, Again):
            if not messages:
                continue
            msg = messages[step.which % len(messages)]
        elif isinstance(step, OrderEvent):
            order = _order(step.ref, orders[step.ref][step.amended])
            cls = {
                "placed": shop_orders_pb2.OrderPlaced,
                "paid": shop_orders_pb2.OrderPaid,
                "cancelled": shop_orders_pb2.OrderCancelled,
            }[step.kind]
            msg = cls(order=order)
        else:
            assert isinstance(step, Refunded)
            msg = shop_orders_pb2.OrderRefunded(
                order=_order(step.ref, orders[step.ref][0]),
                refund=shop_orders_pb2.Refund(
                    refund_id=step.refund_id,
                    lines=[
                        shop_orders_pb2.RefundLine(line_id=lid, sku=sku, quantity=q, restock=r)
                        for lid, sku, q, r in step.lines
                    ],
                ),
            )
        messages.append(msg)
        headers, payload = cloudevents.encode(
            msg,  # type: ignore[arg-type]
            source="/test",
            event_id=f"evt-{i}",
            traceparent=f"00-{i + 1:032x}-{i + 1:016x}-01",
        )
        out.append((cloudevents.decode(headers, payload), cut))
    return out


def _order(ref: int, lines: tuple[Line, ...]) -> shop_orders_pb2.Order:
    return shop_orders_pb2.Order(
        order_ref=REFS[ref],
        line_items=[
            shop_orders_pb2.LineItem(line_id=lid, sku=sku, quantity=q) for lid, sku, q in lines
        ],
    )


async def staff_count(session: AsyncSession, count: StaffCount) -> None:
    await service.set_level(
        session,
        sku=count.sku,
        on_hand=count.on_hand,
        low_stock_threshold=count.threshold,
        reason="count",
        author="staff:test",
        default_threshold=T,
    )


async def run(db: Database, stream: list[tuple[Envelope | StaffCount, bool]], *, batched: bool):  # type: ignore[no-untyped-def]
    """Applies the stream in a transaction rolled back afterwards; returns what it left."""
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            for sku, (on_hand, threshold) in KNOWN.items():
                await staff_count(session, StaffCount(sku, on_hand, threshold))
            pending: list[Envelope] = []

            async def flush() -> None:
                if pending:
                    await batch.apply_order_events(session, pending, default_threshold=T)
                    pending.clear()

            for item, cut in stream:
                if isinstance(item, StaffCount):
                    await flush()  # staff counts land between the worker's transactions
                    await staff_count(session, item)
                elif batched:
                    pending.append(item)
                    if cut:
                        await flush()
                else:
                    # One event at a time, as the kit replays a failed batch.
                    await batch.apply_order_events(session, [item], default_threshold=T)
            await flush()
            return await snapshot(session)
        finally:
            await session.close()
            await outer.rollback()


async def snapshot(session: AsyncSession):  # type: ignore[no-untyped-def]
    levels = (
        await session.execute(
            text("SELECT sku, on_hand, low_stock_threshold FROM stock_items ORDER BY sku")
        )
    ).all()
    movements = [
        ("correction" if key.startswith("correction:") else key, sku, delta, reason, ref, author)
        for key, sku, delta, reason, ref, author in (
            await session.execute(
                text(
                    "SELECT idempotency_key, sku, delta, reason, order_ref, author "
                    "FROM stock_movements ORDER BY id"
                )
            )
        ).all()
    ]
    events = []
    for topic, key, headers, payload in (
        await session.execute(text("SELECT topic, key, headers, payload FROM outbox ORDER BY id"))
    ).all():
        env = cloudevents.decode([(k, v.encode()) for k, v in headers], payload)
        events.append(
            (
                topic,
                key,
                env.type,
                env.subject,
                env.traceparent,
                str(env.message).replace("\n", " "),
            )
        )
    ledger = dict(
        (
            await session.execute(text("SELECT sku, sum(delta) FROM stock_movements GROUP BY sku"))
        ).all()
    )
    return [tuple(r) for r in levels], movements, events, ledger


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=steps, orders=order_lines)
async def test_a_batch_moves_stock_exactly_as_one_event_at_a_time(
    db: Database,
    raw: list[tuple[object, bool]],
    orders: list[tuple[tuple[Line, ...], tuple[Line, ...]]],
) -> None:
    stream = build(raw, orders)
    one_by_one = await run(db, stream, batched=False)
    batched = await run(db, stream, batched=True)
    levels, movements, events, ledger = batched
    assert levels == one_by_one[0]
    assert movements == one_by_one[1]
    assert events == one_by_one[2]
    # The ledger is the level; nothing moved an unknown or empty SKU.
    assert {sku: on_hand for sku, on_hand, _ in levels} == {
        sku: ledger.get(sku, 0) for sku, _, _ in levels
    }
    assert not {"U-1", ""} & {sku for sku, *_ in levels}
    # One StockChanged per movement; never a level below zero.
    assert sum(e[2] == "vafa.events.v1.StockChanged" for e in events) == len(movements)
    assert all(on_hand >= 0 for _, on_hand, _ in levels)
