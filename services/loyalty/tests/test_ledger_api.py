"""ledger.grant / ledger.spend: the API the rewards part builds on, against the real database."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.errors import Problem
from vafa.loyalty import ledger

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


async def sums(session: AsyncSession, customer: uuid.UUID) -> tuple[int, int, int, int, int]:
    """(balance, pending, ledger delta sum, available lots sum, pending lots sum)."""
    row = (
        await session.execute(
            text(
                "SELECT a.balance, a.pending,"
                " (SELECT COALESCE(SUM(delta), 0) FROM ledger_entries WHERE customer_id = :c),"
                " (SELECT COALESCE(SUM(remaining), 0) FROM lots"
                "  WHERE customer_id = :c AND status = 'available'),"
                " (SELECT COALESCE(SUM(remaining), 0) FROM lots"
                "  WHERE customer_id = :c AND status = 'pending')"
                " FROM accounts a WHERE a.customer_id = :c"
            ),
            {"c": customer},
        )
    ).one()
    return tuple(int(v) for v in row)  # type: ignore[return-value]


async def test_grant_then_spend_draws_soonest_expiry_first(session: AsyncSession) -> None:
    c = uuid.uuid4()
    late = await ledger.grant(
        session,
        customer_id=c,
        points=100,
        idempotency_key=f"t:{c}:late",
        reason="bonus",
        expires_at=NOW + timedelta(days=300),
        now=NOW,
    )
    soon = await ledger.grant(
        session,
        customer_id=c,
        points=30,
        idempotency_key=f"t:{c}:soon",
        reason="bonus",
        expires_at=NOW + timedelta(days=10),
        now=NOW,
    )
    assert (late.balance, soon.balance) == (100, 130)
    spent = await ledger.spend(
        session, customer_id=c, points=50, idempotency_key=f"t:{c}:s1", reason="reward", ref="r1"
    )
    assert spent.points == -50 and spent.balance == 80 and not spent.replayed
    draws = (
        await session.execute(
            text("SELECT lot_id, points FROM lot_draws WHERE entry_id = :e ORDER BY points"),
            {"e": spent.entry_id},
        )
    ).all()
    assert sorted(draws) == sorted([(soon.lot_id, 30), (late.lot_id, 20)])
    assert await sums(session, c) == (80, 0, 80, 80, 0)


async def test_repeats_return_the_first_result(session: AsyncSession) -> None:
    c = uuid.uuid4()
    first = await ledger.grant(
        session, customer_id=c, points=40, idempotency_key=f"t:{c}:g", reason="x", now=NOW
    )
    again = await ledger.grant(
        session, customer_id=c, points=40, idempotency_key=f"t:{c}:g", reason="x", now=NOW
    )
    assert again.replayed and again.entry_id == first.entry_id and again.balance == 40
    s1 = await ledger.spend(
        session, customer_id=c, points=15, idempotency_key=f"t:{c}:s", reason="r", ref="x"
    )
    s2 = await ledger.spend(
        session, customer_id=c, points=15, idempotency_key=f"t:{c}:s", reason="r", ref="x"
    )
    assert s2.replayed and s2.entry_id == s1.entry_id and s2.balance == 25
    assert await sums(session, c) == (25, 0, 25, 25, 0)
    with pytest.raises(ledger.IdempotencyKeyReused):
        await ledger.spend(
            session, customer_id=c, points=16, idempotency_key=f"t:{c}:s", reason="r", ref="x"
        )


async def test_spending_more_than_the_balance_is_a_409(session: AsyncSession) -> None:
    c = uuid.uuid4()
    await ledger.grant(
        session, customer_id=c, points=10, idempotency_key=f"t:{c}:g", reason="x", now=NOW
    )
    with pytest.raises(ledger.InsufficientPoints) as caught:
        await ledger.spend(
            session, customer_id=c, points=11, idempotency_key=f"t:{c}:s", reason="r", ref="x"
        )
    problem: Problem = caught.value
    assert problem.status == 409
    assert problem.type.endswith("/insufficient-points")
    assert problem.extensions == {"balance": 10, "requested": 11}


async def test_pending_points_are_not_spendable(session: AsyncSession) -> None:
    c = uuid.uuid4()
    w = await ledger.grant(
        session,
        customer_id=c,
        points=70,
        idempotency_key=f"t:{c}:p",
        reason="order",
        pending_until=datetime.now(UTC) + timedelta(days=14),
    )
    assert (w.points, w.pending_points, w.balance, w.pending) == (0, 70, 0, 70)
    with pytest.raises(ledger.InsufficientPoints):
        await ledger.spend(
            session, customer_id=c, points=1, idempotency_key=f"t:{c}:s", reason="r", ref="x"
        )
    assert await sums(session, c) == (0, 70, 0, 0, 70)
