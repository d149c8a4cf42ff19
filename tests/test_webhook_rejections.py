"""What the gateway refuses never reaches Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from vafa.kit.settings import KafkaSettings
from vafa.kit.testing.shop import Line, ShopSimulator


@pytest.fixture
async def end_offsets() -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(bootstrap_servers=KafkaSettings().bootstrap_servers)
    await consumer.start()
    yield consumer
    await consumer.stop()


async def offsets(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    parts = consumer.partitions_for_topic("shop.orders.v1") or set()
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic("shop.orders.v1") or set()
    assert parts, "shop.orders.v1 has no partitions: the stack did not create its topics"
    return await consumer.end_offsets([TopicPartition("shop.orders.v1", p) for p in parts])


async def test_wrong_signature_and_malformed_body_reach_nothing(
    gateway: httpx.AsyncClient, shop: ShopSimulator, end_offsets: AIOKafkaConsumer, tag: str
) -> None:
    before = await offsets(end_offsets)
    body = shop.shopify_order(1, shop.persian_customer(4, tag=tag), [Line("A", 1, "1.00")])
    raw, headers = shop.shopify_delivery("orders/paid", body, event_id=f"evt-{tag}")

    forged = await gateway.post("/v1/webhooks/shopify", content=raw + b" ", headers=headers)
    assert forged.status_code == 401
    assert forged.headers["content-type"] == "application/problem+json"

    unsigned = {k: v for k, v in headers.items() if k != "x-shopify-hmac-sha256"}
    assert (
        await gateway.post("/v1/webhooks/shopify", content=raw, headers=unsigned)
    ).status_code == 401

    broken = b'{"id": 1, "line_items": ['
    _, broken_headers = shop.shopify_delivery("orders/paid", {}, event_id=f"evt2-{tag}")
    # Signed correctly over a body that is not JSON: authentic but unusable.
    import base64
    import hashlib
    import hmac

    secret = shop.secrets["VAFA_SHOPIFY_WEBHOOK_SECRET"].encode()
    broken_headers["x-shopify-hmac-sha256"] = base64.b64encode(
        hmac.new(secret, broken, hashlib.sha256).digest()
    ).decode()
    malformed = await gateway.post("/v1/webhooks/shopify", content=broken, headers=broken_headers)
    assert 400 <= malformed.status_code < 500
    assert malformed.headers["content-type"] == "application/problem+json"

    assert await offsets(end_offsets) == before


async def test_api_needs_a_key(gateway: httpx.AsyncClient) -> None:
    r = await gateway.get("/v1/products/ANY/stock", headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
