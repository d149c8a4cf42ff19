"""Redemption latency through the gateway, beside a raw asyncpg baseline, in the same run.

    .venv/bin/python bench/loyalty_redeem.py --members 50 --per-member 20

1. A database of its own (`bench_loyalty_redeem`, dropped afterwards), migrated; a reward with
   unlimited stock and a per-member limit above what the run redeems; every member granted the
   points for all their redemptions (through the ledger, so lots exist to draw from).
2. Its own loyalty API and gateway (uvicorn, ports 18401/18402 unless told otherwise), the
   gateway fronting only loyalty, members signed in with JWTs (vafa.kit.auth).
3. **Gateway:** `--members` concurrent members, each redeeming `--per-member` times in a row
   (`POST /v1/club/me/redemptions`, a new Idempotency-Key each): p50/p95/p99 and redemptions/s.
   Then the same straight to the loyalty API (the headers the gateway would forward), so the
   gateway's share of the latency shows.
4. **Raw baseline:** the same writes as one redemption — lock the account, check the key and
   the limit, take stock, draw the soonest-expiring lot, append the spend entry, move the
   balance, write the redemption, the coupon and two outbox rows — as hand-written SQL over
   asyncpg, one transaction each, same concurrency, other members of the same database.
5. Checks after each phase: exactly one coupon per 201, and the points spent equal the coupons
   times the price.

Figures are printed (rich) and returned by `run()`; bench/loyalty.py includes them by calling
`run(args)`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
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

from vafa.kit.auth import issue_member_token
from vafa.kit.migrations import upgrade
from vafa.kit.settings import PG_DEFAULT

ROOT = Path(__file__).resolve().parents[1]
SERVICE_DIR = ROOT / "services" / "loyalty"
DB_NAME = "bench_loyalty_redeem"
PRICE = 10


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def _dsn(db: str) -> str:
    return PG_DEFAULT.replace("postgresql+asyncpg://", "postgresql://") + f"/{db}"


async def _recreate(name: str, *, drop_only: bool = False) -> None:
    conn = await asyncpg.connect(_dsn("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _seed(url: str, members: list[uuid.UUID], points: int) -> uuid.UUID:
    """The reward, and every member's points granted through the ledger (lots and all)."""
    from vafa.kit.db import Database
    from vafa.loyalty import ledger
    from vafa.loyalty.models import Reward

    db = Database(url, pool_size=2)
    try:
        async with db.sessionmaker() as s:
            reward = Reward(
                name="Bench 10%",
                kind="percent_discount",
                percent_off=10,
                points_price=PRICE,
                per_member_limit=10_000,
            )
            s.add(reward)
            await s.flush()
            for c in members:
                await ledger.grant(
                    s, customer_id=c, points=points, idempotency_key=f"bench:{c}", reason="bench"
                )
            await s.commit()
            return reward.id
    finally:
        await db.dispose()


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _wait_ready(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(url, headers=headers) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not answer 200 within 60 s")


async def _http_phase(
    base: str, auth: dict[uuid.UUID, dict[str, str]], reward_id: uuid.UUID, per_member: int
) -> dict[str, Any]:
    """Each member (with its auth headers) redeeming `per_member` times in a row, all members
    at once."""
    tokens = auth
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=len(tokens) + 5)
    async with aiohttp.ClientSession(connector=connector) as http:
        # Warm up (connections, the gateway's route table): five redemptions, not measured.
        warm: dict[int, int] = {}
        for c, token in list(tokens.items())[:5]:
            await _redeem(http, base, token, reward_id, f"warm-{c}", [], warm)

        async def member(c: uuid.UUID, token: dict[str, str]) -> None:
            for i in range(per_member):
                await _redeem(http, base, token, reward_id, f"{c}-{i}", latencies, statuses)

        start = time.perf_counter()
        await asyncio.gather(*(member(c, t) for c, t in tokens.items()))
        elapsed = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "statuses": statuses,
        "warm_up_created": warm.get(201, 0),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50),
        "p95_ms": pct(latencies, 95),
        "p99_ms": pct(latencies, 99),
    }


