"""The transactional outbox: an event row commits in the same transaction as the state change
that caused it; the relay publishes committed rows with an idempotent producer (acks=all) and
marks them sent. Nothing is published that did not commit, and nothing that committed is lost.

A committed row that was published but not yet marked (a crash between the two) is published
again on restart with the same ce_id; consumers' inboxes drop the copy.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from google.protobuf.message import Message
from prometheus_client import Counter, Gauge
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.logs import current_traceparent
from vafa.kit.settings import KafkaSettings

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "vafa_outbox"

PUBLISHED = Counter("vafa_outbox_published_total", "Outbox events published", ["topic"])
BACKLOG = Gauge("vafa_outbox_backlog", "Outbox rows waiting at the last relay pass")
RELAY_ERRORS = Counter("vafa_outbox_relay_errors_total", "Relay passes that failed")


def outbox_table(metadata: MetaData) -> Table:
    """Adds the outbox table to a service's metadata (so its migrations create it)."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", Text, nullable=False, unique=True),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True)),
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
    )


_INSERT = text(
    "INSERT INTO outbox (event_id, topic, key, headers, payload) "
    "VALUES (:event_id, :topic, :key, CAST(:headers AS jsonb), :payload) "
    "ON CONFLICT (event_id) DO NOTHING"
)


_NOTIFY = text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event for `Outbox.add_many`. `traceparent` defaults to the current one; a batch
    handler passes each causing event's own, so traces stay per event."""

    topic: str
    key: str
    message: Message
    event_id: str | None = None
    subject: str | None = None
    time: datetime | None = None
    traceparent: str | None = None


class Outbox:
    """One per service: `outbox = Outbox(source="/vafa/profile")`, then in domain code
    `await outbox.add(session, topic=..., key=..., message=...)` before the commit, or
    `add_many` for a batch."""

    def __init__(self, *, source: str) -> None:
        self.source = source

    async def add(
        self,
        session: AsyncSession,
        *,
        topic: str,
        key: str,
        message: Message,
        subject: str | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> str:
        ids = await self.add_many(
            session,
            [OutboxEvent(topic, key, message, event_id=event_id, subject=subject, time=time)],
        )
        return ids[0]

    async def add_many(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> list[str]:
        """Adds the events in one round trip (executemany); returns their ids."""
        if not events:
            return []
        rows = []
        for e in events:
            event_id = e.event_id or str(uuid.uuid4())
            headers, payload = cloudevents.encode(
                e.message,
                source=self.source,
                subject=e.subject if e.subject is not None else e.key,
                event_id=event_id,
                time=e.time,
                traceparent=e.traceparent or current_traceparent.get(),
            )
            rows.append(
                {
                    "event_id": event_id,
                    "topic": e.topic,
                    "key": e.key,
                    "headers": json.dumps([[k, v.decode()] for k, v in headers]),
                    "payload": payload,
                }
            )
        await session.execute(_INSERT, rows)
        # Delivered at commit. One per transaction is enough to wake the relay, so the session
        # remembers it has notified until its transaction ends.
        if session.info.get("vafa_outbox_notified") is not session.get_transaction():
            await session.execute(_NOTIFY)
            session.info["vafa_outbox_notified"] = session.get_transaction()
        return [r["event_id"] for r in rows]


_CLAIM = text(
    "SELECT id, topic, key, headers, payload FROM outbox WHERE sent_at IS NULL "
    "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
# Only one relay of a service publishes at a time (several worker replicas may run), so events
# of one key leave in commit order. The lock is released with the transaction.
_LEADER = text("SELECT pg_try_advisory_xact_lock(hashtext('vafa_outbox_relay'))")
_MARK = text("UPDATE outbox SET sent_at = now() WHERE id = ANY(:ids)")
_PURGE = text("DELETE FROM outbox WHERE sent_at < now() - make_interval(hours => :hours)")


class OutboxRelay:
    """Publishes committed outbox rows in id order. Woken by NOTIFY at commit, with a slow poll
    as the safety net; a failed pass backs off exponentially and retries the same rows."""

    def __init__(
        self,
        db: Database,
        producer: AIOKafkaProducer,
        kafka: KafkaSettings,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 10.0,
        retention_hours: int = 24,
    ) -> None:
        self.db = db
        self.producer = producer
        self.kafka = kafka
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.retention_hours = retention_hours
        self._wake = asyncio.Event()

    async def _listen(self) -> asyncpg.Connection | None:
        dsn = self.db.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        try:
            conn = await asyncpg.connect(dsn)
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
            return conn
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("outbox_listen_failed", error=str(exc))
            return None

    async def publish_batch(self) -> int:
        """One pass: claim up to batch_size unsent rows, publish, mark sent. Returns the count."""
        async with self.db.sessionmaker() as session, session.begin():
            if not (await session.execute(_LEADER)).scalar_one():
                return 0
            rows = (await session.execute(_CLAIM, {"limit": self.batch_size})).all()
            if not rows:
                BACKLOG.set(0)
                return 0
            futures = []
            for row in rows:
                headers = [(k, v.encode()) for k, v in row.headers]
                futures.append(
                    await self.producer.send(
                        self.kafka.topic(row.topic),
                        value=row.payload,
                        key=row.key.encode(),
                        headers=headers,
                    )
                )
            await asyncio.gather(*futures)  # acks=all for every record before marking
            await session.execute(_MARK, {"ids": [r.id for r in rows]})
            for row in rows:
                PUBLISHED.labels(row.topic).inc()
            BACKLOG.set(len(rows))
            return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        listener = await self._listen()
        backoff = 0.1
        passes = 0
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    n = await self.publish_batch()
                    backoff = 0.1
                except Exception as exc:
                    RELAY_ERRORS.inc()
                    log.warning("outbox_relay_failed", error=repr(exc), retry_in=backoff)
                    await _sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                passes += 1
                if passes % 1000 == 0:
                    await self.purge()
                if n < self.batch_size:
                    waker = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait(
                        {waker, stopper},
                        timeout=self.poll_interval,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    waker.cancel()
                    stopper.cancel()
        finally:
            if listener is not None:
                await listener.close()

    async def purge(self) -> None:
        async with self.db.sessionmaker() as session, session.begin():
            await session.execute(_PURGE, {"hours": self.retention_hours})


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
