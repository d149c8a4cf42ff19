"""The worker against the real broker: events on the four topics reach the feature store
through their consumer groups, and an event delivered twice has one effect."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.message import Message
from sqlalchemy import text

from vafa.events.v1 import inventory_pb2, loyalty_pb2, profile_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.poll import eventually

from .features_fixtures import KINDS, line, order, snapshot, ts


@pytest.fixture
async def clean(db: Database) -> AsyncIterator[None]:
    yield
    async with db.sessionmaker() as s, s.begin():
        for table in ("orders", "purchase_lines", "features", "identities", "products"):
            await s.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names


async def test_events_on_every_topic_reach_the_features_once(
    settings: ServiceSettings, db: Database, worker: asyncio.Event, clean: None
) -> None:
    c = uuid.uuid4()
    sku = f"W-{c.hex[:8]}"
    now = datetime.now(UTC)
    sent: list[tuple[str, Message, str]] = [
        (
            "profile.customers.v1",
            profile_pb2.CustomerRegistered(
                customer=snapshot(c, city="تبریز", emails=["W@Example.com"]), source="api"
            ),
            f"reg-{c}",
        ),
        (
            "profile.customers.v1",
            profile_pb2.InteractionRecorded(customer_id=str(c), kind="call", occurred_at=ts(now)),
            f"call-{c}",
        ),
        (
            "inventory.catalog.v1",
            inventory_pb2.ProductUpserted(
                sku=sku, brand="Acme", category="books", updated_at=ts(now)
            ),
            f"prod-{sku}",
        ),
        (
            "profile.purchases.v1",
            profile_pb2.PurchaseAttributed(
                customer_id=str(c),
                kind=KINDS["paid"],
                order=order(
                    f"w:{c}", 2500, placed_at=now - timedelta(hours=1), lines=[line("1", sku, 2500)]
                ),
            ),
            f"paid-{c}",
        ),
        (
            "loyalty.events.v1",
            loyalty_pb2.TierChanged(customer_id=str(c), tier="gold", direction="upgrade"),
            f"tier-{c}",
        ),
    ]
    producer = make_producer(settings.kafka, client_id="segmentation-test")
    await producer.start()
    try:
        for topic, message, event_id in sent:
            headers, value = cloudevents.encode(
                message, source="/vafa/test", subject=str(c), event_id=event_id
            )
            copies = 2 if event_id.startswith("call-") else 1  # the call delivered twice
            for _ in range(copies):
                await producer.send_and_wait(
                    settings.kafka.topic(topic), value=value, key=str(c).encode(), headers=headers
                )
    finally:
        await producer.stop()

    async def consumed() -> bool:
        async with db.sessionmaker() as s:
            n = (
                await s.execute(
                    text(
                        "SELECT count(DISTINCT consumer) FROM inbox WHERE event_id = ANY(:ids) "
                        "AND consumer LIKE 'segmentation.%'"
                    ),
                    {"ids": [e for _, _, e in sent]},
                )
            ).scalar_one()
            return bool(n == 4)

    await eventually(consumed, within=60, what="the four consumer groups")

    async def ready() -> dict[str, object] | None:
        async with db.sessionmaker() as s:
            row = (
                (await s.execute(text("SELECT * FROM features WHERE customer_id = :c"), {"c": c}))
                .mappings()
                .first()
            )
        if row is None or row["orders_count"] != 1 or row["tier"] != "gold":
            return None
        return dict(row)

    f = await eventually(ready, within=30, what="the customer's features")
    assert f["city"] == "تبریز"
    assert f["total_spent"] == 2500
    assert f["interactions"] == {"call": 1} and f["interactions_count"] == 1
    async with db.sessionmaker() as s:
        brand = (
            await s.execute(
                text("SELECT brand FROM purchase_lines WHERE customer_id = :c"), {"c": c}
            )
        ).scalar_one()
        identity = (
            await s.execute(text("SELECT value FROM identities WHERE customer_id = :c"), {"c": c})
        ).scalar_one()
    assert (brand, identity) == ("Acme", "w@example.com")
