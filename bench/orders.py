"""The order-flow benchmark: signed shop webhooks through the gateway until every point is
credited, beside a raw baseline on the same machine in the same run.

    make bench                       # or: .venv/bin/python bench/orders.py --orders 3000

Phases:
1. baseline: aiokafka produce -> consume -> asyncpg insert (one transaction per polled batch),
   the least any Kafka-to-PostgreSQL pipeline on this machine can cost, as messages/s;
2. throughput: N orders (distinct customers) sent with C concurrent connections; reports
   accepted/s at the gateway and end-to-end orders/s until the last PointsEarned appears;
3. latency: orders paced at a fixed rate (default 100/s); webhook sent -> PointsEarned seen on
   loyalty.events.v1 (the event leaves loyalty's outbox after the commit, so this is an upper
   bound on "points visible"), p50/p99;
4. memory: every Vafa process's RSS sampled throughout; the peak per process.

Figures are printed and written to bench/results/orders-<time>.json. Nothing here asserts a
timing: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from stack import ensure_env  # noqa: E402

from vafa.events.v1 import loyalty_pb2  # noqa: E402
from vafa.kit import cloudevents  # noqa: E402
from vafa.kit.settings import PG_DEFAULT, KafkaSettings  # noqa: E402
from vafa.kit.testing.shop import Line, ShopSimulator  # noqa: E402

GATEWAY = f"http://127.0.0.1:{os.environ.get('VAFA_GATEWAY_PORT', '8000')}"
console = Console()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


# -- memory --------------------------------------------------------------------------------


@dataclass
class ProcessSampler:
    """Peak RSS per process (sampled every 250 ms), and CPU seconds per process between
    `mark()` calls, so a phase's CPU cost can be divided by the orders it carried."""

    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _procs: dict[int, tuple[str, psutil.Process]] = field(default_factory=dict)

    def _label(self, proc: psutil.Process) -> str | None:
        try:
            cmd = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        line = " ".join(cmd)
        if "-m vafa." in line:
            i = cmd.index("-m")
            module = cmd[i + 1].removeprefix("vafa.")
            role = cmd[i + 2] if len(cmd) > i + 2 else ""
            return f"{module} {role}".strip()
        if proc.pid == os.getpid():
            return "bench client (load generator)"
        if "kafka.Kafka" in line:
            return "kafka (JVM)"
        if proc.name() == "postgres":
            return "postgresql (all backends)"
        return None

    def _refresh(self) -> None:
        for proc in psutil.process_iter():
            if proc.pid not in self._procs:
                label = self._label(proc)
                if label is not None:
                    self._procs[proc.pid] = (label, proc)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by each labelled process group."""
        self._refresh()
        totals: dict[str, float] = {}
        for label, proc in self._procs.values():
            try:
                t = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            totals[label] = totals.get(label, 0.0) + t.user + t.system
        return totals

    def sample(self) -> None:
        self._refresh()
        totals: dict[str, int] = {}
        for label, proc in list(self._procs.values()):
            try:
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            totals[label] = totals.get(label, 0) + rss
        for label, rss in totals.items():
            self.peaks[label] = max(self.peaks.get(label, 0), rss)

    def run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.25)

    def __enter__(self) -> ProcessSampler:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- baseline ------------------------------------------------------------------------------


async def baseline(n: int, payload_size: int) -> dict[str, float]:
    """Raw: produce n messages (acks=all, idempotent) -> consume -> asyncpg insert, one
    transaction per polled batch; messages/s from the first send to the last commit."""
    kafka = KafkaSettings()
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    await admin.close()
    dsn = PG_DEFAULT.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id text PRIMARY KEY, body bytea)")
    await conn.execute("TRUNCATE bench_raw")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"{topic}.g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    body = os.urandom(payload_size)
    start = time.perf_counter()

    async def produce() -> None:
        futures = [await producer.send(topic, value=body, key=str(i).encode()) for i in range(n)]
        await asyncio.gather(*futures)

    async def consume() -> None:
        done = 0
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

    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - start
    await producer.stop()
    await consumer.stop()
    await conn.execute("DROP TABLE bench_raw")
    await conn.close()
    return {"messages": n, "seconds": elapsed, "per_second": n / elapsed}


# -- the stack -----------------------------------------------------------------------------


class PointsWatcher:
    """Timestamps each PointsEarned on loyalty.events.v1 by order_ref, from the topic's end."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self._ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            "loyalty.events.v1",
            bootstrap_servers=KafkaSettings().bootstrap_servers,
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            for tp in consumer.assignment():
                await consumer.seek_to_end(tp)
            self._ready.set()
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=1000)
                now = time.perf_counter()
                for records in batches.values():
                    for r in records:
                        env = cloudevents.decode(r.headers, r.value)
                        if isinstance(env.message, loyalty_pb2.PointsEarned):
                            self.seen.setdefault(env.message.order_ref, now)
        finally:
            await consumer.stop()

    async def ready(self) -> None:
        await self._ready.wait()


