"""The feature store's bench: what one purchase event costs the segmentation consumer, what
recomputing one customer's features costs, batch throughput and the window job, each beside a
hand-written raw-SQL baseline on the same tables in the same run.

    .venv/bin/python bench/segmentation_features.py --customers 20000 --orders-per 10

Needs only PostgreSQL: the bench makes its own database (migrated to head) and drops it at the
end. The evaluation seam (segments) is called as the handlers call it; with no segments defined
it costs what the segments branch's empty-segment path costs.

Figures (latencies in ms, from statement start to commit, one transaction each):
1. recompute of one customer's order features (the `UPDATE ... FROM (aggregate)` the handlers
   and the window job run) vs a raw baseline: the hand-written per-customer count/sum update;
2. one PAID event through the purchases batch handler (a batch of one: load and lock the
   order, save it, label and insert its lines, recompute, re-evaluate) vs a raw baseline: insert
   the order and bump the customer's counters, two statements;
3. throughput: batches of 500 PAID events (distinct customers) through the handler, events/s;
4. the window job over customers whose 30-day window expired, customers/s.

Printed with rich; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table

from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
from vafa.kit.cloudevents import Envelope, event_type
from vafa.kit.db import Database
from vafa.kit.migrations import upgrade
from vafa.kit.settings import PG_DEFAULT
from vafa.segmentation.config import Settings
from vafa.segmentation.features import jobs, service
from vafa.segmentation.features.handlers import purchases_handler

ROOT = Path(__file__).resolve().parents[1]
console = Console()
NOW = datetime.now(UTC)

_SEED_FEATURES = """
INSERT INTO features (customer_id)
SELECT uuid_generate_v5('6ba7b811-9dad-11d1-80b4-00c04fd430c8', 'bench:' || i)
FROM generate_series(1, $1) AS i
"""
_SEED_ORDERS = """
INSERT INTO orders (order_ref, customer_id, status, placed_at, paid_at, currency, total_minor,
                    discount_minor, discounted)
SELECT 'bench:' || i || ':' || j,
       uuid_generate_v5('6ba7b811-9dad-11d1-80b4-00c04fd430c8', 'bench:' || i),
       'paid', $3::timestamptz - make_interval(days => (i * 7 + j * 37) % 720),
       $3::timestamptz - make_interval(days => (i * 7 + j * 37) % 720), 'USD',
       1000 + (i * j) % 9000, CASE WHEN j % 4 = 0 THEN 500 ELSE 0 END, j % 4 = 0
FROM generate_series(1, $1) AS i, generate_series(1, $2) AS j
"""
_SEED_LINES = """
INSERT INTO purchase_lines (order_ref, line_id, customer_id, purchased_at, sku, brand, category,
                            tags, quantity, amount_minor, discounted)
SELECT o.order_ref, '1', o.customer_id, o.placed_at, 'SKU-' || (hashtext(o.order_ref) & 511),
       'brand-' || (hashtext(o.order_ref) & 31), 'cat-' || (hashtext(o.order_ref) & 15),
       ARRAY['tag-' || (hashtext(o.order_ref) & 7)], 1, o.total_minor, o.discounted
FROM orders o
"""
_BASELINE_RECOMPUTE = """
UPDATE features f SET orders_count = a.n, total_spent = a.s,
  orders_30d = a.n30, spent_30d = a.s30
FROM (SELECT count(*) AS n, COALESCE(sum(total_minor), 0) AS s,
             count(*) FILTER (WHERE placed_at > $2::timestamptz - interval '30 days') AS n30,
             COALESCE(sum(total_minor) FILTER (
               WHERE placed_at > $2::timestamptz - interval '30 days'), 0) AS s30
      FROM orders WHERE customer_id = $1 AND status IN ('paid', 'fulfilled')) AS a
WHERE f.customer_id = $1
"""
_BASELINE_ORDER = """
INSERT INTO orders (order_ref, customer_id, status, placed_at, paid_at, currency, total_minor)
VALUES ($1, $2, 'paid', $3, $3, 'USD', $4) ON CONFLICT DO NOTHING
"""
_BASELINE_BUMP = """
UPDATE features SET orders_count = orders_count + 1, total_spent = total_spent + $2,
  last_order_at = $3 WHERE customer_id = $1
