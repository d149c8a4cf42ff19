"""Whatever placed / paid / fulfilled / cancelled / refunded events arrive (repeats and out of
order included), the purchases handler given them as one batch writes the same features and
lines as given them one event per call (what the consumer does when it replays a failed batch),
and both agree with a plain model of the rules: counted = paid or fulfilled and never cancelled;
the value net of each distinct refund; refunds counted once per refund id."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.cloudevents import Envelope
from vafa.kit.db import Database
from vafa.segmentation.config import Settings
from vafa.segmentation.features.handlers import purchases_handler

from .features_fixtures import NOW, features, line, lines_of, order, purchase

HANDLER = purchases_handler(Settings(), clock=lambda: NOW)
CUSTOMERS = 2
ORDERS = 4
KINDS = ["placed", "paid", "fulfilled", "cancelled", "refunded"]


@dataclass(frozen=True)
class Step:
    order: int
    kind: str
    refund: int
    per_mille: int


steps = st.lists(
    st.builds(
        Step,
        st.integers(0, ORDERS - 1),
        st.sampled_from(KINDS),
        st.integers(0, 2),
        st.sampled_from([0, 250, 1000, 1500]),
    ),
    min_size=1,
    max_size=20,
)
totals = st.lists(st.integers(0, 50_000), min_size=ORDERS, max_size=ORDERS)


def events(customers: list[uuid.UUID], plan: list[Step], amounts: list[int]) -> list[Envelope]:
    out = []
    for s in plan:
        total = amounts[s.order]
        o = order(
            f"prop:{customers[0]}:{s.order}",
            total,
            placed_at=NOW - timedelta(days=20 * s.order),
            lines=[line("1", f"P{s.order}", total)],
            discount=10 if s.order % 2 else 0,
        )
        out.append(
            purchase(
                customers[s.order % CUSTOMERS],
                s.kind,
                o,
                refund_id=f"r{s.refund}",
                refund=total * s.per_mille // 1000,
            )
        )
    return out


def model(plan: list[Step], amounts: list[int]) -> dict[int, dict[str, int]]:
    """Per customer index: orders_count, total_spent, refunds_count, discount_orders, lines."""
    status: dict[int, str] = {}
    refunds: dict[int, dict[str, int]] = {}
    rank = {"placed": 0, "paid": 1, "fulfilled": 2}
    for s in plan:
        now = status.get(s.order)
        if now == "cancelled":
            continue
        if s.kind == "cancelled":
            status[s.order] = "cancelled"
        elif s.kind == "refunded":
            status[s.order] = "paid" if now in (None, "placed") else now
            refunds.setdefault(s.order, {}).setdefault(
                f"r{s.refund}", amounts[s.order] * s.per_mille // 1000
            )
        else:
            wanted = "fulfilled" if s.kind == "fulfilled" else s.kind
            if now is None or rank[wanted] > rank[now]:
                status[s.order] = wanted
    out = {
        c: dict.fromkeys(("orders", "spent", "refunds", "discounted", "lines"), 0)
        for c in range(CUSTOMERS)
    }
    for o, st_ in status.items():
        if st_ not in ("paid", "fulfilled"):
            continue
        m = out[o % CUSTOMERS]
        refunded = sum(refunds.get(o, {}).values())
        m["orders"] += 1
        m["spent"] += amounts[o] - min(refunded, amounts[o])
        m["refunds"] += len(refunds.get(o, {}))
        m["discounted"] += o % 2
        m["lines"] += 1
    return out


@asynccontextmanager
async def rolled_back(db: Database) -> AsyncIterator[AsyncSession]:
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()


async def state(session: AsyncSession, customers: list[uuid.UUID]) -> list[Any]:
    out = []
    for c in customers:
        exists = (
            await session.execute(text("SELECT 1 FROM features WHERE customer_id = :c"), {"c": c})
        ).first()
        f = await features(session, c) if exists else None
        if f is not None:
            f.pop("updated_at")
        out.append((f, await lines_of(session, c)))
    return out


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps, amounts=totals)
async def test_one_batch_equals_one_event_at_a_time_and_the_model(
    db: Database, plan: list[Step], amounts: list[int]
) -> None:
    customers = [uuid.uuid4() for _ in range(CUSTOMERS)]
    async with rolled_back(db) as s:
        await HANDLER(s, events(customers, plan, amounts))
        batched = await state(s, customers)
    async with rolled_back(db) as s:
        for e in events(customers, plan, amounts):
            await HANDLER(s, [e])
        singly = await state(s, customers)
    assert batched == singly

    expected = model(plan, amounts)
    for i, (f, lines) in enumerate(batched):
        m = expected[i]
        if f is None:
            assert m["orders"] == 0
            continue
        assert f["orders_count"] == m["orders"]
        assert f["total_spent"] == m["spent"]
        assert f["refunds_count"] == m["refunds"]
        assert f["discount_orders"] == m["discounted"]
        assert len(lines) == m["lines"]
        # Half away from zero, as PostgreSQL rounds numerics.
        n = m["orders"]
        assert f["avg_order_value"] == ((2 * m["spent"] + n) // (2 * n) if n else 0)