async def _redeem(
    http: aiohttp.ClientSession,
    base: str,
    auth: dict[str, str],
    reward_id: uuid.UUID,
    key: str,
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    t0 = time.perf_counter()
    async with http.post(
        f"{base}/v1/club/me/redemptions",
        json={"reward_id": str(reward_id)},
        headers={**auth, "Idempotency-Key": key},
    ) as r:
        await r.read()
        status = r.status
    latencies.append((time.perf_counter() - t0) * 1000)
    statuses[status] = statuses.get(status, 0) + 1


# The raw baseline: what one redemption reads and writes, by hand.
_RAW = [
    "SELECT balance FROM accounts WHERE customer_id = $1 FOR UPDATE",
    "SELECT 1 FROM redemptions WHERE idempotency_key = $1",
    "SELECT count(*) FROM redemptions WHERE customer_id = $1 AND reward_id = $2",
]


async def _raw_one(conn: asyncpg.Connection, c: uuid.UUID, reward_id: uuid.UUID, key: str) -> None:
    async with conn.transaction():
        balance = await conn.fetchval(_RAW[0], c)
        assert balance >= PRICE
        await conn.fetchval(_RAW[1], key)
        await conn.fetchval(_RAW[2], c, reward_id)
        await conn.fetchval(
            "UPDATE rewards SET stock = stock - 1 WHERE id = $1 AND stock > 0 RETURNING stock",
            reward_id,
        )
        redemption = uuid.uuid4()
        await conn.execute(
            "INSERT INTO redemptions (id, customer_id, reward_id, idempotency_key, points) "
            "VALUES ($1, $2, $3, $4, $5)",
            redemption,
            c,
            reward_id,
            key,
            PRICE,
        )
        lot = await conn.fetchval(
            "SELECT id FROM lots WHERE customer_id = $1 AND remaining > 0 AND status = 'available' "
            "ORDER BY expires_at NULLS LAST, id LIMIT 1",
            c,
        )
        await conn.execute("UPDATE lots SET remaining = remaining - $2 WHERE id = $1", lot, PRICE)
        entry = await conn.fetchval(
            "INSERT INTO ledger_entries (customer_id, delta, kind, reason, ref, idempotency_key, "
            "balance_after, pending_after) VALUES ($1, $2, 'spend', 'reward', $3, $4, $5, 0) "
            "RETURNING id",
            c,
            -PRICE,
            str(redemption),
            f"raw:{key}",
            balance - PRICE,
        )
        await conn.execute(
            "INSERT INTO lot_draws (entry_id, lot_id, points) VALUES ($1, $2, $3)",
            entry,
            lot,
            PRICE,
        )
        await conn.execute(
            "UPDATE accounts SET balance = balance - $2, updated_at = now() WHERE customer_id = $1",
            c,
            PRICE,
        )
        code = "".join(secrets.choice("23456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(10))
        await conn.execute(
            "INSERT INTO coupons (code, reward_id, redemption_id, customer_id) "
            "VALUES ($1, $2, $3, $4)",
            code,
            reward_id,
            redemption,
            c,
        )
        await conn.executemany(
            "INSERT INTO outbox (event_id, topic, key, headers, payload) "
            "VALUES ($1, 'loyalty.events.v1', $2, '[]'::jsonb, $3)",
            [(str(uuid.uuid4()), str(c), b"x" * 120) for _ in range(2)],
        )


async def _raw_phase(
    dsn: str, members: list[uuid.UUID], reward_id: uuid.UUID, per_member: int
) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=len(members), max_size=len(members))
    latencies: list[float] = []
    try:

        async def member(c: uuid.UUID) -> None:
            async with pool.acquire() as conn:
                for i in range(per_member):
                    t0 = time.perf_counter()
                    await _raw_one(conn, c, reward_id, f"raw:{c}:{i}")
                    latencies.append((time.perf_counter() - t0) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(member(c) for c in members))
        elapsed = time.perf_counter() - start
    finally:
        await pool.close()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50),
        "p95_ms": pct(latencies, 95),
        "p99_ms": pct(latencies, 99),
    }


async def _check(dsn: str, members: list[uuid.UUID]) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM coupons WHERE customer_id = ANY($1::uuid[])) AS coupons,"
            " (SELECT COALESCE(-SUM(delta), 0) FROM ledger_entries WHERE kind = 'spend'"
            "  AND customer_id = ANY($1::uuid[])) AS spent",
            members,
        )
    finally:
        await conn.close()
    return {"coupons": int(row["coupons"]), "spent": int(row["spent"])}


