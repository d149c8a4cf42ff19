"""The worker runs the new consumers (catalogue, interactions) and the periodic expiry job
against the real broker: a product lands in the products table, an interaction earns, a due
lot expires, and PointsExpired / PointsEarned reach loyalty.events.v1 through the outbox."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from vafa.events.v1 import inventory_pb2, loyalty_pb2, profile_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.loyalty import ledger
from vafa.loyalty.config import Settings
from vafa.loyalty.rules import service as rules_service
from vafa.loyalty.rules.definitions import Interaction
from vafa.loyalty.spec import SPEC


async def test_worker_consumes_catalogue_and_interactions_and_expires_on_schedule(
    settings: ServiceSettings, db: Database
) -> None:
    assert isinstance(settings, Settings)
    fast = settings.model_copy(update={"expiry_every_seconds": 0.5})
    c = uuid.uuid4()
    sku = f"W-{c}"
    tier = f"t-{c}"
    now = datetime.now(UTC)
    async with db.sessionmaker() as s:
        await ledger.grant(
            s,
            customer_id=c,
            points=33,
            idempotency_key=f"wj:{c}",
            reason="t",
            expires_at=now - timedelta(minutes=1),
            now=now - timedelta(days=30),
        )
        await s.execute(
            text("UPDATE accounts SET tier = :t WHERE customer_id = :c"), {"t": tier, "c": c}
        )
        rule = await rules_service.create_rule(
            s,
            name="survey",
            priority=1,
            budget=None,
            definition=Interaction(interaction_kind="survey_answer", points=4, tiers=[tier]),
        )
        await rules_service.publish(s, rule_id=rule.id, author="t", now=now - timedelta(hours=1))
        await s.commit()

    producer = make_producer(settings.kafka, client_id="loyalty-test-jobs")
    await producer.start()
    try:
        product = inventory_pb2.ProductUpserted(sku=sku, category="چای", brand="B", active=True)
        headers, value = cloudevents.encode(product, source="/vafa/inventory", subject=sku)
        await producer.send_and_wait(
            settings.kafka.topic("inventory.catalog.v1"),
            value=value,
            key=sku.encode(),
            headers=headers,
        )
        interaction = profile_pb2.InteractionRecorded(
            customer_id=str(c), entry_id=f"tl-{c}", kind="survey_answer"
        )
        interaction.occurred_at.FromDatetime(now)
        headers, value = cloudevents.encode(interaction, source="/vafa/profile", subject=str(c))
        await producer.send_and_wait(
            settings.kafka.topic("profile.customers.v1"),
            value=value,
            key=str(c).encode(),
            headers=headers,
        )
    finally:
        await producer.stop()

    stop = asyncio.Event()
    task = asyncio.create_task(SPEC.worker(fast, stop))
    consumer = AIOKafkaConsumer(
        settings.kafka.topic("loyalty.events.v1"),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: list[object] = []
    try:
        deadline = asyncio.get_running_loop().time() + 45
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    env = cloudevents.decode(r.headers, r.value)
                    if env.subject == str(c):
                        seen.append(env.message)
            kinds = {type(m).__name__ for m in seen}
            if {"PointsExpired", "PointsEarned"} <= kinds and len(seen) >= 3:
                break
    finally:
        await consumer.stop()
        stop.set()
        await asyncio.wait_for(task, 30)
        async with db.sessionmaker() as s:
            await rules_service.archive(s, rule_id=rule.id)
            await s.commit()

    expired = [m for m in seen if isinstance(m, loyalty_pb2.PointsExpired)]
    earned = [m for m in seen if isinstance(m, loyalty_pb2.PointsEarned)]
    assert [e.points for e in expired] == [33]
    assert sorted(e.points for e in earned) == [4, 33]  # the grant, then the interaction
    async with db.sessionmaker() as s:
        category = await s.scalar(text("SELECT category FROM products WHERE sku = :s"), {"s": sku})
        balance = await s.scalar(
            text("SELECT balance FROM accounts WHERE customer_id = :c"), {"c": c}
        )
    assert category == "چای" and balance == 4
