"""A marketer's segment follows the shop's orders on its own: the second order of a book moves
the buyer in (one SegmentEntered), cancelling it moves them out (one SegmentExited), through the
gateway, profile and segmentation with nothing but Kafka between them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.helpers import customer_by_email
from vafa.events.v1 import segmentation_pb2
from vafa.kit import cloudevents
from vafa.kit.settings import KafkaSettings
from vafa.kit.testing.poll import eventually
from vafa.kit.testing.shop import Line, ShopSimulator

TOPIC = "segmentation.memberships.v1"


@pytest.fixture
async def memberships() -> AsyncIterator[AIOKafkaConsumer]:
    """Reads segmentation.memberships.v1 from its end as the test starts."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=KafkaSettings().bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    parts = consumer.partitions_for_topic(TOPIC) or set()
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(TOPIC) or set()
    assert parts, f"{TOPIC} has no partitions: the stack did not create its topics"
    tps = [TopicPartition(TOPIC, p) for p in parts]
    consumer.assign(tps)
    for tp, offset in (await consumer.end_offsets(tps)).items():
        consumer.seek(tp, offset)
    yield consumer
    await consumer.stop()


async def read_for(consumer: AIOKafkaConsumer, segment_id: str, seen: list[Any]) -> list[Any]:
    """Adds to `seen` this segment's entries and exits that arrived since the last read."""
    batches = await consumer.getmany(timeout_ms=500)
    for records in batches.values():
        for record in records:
            msg = cloudevents.decode(record.headers, record.value).message
            moves = (segmentation_pb2.SegmentEntered, segmentation_pb2.SegmentExited)
            if isinstance(msg, moves) and msg.segment_id == segment_id:
                seen.append(msg)
    return seen


async def test_orders_move_a_buyer_in_and_out_of_a_segment(
    gateway: httpx.AsyncClient,
    shop: ShopSimulator,
    memberships: AIOKafkaConsumer,
    tag: str,
) -> None:
    sku = f"FANTASY-{tag}"
    created = await gateway.post(
        "/v1/segments",
        json={
            "key": f"twice-{tag}",
            "name": "Bought the fantasy series twice",
            "definition": {
                "all": [
                    {"purchased": {"sku": sku}, "op": "gte", "value": 2, "within_days": 365},
                    {"field": "orders_count", "op": "gte", "value": 2},
                ]
            },
        },
    )
    assert created.status_code == 201, created.text
    segment = created.json()
    assert segment["member_count"] == 0

    customer = shop.persian_customer(5, tag=tag)
    base = int(tag, 16) % 10**11
    first = shop.shopify_order(base, customer, [Line(sku, 1, "20.00")])
    raw, headers = shop.shopify_delivery("orders/paid", first, event_id=f"evt-1-{tag}")
    assert (await gateway.post("/v1/webhooks/shopify", content=raw, headers=headers)).is_success
    customer_id = (await customer_by_email(gateway, customer.email))["id"]

    async def features(count: int) -> dict[str, Any] | None:
        r = await gateway.get(f"/v1/customers/{customer_id}/features")
        return r.json() if r.status_code == 200 and r.json()["orders_count"] == count else None

    await eventually(lambda: features(1), what="one order in the feature store")
    why = (await gateway.get(f"/v1/segments/{segment['id']}/explain/{customer_id}")).json()
    assert why["verdict"] is False and why["member"] is False
    assert [c["result"] for c in why["tree"]["children"]] == [False, False]

    second = shop.shopify_order(base + 1, customer, [Line(sku, 1, "20.00")])
    raw, headers = shop.shopify_delivery("orders/paid", second, event_id=f"evt-2-{tag}")
    assert (await gateway.post("/v1/webhooks/shopify", content=raw, headers=headers)).is_success

    async def current() -> list[str]:
        r = await gateway.get(f"/v1/customers/{customer_id}/segments")
        assert r.status_code == 200, r.text
        return [m["segment_key"] for m in r.json()["current"]]

    async def member() -> bool:
        return f"twice-{tag}" in await current()

    await eventually(member, what="the buyer in the segment after the second order")
    why = (await gateway.get(f"/v1/segments/{segment['id']}/explain/{customer_id}")).json()
    assert why["verdict"] is True and why["member"] is True

    cancelled = {**second, "cancelled_at": second["created_at"], "cancel_reason": "customer"}
    raw, headers = shop.shopify_delivery("orders/cancelled", cancelled, event_id=f"evt-3-{tag}")
    assert (await gateway.post("/v1/webhooks/shopify", content=raw, headers=headers)).is_success

    async def left() -> bool:
        return f"twice-{tag}" not in await current()

    await eventually(left, what="the buyer out of the segment after the cancellation")

    seen: list[Any] = []

    async def both_events() -> bool:
        await read_for(memberships, segment["id"], seen)
        return len(seen) >= 2

    await eventually(both_events, what="SegmentEntered and SegmentExited on the broker")
    await read_for(memberships, segment["id"], seen)  # anything extra would show here
    assert [type(m) for m in seen] == [
        segmentation_pb2.SegmentEntered,
        segmentation_pb2.SegmentExited,
    ]
    assert {m.customer_id for m in seen} == {customer_id}
    history = (await gateway.get(f"/v1/segments/{segment['id']}/history")).json()
    assert len(history["items"]) == 1 and history["items"][0]["exited_at"] is not None
