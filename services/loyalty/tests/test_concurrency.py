"""Writes to one account from many transactions at once are serialised by the account lock."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from vafa.events.v1 import common_pb2, shop_orders_pb2
from vafa.kit.db import Database
from vafa.loyalty import ledger
from vafa.loyalty.config import Settings
from vafa.loyalty.models import Account, LedgerEntry
from vafa.loyalty.points import service

RATES = Settings().points_per_unit


async def test_fifty_concurrent_earns_for_one_account(db: Database) -> None:
    customer = uuid.uuid4()
    # A pool wide enough that the 50 calls really run in parallel transactions.
    wide = Database(db.url, pool_size=25)
    # 40 distinct orders (100 to 139 points each); 10 of them delivered twice, concurrently.
    orders = [
        shop_orders_pb2.Order(
            order_ref=f"conc:{customer}:{i}",
            total=common_pb2.Money(amount_minor=(100 + i) * 100 + 99, currency="USD"),
        )
        for i in range(40)
    ]
    calls = orders + orders[:10]
    expected = sum(100 + i for i in range(40))
    start = asyncio.Event()

    async def earn(o: shop_orders_pb2.Order) -> None:
        async with wide.sessionmaker() as session:
            await start.wait()
            await service.earn_for_order(session, customer_id=customer, order=o, rates=RATES)
            await session.commit()

    try:
        tasks = [asyncio.create_task(earn(o)) for o in calls]
        await asyncio.sleep(0.05)
        start.set()
        await asyncio.gather(*tasks)
    finally:
        await wide.dispose()

    async with db.sessionmaker() as session:
        account = await session.get(Account, customer)
        assert account is not None
        ledger = await session.scalar(
            select(func.sum(LedgerEntry.delta)).where(LedgerEntry.customer_id == customer)
        )
        count = await session.scalar(
            select(func.count()).where(LedgerEntry.customer_id == customer)
        )
    assert count == 40
    assert account.balance == ledger == expected


async def test_concurrent_spends_on_one_account_never_overspend(db: Database) -> None:
    """60 spends of 7 points race for 200 points across separate connections: exactly 28 go
    through (196 points), the rest are 409 insufficient-points, and the lots agree."""
    customer = uuid.uuid4()
    async with db.sessionmaker() as session:
        for i, (points, days) in enumerate([(80, 30), (70, 10), (50, 300)]):
            await ledger.grant(
                session,
                customer_id=customer,
                points=points,
                idempotency_key=f"conc-spend:{customer}:{i}",
                reason="test",
                expires_at=datetime.now(UTC) + timedelta(days=days),
            )
        await session.commit()
    wide = Database(db.url, pool_size=30)
    start = asyncio.Event()
    outcomes: list[str] = []

    async def spend(i: int) -> None:
        async with wide.sessionmaker() as session:
            await start.wait()
            try:
                await ledger.spend(
                    session,
                    customer_id=customer,
                    points=7,
                    idempotency_key=f"conc-spend:{customer}:s{i}",
                    reason="reward",
                    ref=f"r{i}",
                )
                await session.commit()
                outcomes.append("spent")
            except ledger.InsufficientPoints:
                await session.rollback()
                outcomes.append("short")

    try:
        tasks = [asyncio.create_task(spend(i)) for i in range(60)]
        await asyncio.sleep(0.05)
        start.set()
        await asyncio.gather(*tasks)
    finally:
        await wide.dispose()

    assert outcomes.count("spent") == 28 and outcomes.count("short") == 32
    async with db.sessionmaker() as session:
        row = (
            await session.execute(
                text(
                    "SELECT a.balance,"
                    " (SELECT SUM(delta) FROM ledger_entries WHERE customer_id = :c),"
                    " (SELECT SUM(remaining) FROM lots WHERE customer_id = :c),"
                    " (SELECT SUM(d.points) FROM lot_draws d JOIN lots l ON l.id = d.lot_id"
                    "  WHERE l.customer_id = :c),"
                    " (SELECT remaining FROM lots WHERE customer_id = :c AND points = 50)"
                    " FROM accounts a WHERE a.customer_id = :c"
                ),
                {"c": customer},
            )
        ).one()
    # 196 spent, soonest expiry first: the 10-day lot (70) and the 30-day lot (80) are gone,
    # and 46 came from the 300-day lot.
    assert tuple(row) == (4, 4, 4, 196, 4)
