"""Kafka clients configured one way for the whole platform, and topic management."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from vafa.kit.settings import KafkaSettings

log = structlog.get_logger(__name__)

# Every topic the platform uses. Each has a dead-letter twin "<topic>.dlq".
TOPICS = (
    "shop.orders.v1",
    "profile.customers.v1",
    "profile.purchases.v1",
    "loyalty.events.v1",
    "segmentation.memberships.v1",
    "messaging.deliveries.v1",
    "ticketing.tickets.v1",
    "inventory.stock.v1",
    "inventory.catalog.v1",
)


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def make_producer(
    settings: KafkaSettings, *, client_id: str, linger_ms: int = 5
) -> AIOKafkaProducer:
    # Idempotent producer with acks=all: a retried send never duplicates or reorders within a
    # partition, and a send only completes once every in-sync replica has it.
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=15000,
    )


async def ensure_topics(settings: KafkaSettings, names: tuple[str, ...] = TOPICS) -> list[str]:
    """Creates the topics (and their DLQs) that do not exist yet. Returns the ones created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id="vafa-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.topic(n) for n in names] + [dlq(settings.topic(n)) for n in names]
        new = [t for t in wanted if t not in existing]
        if new:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name=t,
                            num_partitions=1 if t.endswith(".dlq") else settings.partitions,
                            replication_factor=settings.replication_factor,
                        )
                        for t in new
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won the race; the topics exist either way
            # Metadata propagates asynchronously even on one broker.
            for _ in range(50):
                if set(new) <= set(await admin.list_topics()):
                    break
                await asyncio.sleep(0.1)
            log.info("topics_created", topics=new)
        return new
    finally:
        await admin.close()


async def delete_topics(settings: KafkaSettings, *, prefix: str) -> list[str]:
    """Deletes every topic whose name starts with `prefix` (a test run's own); returns them."""
    if not prefix:
        raise ValueError("refusing to delete topics without a prefix")
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id="vafa-admin"
    )
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()


async def check_kafka(settings: KafkaSettings, timeout: float = 3.0) -> None:
    """Raises when the broker cannot be reached: used by /readyz and the test plugin."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="vafa-ready",
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.describe_cluster(), timeout)
    finally:
        await admin.close()
