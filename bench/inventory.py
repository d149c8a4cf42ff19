"""Inventory benchmark: reservations under contention and bulk availability through the gateway,
each beside a raw asyncpg baseline measured in the same run. Prints figures; asserts nothing.

    .venv/bin/python bench/inventory.py --reservations 5000 --concurrency 64 --hot-skus 10

It starts its own processes (never the dev stack's): the inventory API on --api-port and the
gateway on --gateway-port (fronting only this inventory), against a database of its own
(`bench_inventory`, dropped and migrated afresh), and stops them afterwards.

1. Reservations/s: N reservations (1-3 lines of one unit, SKUs drawn from a small hot set, so
   every request contends for the same row locks) from C concurrent connections, straight to the
   inventory API (POST /v1/reservations). Raw baseline: asyncpg running the same statements
   (claim, lock, levels, the one write, the outbox insert and NOTIFY), combining the
   reservations waiting at a moment into one transaction as the service does; and the same one
   transaction per reservation, from C connections; both on a hot set of the same size beside
   the service's.
2. Bulk availability p50/p99: POST /v1/availability for 100 random SKUs (of --catalogue seeded),
   one request at a time, through the gateway; beside the same against the API directly, and the
   raw asyncpg query alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from rich.console import Console
from rich.table import Table
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from vafa.inventory.stock import batch, service
from vafa.kit.settings import PG_DEFAULT

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
DB_NAME = "bench_inventory"
console = Console()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def asyncpg_sql(stmt: TextClause) -> tuple[str, list[str]]:
    """The service's own SQL, compiled for asyncpg ($n placeholders, names in order)."""
    compiled = stmt.compile(dialect=asyncpg_dialect())
    return str(compiled), list(compiled.positiontup or [])


def bind(sql: tuple[str, list[str]], params: dict[str, Any]) -> list[Any]:
    return [params[name] for name in sql[1]]


class Refused(Exception):
    """The raw baseline's insufficient stock: the transaction rolls back."""


# -- processes -----------------------------------------------------------------------------


async def fresh_database() -> str:
    admin = PG_DEFAULT.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()
    return f"{PG_DEFAULT}/{DB_NAME}"


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env={**os.environ, **env}, cwd=ROOT)


async def wait_ready(url: str, what: str) -> None:
    async with aiohttp.ClientSession() as client:
        for _ in range(900):
            try:
                async with client.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{what} did not become ready at {url}")


# -- reservations --------------------------------------------------------------------------


def orders(n: int, hot: list[str], rng: random.Random, run: str) -> list[dict[str, Any]]:
    return [
        {
            "order_ref": f"bench:{run}:{i}",
            "lines": [{"sku": s, "quantity": 1} for s in rng.sample(hot, rng.randint(1, 3))],
        }
        for i in range(n)
    ]


