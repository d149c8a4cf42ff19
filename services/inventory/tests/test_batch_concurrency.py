"""The batch handler beside concurrent PUT stock calls on the same SKUs: no deadlock (PostgreSQL
would abort one transaction with a deadlock error, failing the test), nothing lost: every SKU's
ledger sums to its level, and its StockChanged events chain one level onto the next."""

from __future__ import annotations

import asyncio
import random
import uuid

import httpx
from sqlalchemy import text

from vafa.events.v1 import inventory_pb2, shop_orders_pb2
from vafa.inventory.config import Settings
from vafa.inventory.stock import service
from vafa.inventory.stock.handlers import order_batch_handler
from vafa.kit import cloudevents
from vafa.kit.cloudevents import Envelope
from vafa.kit.db import Database
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.plugin import principal_headers

SHOP = principal_headers("shop", "storefront", "shop")
WORKERS = 3  # batch handlers at once, as several replicas (or a rebalance) would run them
BATCHES = 12
PUTTERS = 4
PUTS = 25


def _envelope(msg: object) -> Envelope:
    headers, payload = cloudevents.encode(msg, source="/test")  # type: ignore[arg-type]
    return cloudevents.decode(headers, payload)


def _batch(rng: random.Random, skus: list[str], worker: int, n: int) -> list[Envelope]:
    """Orders on several SKUs in random order (so locks would be taken in every order if the
    handler locked as it went), paid twice, some cancelled, some refunded with restock."""
    out = []
    for i in range(8):
        ref = f"conc:{worker}:{n}:{i}"
        lines = [
            shop_orders_pb2.LineItem(line_id=str(j), sku=sku, quantity=rng.randint(1, 3))
            for j, sku in enumerate(rng.sample([*skus, "UNKNOWN-SKU"], k=rng.randint(1, 4)))
        ]
        order = shop_orders_pb2.Order(order_ref=ref, line_items=lines)
        out.append(_envelope(shop_orders_pb2.OrderPlaced(order=order)))
        out.append(_envelope(shop_orders_pb2.OrderPaid(order=order)))
        if rng.random() < 0.3:
            out.append(_envelope(shop_orders_pb2.OrderCancelled(order=order)))
        elif rng.random() < 0.3:
            refund = shop_orders_pb2.Refund(
                refund_id="r1",
                lines=[
                    shop_orders_pb2.RefundLine(
                        line_id=li.line_id, sku=li.sku, quantity=1, restock=True
                    )
                    for li in lines
                ],
            )
            out.append(_envelope(shop_orders_pb2.OrderRefunded(order=order, refund=refund)))
    rng.shuffle(out)  # the events of other orders interleave in any order
    return out


async def test_batches_and_stock_puts_never_deadlock_and_the_ledger_holds(
    settings: ServiceSettings, db: Database, client: httpx.AsyncClient
) -> None:
    assert isinstance(settings, Settings)
    run = uuid.uuid4().hex[:8]
    skus = [f"CONC-{run}-{i}" for i in range(5)]
    async with db.sessionmaker() as s:
        for sku in skus:
            await service.set_level(
                s,
                sku=sku,
                on_hand=50,
                low_stock_threshold=None,
                reason="count",
                author="t",
                default_threshold=5,
            )
        await s.commit()
    handler = order_batch_handler(settings)

    async def worker(w: int) -> None:
        rng = random.Random(w)
        for n in range(BATCHES):
            async with db.sessionmaker() as session, session.begin():
                await handler(session, _batch(rng, skus, w, n))

    async def putter(p: int) -> None:
        rng = random.Random(1000 + p)
        for _ in range(PUTS):
            sku = rng.choice(skus)
            r = await client.put(
                f"/v1/products/{sku}/stock", json={"on_hand": rng.randint(0, 100)}, headers=SHOP
            )
            assert r.status_code == 200, r.text

    await asyncio.wait_for(
        asyncio.gather(*(worker(w) for w in range(WORKERS)), *(putter(p) for p in range(PUTTERS))),
        120,
    )

    async with db.sessionmaker() as s:
        levels = dict(
            (
                await s.execute(
                    text("SELECT sku, on_hand FROM stock_items WHERE sku = ANY(:skus)"),
                    {"skus": skus},
                )
            ).all()
        )
        ledger = dict(
            (
                await s.execute(
                    text(
                        "SELECT sku, sum(delta) FROM stock_movements WHERE sku = ANY(:skus) "
                        "GROUP BY sku"
                    ),
                    {"skus": skus},
                )
            ).all()
        )
        assert levels == ledger
        moved = (
            await s.execute(
                text(
                    "SELECT reason, count(*) FROM stock_movements WHERE sku = ANY(:skus) "
                    "GROUP BY reason"
                ),
                {"skus": skus},
            )
        ).all()
        counts = dict(moved)
        assert counts["sale"] > 0 and counts["correction"] > len(skus)  # both sides really ran
        rows = (
            await s.execute(
                text("SELECT headers, payload FROM outbox WHERE key = ANY(:skus) ORDER BY id"),
                {"skus": skus},
            )
        ).all()
    # The row lock orders each SKU's writers, so its events chain: each starts where the last
    # one left the level.
    last: dict[str, int] = {}
    for headers, payload in rows:
        msg = cloudevents.decode([(k, v.encode()) for k, v in headers], payload).message
        if not isinstance(msg, inventory_pb2.StockChanged):
            continue  # status changes and alerts ride along
        assert msg.on_hand == last.get(msg.sku, 0) + msg.delta, msg
        last[msg.sku] = msg.on_hand
    assert last == levels
