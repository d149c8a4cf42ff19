"""Segmentation scores benchmark: RFM recompute and the CLV fit on N synthetic customers, each
beside a hand-written SQL baseline on the same tables in the same run. Prints; asserts nothing.

    .venv/bin/python bench/seg_scores.py --customers 1000000 --orders-per-customer 3

Uses a database of its own (`bench_seg_scores`, dropped and migrated afresh); starts no process.

1. RFM: `recompute_rfm` three times: first (every score written), again (nothing changed, the
   steady state of the hourly job), and after 1% of the customers bought again. Baselines: the
   scoring SELECT alone (three window sorts, nothing written) and the obvious hand-written
   UPDATE with ntile(5) that rewrites every row.
2. CLV: `fit_clv` (history query, both fits, predictions, COPY + UPDATE), with its phases from
   the model's diagnostics. Baseline: the history query alone, fetched with asyncpg.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import asyncpg
from rich.console import Console
from rich.table import Table

from vafa.kit.db import Database
from vafa.kit.migrations import upgrade
from vafa.kit.settings import PG_DEFAULT
from vafa.segmentation.scores import rfm
from vafa.segmentation.scores.clv import service as clv
from vafa.segmentation.spec import SPEC

DB_NAME = "bench_seg_scores"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
console = Console()

SEED_FEATURES = """
INSERT INTO features (customer_id, orders_count, total_spent, avg_order_value,
                      first_order_at, last_order_at, cohort, acquisition_channel)
SELECT md5('c' || i)::uuid,
       o, o * s, s,
       $1::timestamptz - make_interval(days => (400 + i % 300)::int),
       $1::timestamptz - make_interval(days => ((i * 7919) % 700)::int),
       '2026-0' || (1 + i % 6), (ARRAY['web', 'instagram', 'shop', ''])[(1 + i % 4)::int]
FROM (SELECT i,
             CASE WHEN i % 10 < 7 THEN 1 + (i % 3) ELSE 1 + (i * 31) % 40 END AS o,
             1000 + (i * 7907) % 90000 AS s
      FROM generate_series(1, $2::bigint) AS i) g
"""
# Orders for the CLV history: `k` per customer over the last two years, some refunds and
# cancellations.
SEED_ORDERS = """
INSERT INTO orders (order_ref, customer_id, status, placed_at, paid_at, currency, total_minor,
                    refunded_minor)
SELECT 'b-' || i || '-' || k, md5('c' || i)::uuid,
       CASE WHEN (i + k) % 29 = 0 THEN 'cancelled' ELSE 'paid' END,
       $1::timestamptz - make_interval(days => ((i * 13 + k * 97) % 730)::int),
       $1::timestamptz - make_interval(days => ((i * 13 + k * 97) % 730)::int),
       'USD', 1000 + (i * 7907 + k * 131) % 90000, CASE WHEN (i + k) % 53 = 0 THEN 500 ELSE 0 END
FROM generate_series(1, $2::bigint) AS i,
     LATERAL generate_series(1, CASE WHEN i % 10 < 6 THEN 1 ELSE 1 + (i * 17) % ($3 * 2) END) AS k
"""

NTILE_UPDATE = """
UPDATE features AS t SET rfm_r = s.r, rfm_f = s.f, rfm_m = s.m
FROM (SELECT customer_id,
             ntile(5) OVER (ORDER BY last_order_at) AS r,
             ntile(5) OVER (ORDER BY orders_count) AS f,
             ntile(5) OVER (ORDER BY total_spent) AS m
      FROM features WHERE NOT removed AND orders_count > 0) AS s
WHERE t.customer_id = s.customer_id
"""
SCORING_SELECT = """
SELECT sum(r + f + m) FROM (
  SELECT customer_id,
         rank() OVER (ORDER BY last_order_at) AS r, rank() OVER (ORDER BY orders_count) AS f,
         rank() OVER (ORDER BY total_spent) AS m
  FROM features WHERE NOT removed AND orders_count > 0 AND last_order_at IS NOT NULL) s