def deliveries(
    shop: ShopSimulator, run: str, count: int, offset: int
) -> list[tuple[str, bytes, dict[str, str]]]:
    out = []
    for i in range(offset, offset + count):
        c = shop.persian_customer(i, tag=run) if i % 2 else shop.armenian_customer(i, tag=run)
        order_id = 5 * 10**11 + int(run, 16) % 10**6 * 10**5 + i
        body = shop.shopify_order(
            order_id, c, [Line("BENCH-SKU", 1 + i % 3, "19.90"), Line("BENCH-2", 1, "5.00")]
        )
        raw, headers = shop.shopify_delivery("orders/paid", body, event_id=f"bench-{run}-{i}")
        out.append((f"shopify:{shop.shopify_domain}:{order_id}", raw, headers))
    return out


TRANSPORT_RETRIES = 0


async def post(client: aiohttp.ClientSession, raw: bytes, headers: dict[str, str]) -> int:
    """A webhook delivery, retried once on a dropped keep-alive connection, as platforms do.
    aiohttp rather than httpx here: the load generator shares the two cores with the stack,
    and aiohttp costs it several times less CPU per request."""
    global TRANSPORT_RETRIES
    for attempt in (1, 2):
        try:
            async with client.post("/v1/webhooks/shopify", data=raw, headers=headers) as r:
                await r.read()
                return r.status
        except aiohttp.ClientConnectionError:
            if attempt == 2:
                raise
            TRANSPORT_RETRIES += 1
    raise AssertionError("unreachable")


async def throughput(
    client: aiohttp.ClientSession,
    watcher: PointsWatcher,
    batch: list[tuple[str, bytes, dict[str, str]]],
    concurrency: int,
) -> dict[str, float]:
    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
    for item in batch:
        queue.put_nowait(item)
    refused = 0

    async def sender() -> None:
        nonlocal refused
        while not queue.empty():
            _, raw, headers = queue.get_nowait()
            refused += await post(client, raw, headers) != 202

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    accepted_at = time.perf_counter()
    refs = {ref for ref, _, _ in batch}
    deadline = accepted_at + 300
    while not refs <= watcher.seen.keys() and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    credited = len(refs & watcher.seen.keys())
    last = max((watcher.seen[r] for r in refs & watcher.seen.keys()), default=accepted_at)
    return {
        "orders": len(batch),
        "refused": refused,
        "credited": credited,
        "gateway_accepted_per_second": len(batch) / (accepted_at - start),
        "end_to_end_orders_per_second": credited / (last - start),
        "end_to_end_seconds": last - start,
    }


