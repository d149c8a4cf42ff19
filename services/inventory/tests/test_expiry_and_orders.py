"""The worker against the real broker and database: order events hold, confirm and release
stock once however often delivered, and expired holds are released by the worker's own sweep,
without any request."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from google.protobuf.message import Message
from sqlalchemy import text

from vafa.events.v1 import shop_orders_pb2
from vafa.inventory.config import Settings
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.poll import eventually

from .helpers import SHOP, assert_ledger_is_the_stock, unique


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    """The sweep every 0.2 s, so a test need not wait the production interval."""
    assert isinstance(settings, Settings)
    return settings.model_copy(update={"hold_sweep_seconds": 0.2})


async def _send(settings: ServiceSettings, *messages: tuple[Message, str]) -> None:
    producer = make_producer(settings.kafka, client_id="test")
    await producer.start()
    try:
        topic = settings.kafka.topic("shop.orders.v1")
        for msg, event_id in messages:
            headers, value = cloudevents.encode(msg, source="/test", event_id=event_id)
            key = msg.order.order_ref.encode()  # type: ignore[attr-defined]
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def _levels(db: Database, sku: str) -> tuple[int, int]:
    async with db.sessionmaker() as s:
        row = (
            await s.execute(
                text("SELECT on_hand, reserved FROM stock_items WHERE sku = :s"), {"s": sku}
            )
        ).one()
    return int(row[0]), int(row[1])


async def _state(db: Database, ref: str) -> str | None:
    async with db.sessionmaker() as s:
        return (
            await s.execute(text("SELECT state FROM reservations WHERE order_ref = :r"), {"r": ref})
        ).scalar_one_or_none()


async def test_an_expired_hold_is_released_by_the_worker_without_a_request(
    settings: ServiceSettings, db: Database, client: httpx.AsyncClient, worker: asyncio.Event
) -> None:
    sku = unique("EXP")
    r = await client.put(f"/v1/products/{sku}/stock", json={"on_hand": 10}, headers=SHOP)
    assert r.status_code == 200
    api_ref, event_ref, kept_ref = unique("api"), unique("shop:evt"), unique("kept")
    r = await client.post(
        "/v1/reservations",
        json={"order_ref": api_ref, "lines": [{"sku": sku, "quantity": 3}], "hold_seconds": 1},
        headers=SHOP,
    )
    assert r.status_code == 201
    r = await client.post(
        "/v1/reservations",
        json={"order_ref": kept_ref, "lines": [{"sku": sku, "quantity": 1}], "hold_seconds": 3600},
        headers=SHOP,
    )
    assert r.status_code == 201
    # A shop order placed long ago: its hold (900 s from placed_at) is already over.
    placed = shop_orders_pb2.Order(
        order_ref=event_ref,
        line_items=[shop_orders_pb2.LineItem(line_id="1", sku=sku, quantity=2)],
    )
    placed.placed_at.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    await _send(settings, (shop_orders_pb2.OrderPlaced(order=placed), unique("evt")))

    async def released() -> bool:
        return await _state(db, api_ref) == "expired" and await _state(db, event_ref) == "expired"

    await eventually(released, what="both holds expired by the sweep")
    assert await _levels(db, sku) == (10, 1)  # only the unexpired hold remains
    assert await _state(db, kept_ref) == "held"
    async with db.sessionmaker() as s:
        await assert_ledger_is_the_stock(s, sku)
        kinds = (
            await s.execute(
                text(
                    "SELECT reason, note, reserved_delta, author FROM stock_movements "
                    "WHERE order_ref = :r ORDER BY id"
                ),
                {"r": api_ref},
            )
        ).all()
    assert [tuple(k) for k in kinds] == [
        ("reserve", "api", 3, "shop:storefront"),
        ("release", "hold_expired", -3, "system:hold-expiry"),
    ]
    # Paid after its hold expired: reserves again and sells.
    await _send(settings, (shop_orders_pb2.OrderPaid(order=placed), unique("evt")))

    async def sold() -> bool:
        return await _state(db, event_ref) == "confirmed"

    await eventually(sold, what="the late payment confirmed")
    assert await _levels(db, sku) == (8, 1)


async def test_order_events_twice_move_stock_once_and_cancel_releases_what_it_held(
    settings: ServiceSettings, db: Database, client: httpx.AsyncClient, worker: asyncio.Event
) -> None:
    sku = unique("DUP")
    r = await client.put(f"/v1/products/{sku}/stock", json={"on_hand": 5}, headers=SHOP)
    assert r.status_code == 200
    first, second = unique("shop:a"), unique("shop:b")
    lines = [shop_orders_pb2.LineItem(line_id="1", sku=sku, quantity=2)]
    a = shop_orders_pb2.Order(order_ref=first, line_items=lines)
    b = shop_orders_pb2.Order(
        order_ref=second,
        line_items=[shop_orders_pb2.LineItem(line_id="1", sku=sku, quantity=9)],  # short
    )
    placed_a = shop_orders_pb2.OrderPlaced(order=a)
    # The two orders' keys may land on different partitions, whose order is not defined: each
    # step waits for the one before, so which order holds (or sells) what is not left to chance.
    await _send(
        settings,
        (placed_a, "dup-a-1"),
        (placed_a, "dup-a-1"),  # redelivered: the inbox drops it
        (placed_a, "dup-a-2"),  # the same content under a new id: the reservation holds once
    )

    async def a_held() -> bool:
        return await _state(db, first) == "held"

    await eventually(a_held, what="a held")
    await _send(settings, (shop_orders_pb2.OrderPlaced(order=b), unique("e")))

    async def held() -> bool:
        return await _state(db, second) == "held" and await _state(db, first) == "held"

    await eventually(held, what="both orders held")
    assert await _levels(db, sku) == (5, 5)  # 2 for a, 3 of the 9 b asked for
    # b is paid before a is cancelled, so b's sale cannot take a's released units.
    await _send(
        settings,
        (shop_orders_pb2.OrderPaid(order=b), unique("e")),
        (shop_orders_pb2.OrderPaid(order=b), unique("e")),
    )

    async def b_confirmed() -> bool:
        return await _state(db, second) == "confirmed"

    await eventually(b_confirmed, what="b confirmed")
    await _send(
        settings,
        (shop_orders_pb2.OrderCancelled(order=a), unique("e")),
        (shop_orders_pb2.OrderCancelled(order=a), unique("e")),
    )

    async def done() -> bool:
        return await _state(db, first) == "released" and await _state(db, second) == "confirmed"

    await eventually(done, what="a released, b confirmed")
    assert await _levels(db, sku) == (2, 0)  # a's 2 back; b sold the 3 it held
    async with db.sessionmaker() as s:
        await assert_ledger_is_the_stock(s, sku)
        rows = (
            await s.execute(
                text(
                    "SELECT order_ref, reason, delta, reserved_delta, author FROM stock_movements "
                    "WHERE sku = :s AND order_ref IS NOT NULL ORDER BY id"
                ),
                {"s": sku},
            )
        ).all()
    # Each movement names the event that made it.
    assert all(r.author.startswith("event:Order") for r in rows), rows
    by_order = sorted(tuple(r)[:4] for r in rows)
    assert by_order == sorted(
        [
            (first, "reserve", 0, 2),
            (first, "release", 0, -2),
            (second, "reserve", 0, 3),
            (second, "sale", -3, -3),
        ]
    )