async def run(
    args: argparse.Namespace | None = None,
    *,
    members: int = 50,
    per_member: int = 20,
    api_port: int = 18401,
    gateway_port: int = 18402,
    console: Console | None = None,
    keep_database: bool = False,
) -> dict[str, Any]:
    """Runs the phases and returns the figures (and prints them when `console` is given).
    bench/loyalty.py calls it as `run(args)`: its namespace may carry members / per_member."""
    if args is not None:
        members = getattr(args, "members", None) or members
        per_member = getattr(args, "per_member", None) or per_member
    url = PG_DEFAULT + f"/{DB_NAME}"
    dsn = _dsn(DB_NAME)
    await _recreate(DB_NAME)
    await asyncio.to_thread(upgrade, SERVICE_DIR, url)
    gw_members = [uuid.uuid4() for _ in range(members)]
    direct_members = [uuid.uuid4() for _ in range(members)]
    raw_members = [uuid.uuid4() for _ in range(members)]
    reward_id = await _seed(
        url, gw_members + direct_members + raw_members, PRICE * (per_member + 1)
    )
    secret = secrets.token_urlsafe(32)
    internal = secrets.token_urlsafe(24)
    common = {"VAFA_INTERNAL_TOKEN": internal}
    api = _spawn(
        ["-m", "vafa.loyalty", "api"],
        {
            **common,
            "VAFA_LOYALTY_DATABASE_URL": url,
            "VAFA_LOYALTY_PORT": str(api_port),
            "VAFA_LOYALTY_DB_POOL_SIZE": "20",
        },
    )
    services = {
        name: "" for name in ("profile", "segmentation", "messaging", "ticketing", "inventory")
    }
    services["loyalty"] = f"http://127.0.0.1:{api_port}"
    gateway = _spawn(
        ["-m", "vafa.gateway"],
        {
            **common,
            "VAFA_GATEWAY_PORT": str(gateway_port),
            "VAFA_GATEWAY_SERVICES": json.dumps(services),
            "VAFA_JWT_SECRET": secret,
        },
    )
    base = f"http://127.0.0.1:{gateway_port}"
    try:
        bearer = {
            c: {"Authorization": f"Bearer {issue_member_token(str(c), secret=secret)}"}
            for c in gw_members
        }
        # What the gateway forwards, sent straight to the service: the gateway's share.
        forwarded = {
            c: {"x-vafa-principal": f"member:{c}", "x-vafa-internal-token": internal}
            for c in direct_members
        }
        async with aiohttp.ClientSession() as http:
            await _wait_ready(http, f"{base}/v1/club/me/rewards", next(iter(bearer.values())))
        gw = await _http_phase(base, bearer, reward_id, per_member)
        gw_check = await _check(dsn, gw_members)
        direct = await _http_phase(f"http://127.0.0.1:{api_port}", forwarded, reward_id, per_member)
        raw = await _raw_phase(dsn, raw_members, reward_id, per_member)
        raw_check = await _check(dsn, raw_members)
    finally:
        _stop(gateway)
        _stop(api)
        if not keep_database:
            await _recreate(DB_NAME, drop_only=True)
    created = gw["statuses"].get(201, 0) + gw["warm_up_created"]
    unanswered = sum(n for status, n in gw["statuses"].items() if status >= 500)
    result = {
        "members": members,
        "per_member": per_member,
        "gateway": gw,
        "direct": direct,
        "raw": raw,
        "gateway_check": {
            **gw_check,
            "created": created,
            # A request the gateway gave up on (504) may still have committed: every coupon
            # must be paid for, and every 201 must have its coupon.
            "ok": created <= gw_check["coupons"] <= created + unanswered
            and gw_check["spent"] == gw_check["coupons"] * PRICE,
        },
        "raw_check": {
            **raw_check,
            "ok": raw_check["coupons"] == raw["requests"]
            and raw_check["spent"] == raw_check["coupons"] * PRICE,
        },
        "p99_ratio": gw["p99_ms"] / raw["p99_ms"] if raw["p99_ms"] else float("nan"),
        # Flat figures, for a caller's table.
        "gateway_p99_ms": gw["p99_ms"],
        "gateway_per_second": gw["per_second"],
        "direct_p99_ms": direct["p99_ms"],
        "raw_p99_ms": raw["p99_ms"],
    }
    if console is not None:
        print_result(result, console)
    return result


def print_result(result: dict[str, Any], console: Console) -> None:
    gw, direct, raw = result["gateway"], result["direct"], result["raw"]
    table = Table(
        title=f"Redemption: {result['members']} concurrent members × {result['per_member']} "
        f"({os.cpu_count()} cores)"
    )
    table.add_column("figure")
    table.add_column("through the gateway", justify="right")
    table.add_column("loyalty API direct", justify="right")
    table.add_column("raw asyncpg baseline", justify="right")
    for label, key, fmt in (
        ("redemptions", "requests", "{:.0f}"),
        ("redemptions/s", "per_second", "{:.0f}"),
        ("p50 (ms)", "p50_ms", "{:.1f}"),
        ("p95 (ms)", "p95_ms", "{:.1f}"),
        ("p99 (ms) — target ≤ 100 through the gateway", "p99_ms", "{:.1f}"),
    ):
        table.add_row(label, fmt.format(gw[key]), fmt.format(direct[key]), fmt.format(raw[key]))
    table.add_row("statuses", json.dumps(gw["statuses"]), json.dumps(direct["statuses"]), "-")
    table.add_row(
        "coupons = 201s, spent = coupons × price",
        str(result["gateway_check"]["ok"]),
        "",
        str(result["raw_check"]["ok"]),
    )
    table.add_row(
        "p99 / raw p99",
        f"{result['p99_ratio']:.1f}×",
        f"{direct['p99_ms'] / raw['p99_ms']:.1f}×",
        "1.0×",
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--per-member", type=int, default=20)
    parser.add_argument("--api-port", type=int, default=18401)
    parser.add_argument("--gateway-port", type=int, default=18402)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    console = Console()
    result = asyncio.run(
        run(
            members=args.members,
            per_member=args.per_member,
            api_port=args.api_port,
            gateway_port=args.gateway_port,
            console=console,
        )
    )
    if args.json:
        console.print_json(json.dumps(result))


if __name__ == "__main__":
    main()
