"""`run_worker`: the second process of every service. It relays the outbox, runs the service's
consumers and periodic jobs, serves Prometheus metrics, and stops gracefully on SIGTERM/SIGINT
(finish the batch in hand, commit, leave the consumer group)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message
from prometheus_client import start_http_server

from vafa.kit import inbox
from vafa.kit.consumer import BatchHandler, Consumer, Handler
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.logs import configure_logging
from vafa.kit.outbox import OutboxRelay
from vafa.kit.settings import ServiceSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerContext:
    settings: ServiceSettings
    db: Database
    producer: AIOKafkaProducer


@dataclass(frozen=True, slots=True)
class Periodic:
    """A job run every `every` seconds (the first run after one interval)."""

    name: str
    every: float
    run: Callable[[WorkerContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Subscription:
    """A consumer the worker runs: its group `name`, the logical `topics`, and either one
    `batch_handler` for the event `types` or per-event `handlers` (see kit.consumer)."""

    name: str
    topics: Sequence[str]
    batch_handler: BatchHandler | None = None
    types: Sequence[type[Message] | str] = ()
    handlers: Mapping[type[Message] | str, Handler] | None = None

    def consumer(self, ctx: WorkerContext) -> Consumer:
        return Consumer(
            name=self.name,
            topics=list(self.topics),
            handlers=self.handlers,
            batch_handler=self.batch_handler,
            batch_types=self.types,
            db=ctx.db,
            kafka=ctx.settings.kafka,
            producer=ctx.producer,
        )


async def _periodic(job: Periodic, ctx: WorkerContext, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), job.every)
            return
        except TimeoutError:
            pass
        try:
            await job.run(ctx)
        except Exception:
            log.exception("periodic_job_failed", job=job.name)


async def purge_inbox(ctx: WorkerContext) -> None:
    async with ctx.db.sessionmaker() as session, session.begin():
        removed = await inbox.purge(session, older_than_days=ctx.settings.inbox_retention_days)
    if removed:
        log.info("inbox_purged", removed=removed)


async def run_worker(
    settings: ServiceSettings,
    *,
    subscriptions: Sequence[Subscription] = (),
    periodic: Sequence[Periodic] = (),
    stop: asyncio.Event | None = None,
) -> None:
    configure_logging(settings.log_level, json=settings.log_json, service=settings.service_name)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            pass
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.host)

    db = Database(settings.database_url, pool_size=max(4, len(subscriptions) + 2), pre_ping=False)
    producer = make_producer(settings.kafka, client_id=f"{settings.service_name}-worker")
    await producer.start()
    ctx = WorkerContext(settings=settings, db=db, producer=producer)
    relay = OutboxRelay(db, producer, settings.kafka)
    tasks = [asyncio.create_task(relay.run(stop), name="outbox-relay")]
    tasks += [
        asyncio.create_task(sub.consumer(ctx).run(stop), name=sub.name) for sub in subscriptions
    ]
    if subscriptions and settings.inbox_retention_days:
        periodic = [*periodic, Periodic("inbox-retention", 3600.0, purge_inbox)]
    tasks += [asyncio.create_task(_periodic(job, ctx, stop), name=job.name) for job in periodic]
    log.info(
        "worker_started",
        consumers=[sub.name for sub in subscriptions],
        periodic=[j.name for j in periodic],
    )
    try:
        # A crashed task is fatal: the supervisor restarts the process and nothing is lost.
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in tasks and task.exception() is not None:
                log.error("worker_task_crashed", task=task.get_name(), error=repr(task.exception()))
                stop.set()
                raise task.exception()  # type: ignore[misc]
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        await db.dispose()
        log.info("worker_stopped")
