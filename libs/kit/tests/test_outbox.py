"""The outbox and its relay on the real database and broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from vafa.events.v1 import inventory_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.logs import current_traceparent
from vafa.kit.outbox import Outbox, OutboxRelay
from vafa.kit.settings import KafkaSettings

outbox = Outbox(source="/vafa/test")


async def read_until(
    kafka: KafkaSettings, topic: str, count: int, subjects: set[str]
) -> list[cloudevents.Envelope]:
    """The first `count` events about `subjects` (the run's topics are shared with other tests,
    which may publish to them too)."""
    consumer = AIOKafkaConsumer(
        kafka.topic(topic), bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[cloudevents.Envelope] = []
    try:
        async with asyncio.timeout(20):
            while len(out) < count:
                record = await consumer.getone()
                envelope = cloudevents.decode(record.headers, record.value)
                if envelope.subject in subjects:
                    out.append(envelope)
    finally:
        await consumer.stop()
    return out


async def test_rolled_back_events_are_never_published_and_committed_ones_carry_the_trace(
    kit_db: Database, kafka: KafkaSettings
) -> None:
    token = current_traceparent.set("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    try:
        async with kit_db.sessionmaker() as s:
            await outbox.add(
                s,
                topic="inventory.catalog.v1",
                key="gone",
                message=inventory_pb2.StockChanged(sku="gone"),
            )
            await s.rollback()
        async with kit_db.sessionmaker() as s:
            kept = await outbox.add(
                s,
                topic="inventory.catalog.v1",
                key="kept",
                message=inventory_pb2.StockChanged(sku="kept"),
            )
            await s.commit()
    finally:
        current_traceparent.reset(token)

    producer = make_producer(kafka, client_id="relay-test")
    await producer.start()
    try:
        relay = OutboxRelay(kit_db, producer, kafka)
        assert await relay.publish_batch() >= 1
        # A crash after publishing but before marking: the row is published again, same ce_id.
        async with kit_db.sessionmaker() as s:
            await s.execute(
                text("UPDATE outbox SET sent_at = NULL WHERE event_id = :e"), {"e": kept}
            )
            await s.commit()
        assert await relay.publish_batch() == 1
        assert await relay.publish_batch() == 0
    finally:
        await producer.stop()

    envelopes = await read_until(kafka, "inventory.catalog.v1", 2, {"kept", "gone"})
    assert [e.id for e in envelopes] == [kept, kept]
    assert all(e.subject == "kept" and e.source == "/vafa/test" for e in envelopes)
    assert envelopes[0].traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert [e.message.sku for e in envelopes] == ["kept", "kept"]  # type: ignore[attr-defined]


async def test_relay_wakes_on_commit(kit_db: Database, kafka: KafkaSettings) -> None:
    producer = make_producer(kafka, client_id="relay-wake")
    await producer.start()
    stop = asyncio.Event()
    relay = OutboxRelay(
        kit_db, producer, kafka, poll_interval=30
    )  # only NOTIFY can wake it in time
    task = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.sleep(0.5)
        async with kit_db.sessionmaker() as s:
            event_id = await outbox.add(
                s,
                topic="ticketing.tickets.v1",
                key="w",
                message=inventory_pb2.StockChanged(sku="wake"),
            )
            await s.commit()
        envelopes = await read_until(kafka, "ticketing.tickets.v1", 1, {"w"})
        assert envelopes[0].id == event_id
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await producer.stop()
