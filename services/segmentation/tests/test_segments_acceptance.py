"""Acceptance, end to end on the real broker: an order event reaches the feature store through
the worker, moves the customer into a segment and emits exactly one SegmentEntered, however
often it is delivered."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select

from vafa.events.v1 import inventory_pb2, profile_pb2
from vafa.events.v1 import segmentation_pb2 as pb
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.plugin import principal_headers
from vafa.kit.testing.poll import eventually
from vafa.segmentation.models import Membership

from .features_fixtures import KINDS, line, order, ts

MARKETER = principal_headers("staff", "m", "marketer")


async def test_an_order_event_moves_a_customer_in_with_one_segment_entered(
    client: httpx.AsyncClient, db: Database, settings: ServiceSettings, worker: asyncio.Event
) -> None:
    c = uuid.uuid4()
    category = f"fantasy-{c.hex[:8]}"
    sku = f"BOOK-{c.hex[:8]}"
    r = await client.post(
        "/v1/segments",
        json={
            "key": f"fantasy-readers-{c.hex[:8]}",
            "name": "Fantasy readers",
            "definition": {
                "all": [
                    {"purchased": {"category": category}, "within_days": 30},
                    {"field": "orders_count", "op": "gte", "value": 1},
                ]
            },
        },
        headers=MARKETER,
    )
    assert r.status_code == 201 and r.json()["member_count"] == 0, r.text
    segment_id = r.json()["id"]

    now = datetime.now(UTC)
    product = cloudevents.encode(
        inventory_pb2.ProductUpserted(sku=sku, category=category, updated_at=ts(now)),
        source="/vafa/test",
        event_id=f"prod-{sku}",
    )
    paid = cloudevents.encode(
        profile_pb2.PurchaseAttributed(
            customer_id=str(c),
            kind=KINDS["paid"],
            order=order(
                f"acc:{c}",
                4_500_000,
                placed_at=now - timedelta(minutes=5),
                lines=[line("1", sku, 4_500_000)],
            ),
        ),
        source="/vafa/test",
        subject=str(c),
        event_id=f"paid-{c}",
    )
    producer = make_producer(settings.kafka, client_id="segments-acceptance")
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.kafka.topic("inventory.catalog.v1"),
            value=product[1],
            key=sku.encode(),
            headers=product[0],
        )
        # Whichever consumer runs first, the line gets its category: the catalogue consumer
        # fills in lines bought before it knew the product, and re-evaluates those customers.
        for _ in range(2):  # delivered twice
            await producer.send_and_wait(
                settings.kafka.topic("profile.purchases.v1"),
                value=paid[1],
                key=str(c).encode(),
                headers=paid[0],
            )
    finally:
        await producer.stop()

    async def member() -> bool:
        async with db.sessionmaker() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(Membership)
                .where(Membership.customer_id == c, Membership.segment_id == uuid.UUID(segment_id))
            )
        return bool(n)

    await eventually(member, within=60, what="the customer entering the segment")

    consumer = AIOKafkaConsumer(
        settings.kafka.topic("segmentation.memberships.v1"),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4().hex}",
        enable_auto_commit=False,
    )
    await consumer.start()
    entered: list[pb.SegmentEntered] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        quiet = None
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for rec in records:
                    if rec.key == str(c).encode():
                        msg = cloudevents.decode(rec.headers, rec.value).message
                        if isinstance(msg, pb.SegmentEntered):
                            entered.append(msg)
            if entered and quiet is None:
                quiet = asyncio.get_running_loop().time() + 2  # a duplicate would follow
            if quiet is not None and asyncio.get_running_loop().time() > quiet:
                break
    finally:
        await consumer.stop()
    assert len(entered) == 1, entered
    assert (entered[0].segment_id, entered[0].cause) == (segment_id, pb.MEMBERSHIP_CAUSE_EVENT)
