"""The ticketing service runs as a real app on its own migrated database, and its worker relays its
outbox to the real broker."""

import asyncio

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from vafa.events.v1 import inventory_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.settings import ServiceSettings
from vafa.ticketing.events import outbox


async def test_ready_with_outbox_and_inbox_tables(client: httpx.AsyncClient, db: Database) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    async with db.sessionmaker() as s:
        tables = set(
            (
                await s.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            ).scalars()
        )
    assert {"outbox", "inbox", "alembic_version"} <= tables


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


async def test_worker_relays_the_outbox(
    settings: ServiceSettings, db: Database, worker: asyncio.Event
) -> None:
    probe = inventory_pb2.StockChanged(sku="relay-probe-ticketing", on_hand=1)
    async with db.sessionmaker() as s:
        event_id = await outbox.add(
            s, topic="inventory.catalog.v1", key="relay-probe", message=probe
        )
        await s.commit()
    consumer = AIOKafkaConsumer(
        settings.kafka.topic("inventory.catalog.v1"),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while True:
                record = await consumer.getone()
                env = cloudevents.decode(record.headers, record.value)
                if env.id == event_id:
                    break
    finally:
        await consumer.stop()
    assert env.source == "/vafa/ticketing" and env.message == probe
