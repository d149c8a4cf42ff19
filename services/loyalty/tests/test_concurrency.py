"""Writes to one account from many transactions at once are serialised by the account lock."""

import asyncio
import uuid

from sqlalchemy import func, select

from vafa.events.v1 import common_pb2, shop_orders_pb2
from vafa.kit.db import Database
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