"""


def customer(i: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{i}")


def paid(cid: uuid.UUID, ref: str, total: int) -> Envelope:
    placed = NOW - timedelta(minutes=5)
    ts = Timestamp()
    ts.FromDatetime(placed)
    msg = profile_pb2.PurchaseAttributed(
        customer_id=str(cid),
        kind=profile_pb2.PURCHASE_KIND_PAID,
        order=shop_orders_pb2.Order(
            order_ref=ref,
            currency="USD",
            total=common_pb2.Money(amount_minor=total, currency="USD"),
            placed_at=ts,
            line_items=[
                shop_orders_pb2.LineItem(
                    line_id="1",
                    sku="SKU-7",
                    vendor="v",
                    quantity=1,
                    total=common_pb2.Money(amount_minor=total, currency="USD"),
                )
            ],
        ),
    )
    return Envelope(
        id=str(uuid.uuid4()),
        source="/bench",
        type=event_type(msg),
        time=NOW,
        subject=str(cid),
        message=msg,
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(samples: list[float], coro: Awaitable[None]) -> None:
    start = time.perf_counter()
    await coro
    samples.append((time.perf_counter() - start) * 1000)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--orders-per", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    n, per = args.customers, args.orders_per
    run = uuid.uuid4().hex[:8]
    database = f"bench_segfeatures_{run}"
    base = PG_DEFAULT.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(base + "/postgres")
    await admin.execute(f'CREATE DATABASE "{database}"')
    url = f"{PG_DEFAULT}/{database}"
    settings = Settings(database_url=url, timezone="Asia/Tehran")
    latencies: dict[str, tuple[list[float], list[float]]] = {}
    rates: dict[str, float] = {}
    handled = 0
    db: Database | None = None
    try:
        await asyncio.to_thread(upgrade, ROOT / "services" / "segmentation", url)
        raw = await asyncpg.connect(base + f"/{database}")
        await raw.execute('CREATE EXTENSION IF NOT EXISTS "uuid-ossp"')
        console.print(f"seeding {n:,} customers x {per} orders (+1 line each) ...")
        await raw.execute(_SEED_FEATURES, n)
        await raw.execute(_SEED_ORDERS, n, per, NOW)
        await raw.execute(_SEED_LINES)
        await raw.execute("ANALYZE")
        db = Database(url, pool_size=4, pre_ping=False)

        console.print("full recompute of every customer (batches of 1,000) ...")
        start = time.perf_counter()
        for lo in range(1, n + 1, 1000):
            ids = [customer(i) for i in range(lo, min(n, lo + 999) + 1)]
            async with db.sessionmaker() as s, s.begin():
                await service.recompute(s, customer_ids=ids, now=NOW, timezone=settings.timezone)
        rates["full"] = n / (time.perf_counter() - start)

        rng = random.Random(7)
        picks = [customer(rng.randint(1, n)) for _ in range(args.samples)]

        console.print("recompute of one customer vs raw ...")
        ours: list[float] = []
        baseline: list[float] = []
        for cid in picks:

            async def one(cid: uuid.UUID = cid) -> None:
                assert db is not None
                async with db.sessionmaker() as s, s.begin():
                    await service.recompute(
                        s, customer_ids=[cid], now=NOW, timezone=settings.timezone
                    )

            await timed(ours, one())

            async def raw_one(cid: uuid.UUID = cid) -> None:
                async with raw.transaction():
                    await raw.execute(_BASELINE_RECOMPUTE, cid, NOW)

            await timed(baseline, raw_one())
        latencies["recompute"] = (ours, baseline)

        console.print("one PAID event per batch through the handler vs raw ...")
        handler = purchases_handler(settings, clock=lambda: NOW)
        ours, baseline = [], []
        for k, cid in enumerate(picks):
            env = paid(cid, f"bench:new:{run}:{k}", 2500)

            async def handle(env: Envelope = env) -> None:
                assert db is not None
                async with db.sessionmaker() as s, s.begin():
                    await handler(s, [env])

            await timed(ours, handle())

            async def raw_event(cid: uuid.UUID = cid, k: int = k) -> None:
                async with raw.transaction():
                    await raw.execute(_BASELINE_ORDER, f"raw:{run}:{k}", cid, NOW, 2500)
                    await raw.execute(_BASELINE_BUMP, cid, 2500, NOW)

            await timed(baseline, raw_event())
        latencies["event"] = (ours, baseline)

        console.print(f"{args.batches} batches of 500 PAID events ...")
        start = time.perf_counter()
        for b in range(args.batches):
            envs = [
                paid(customer(rng.randint(1, n)), f"bench:batch:{run}:{b}:{i}", 1500)
                for i in range(500)
            ]
            async with db.sessionmaker() as s, s.begin():
                await handler(s, envs)
        rates["batch"] = args.batches * 500 / (time.perf_counter() - start)

        console.print("window job, 31 days on ...")
        start = time.perf_counter()
        handled = await jobs.run_windows(
            db.sessionmaker,
            now=NOW + timedelta(days=31),
            timezone=settings.timezone,
            batch_size=500,
        )
        seconds = time.perf_counter() - start
        rates["windows"] = handled / seconds if seconds else 0.0
        await raw.close()
    finally:
        if db is not None:
            await db.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()

    table = Table(title=f"segmentation features: {n:,} customers, {n * per:,} orders")
    table.add_column("figure")
    table.add_column("Vafa", justify="right")
    table.add_column("raw baseline", justify="right")
    for key, label in (
        ("recompute", "recompute one customer p50 / p99 (ms)"),
        ("event", "one PAID event, batch of one, p50 / p99 (ms)"),
    ):
        ours, baseline = latencies[key]
        table.add_row(
            label,
            f"{statistics.median(ours):.2f} / {pct(ours, 0.99):.2f}",
            f"{statistics.median(baseline):.2f} / {pct(baseline, 0.99):.2f}",
        )
    table.add_row("full recompute (customers/s)", f"{rates['full']:,.0f}", "")
    table.add_row("PAID events in batches of 500 (events/s)", f"{rates['batch']:,.0f}", "")
    table.add_row(
        f"window job: {handled:,} customers due (customers/s)", f"{rates['windows']:,.0f}", ""
    )
    console.print(table)


if __name__ == "__main__":
    asyncio.run(main())
