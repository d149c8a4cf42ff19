"""The loyalty benchmark: earn events/s through the loyalty worker's consumer, beside a raw
baseline on the same machine in the same run.

    .venv/bin/python bench/loyalty.py --events 20000            # earn part, then redemption
    .venv/bin/python bench/loyalty.py --events 20000 --skip-redeem

Needs only PostgreSQL and Kafka (the stack's API processes are not used): the bench makes its
own database (migrated to head) and its own topic prefix, and drops both at the end.

Phases:
1. produce N `PurchaseAttributed` PAID events (distinct customers, two lines each) to
   `<prefix>profile.purchases.v1`, before anything consumes them;
2. baseline: aiokafka consume of those same N records (a fresh group) -> asyncpg insert of
   one row per record, one transaction per polled batch: the least a Kafka-to-PostgreSQL hop
   costs here, as records/s;
3. loyalty: the loyalty worker (`vafa.loyalty.worker.main`: consumers, outbox relay, jobs)
   against the bench database; earn events/s from its start until every order's earn entry
   is committed (group join included), and from the first credit to the last (steady state);
4. redemption: `bench/loyalty_redeem.py` (the rewards part's bench) if present, unless
   `--skip-redeem`: the hook calls its `async def run(args) -> dict[str, float]`.

Figures are printed with rich; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.kafka import delete_topics, ensure_topics
from vafa.kit.migrations import upgrade
from vafa.kit.settings import PG_DEFAULT, KafkaSettings
from vafa.loyalty.config import Settings
from vafa.loyalty.worker import main as loyalty_worker

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def purchase(i: int, run: str) -> tuple[bytes, list[tuple[str, bytes]], bytes]:
    customer = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{run}:{i}"))
    ref = f"bench:{run}:{i}"
    total = 10_000 + (i % 97) * 100
    first = total // 3
    msg = profile_pb2.PurchaseAttributed(
        customer_id=customer,
        kind=profile_pb2.PURCHASE_KIND_PAID,
        order=shop_orders_pb2.Order(
            order_ref=ref,
            currency="USD",
            total=common_pb2.Money(amount_minor=total, currency="USD"),
            line_items=[
                shop_orders_pb2.LineItem(
                    line_id="1",
                    sku="TEA",
                    vendor="Golestan",
                    quantity=1,
                    total=common_pb2.Money(amount_minor=first, currency="USD"),
                ),
                shop_orders_pb2.LineItem(
                    line_id="2",
                    sku="SAFFRON",
                    vendor="Novin",
                    quantity=2,
                    total=common_pb2.Money(amount_minor=total - first, currency="USD"),
                ),
            ],
        ),
    )
    headers, payload = cloudevents.encode(
        msg, source="/vafa/profile", subject=customer, event_id=f"bench-{run}-{i}"
    )
    return customer.encode(), [(k, v) for k, v in headers], payload


async def produce(topic: str, kafka: KafkaSettings, n: int, run: str) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    start = time.perf_counter()
    try:
        futures = []
        for i in range(n):
            key, headers, payload = purchase(i, run)
            futures.append(await producer.send(topic, value=payload, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - start


async def baseline(topic: str, kafka: KafkaSettings, dsn: str, n: int) -> dict[str, float]:
    """Raw: consume the same n records with a fresh group -> asyncpg insert, one transaction
    per polled batch (no decoding, no logic)."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE bench_raw (id text PRIMARY KEY, body bytea)")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"{topic}.raw",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    start = time.perf_counter()
    await consumer.start()
    done = 0
    try:
        while done < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                continue
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO bench_raw (id, body) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [(f"{r.partition}:{r.offset}", r.value) for r in records],
                )
            await consumer.commit()
            done += len(records)
    finally:
        await consumer.stop()
        await conn.execute("DROP TABLE bench_raw")
        await conn.close()
    elapsed = time.perf_counter() - start
    return {"records": done, "seconds": elapsed, "per_second": done / elapsed}