"""


async def fresh_database() -> str:
    admin = PG_DEFAULT.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()
    url = f"{PG_DEFAULT}/{DB_NAME}"
    await asyncio.to_thread(upgrade, SPEC.service_dir, url)
    return url


async def timed(label: str, rows: list[tuple[str, str, str]], coro: object) -> object:
    started = time.perf_counter()
    out = await coro  # type: ignore[misc]
    rows.append((label, f"{time.perf_counter() - started:.2f} s", ""))
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--orders-per-customer", type=int, default=3)
    ap.add_argument("--skip-clv", action="store_true")
    args = ap.parse_args()

    url = await fresh_database()
    raw = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    console.print(f"seeding {args.customers:,} customers ...")
    started = time.perf_counter()
    await raw.execute(SEED_FEATURES, NOW, args.customers)
    if not args.skip_clv:
        await raw.execute(SEED_ORDERS, NOW, args.customers, args.orders_per_customer)
    await raw.execute("VACUUM ANALYZE features")
    await raw.execute("VACUUM ANALYZE orders")
    n_orders = await raw.fetchval("SELECT count(*) FROM orders")
    console.print(f"seeded in {time.perf_counter() - started:.0f} s ({n_orders:,} orders)")

    db = Database(url, pool_size=2)
    table = Table(title=f"scores on {args.customers:,} customers, {n_orders:,} orders")
    table.add_column("what")
    table.add_column("time", justify="right")
    table.add_column("rows", justify="right")

    async def recompute(label: str) -> None:
        async with db.sessionmaker() as s:
            started = time.perf_counter()
            summary = await rfm.recompute_rfm(s, now=NOW)
            await s.commit()
            table.add_row(
                f"recompute_rfm: {label}",
                f"{time.perf_counter() - started:.2f} s",
                f"{summary.changed:,} written, {summary.report.customers:,} scored",
            )

    started = time.perf_counter()
    await raw.fetchval(SCORING_SELECT)
    table.add_row(
        "baseline: rank() windows, SELECT only", f"{time.perf_counter() - started:.2f} s", ""
    )
    await recompute("first run")
    await recompute("again, nothing changed")
    await raw.execute(
        "UPDATE features SET last_order_at = $1, orders_count = orders_count + 1"
        " WHERE ('x' || substr(customer_id::text, 1, 8))::bit(32)::bigint % 100 = 0",
        NOW,
    )
    await recompute("after 1% bought again")
    started = time.perf_counter()
    status = await raw.execute(NTILE_UPDATE)
    table.add_row(
        "baseline: ntile UPDATE of every row",
        f"{time.perf_counter() - started:.2f} s",
        status.split()[-1],
    )

    if not args.skip_clv:
        started = time.perf_counter()
        hist = await raw.fetch(
            clv.HISTORY_SQL, "UTC", ["paid", "fulfilled"], "USD", NOW, NOW.date()
        )
        table.add_row(
            "baseline: CLV history query, asyncpg fetch",
            f"{time.perf_counter() - started:.2f} s",
            f"{len(hist):,}",
        )
        del hist
        async with db.sessionmaker() as s:
            started = time.perf_counter()
            model = await clv.fit_clv(s, now=NOW, policy=clv.ClvPolicy())
            await s.commit()
            d = model.diagnostics
            table.add_row(
                "fit_clv: whole",
                f"{time.perf_counter() - started:.2f} s",
                f"{d['written']:,} written",
            )
            for phase in ("load", "fit", "predict", "write"):
                table.add_row(f"  of which {phase}", f"{d[phase + '_seconds']:.2f} s", "")
            console.print({"bgnbd": model.params["bgnbd"], "gg": model.params["gamma_gamma"]})

    console.print(table)
    await raw.close()
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
