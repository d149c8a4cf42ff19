"""Redemptions from many transactions at once (separate sessions and connections, started
together): the stock is never oversold, the per-member limit never exceeded, and exactly the
issued coupons' points are spent."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from vafa.kit.db import Database
from vafa.kit.errors import Problem
from vafa.loyalty import ledger
from vafa.loyalty.models import Reward
from vafa.loyalty.rewards import service

PRICE = 100


async def _reward(db: Database, **kw: object) -> uuid.UUID:
    async with db.sessionmaker() as s:
        reward = Reward(
            name="Concurrent 10%",
            kind="percent_discount",
            percent_off=10,
            points_price=PRICE,
            **kw,
        )
        s.add(reward)
        await s.commit()
        return reward.id


async def _members(db: Database, n: int, points: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    async with db.sessionmaker() as s:
        for c in ids:
            await ledger.grant(
                s, customer_id=c, points=points, idempotency_key=f"conc:{c}", reason="test"
            )
        await s.commit()
    return ids


async def _all_at_once(
    db: Database, calls: list[Callable[[Database], Awaitable[str]]]
) -> list[str]:
    """Runs the calls together, each in its own session on a wide pool; returns their outcomes
    ("issued" or the problem's type)."""
    wide = Database(db.url, pool_size=40)
    start = asyncio.Event()

    async def run(call: Callable[[Database], Awaitable[str]]) -> str:
        await start.wait()
        return await call(wide)

    try:
        tasks = [asyncio.create_task(run(c)) for c in calls]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))
    finally:
        await wide.dispose()


def _redeem(
    customer: uuid.UUID, reward_id: uuid.UUID, key: str
) -> Callable[[Database], Awaitable[str]]:
    async def call(pool: Database) -> str:
        async with pool.sessionmaker() as s:
            try:
                await service.issue(
                    s,
                    customer_id=customer,
                    reward_id=reward_id,
                    key=f"redeem:{customer}:{key}",
                    spend_points=True,
                )
                await s.commit()
                return "issued"
            except Problem as exc:
                return exc.type.rsplit("/", 1)[-1]

    return call


async def _totals(db: Database, reward_id: uuid.UUID, customers: list[uuid.UUID]) -> dict[str, int]:
    async with db.sessionmaker() as s:
        row = (
            await s.execute(
                text(
                    "SELECT (SELECT COALESCE(stock, -1) FROM rewards WHERE id = :r), "
                    "(SELECT count(*) FROM coupons WHERE reward_id = :r), "
                    "(SELECT count(DISTINCT code) FROM coupons WHERE reward_id = :r), "
                    "(SELECT count(*) FROM redemptions WHERE reward_id = :r), "
                    "(SELECT COALESCE(-SUM(delta), 0) FROM ledger_entries "
                    " WHERE kind = 'spend' AND customer_id = ANY(CAST(:c AS uuid[]))), "
                    "(SELECT SUM(balance) FROM accounts WHERE customer_id = ANY(CAST(:c AS uuid[]))), "
                    "(SELECT count(*) FROM outbox WHERE key = ANY(CAST(:k AS text[])) "
                    " AND headers::text LIKE '%RewardIssued%')"
                ),
                {"r": reward_id, "c": customers, "k": [str(c) for c in customers]},
            )
        ).one()
    keys = ("stock", "coupons", "distinct_codes", "redemptions", "spent", "balances", "events")
    return dict(zip(keys, (int(v) for v in row), strict=True))


async def test_200_concurrent_redemptions_of_10_left_issue_exactly_10(db: Database) -> None:
    reward_id = await _reward(db, stock=10)
    members = await _members(db, 200, PRICE)
    outcomes = await _all_at_once(db, [_redeem(c, reward_id, "only") for c in members])
    assert outcomes.count("issued") == 10
    assert outcomes.count("reward-out-of-stock") == 190
    t = await _totals(db, reward_id, members)
    assert t == {
        "stock": 0,
        "coupons": 10,
        "distinct_codes": 10,
        "redemptions": 10,
        "spent": 10 * PRICE,
        "balances": 190 * PRICE,
        "events": 10,
    }


async def test_concurrent_redemptions_from_a_pool_take_distinct_codes(db: Database) -> None:
    reward_id = await _reward(db, code_source="pool")
    async with db.sessionmaker() as s:
        await service.import_codes(s, reward_id=reward_id, raw=[f"POOL-{i}" for i in range(15)])
        await s.commit()
    members = await _members(db, 60, PRICE)
    outcomes = await _all_at_once(db, [_redeem(c, reward_id, "pool") for c in members])
    assert outcomes.count("issued") == 15
    t = await _totals(db, reward_id, members)
    assert (t["coupons"], t["distinct_codes"], t["spent"]) == (15, 15, 15 * PRICE)


async def test_per_member_limit_holds_under_concurrency(db: Database) -> None:
    reward_id = await _reward(db, per_member_limit=3)  # unlimited stock
    [rich] = await _members(db, 1, 100 * PRICE)
    # 30 requests with different keys, and 5 repeating one key, all at once.
    calls = [_redeem(rich, reward_id, f"k{i}") for i in range(30)]
    calls += [_redeem(rich, reward_id, "same") for _ in range(5)]
    outcomes = await _all_at_once(db, calls)
    assert outcomes.count("issued") + outcomes.count("reward-limit-reached") == 35
    t = await _totals(db, reward_id, [rich])
    assert (t["redemptions"], t["coupons"], t["spent"]) == (3, 3, 3 * PRICE)
    assert t["balances"] == 97 * PRICE


async def test_balance_is_never_overspent_by_concurrent_redemptions(db: Database) -> None:
    reward_id = await _reward(db)  # unlimited, no limit: only the points stop it
    [member] = await _members(db, 1, 5 * PRICE + 50)
    outcomes = await _all_at_once(db, [_redeem(member, reward_id, f"b{i}") for i in range(25)])
    assert outcomes.count("issued") == 5
    assert outcomes.count("insufficient-points") == 20
    t = await _totals(db, reward_id, [member])
    assert (t["coupons"], t["spent"], t["balances"]) == (5, 5 * PRICE, 50)