async def through_loyalty(settings: Settings, dsn: str, n: int, run: str) -> dict[str, float]:
    """Runs the loyalty worker until every order has its earn entry; polls the count."""
    conn = await asyncpg.connect(dsn)
    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(loyalty_worker(settings, stop))
    first: float | None = None
    credited = 0
    try:
        while credited < n:
            if task.done():
                task.result()  # raises what killed the worker
                raise RuntimeError("the loyalty worker stopped early")
            await asyncio.sleep(0.05)
            credited = await conn.fetchval(
                "SELECT count(*) FROM ledger_entries WHERE kind = 'earn' AND order_ref LIKE $1",
                f"bench:{run}:%",
            )
            if credited and first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        balance, ledger, lots = await conn.fetchrow(
            "SELECT (SELECT SUM(balance) FROM accounts), (SELECT SUM(delta) FROM ledger_entries),"
            " (SELECT SUM(remaining) FROM lots)"
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await conn.close()
    assert first is not None
    return {
        "events": credited,
        "seconds": end - start,
        "per_second": credited / (end - start),
        "steady_per_second": credited / max(end - first, 1e-9),
        "sound": float(balance == ledger == lots),
    }


async def redeem_hook(args: argparse.Namespace) -> dict[str, float] | None:
    """The rewards part's redemption bench, when it exists (bench/loyalty_redeem.py)."""
    path = ROOT / "bench" / "loyalty_redeem.py"
    if args.skip_redeem or not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("loyalty_redeem", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: dict[str, float] = await module.run(args)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--skip-redeem", action="store_true", help="only the earn part (no loyalty_redeem.py)"
    )
    args = parser.parse_args()
    n = args.events
    run = uuid.uuid4().hex[:8]
    prefix = f"bench.{run}."
    kafka = KafkaSettings(topic_prefix=prefix)
    database = f"bench_loyalty_{run}"
    admin_dsn = PG_DEFAULT.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    dsn = PG_DEFAULT.replace("postgresql+asyncpg://", "postgresql://") + f"/{database}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    settings = Settings(
        database_url=f"{PG_DEFAULT}/{database}",
        kafka=kafka,
        worker_metrics_port=0,
        log_level="WARNING",
        # The jobs are not what this measures; keep them out of the way.
        expiry_every_seconds=3600,
        birthday_every_seconds=3600,
    )
    results: dict[str, Any] = {}
    try:
        await asyncio.to_thread(upgrade, ROOT / "services" / "loyalty", settings.database_url)
        await ensure_topics(kafka)
        topic = kafka.topic("profile.purchases.v1")
        console.print(f"producing {n:,} PurchaseAttributed (PAID) to {topic} ...")
        results["produce_seconds"] = await produce(topic, kafka, n, run)
        console.print("baseline: aiokafka -> asyncpg ...")
        results["baseline"] = await baseline(topic, kafka, dsn, n)
        console.print("loyalty worker ...")
        results["loyalty"] = await through_loyalty(settings, dsn, n, run)
        results["redeem"] = await redeem_hook(args)
    finally:
        await delete_topics(kafka, prefix=prefix)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()

    base, loyal = results["baseline"], results["loyalty"]
    table = Table(title=f"loyalty earn, {n:,} paid orders (distinct customers, 2 lines each)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row(
        "raw baseline: aiokafka -> asyncpg insert", f"{base['per_second']:,.0f} records/s"
    )
    table.add_row(
        "loyalty worker, start to last credit (group join included)",
        f"{loyal['per_second']:,.0f} earn events/s",
    )
    table.add_row(
        "loyalty worker, first to last credit", f"{loyal['steady_per_second']:,.0f} earn events/s"
    )
    table.add_row("loyalty / baseline", f"{loyal['steady_per_second'] / base['per_second']:.2f}")
    table.add_row("balances == ledger == lots after the run", "yes" if loyal["sound"] else "NO")
    console.print(table)
    if results["redeem"] is None:
        console.print("redemption: skipped (--skip-redeem, or bench/loyalty_redeem.py absent)")
    else:
        console.print({"redemption": results["redeem"]})


if __name__ == "__main__":
    asyncio.run(main())
