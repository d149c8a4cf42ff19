"""A shop order webhook becomes a customer file entry, loyalty points and a stock decrement,
across services that share nothing but Kafka events."""

from __future__ import annotations

import asyncio

import httpx
from aiokafka import AIOKafkaProducer

from tests.helpers import customer_by_email, points_reach
from vafa.events.v1 import common_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.kafka import make_producer
from vafa.kit.settings import KafkaSettings
from vafa.kit.testing.shop import Line, ShopSimulator


async def test_paid_order_reaches_profile_loyalty_and_inventory(
    gateway: httpx.AsyncClient, shop: ShopSimulator, tag: str
) -> None:
    sku = f"BOOK-{tag}"
    r = await gateway.put(f"/v1/products/{sku}/stock", json={"on_hand": 10})
    assert r.status_code == 200, r.text

    customer = shop.persian_customer(1, tag=tag)
    order_id = int(tag, 16) % 10**12
    body = shop.shopify_order(
        order_id, customer, [Line(sku, 3, "12.50"), Line(f"PEN-{tag}", 1, "4.99")]
    )
    raw, headers = shop.shopify_delivery("orders/paid", body, event_id=f"evt-{tag}")
    r = await gateway.post("/v1/webhooks/shopify", content=raw, headers=headers)
    assert r.status_code == 202, r.text

    file = await customer_by_email(gateway, customer.email)
    customer_id = file["id"]
    assert file["first_name"] == customer.first_name
    # 3 x 12.50 + 4.99 = 42.49 USD at 1 point per dollar
    await points_reach(gateway, customer_id, 42)

    async def sold() -> bool:
        stock = (await gateway.get(f"/v1/products/{sku}/stock")).json()
        return stock["on_hand"] == 7

    from vafa.kit.testing.poll import eventually

    await eventually(sold, what="stock 10 - 3")
    timeline = (await gateway.get(f"/v1/customers/{customer_id}")).json()["timeline"]
    assert any(e["kind"] == "order.paid" for e in timeline)


async def test_same_webhook_twice_credits_once(
    gateway: httpx.AsyncClient, shop: ShopSimulator, tag: str
) -> None:
    customer = shop.armenian_customer(2, tag=tag)
    body = shop.shopify_order(int(tag, 16) % 10**12, customer, [Line(f"X-{tag}", 2, "10.00")])
    raw, headers = shop.shopify_delivery("orders/paid", body, event_id=f"evt-{tag}")
    first = await gateway.post("/v1/webhooks/shopify", content=raw, headers=headers)
    second = await gateway.post("/v1/webhooks/shopify", content=raw, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["event_id"] == second.json()["event_id"]
    file = await customer_by_email(gateway, customer.email)
    await points_reach(gateway, file["id"], 20)
    await asyncio.sleep(2)  # give a second credit every chance to show up
    points = (await gateway.get(f"/v1/customers/{file['id']}/points")).json()
    assert points["balance"] == 20
    assert len([e for e in points["entries"] if e["kind"] == "earn"]) == 1


async def test_event_redelivered_by_kafka_credits_once(
    gateway: httpx.AsyncClient, shop: ShopSimulator, tag: str
) -> None:
    """The same CloudEvent (same ce_id) lands on shop.orders.v1 twice, as after a producer retry
    or a consumer crash before its offset commit."""
    customer = shop.persian_customer(3, tag=tag)
    order = shop_orders_pb2.Order(
        platform=shop_orders_pb2.PLATFORM_SHOPIFY,
        shop="redelivery.test",
        order_id=tag,
        order_ref=f"shopify:redelivery.test:{tag}",
        currency="USD",
        total=common_pb2.Money(amount_minor=5_000, currency="USD"),
        customer=shop_orders_pb2.ShopCustomer(email=customer.email, first_name=customer.first_name),
        line_items=[shop_orders_pb2.LineItem(line_id="1", sku="ANY", quantity=1)],
    )
    headers, value = cloudevents.encode(
        shop_orders_pb2.OrderPaid(order=order), source="/test/e2e", event_id=f"redelivered-{tag}"
    )
    producer: AIOKafkaProducer = make_producer(KafkaSettings(), client_id="e2e")
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(
                "shop.orders.v1", value=value, key=order.order_ref.encode(), headers=headers
            )
    finally:
        await producer.stop()
    file = await customer_by_email(gateway, customer.email)
    await points_reach(gateway, file["id"], 50)
    await asyncio.sleep(2)
    assert (await gateway.get(f"/v1/customers/{file['id']}/points")).json()["balance"] == 50