async def reserve_via_api(
    bases: list[str], headers: dict[str, str], bodies: list[dict[str, Any]], concurrency: int
) -> dict[str, Any]:
    """Worker i sends to API process i mod len(bases), as a load balancer in front of replicas
    would spread connections."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=60),
        headers=headers,
    ) as client:

        async def worker(i: int) -> None:
            base = bases[i % len(bases)]
            while queue:
                body = queue.pop()
                t = time.perf_counter()
                async with client.post(f"{base}/v1/reservations", json=body) as r:
                    await r.read()
                    codes[r.status] = codes.get(r.status, 0) + 1
                latencies.append(time.perf_counter() - t)

        start_t = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - start_t
    return {
        "per_s": len(bodies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "codes": codes,
    }


async def reserve_raw(
    dsn: str, bodies: list[dict[str, Any]], concurrency: int, *, combine: bool
) -> dict[str, Any]:
    """The same statements the service runs for reservations at one location, with the least
    Python between them: no ORM, no HTTP, no event encoding. `combine`: as the service's
    combiner, the reservations waiting at a moment go through one transaction together;
    otherwise one transaction each."""
    claim = asyncpg_sql(batch._CLAIM_ORDERS)
    lock = asyncpg_sql(batch._LOCK_ITEMS)
    levels = asyncpg_sql(batch._LEVELS)
    write = asyncpg_sql(batch._WRITE)
    outbox_sql = (
        "INSERT INTO outbox (event_id, topic, key, headers, payload) "
        "VALUES ($1, $2, $3, CAST($4 AS jsonb), $5) ON CONFLICT (event_id) DO NOTHING"
    )
    pool = await asyncpg.create_pool(
        dsn.replace("postgresql+asyncpg://", "postgresql://"),
        min_size=2 if combine else concurrency,
        max_size=2 if combine else concurrency,
    )
    latencies: list[float] = []
    failed = 0
    queue = list(reversed(bodies))

    async def group(taken: list[dict[str, Any]]) -> None:
        nonlocal failed
        refs = sorted(b["order_ref"] for b in taken)
        skus = sorted({line["sku"] for b in taken for line in b["lines"]})
        async with pool.acquire() as conn, conn.transaction():
            await conn.fetch(claim[0], *bind(claim, {"refs": refs}))
            locked = {r[0] for r in await conn.fetch(lock[0], *bind(lock, {"skus": skus}))}
            rows = await conn.fetch(levels[0], *bind(levels, {"skus": skus}))
            level = {r[0]: [r[2], r[3]] for r in rows if r[1] == "default"}
            held, moved, refused = [], [], []
            for b in taken:
                want = sorted(line["sku"] for line in b["lines"])
                if any(s not in locked or level[s][0] - level[s][1] < 1 for s in want):
                    refused.append(b["order_ref"])
                    continue
                held.append(b)
                for s in want:
                    level[s][1] += 1
                    moved.append((b["order_ref"], s))
            failed += len(refused)
            touched = sorted({s for _, s in moved})
            n = len(moved)
            params = {
                "m_keys": [f"hold:{ref}:{s}:default" for ref, s in moved],
                "m_skus": [s for _, s in moved],
                "m_locs": ["default"] * n,
                "m_deltas": [0] * n,
                "m_rdeltas": [1] * n,
                "m_kinds": ["reserve"] * n,
                "m_refs": [ref for ref, _ in moved],
                "m_authors": [None] * n,
                "m_notes": ["api"] * n,
                "l_skus": touched,
                "l_locs": ["default"] * len(touched),
                "l_on_hand": [level[s][0] for s in touched],
                "l_reserved": [level[s][1] for s in touched],
                "i_skus": touched,
                "i_on_hand": [level[s][0] for s in touched],
                "i_reserved": [level[s][1] for s in touched],
                "i_status": ["in_stock"] * len(touched),
                "i_thresholds": [None] * len(touched),
                "r_refs": [b["order_ref"] for b in held],
                "r_states": ["held"] * len(held),
                "r_expires": [None] * len(held),
                "r_sources": ["bench"] * len(held),
                "drop_refs": refused,
                "rl_refs": [ref for ref, _ in moved],
                "rl_skus": [s for _, s in moved],
                "rl_requested": [1] * n,
                "rl_allocated": [1] * n,
            }
            await conn.fetch(write[0], *bind(write, params))
            await conn.executemany(
                outbox_sql,
                [(str(uuid.uuid4()), "inventory.stock.v1", s, "[]", b"x" * 120) for _, s in moved],
            )
            # The kit's outbox wakes its relay with one NOTIFY per transaction.
            await conn.execute("SELECT pg_notify('vafa_outbox', '')")

    waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
    drainer: asyncio.Task[None] | None = None

    async def drain() -> None:
        while waiting:
            taken = waiting[:200]
            del waiting[:200]
            await group([b for b, _ in taken])
            for _, f in taken:
                f.set_result(None)

    async def worker() -> None:
        nonlocal drainer
        while queue:
            body = queue.pop()
            t = time.perf_counter()
            if combine:
                f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                waiting.append((body, f))
                if drainer is None or drainer.done():
                    drainer = asyncio.create_task(drain())
                await f
            else:
                await group([body])
            latencies.append(time.perf_counter() - t)

    start_t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start_t
    await pool.close()
    return {
        "per_s": len(bodies) / elapsed,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "codes": {"ok": len(bodies) - failed, "refused": failed},
    }


# -- availability --------------------------------------------------------------------------


async def availability_http(url: str, skus: list[str], n: int, rng: random.Random) -> list[float]:
    latencies = []
    async with aiohttp.ClientSession() as client:
        for i in range(n + 20):
            body = {"skus": rng.sample(skus, 100)}
            t = time.perf_counter()
            async with client.post(url, json=body) as r:
                data = await r.read()
                assert r.status == 200, data[:300]
            if i >= 20:  # warm-up: connections, prepared statements
                latencies.append(time.perf_counter() - t)
    return latencies


async def availability_raw(dsn: str, skus: list[str], n: int, rng: random.Random) -> list[float]:
    sql = asyncpg_sql(service._AVAILABILITY)
    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://"))
    latencies = []
    try:
        for i in range(n + 20):
            t = time.perf_counter()
            await conn.fetch(sql[0], *bind(sql, {"skus": rng.sample(skus, 100)}))
            if i >= 20:
                latencies.append(time.perf_counter() - t)
    finally:
        await conn.close()
    return latencies


# -- main ----------------------------------------------------------------------------------


async def seed(base: str, headers: dict[str, str], skus: list[str], units: int) -> None:
    async with aiohttp.ClientSession(headers=headers) as client:
        for i in range(0, len(skus), 500):
            body = {
                "kind": "receipt",
                "reason": "bench",
                "lines": [{"sku": s, "quantity": units} for s in skus[i : i + 500]],
            }
            async with client.post(f"{base}/v1/locations/default/movements", json=body) as r:
                assert r.status == 200, await r.text()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reservations", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--hot-skus", type=int, default=10)
    ap.add_argument("--catalogue", type=int, default=5000, help="SKUs for availability")
    ap.add_argument("--availability-requests", type=int, default=1000)
    ap.add_argument("--api-port", type=int, default=18601)
    ap.add_argument("--api-processes", type=int, default=1, help="inventory API replicas")
    ap.add_argument("--gateway-port", type=int, default=18602)
    args = ap.parse_args()
    rng = random.Random(7)
    run = uuid.uuid4().hex[:6]

    dsn = await fresh_database()
    token = secrets.token_hex(16)
    env = {
        "VAFA_INVENTORY_DATABASE_URL": dsn,
        "VAFA_INVENTORY_PORT": str(args.api_port),
        "VAFA_INVENTORY_LOG_LEVEL": "WARNING",
        "VAFA_INVENTORY_DB_POOL_SIZE": str(min(args.concurrency, 20)),
        "VAFA_INTERNAL_TOKEN": token,
    }
    await asyncio.to_thread(
        subprocess.run,
        [PY, "-m", "vafa.inventory", "migrate"],
        env={**os.environ, **env},
        check=True,
    )
    others = ["profile", "loyalty", "segmentation", "messaging", "ticketing"]
    services = {**dict.fromkeys(others, ""), "inventory": f"http://127.0.0.1:{args.api_port}"}
    # More API processes on the following odd ports (18603, ...): replicas, each with its own
    # combiner, meeting on the row locks. The gateway fronts the first.
    extra_ports = [args.api_port + 2 * (k + 1) for k in range(args.api_processes - 1)]
    procs = [
        start([PY, "-m", "vafa.inventory", "api"], env),
        *(
            start([PY, "-m", "vafa.inventory", "api"], {**env, "VAFA_INVENTORY_PORT": str(port)})
            for port in extra_ports
        ),
        start(
            [PY, "-m", "vafa.gateway"],
            {
                "VAFA_GATEWAY_PORT": str(args.gateway_port),
                "VAFA_GATEWAY_SERVICES": json.dumps(services),
                "VAFA_GATEWAY_LOG_LEVEL": "WARNING",
                "VAFA_INTERNAL_TOKEN": token,
                "VAFA_ADMIN_API_KEY": secrets.token_hex(16),
            },
        ),
    ]
    api = f"http://127.0.0.1:{args.api_port}"
    apis = [api, *(f"http://127.0.0.1:{port}" for port in extra_ports)]
    gateway = f"http://127.0.0.1:{args.gateway_port}"
    shop = {
        "x-vafa-internal-token": token,
        "x-vafa-principal": "shop:bench",
        "x-vafa-roles": "shop",
    }
    try:
        for base in apis:
            await wait_ready(f"{base}/readyz", "inventory API")
        await wait_ready(f"{gateway}/healthz", "gateway")

        hot = [f"HOT-{run}-{i}" for i in range(args.hot_skus)]
        raw_hot = [f"RAWHOT-{run}-{i}" for i in range(args.hot_skus)]
        catalogue = [f"CAT-{run}-{i:05d}" for i in range(args.catalogue)]
        big = args.reservations * 6
        await seed(api, shop, hot + raw_hot, big)
        await seed(api, shop, catalogue, 20)
        # The raw baseline takes units at the default location only, as the service does here.
        console.print(f"seeded {len(hot) * 2} hot SKUs, {len(catalogue)} catalogue SKUs")

        raw_res = await reserve_raw(
            dsn,
            orders(args.reservations, raw_hot, rng, f"raw{run}"),
            args.concurrency,
            combine=True,
        )
        single_res = await reserve_raw(
            dsn,
            orders(args.reservations, raw_hot, rng, f"single{run}"),
            args.concurrency,
            combine=False,
        )
        api_res = await reserve_via_api(
            apis, shop, orders(args.reservations, hot, rng, run), args.concurrency
        )

        n = args.availability_requests
        raw_av = await availability_raw(dsn, catalogue, n, rng)
        api_av = await availability_http(f"{api}/v1/availability", catalogue, n, rng)
        gw_av = await availability_http(f"{gateway}/v1/availability", catalogue, n, rng)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    table = Table(title=f"Vafa inventory (run {run}, {os.cpu_count()} cores)")
    for col in ("figure", "raw asyncpg baseline", "Vafa", "Vafa / raw"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    table.add_row(
        f"reservations/s, {args.concurrency} concurrent, {args.hot_skus} hot SKUs, "
        f"{args.api_processes} API process(es)",
        f"{raw_res['per_s']:,.0f}",
        f"{api_res['per_s']:,.0f}",
        f"{api_res['per_s'] / raw_res['per_s']:.2f}",
    )
    table.add_row(
        "reservation latency p50 / p99 (ms)",
        f"{raw_res['p50_ms']:.1f} / {raw_res['p99_ms']:.1f}",
        f"{api_res['p50_ms']:.1f} / {api_res['p99_ms']:.1f}",
        "",
    )
    table.add_row(
        "raw reservations/s, one transaction each (no combining)",
        f"{single_res['per_s']:,.0f}",
        "",
        f"{api_res['per_s'] / single_res['per_s']:.2f}",
    )
    table.add_row("reservation outcomes", str(raw_res["codes"]), str(api_res["codes"]), "")
    table.add_row(
        "availability 100 SKUs p50 / p99 (ms), gateway",
        f"{pct(raw_av, 50) * 1000:.2f} / {pct(raw_av, 99) * 1000:.2f}",
        f"{pct(gw_av, 50) * 1000:.2f} / {pct(gw_av, 99) * 1000:.2f}",
        f"{pct(gw_av, 99) / pct(raw_av, 99):.1f}",
    )
    table.add_row(
        "availability 100 SKUs p50 / p99 (ms), API direct",
        "",
        f"{pct(api_av, 50) * 1000:.2f} / {pct(api_av, 99) * 1000:.2f}",
        f"{pct(api_av, 99) / pct(raw_av, 99):.1f}",
    )
    console.print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"inventory-{run}.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "reservations": {"raw": raw_res, "raw_single": single_res, "api": api_res},
                "availability_ms": {
                    "raw": [pct(raw_av, 50) * 1000, pct(raw_av, 99) * 1000],
                    "api": [pct(api_av, 50) * 1000, pct(api_av, 99) * 1000],
                    "gateway": [pct(gw_av, 50) * 1000, pct(gw_av, 99) * 1000],
                },
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    if sys.platform != "win32":
        import uvloop

        uvloop.install()
    asyncio.run(main())
