"""The worker against the real broker: order events move stock once, however often delivered."""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text

from vafa.events.v1 import shop_orders_pb2
from vafa.inventory.stock import service
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.poll import eventually


async def test_order_events_move_stock_once(
    settings: ServiceSettings, db: Database, worker: asyncio.Event
) -> None:
    async with db.sessionmaker() as s:
        await service.set_level(
            s,
            sku="W-1",
            on_hand=10,
            low_stock_threshold=None,
            reason="count",
            author="t",
            default_threshold=5,
        )
        await s.commit()
    order = shop_orders_pb2.Order(
        order_ref="shopify:w:1",
        line_items=[shop_orders_pb2.LineItem(line_id="1", sku="W-1", quantity=2)],
    )
    producer: AIOKafkaProducer = make_producer(settings.kafka, client_id="test")
    await producer.start()
    try:
        topic = settings.kafka.topic("shop.orders.v1")
        paid = cloudevents.encode(
            shop_orders_pb2.OrderPaid(order=order), source="/test", event_id="evt-paid-1"
        )
        placed = cloudevents.encode(
            shop_orders_pb2.OrderPlaced(order=order), source="/test", event_id="evt-placed-1"
        )
        for headers, value in (placed, paid, paid):  # the paid event redelivered
            await producer.send_and_wait(topic, value=value, key=b"shopify:w:1", headers=headers)
        await producer.send_and_wait(
            topic, value=b"not protobuf", key=b"x", headers=[("ce_id", b"bad")]
        )
    finally:
        await producer.stop()

    async def moved() -> bool:
        async with db.sessionmaker() as s:
            n = (
                await s.execute(
                    text(
                        "SELECT count(*) FROM inbox WHERE event_id IN ('evt-paid-1','evt-placed-1')"
                    )
                )
            ).scalar_one()
            return n == 2

    await eventually(moved, what="both order events applied")
    await asyncio.sleep(0.5)  # let the duplicate arrive too
    async with db.sessionmaker() as s:
        item = await service.get_item(s, "W-1")
        assert item is not None and item.on_hand == 8
        moves = (
            await s.execute(text("SELECT count(*) FROM stock_movements WHERE sku = 'W-1'"))
        ).scalar_one()
        assert moves == 3  # the count, the hold and its sale

    async def relayed() -> bool:
        async with db.sessionmaker() as s:
            return (
                await s.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
            ).scalar_one() == 0

    await eventually(relayed, what="outbox relayed")

    # The record that is not a CloudEvent went to the dead-letter topic with the error.
    consumer = AIOKafkaConsumer(
        settings.kafka.topic("shop.orders.v1") + ".dlq",
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    headers = dict(record.headers)
    assert record.value == b"not protobuf"
    assert b"missing CloudEvents headers" in headers["dlq_error"]
    assert headers["dlq_consumer"] == b"inventory.orders"
