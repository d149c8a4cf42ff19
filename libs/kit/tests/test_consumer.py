"""The consumer runner on the real broker and database: one effect per event, a failing event
costs only itself, poison goes to the DLQ, offsets follow the database."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import inventory_pb2
from vafa.kit import cloudevents
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import Consumer
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import KafkaSettings
from vafa.kit.testing.poll import eventually

TOPIC = "inventory.stock.v1"


async def effects_of(db: Database, prefix: str) -> list[str]:
    async with db.sessionmaker() as s:
        rows = await s.execute(
            text("SELECT event_id FROM effects WHERE event_id LIKE :p ORDER BY id"),
            {"p": f"{prefix}%"},
        )
        return list(rows.scalars())


async def produce(kafka: KafkaSettings, events: list[tuple[str, str]]) -> None:
    """events: (event_id, sku); the same id twice is a redelivery."""
    producer = make_producer(kafka, client_id="test")
    await producer.start()
    try:
        for event_id, sku in events:
            headers, value = cloudevents.encode(
                inventory_pb2.StockChanged(sku=sku), source="/test", event_id=event_id
            )
            await producer.send_and_wait(kafka.topic(TOPIC), value=value, key=b"k", headers=headers)
    finally:
        await producer.stop()


async def run_consumer(consumer: Consumer, until) -> None:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await until()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_each_event_has_one_effect_and_failures_cost_only_themselves(
    kit_db: Database, kafka: KafkaSettings
) -> None:
    run = uuid.uuid4().hex[:6]
    flaky_failures = {"left": 2}

    async def handler(session: AsyncSession, env: Envelope) -> None:
        assert isinstance(env.message, inventory_pb2.StockChanged)
        if env.message.sku == "poison":
            raise RuntimeError("this event can never be applied")
        if env.message.sku == "flaky" and flaky_failures["left"] > 0:
            flaky_failures["left"] -= 1
            raise ConnectionError("transient")
        await session.execute(text("INSERT INTO effects (event_id) VALUES (:e)"), {"e": env.id})

    producer = make_producer(kafka, client_id="test-dlq")
    await producer.start()
    consumer = Consumer(
        name=f"kit-test-{run}",
        topics=[TOPIC],
        handlers={inventory_pb2.StockChanged: handler},
        db=kit_db,
        kafka=kafka,
        producer=producer,
        max_retries=3,
        backoff_base=0.01,
    )
    events = [
        (f"{run}-a", "ok"),
        (f"{run}-b", "flaky"),
        (f"{run}-a", "ok"),
        (f"{run}-p", "poison"),
        (f"{run}-c", "ok"),
    ]
    await produce(kafka, events)

    async def settled() -> bool:
        return sorted(await effects_of(kit_db, run)) == [f"{run}-a", f"{run}-b", f"{run}-c"]

    try:
        await run_consumer(consumer, lambda: eventually(settled, what="three effects"))
        await asyncio.sleep(0.5)
        assert sorted(await effects_of(kit_db, run)) == [f"{run}-a", f"{run}-b", f"{run}-c"]

        dlq = AIOKafkaConsumer(
            kafka.topic(TOPIC) + ".dlq",
            bootstrap_servers=kafka.bootstrap_servers,
            auto_offset_reset="earliest",
        )
        await dlq.start()
        try:
            async with asyncio.timeout(20):
                while True:
                    record = await dlq.getone()
                    headers = dict(record.headers)
                    if headers.get("ce_id") == f"{run}-p".encode():
                        break
        finally:
            await dlq.stop()
        assert b"this event can never be applied" in headers["dlq_error"]
        assert headers["dlq_attempts"] == b"4"
        assert headers["dlq_topic"] == kafka.topic(TOPIC).encode()

        # Offsets were committed: the same group starting again finds nothing left to do.
        again = Consumer(
            name=f"kit-test-{run}",
            topics=[TOPIC],
            handlers={inventory_pb2.StockChanged: handler},
            db=kit_db,
            kafka=kafka,
            producer=producer,
        )
        await again.consumer.start()
        try:
            batches = await again.consumer.getmany(timeout_ms=3000)
            assert sum(len(v) for v in batches.values()) == 0
        finally:
            await again.consumer.stop()
    finally:
        await producer.stop()


async def test_a_replayed_group_changes_nothing(kit_db: Database, kafka: KafkaSettings) -> None:
    """Resetting a consumer group (rebuilding a projection) replays everything: the inbox makes
    it harmless."""
    run = uuid.uuid4().hex[:6]

    async def handler(session: AsyncSession, env: Envelope) -> None:
        await session.execute(text("INSERT INTO effects (event_id) VALUES (:e)"), {"e": env.id})

    await produce(kafka, [(f"{run}-1", "x"), (f"{run}-2", "y")])
    producer = make_producer(kafka, client_id="test-replay")
    await producer.start()
    try:
        for attempt in range(2):  # the second group reads the topic from the start again
            consumer = Consumer(
                name=f"kit-replay-{run}",
                topics=[TOPIC],
                handlers={inventory_pb2.StockChanged: handler},
                db=kit_db,
                kafka=kafka,
                producer=producer,
            )
            consumer.consumer._group_id = f"{kafka.topic('kit-replay')}-{run}-{attempt}"

            async def both() -> bool:
                return len(await effects_of(kit_db, run)) == 2

            await run_consumer(consumer, lambda: eventually(both, what="two effects"))
            await asyncio.sleep(1)
            assert sorted(await effects_of(kit_db, run)) == [f"{run}-1", f"{run}-2"]
    finally:
        await producer.stop()


async def test_batch_handler_gets_new_events_in_order_and_a_failure_costs_only_itself(
    kit_db: Database, kafka: KafkaSettings
) -> None:
    run = uuid.uuid4().hex[:6]
    calls: list[list[str]] = []

    async def batch(session: AsyncSession, envelopes: list[Envelope]) -> None:
        calls.append([e.id for e in envelopes])
        if any(e.message.sku == "poison" for e in envelopes):  # type: ignore[attr-defined]
            raise RuntimeError("poison in the batch")
        for e in envelopes:
            await session.execute(text("INSERT INTO effects (event_id) VALUES (:e)"), {"e": e.id})

    ids = [f"{run}-{i}" for i in range(6)]
    await produce(
        kafka,
        [
            (ids[0], "a"),
            (ids[1], "b"),
            (ids[0], "a"),
            (ids[2], "poison"),
            (ids[3], "c"),
            (ids[4], "d"),
        ],
    )
    producer = make_producer(kafka, client_id="test-batch")
    await producer.start()
    consumer = Consumer(
        name=f"kit-batch-{run}",
        topics=[TOPIC],
        batch_handler=batch,
        batch_types=[inventory_pb2.StockChanged],
        db=kit_db,
        kafka=kafka,
        producer=producer,
        max_retries=1,
        backoff_base=0.01,
    )

    async def settled() -> bool:
        return len(await effects_of(kit_db, run)) == 4

    try:
        await run_consumer(consumer, lambda: eventually(settled, what="four effects"))
    finally:
        await producer.stop()
    assert await effects_of(kit_db, run) == [ids[0], ids[1], ids[3], ids[4]]  # log order, once each
    # The batch holding the poison failed whole, then every event was replayed alone: the
    # poison on its own twice (max_retries=1), then to the DLQ.
    assert calls.count([ids[2]]) == 2
    assert all(call.count(ids[0]) <= 1 for call in calls)  # a duplicate never reaches it twice


def test_handlers_or_batch_handler_not_both(kit_db: Database, kafka: KafkaSettings) -> None:
    import pytest

    async def noop(session: AsyncSession, envelopes: list[Envelope]) -> None:
        return None

    with pytest.raises(ValueError, match="either handlers or a batch_handler"):
        Consumer(name="x", topics=[TOPIC], db=kit_db, kafka=kafka, producer=None)  # type: ignore[arg-type]
