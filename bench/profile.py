"""The profile benchmark: lookups, filtered lists and CSV import on a million customers, each
beside a raw asyncpg baseline doing the equivalent work in the same run.

    .venv/bin/python bench/profile.py                      # 1,000,000 customers (seeded once)
    .venv/bin/python bench/profile.py --customers 200000 --requests 1000 --import-rows 20000

1. Seed (cached): its own database `bench_profile` migrated to head, filled by COPY with
   synthetic customers (Faker fa_IR and hy_AM names, Iranian and Armenian mobiles, emails,
   cities, genders, birth dates, tags). A later run reuses it when it is at the same migration
   and holds enough customers (`--reseed` forces a fresh one).
2. The profile API (uvicorn, one process) started on its own port against that database.
3. Lookup by phone (the local 0912... form, normalised by the service) and by email: p50/p99
   at the service, over aiohttp with `--concurrency` connections; the baseline is asyncpg
   running the identity join on the same connection count.
4. Filtered lists (city + gender, name search `q` on the folded trigram index, lifecycle and
   birth month, tag): p50/p99 for the first page of 50; the baseline is asyncpg running the
   same WHERE/ORDER BY/LIMIT.
5. CSV import: `--import-rows` new customers posted as one CSV file (imported in the request,
   in batches); rows/s. The baseline is asyncpg COPY of the same rows into customers and
   customer_identities (no validation, no events): the floor of any import here.

Nothing is asserted: the figures are printed (rich) and written to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from faker import Faker
from rich.console import Console
from rich.table import Table

from vafa.kit.migrations import upgrade
from vafa.kit.settings import PG_DEFAULT

ROOT = Path(__file__).resolve().parents[1]
SERVICE_DIR = ROOT / "services" / "profile"
DB_NAME = "bench_profile"
PORT = int(os.environ.get("VAFA_BENCH_PROFILE_PORT", "18201"))
# The API is called as the gateway would: identity headers proven by the internal token.
INTERNAL_TOKEN = "bench-internal-" + "t" * 20
HEADERS = {
    "x-vafa-principal": "staff:bench",
    "x-vafa-roles": "admin",
    "x-vafa-internal-token": INTERNAL_TOKEN,
}
console = Console()

CITIES_IR = [
    ("تهران", "تهران"),
    ("مشهد", "خراسان رضوی"),
    ("اصفهان", "اصفهان"),
    ("کرج", "البرز"),
    ("شیراز", "فارس"),
    ("تبریز", "آذربایجان شرقی"),
    ("قم", "قم"),
    ("اهواز", "خوزستان"),
    ("کرمانشاه", "کرمانشاه"),
    ("رشت", "گیلان"),
]
CITIES_AM = [("Yerevan", "Yerevan"), ("Gyumri", "Shirak"), ("Vanadzor", "Lori")]
TAGS = ["vip", "newsletter", "wholesale", "instagram", "returning", "gift"]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def admin_dsn() -> str:
    return PG_DEFAULT.replace("postgresql+asyncpg://", "postgresql://", 1) + "/postgres"


def db_dsn() -> str:
    return PG_DEFAULT.replace("postgresql+asyncpg://", "postgresql://", 1) + f"/{DB_NAME}"


def db_url() -> str:
    return f"{PG_DEFAULT}/{DB_NAME}"


# -- seeding -------------------------------------------------------------------------------


class People:
    """Name pools from Faker (drawing a million names one by one would take minutes)."""

    def __init__(self, seed: int = 7) -> None:
        fa, hy = Faker("fa_IR"), Faker("hy_AM")
        Faker.seed(seed)
        self.rng = random.Random(seed)
        self.fa_first = list({fa.first_name() for _ in range(3000)})
        self.fa_last = list({fa.last_name() for _ in range(3000)})
        self.hy_first = list({hy.first_name() for _ in range(1500)})
        self.hy_last = list({hy.last_name() for _ in range(1500)})

    def person(self, i: int) -> dict[str, Any]:
        r = self.rng
        armenian = i % 5 == 0
        if armenian:
            first, last = r.choice(self.hy_first), r.choice(self.hy_last)
            city, province = r.choice(CITIES_AM)
            phone = f"+3749{i // 5 % 10_000_000:07d}"
            country = "AM"
        else:
            first, last = r.choice(self.fa_first), r.choice(self.fa_last)
            city, province = r.choice(CITIES_IR)
            phone = f"+98912{i:07d}"
            country = "IR"
        return {
            "first_name": first,
            "last_name": last,
            "city": city,
            "province": province,
            "country_code": country,
            "phone": phone,
            "email": f"c{i}.{uuid.UUID(int=r.getrandbits(128)).hex[:6]}@example.com",
            "gender": r.choice(("female", "male")),
            "birth_date": date(1950, 1, 1) + timedelta(days=r.randrange(20000)),
        }


def _expected_columns() -> int:
    from vafa.profile.models import Base

    return sum(len(t.columns) for t in Base.metadata.tables.values()) + 1  # + alembic_version


async def prepared(n: int, reseed: bool) -> bool:
    """Whether the cached database is usable: at the migration head, with >= n customers."""
    if reseed:
        return False
    try:
        conn = await asyncpg.connect(db_dsn())
    except (asyncpg.InvalidCatalogNameError, OSError):
        return False
    try:
        version = await conn.fetchval("SELECT version_num FROM alembic_version")
        count = await conn.fetchval("SELECT count(*) FROM customers")
        # The schema of the code under test (a revision edited before it ships reseeds).
        columns = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'"
        )
        expected = await asyncio.to_thread(_expected_columns)
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()
    return version == "0003_club" and count >= n and columns == expected


async def seed(n: int) -> float:
    """A fresh database with n customers; seconds taken."""
    started = time.perf_counter()
    admin = await asyncpg.connect(admin_dsn())
    await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    await admin.close()
    await asyncio.to_thread(upgrade, SERVICE_DIR, db_url())
    conn = await asyncpg.connect(db_dsn())
    # Secondary indexes are dropped for the load and rebuilt after (far faster than
    # maintaining them row by row), from their own definitions.
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
        "('customers', 'customer_identities', 'customer_tags') AND indexname LIKE 'ix_%'"
    )
    for ix in indexes:
        await conn.execute(f'DROP INDEX "{ix["indexname"]}"')
    people = People()
    now = datetime.now(UTC)
    chunk = 50_000
    for start in range(0, n, chunk):
        customers, identities, tags = [], [], []
        for i in range(start, min(n, start + chunk)):
            p = people.person(i)
            cid = uuid.uuid4()
            created = now - timedelta(seconds=(n - i) * 30)
            customers.append(
                (
                    cid,
                    p["first_name"],
                    p["last_name"],
                    "customer" if i % 3 else "lead",
                    "customer" if i % 3 else "lead",
                    p["country_code"],
                    p["city"],
                    p["province"],
                    p["gender"],
                    p["birth_date"],
                    created,
                    created,
                )
            )
            identities.append((cid, "email", p["email"]))
            identities.append((cid, "phone", p["phone"]))
            if i % 4 == 0:
                tags.append((cid, TAGS[i % len(TAGS)]))
        await conn.copy_records_to_table(
            "customers",
            records=customers,
            columns=[
                "id",
                "first_name",
                "last_name",
                "lifecycle_stage",
                "kind",
                "country_code",
                "city",
                "province",
                "gender",
                "birth_date",
                "created_at",
                "updated_at",
            ],
        )
        await conn.copy_records_to_table(
            "customer_identities", records=identities, columns=["customer_id", "kind", "value"]
        )
        await conn.copy_records_to_table(
            "customer_tags", records=tags, columns=["customer_id", "tag"]
        )
        console.print(f"  seeded {min(n, start + chunk):,} / {n:,}", end="\r")
    console.print()
    await conn.execute("SET maintenance_work_mem = '512MB'")
    for ix in indexes:
        await conn.execute(ix["indexdef"])
    await conn.execute("ANALYZE")
    await conn.close()
    return time.perf_counter() - started


# -- the API -------------------------------------------------------------------------------


def start_api(inline_rows: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VAFA_PROFILE_DATABASE_URL": db_url(),
        "VAFA_PROFILE_PORT": str(PORT),
        "VAFA_PROFILE_LOG_LEVEL": "WARNING",
        "VAFA_PROFILE_IMPORT_INLINE_ROWS": str(inline_rows),
        "VAFA_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "VAFA_JWT_SECRET": "bench-secret-" + "x" * 20,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "vafa.profile", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def wait_ready(http: aiohttp.ClientSession, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):  # a loaded machine takes a while to import the app
        if proc.poll() is not None:
            raise SystemExit(
                f"the API exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            async with http.get(f"http://127.0.0.1:{PORT}/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the API did not start")


# -- measuring -----------------------------------------------------------------------------


async def timed_http(
    http: aiohttp.ClientSession, paths: list[str], concurrency: int
) -> tuple[list[float], float, int]:
    """Latencies (ms), wall seconds and non-200 count for GETs of `paths`."""
    queue = list(reversed(paths))
    lat: list[float] = []
    bad = 0

    async def one() -> None:
        nonlocal bad
        while queue:
            path = queue.pop()
            t = time.perf_counter()
            async with http.get(f"http://127.0.0.1:{PORT}{path}", headers=HEADERS) as r:
                await r.read()
                if r.status != 200:
                    bad += 1
            lat.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return lat, time.perf_counter() - start, bad


async def timed_sql(
    pool: asyncpg.Pool, sql: str, args: list[tuple[Any, ...]], concurrency: int
) -> tuple[list[float], float]:
    queue = list(reversed(args))
    lat: list[float] = []

    async def one() -> None:
        async with pool.acquire() as conn:
            stmt = await conn.prepare(sql)
            while queue:
                a = queue.pop()
                t = time.perf_counter()
                await stmt.fetch(*a)
                lat.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return lat, time.perf_counter() - start


# The service's lookup reads the file (identities, spend, tags, consents, dates, timeline);
# the baseline reads the customer and its identities: the least a lookup answers with.
LOOKUP_SQL = (
    "SELECT c.*, (SELECT array_agg(value) FROM customer_identities x WHERE x.customer_id = c.id) "
    "FROM customers c JOIN customer_identities i ON i.customer_id = c.id "
    "WHERE i.kind = $1 AND i.value = $2"
)
# The service's list statement: the page's columns, each file's emails and phones and its club
# status, newest first, 51 rows (the 51st tells there is a next page). The raw baseline runs
# the same SQL, so the difference is the service's own cost.
_SUMMARY = (
    "SELECT c.id, c.first_name, c.last_name, c.kind, c.lifecycle_stage, "
    "(SELECT array_agg(i.value ORDER BY i.id) FROM customer_identities i "
    " WHERE i.customer_id = c.id AND i.kind = 'email') AS emails, "
    "(SELECT array_agg(i.value ORDER BY i.id) FROM customer_identities i "
    " WHERE i.customer_id = c.id AND i.kind = 'phone') AS phones, "
    "c.city, c.province, c.country_code, c.gender, c.birth_date, c.acquisition_channel, "
    "coalesce((SELECT a.status FROM club_accounts a WHERE a.customer_id = c.id), 'none'), "
    "c.created_at FROM customers c WHERE c.merged_into IS NULL AND "
)
_PAGE = " ORDER BY c.created_at DESC, c.id DESC LIMIT 51"
LIST_SQL = {
    "city + gender": _SUMMARY
    + "vafa_fold(c.city) IN (vafa_fold($1)) AND c.gender = ANY($2::text[])"
    + _PAGE,
    "name search q": _SUMMARY
    + "c.search_name LIKE concat('%', vafa_fold($1), '%') ESCAPE '\\' "
    + "AND c.search_name LIKE concat('%', vafa_fold($2), '%') ESCAPE '\\'"
    + _PAGE,
    "lifecycle + birth month": _SUMMARY
    + "c.lifecycle_stage = ANY($1::text[]) AND extract(month FROM c.birth_date) = $2"
    + _PAGE,
    "tag": _SUMMARY  # noqa: S608 (constants only)
    + "EXISTS (SELECT 1 FROM customer_tags t WHERE t.customer_id = c.id AND t.tag = $1)"
    + _PAGE,
}


# Valid Iranian mobile prefixes: each run's import takes the next, so its rows are all new.
IMPORT_PREFIXES = ["930", "933", "935", "936", "937", "938", "939", "901", "902", "903", "905"]


def import_csv(rows: int, run: int) -> tuple[bytes, list[dict[str, Any]]]:
    people = People(seed=run)
    prefix = IMPORT_PREFIXES[run % len(IMPORT_PREFIXES)]
    out = io.StringIO()
    out.write("email,phone,first_name,last_name,city,province,gender,birth_date,tags\r\n")
    recs = []
    for i in range(rows):
        p = people.person(i)
        p["email"] = f"imp{run}-{i}@example.org"
        p["phone"] = f"+98{prefix}{i:07d}"
        recs.append(p)
        local = "0" + p["phone"][3:]
        out.write(
            f"{p['email']},{local},{p['first_name']},{p['last_name']},{p['city']},"
            f"{p['province']},{p['gender']},{p['birth_date'].isoformat()},bench\r\n"
        )
    return out.getvalue().encode(), recs


async def baseline_copy(recs: list[dict[str, Any]]) -> float:
    """Rows/s of asyncpg COPY of the same rows (customers + both identities) in one
    transaction, rolled back so the database stays as seeded."""
    conn = await asyncpg.connect(db_dsn())
    try:
        tx = conn.transaction()
        await tx.start()
        now = datetime.now(UTC)
        customers, identities = [], []
        for p in recs:
            cid = uuid.uuid4()
            customers.append(
                (
                    cid,
                    p["first_name"],
                    p["last_name"],
                    "lead",
                    "lead",
                    p["city"],
                    p["province"],
                    p["gender"],
                    p["birth_date"],
                    now,
                    now,
                )
            )
            identities.append((cid, "email", "raw-" + p["email"]))
            identities.append((cid, "phone", "+1" + p["phone"]))
        start = time.perf_counter()
        await conn.copy_records_to_table(
            "customers",
            records=customers,
            columns=[
                "id",
                "first_name",
                "last_name",
                "lifecycle_stage",
                "kind",
                "city",
                "province",
                "gender",
                "birth_date",
                "created_at",
                "updated_at",
            ],
        )
        await conn.copy_records_to_table(
            "customer_identities", records=identities, columns=["customer_id", "kind", "value"]
        )
        elapsed = time.perf_counter() - start
        await tx.rollback()
        return len(recs) / elapsed
    finally:
        await conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=2000, help="per lookup/list phase")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--import-rows", type=int, default=20_000)
    ap.add_argument("--reseed", action="store_true")
    args = ap.parse_args()

    figures: dict[str, Any] = {"customers": args.customers, "concurrency": args.concurrency}
    if await prepared(args.customers, args.reseed):
        console.print(f"[dim]reusing {DB_NAME} (>= {args.customers:,} customers)[/]")
    else:
        console.print(f"seeding {args.customers:,} customers into {DB_NAME} ...")
        figures["seed_seconds"] = round(await seed(args.customers), 1)
        console.print(f"  seeded in {figures['seed_seconds']} s")

    pool = await asyncpg.create_pool(db_dsn(), min_size=args.concurrency, max_size=args.concurrency)
    async with pool.acquire() as conn:
        total = await conn.fetchval("SELECT count(*) FROM customers")
        sample = await conn.fetch(
            "SELECT c.id, (SELECT value FROM customer_identities WHERE customer_id = c.id "
            "AND kind = 'email') AS email, (SELECT value FROM customer_identities WHERE "
            "customer_id = c.id AND kind = 'phone') AS phone, c.first_name, c.last_name FROM customers c "
            "TABLESAMPLE SYSTEM (1) WHERE c.country_code = 'IR' LIMIT $1",
            args.requests,
        )
    figures["customers_in_db"] = total
    rng = random.Random(1)
    phones = [r["phone"] for r in sample]
    emails = [r["email"] for r in sample]
    # A person is searched by first and last name (a last name alone matches thousands here:
    # the names are drawn from pools of a few thousand).
    names = [f"{r['first_name']} {r['last_name']}" for r in sample]

    proc = start_api(inline_rows=max(args.import_rows, 20_000))
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
        async with aiohttp.ClientSession(connector=connector) as http:
            await wait_ready(http, proc)
            # Warm both sides (connections, prepared statements, caches).
            await timed_http(http, [f"/v1/customers/lookup?email={e}" for e in emails[:100]], 4)
            await timed_sql(pool, LOOKUP_SQL, [("email", e) for e in emails[:100]], 4)

            def row(
                name: str,
                svc: list[float],
                svc_s: float,
                raw: list[float],
                raw_s: float,
                target: str,
                bad: int = 0,
            ) -> None:
                figures[name] = {
                    "service_p50_ms": round(pct(svc, 50), 2),
                    "service_p99_ms": round(pct(svc, 99), 2),
                    "service_rps": round(len(svc) / svc_s, 1),
                    "raw_p50_ms": round(pct(raw, 50), 2),
                    "raw_p99_ms": round(pct(raw, 99), 2),
                    "non_200": bad,
                }
                f = figures[name]
                rows.append(
                    (
                        name,
                        f"{f['service_p50_ms']} / {f['service_p99_ms']} ms ({f['service_rps']}/s)"
                        + (f" [red]{bad} errors[/]" if bad else ""),
                        f"{f['raw_p50_ms']} / {f['raw_p99_ms']} ms",
                        f"{f['service_p99_ms'] / max(f['raw_p99_ms'], 0.001):.1f}x",
                        target,
                    )
                )

            local_phones = ["0" + p[3:] for p in phones]
            svc, s, bad = await timed_http(
                http, [f"/v1/customers/lookup?phone={p}" for p in local_phones], args.concurrency
            )
            raw, r = await timed_sql(
                pool, LOOKUP_SQL, [("phone", p) for p in phones], args.concurrency
            )
            row("lookup by phone", svc, s, raw, r, "p99 <= 10 ms", bad)
            svc, s, bad = await timed_http(
                http, [f"/v1/customers/lookup?email={e}" for e in emails], args.concurrency
            )
            raw, r = await timed_sql(
                pool, LOOKUP_SQL, [("email", e) for e in emails], args.concurrency
            )
            row("lookup by email", svc, s, raw, r, "p99 <= 10 ms", bad)

            n = args.requests // 4
            cities = [c for c, _ in CITIES_IR] + [c for c, _ in CITIES_AM]
            cases: dict[str, tuple[list[Any], Any, Any]] = {
                "city + gender": (
                    [(rng.choice(cities), rng.choice(["female", "male"])) for _ in range(n)],
                    lambda a: f"/v1/customers?city={a[0]}&gender={a[1]}",
                    lambda a: (a[0], [a[1]]),
                ),
                "name search q": (
                    [tuple(rng.choice(names).split(" ", 1)) for _ in range(n)],
                    lambda a: f"/v1/customers?q={a[0]} {a[1]}",
                    lambda a: a,
                ),
                "lifecycle + birth month": (
                    [(rng.choice(["lead", "customer"]), rng.randint(1, 12)) for _ in range(n)],
                    lambda a: f"/v1/customers?lifecycle_stage={a[0]}&birth_month={a[1]}",
                    lambda a: ([a[0]], a[1]),
                ),
                "tag": (
                    [(rng.choice(TAGS),) for _ in range(n)],
                    lambda a: f"/v1/customers?tag={a[0]}",
                    lambda a: (a[0],),
                ),
            }
            for name, (params, to_path, to_args) in cases.items():
                svc, s, bad = await timed_http(http, [to_path(a) for a in params], args.concurrency)
                raw, r = await timed_sql(
                    pool, LIST_SQL[name], [to_args(a) for a in params], args.concurrency
                )
                row(f"list: {name}", svc, s, raw, r, "p99 <= 50 ms", bad)

            # CSV import: fresh rows each run (numbered by the imports already made).
            async with pool.acquire() as conn:
                run = int(await conn.fetchval("SELECT count(*) FROM customer_imports"))
            body, recs = import_csv(args.import_rows, run)
            start = time.perf_counter()
            async with http.post(
                f"http://127.0.0.1:{PORT}/v1/customers/imports?filename=bench.csv",
                data=body,
                headers={**HEADERS, "content-type": "text/csv"},
                timeout=aiohttp.ClientTimeout(total=1800),
            ) as resp:
                report = await resp.json()
                if resp.status not in (200, 201):
                    raise SystemExit(f"the import was refused ({resp.status}): {report}")
            elapsed = time.perf_counter() - start
            raw_rate = await baseline_copy(recs)
            rate = args.import_rows / elapsed
            figures["csv import"] = {
                "rows": args.import_rows,
                "bytes": len(body),
                "seconds": round(elapsed, 2),
                "service_rows_per_s": round(rate),
                "raw_copy_rows_per_s": round(raw_rate),
                "created": report.get("created"),
                "rejected": report.get("rejected_rows"),
                "status": report.get("status"),
            }
            rows.append(
                (
                    f"csv import ({args.import_rows:,} rows)",
                    f"{rate:,.0f} rows/s ({report.get('created')} created, "
                    f"{report.get('rejected_rows')} rejected)",
                    f"{raw_rate:,.0f} rows/s (COPY)",
                    f"{raw_rate / rate:.1f}x",
                    ">= 5,000 rows/s",
                )
            )
    finally:
        proc.terminate()
        proc.wait(10)
        await pool.close()

    table = Table(title=f"profile on {total:,} customers, {args.concurrency} connections")
    for col in ("figure", "service p50 / p99", "raw asyncpg p50 / p99", "p99 vs raw", "target"):
        table.add_column(col)
    for r_ in rows:
        table.add_row(*r_)
    console.print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"profile-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(figures, indent=2, ensure_ascii=False, default=str))
    console.print(f"[dim]{path}[/]")


if __name__ == "__main__":
    asyncio.run(main())