async def latency(
    client: aiohttp.ClientSession,
    watcher: PointsWatcher,
    batch: list[tuple[str, bytes, dict[str, str]]],
    rate: float,
) -> dict[str, float]:
    sent: dict[str, float] = {}
    interval = 1.0 / rate
    start = time.perf_counter()

    async def one(ref: str, raw: bytes, headers: dict[str, str]) -> None:
        sent[ref] = time.perf_counter()
        status = await post(client, raw, headers)
        assert status == 202, status

    tasks = []
    for i, (ref, raw, headers) in enumerate(batch):
        await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
        tasks.append(asyncio.create_task(one(ref, raw, headers)))
    await asyncio.gather(*tasks)
    deadline = time.perf_counter() + 120
    while not sent.keys() <= watcher.seen.keys() and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    lat = [(watcher.seen[r] - t) * 1000 for r, t in sent.items() if r in watcher.seen]
    return {
        "rate_per_second": rate,
        "orders": len(batch),
        "credited": len(lat),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "max_ms": max(lat, default=float("nan")),
        "mean_ms": statistics.fmean(lat) if lat else float("nan"),
    }


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--orders", type=int, default=3000, help="orders for the throughput phase")
    ap.add_argument("--concurrency", type=int, default=32, help="concurrent webhook senders")
    ap.add_argument("--rate", type=float, default=100.0, help="orders/s for the latency phase")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    args = ap.parse_args()

    env = ensure_env()
    run = uuid.uuid4().hex[:6]
    shop = ShopSimulator(env, shopify_domain=f"bench-{run}.myshopify.com", seed=int(run, 16))
    n_latency = int(args.rate * args.latency_seconds)
    console.print(f"preparing {args.orders + n_latency} signed deliveries...")
    batch = deliveries(shop, run, args.orders, 0)
    paced = deliveries(shop, run, n_latency, args.orders)
    payload = len(batch[0][1])

    results: dict[str, object] = {
        "run": run,
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30),
        },
    }
    with ProcessSampler() as memory:
        console.print("baseline: raw aiokafka -> asyncpg ...")
        results["baseline"] = await baseline(args.orders, payload)
        watcher = PointsWatcher()
        stop = asyncio.Event()
        watch = asyncio.create_task(watcher.run(stop))
        await watcher.ready()
        async with aiohttp.ClientSession(
            base_url=GATEWAY,
            connector=aiohttp.TCPConnector(limit=args.concurrency),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as client:
            console.print(f"throughput: {args.orders} orders, {args.concurrency} senders ...")
            cpu_before = memory.cpu_seconds()
            results["throughput"] = await throughput(client, watcher, batch, args.concurrency)
            cpu_after = memory.cpu_seconds()
            results["cpu_ms_per_order"] = {
                k: round((cpu_after[k] - cpu_before.get(k, 0.0)) * 1000 / args.orders, 2)
                for k in sorted(cpu_after)
            }
            await asyncio.sleep(2)
            console.print(f"latency: {n_latency} orders at {args.rate:.0f}/s ...")
            results["latency"] = await latency(client, watcher, paced, args.rate)
        stop.set()
        await watch
    results["transport_retries"] = TRANSPORT_RETRIES
    results["peak_rss_mb"] = {k: round(v / 2**20, 1) for k, v in sorted(memory.peaks.items())}

    base = results["baseline"]
    thr = results["throughput"]
    lat = results["latency"]
    assert isinstance(base, dict) and isinstance(thr, dict) and isinstance(lat, dict)
    table = Table(title=f"Vafa order flow (run {run}, {os.cpu_count()} cores)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("raw baseline: Kafka -> asyncpg (msgs/s)", f"{base['per_second']:.0f}")
    table.add_row("gateway accepted (webhooks/s)", f"{thr['gateway_accepted_per_second']:.0f}")
    table.add_row(
        "end to end, until every point credited (orders/s)",
        f"{thr['end_to_end_orders_per_second']:.0f}",
    )
    table.add_row(
        "  ratio to raw baseline", f"{thr['end_to_end_orders_per_second'] / base['per_second']:.2f}"
    )
    table.add_row("  credited / sent", f"{thr['credited']} / {thr['orders']}")
    table.add_row(
        f"webhook -> points p50 at {lat['rate_per_second']:.0f}/s (ms)", f"{lat['p50_ms']:.0f}"
    )
    table.add_row(
        f"webhook -> points p99 at {lat['rate_per_second']:.0f}/s (ms)", f"{lat['p99_ms']:.0f}"
    )
    table.add_row("  credited / sent", f"{lat['credited']} / {lat['orders']}")
    table.add_row("dropped connections retried", str(results["transport_retries"]))
    console.print(table)
    mem = Table(title="Per process: peak memory, and CPU per order in the throughput phase")
    mem.add_column("process")
    mem.add_column("peak RSS (MB)", justify="right")
    mem.add_column("CPU ms / order", justify="right")
    peaks = results["peak_rss_mb"]
    cpu = results["cpu_ms_per_order"]
    assert isinstance(peaks, dict) and isinstance(cpu, dict)
    for name, mb in peaks.items():
        mem.add_row(name, f"{mb}", f"{cpu.get(name, 0):.2f}")
    mem.add_row("all", "", f"{sum(cpu.values()):.2f}")
    console.print(mem)
    python_peak = max((mb for name, mb in peaks.items() if "(" not in name), default=0)
    console.print(f"largest Python process: {python_peak} MB")

    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"orders-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    console.print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
