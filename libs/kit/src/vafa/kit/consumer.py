"""The Kafka consumer runner every worker uses.

- Records are decoded as CloudEvents; each type has a thin handler `async (session, envelope)`,
  or the consumer has one batch handler `async (session, envelopes)` that applies a polled
  batch set-based (load the state it needs in a few statements, apply the events in order in
  memory, write back in a few statements): the way to keep up with a busy topic.
- A batch from one poll is applied in one database transaction, each event claimed in the
  inbox first (a duplicate is skipped). If anything in the batch fails, the transaction rolls
  back and the batch is replayed one event per transaction, so one bad event costs only itself.
- A failing event is retried with exponential backoff, then written to `<topic>.dlq` with the
  error in its headers, and the partition moves on.
- Offsets are committed only after the database commit (and after any DLQ write), so a crash
  at any point redelivers rather than loses; the inbox makes the redelivery harmless.
- `stop` finishes the batch in hand, commits, and leaves the group cleanly.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from google.protobuf.message import Message
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit import cloudevents, inbox
from vafa.kit.cloudevents import Envelope, EventDecodeError
from vafa.kit.db import Database
from vafa.kit.kafka import dlq
from vafa.kit.logs import current_traceparent, trace_id_from_traceparent
from vafa.kit.settings import KafkaSettings

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]
# Receives the batch's new events in log order (duplicates already dropped by the inbox).
BatchHandler = Callable[[AsyncSession, list[Envelope]], Awaitable[None]]

EVENTS = Counter("vafa_consumer_events_total", "Events seen", ["consumer", "type", "outcome"])
BATCH_SECONDS = Histogram(
    "vafa_consumer_batch_seconds",
    "Time to apply one polled batch",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


@dataclass(frozen=True, slots=True)
class Decoded:
    record: ConsumerRecord
    envelope: Envelope


class Consumer:
    def __init__(
        self,
        *,
        name: str,
        topics: list[str],
        handlers: Mapping[type[Message] | str, Handler] | None = None,
        batch_handler: BatchHandler | None = None,
        batch_types: Sequence[type[Message] | str] = (),
        db: Database,
        kafka: KafkaSettings,
        producer: AIOKafkaProducer,
        max_retries: int = 4,
        backoff_base: float = 0.2,
        max_batch: int = 500,
        batch_wait_ms: int = 50,
    ) -> None:
        """`name` is the consumer group (and the inbox's consumer key); `topics` are logical
        names (the settings' prefix is added). Either `handlers` map a message class or a
        ce_type to a handler, or `batch_handler` takes every event of `batch_types`. Types
        with no handler are acknowledged and ignored."""
        if (handlers is None) == (batch_handler is None):
            raise ValueError("give either handlers or a batch_handler")
        self.name = name
        self.topics = [kafka.topic(t) for t in topics]
        self.handlers = {_type_name(k): v for k, v in (handlers or {}).items()}
        self.batch_handler = batch_handler
        self.types = set(self.handlers) | {_type_name(t) for t in batch_types}
        self.db = db
        self.kafka = kafka
        self.producer = producer
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.max_batch = max_batch
        self.consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=kafka.topic(name),
            client_id=name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_batch,
            # Let the broker gather 16 KiB (some 40 events) or wait `batch_wait_ms` before
            # answering a fetch: under load batches grow large enough that the fixed cost of a
            # transaction and an offset commit is shared by many events; when idle, a consumer
            # asks 20 times a second rather than spinning. Costs at most 50 ms a hop.
            fetch_min_bytes=16 * 1024,
            fetch_max_wait_ms=batch_wait_ms,
            session_timeout_ms=15000,
            heartbeat_interval_ms=3000,
        )

    async def run(self, stop: asyncio.Event) -> None:
        # Starting can wait a long time (a topic not created yet); a stop must still end it.
        starting = asyncio.ensure_future(self.consumer.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            await self.consumer.stop()
            return
        starting.result()
        log.info("consumer_started", consumer=self.name, topics=self.topics)
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=500, max_records=self.max_batch)
                records = [r for recs in batches.values() for r in recs]
                if not records:
                    continue
                await self.process(records)
                await self._commit(records)
        finally:
            await self.consumer.stop()
            log.info("consumer_stopped", consumer=self.name)

    async def process(self, records: list[ConsumerRecord]) -> None:
        start = time.perf_counter()
        decoded: list[Decoded] = []
        for record in records:
            try:
                envelope = cloudevents.decode(record.headers, record.value)
            except EventDecodeError as exc:
                # A poison record never gets better by retrying.
                await self._dead_letter(record, exc, attempts=0)
                continue
            if envelope.type not in self.types:
                EVENTS.labels(self.name, envelope.type, "ignored").inc()
                continue
            decoded.append(Decoded(record, envelope))
        if decoded:
            try:
                outcomes = await self._apply(decoded)
                for d, applied in zip(decoded, outcomes, strict=True):
                    EVENTS.labels(
                        self.name, d.envelope.type, "applied" if applied else "duplicate"
                    ).inc()
            except Exception:
                log.info("batch_failed_replaying_singly", consumer=self.name, size=len(decoded))
                for d in decoded:
                    await self._apply_one_with_retries(d)
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - start)

    async def _apply(self, decoded: list[Decoded]) -> list[bool]:
        """Applies the events in one transaction, each at most once: the inbox claims every id
        of the batch in one statement, and only the first sighting of an id is applied."""
        outcomes = []
        fresh_events: list[Envelope] = []
        async with self.db.sessionmaker() as session, session.begin():
            fresh = await inbox.claim_many(
                session, consumer=self.name, event_ids=[d.envelope.id for d in decoded]
            )
            for d in decoded:
                first = d.envelope.id in fresh
                fresh.discard(d.envelope.id)
                if first:
                    fresh_events.append(d.envelope)
                outcomes.append(first)
            if self.batch_handler is not None:
                if fresh_events:
                    await self.batch_handler(session, fresh_events)
            else:
                for envelope in fresh_events:
                    await self._handle(session, envelope)
        return outcomes

    async def _handle(self, session: AsyncSession, envelope: Envelope) -> None:
        token = current_traceparent.set(envelope.traceparent)
        structlog.contextvars.bind_contextvars(
            event_id=envelope.id, trace_id=trace_id_from_traceparent(envelope.traceparent)
        )
        try:
            await self.handlers[envelope.type](session, envelope)
        finally:
            current_traceparent.reset(token)
            structlog.contextvars.unbind_contextvars("event_id", "trace_id")

    async def _apply_one_with_retries(self, d: Decoded) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                applied = await self._apply([d])
                outcome = "applied" if applied[0] else "duplicate"
                EVENTS.labels(self.name, d.envelope.type, outcome).inc()
                return
            except Exception as exc:
                if attempt > self.max_retries:
                    await self._dead_letter(d.record, exc, attempts=attempt)
                    EVENTS.labels(self.name, d.envelope.type, "dead_lettered").inc()
                    return
                delay = self.backoff_base * 2 ** (attempt - 1)
                log.warning(
                    "event_failed_retrying",
                    consumer=self.name,
                    event_id=d.envelope.id,
                    type=d.envelope.type,
                    attempt=attempt,
                    retry_in=delay,
                    error=repr(exc),
                )
                await asyncio.sleep(delay)

    async def _dead_letter(self, record: ConsumerRecord, exc: Exception, *, attempts: int) -> None:
        error = "".join(traceback.format_exception_only(exc)).strip()[:2000]
        headers = [
            *(record.headers or ()),
            ("dlq_error", error.encode()),
            ("dlq_consumer", self.name.encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
            ("dlq_attempts", str(attempts).encode()),
        ]
        await self.producer.send_and_wait(
            dlq(record.topic), value=record.value, key=record.key, headers=headers
        )
        log.error(
            "event_dead_lettered",
            consumer=self.name,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error=error,
        )

    async def _commit(self, records: list[ConsumerRecord]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group rebalanced under us: the new owner re-reads from the last commit and
            # the inbox drops what we already applied.
            log.warning("offset_commit_failed", consumer=self.name, error=repr(exc))


def _type_name(t: type[Message] | str) -> str:
    return t if isinstance(t, str) else t.DESCRIPTOR.full_name
