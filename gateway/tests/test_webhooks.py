"""The webhook receivers through the real app, and what really reaches (or does not reach) the
shop.orders.v1 topic on the real broker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from vafa.events.v1.shop_orders_pb2 import OrderCancelled, OrderPaid, OrderPlaced, OrderRefunded
from vafa.gateway.testing import (
    assert_problem,
    shopify_headers,
    standard_headers,
    woocommerce_headers,
)

Load = Callable[[str], bytes]
ORDER_REF = "shopify:jsmith.myshopify.com:820982911946154508"


async def post_shopify(
    gw: httpx.AsyncClient, body: bytes, topic: str, secret: str, **kw: Any
) -> httpx.Response:
    return await gw.post(
        "/v1/webhooks/shopify",
        content=body,
        headers=shopify_headers(body, topic, secret=secret, **kw),
    )


# --- Shopify ------------------------------------------------------------------------------------


async def test_shopify_create_paid_cancelled_become_three_event_types(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    mark = await orders.mark()
    answers = []
    for topic in ("create", "paid", "cancelled"):
        body = fixture_bytes(f"shopify_orders_{topic}.json")
        r = await post_shopify(gw, body, f"orders/{topic}", secrets.shopify, event_id=f"t3-{topic}")
        assert r.status_code == 202, r.text
        answers.append(r.json())
    assert [a["type"] for a in answers] == [
        "vafa.events.v1.OrderPlaced",
        "vafa.events.v1.OrderPaid",
        "vafa.events.v1.OrderCancelled",
    ]
    assert all(a["status"] == "accepted" and a["order_ref"] == ORDER_REF for a in answers)
    records = await orders.since(mark)
    assert len(records) == 3
    # One key per order: the three land on one partition, in order.
    assert [r.key for r in records] == [ORDER_REF] * 3
    assert [r.envelope.type for r in records] == [a["type"] for a in answers]
    assert [r.envelope.id for r in records] == [a["event_id"] for a in answers]
    assert len({r.envelope.id for r in records}) == 3
    for r in records:
        assert r.envelope.source == "/vafa/gateway"
        assert r.envelope.subject == ORDER_REF
        assert r.headers["content-type"] == "application/protobuf"
        assert r.headers["ce_specversion"] == "1.0"
        assert r.headers["ce_type"] == r.envelope.type
        assert r.headers["traceparent"].startswith("00-")
    placed, paid, cancelled = (r.envelope.message for r in records)
    assert isinstance(placed, OrderPlaced) and isinstance(paid, OrderPaid)
    assert isinstance(cancelled, OrderCancelled) and cancelled.reason == "customer"
    assert placed.order.total.amount_minor == 40495 and len(placed.order.line_items) == 5
    assert placed.order.order_id == "820982911946154508"


async def test_shopify_same_delivery_twice_has_the_same_event_id(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    body = fixture_bytes("shopify_orders_paid.json")
    mark = await orders.mark()
    first = await post_shopify(gw, body, "orders/paid", secrets.shopify, event_id="dup-1")
    second = await post_shopify(gw, body, "orders/paid", secrets.shopify, event_id="dup-1")
    other = await post_shopify(gw, body, "orders/paid", secrets.shopify, event_id="dup-2")
    assert first.status_code == second.status_code == other.status_code == 202
    assert first.json()["event_id"] == second.json()["event_id"] != other.json()["event_id"]
    records = await orders.since(mark)
    # Both copies are written (the gateway is stateless); consumers' inboxes drop the second.
    assert [r.envelope.id for r in records] == [
        first.json()["event_id"],
        first.json()["event_id"],
        other.json()["event_id"],
    ]


async def test_shopify_webhook_id_is_the_fallback_dedupe_key(
    gw: httpx.AsyncClient, fixture_bytes: Load, secrets: Any
) -> None:
    body = fixture_bytes("shopify_orders_paid.json")
    ids = []
    for _ in range(2):
        headers = shopify_headers(body, "orders/paid", secret=secrets.shopify, event_id="x")
        del headers["X-Shopify-Event-Id"]
        headers["X-Shopify-Webhook-Id"] = "only-webhook-id"
        r = await gw.post("/v1/webhooks/shopify", content=body, headers=headers)
        assert r.status_code == 202, r.text
        ids.append(r.json()["event_id"])
    assert ids[0] == ids[1]


async def test_shopify_refund(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    body = fixture_bytes("shopify_refunds_create.json")
    mark = await orders.mark()
    r = await post_shopify(gw, body, "refunds/create", secrets.shopify, event_id="refund-1")
    assert r.status_code == 202, r.text
    [record] = await orders.since(mark)
    msg = record.envelope.message
    assert isinstance(msg, OrderRefunded)
    assert (msg.refund.amount.amount_minor, msg.refund.amount.currency) == (8500, "USD")
    assert len(msg.refund.lines) == 5 and record.key == ORDER_REF


async def test_shopify_bad_or_missing_signature_is_401_and_writes_nothing(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    body = fixture_bytes("shopify_orders_create.json")
    mark = await orders.mark()
    wrong_secret = shopify_headers(body, "orders/create", secret="not-the-secret")
    missing = shopify_headers(body, "orders/create", secret=secrets.shopify)
    del missing["X-Shopify-Hmac-Sha256"]
    garbage = {**missing, "X-Shopify-Hmac-Sha256": "%%%not base64%%%"}
    tampered_body = body.replace(b"404.95", b"004.95")
    tampered = shopify_headers(body, "orders/create", secret=secrets.shopify)
    for content, headers in (
        (body, wrong_secret),
        (body, missing),
        (body, garbage),
        (tampered_body, tampered),
    ):
        r = await gw.post("/v1/webhooks/shopify", content=content, headers=headers)
        p = assert_problem(r, 401)
        assert p["type"].endswith("/invalid-signature")
    assert await orders.since(mark) == []


async def test_shopify_malformed_json_is_400_and_writes_nothing(
    gw: httpx.AsyncClient, orders: Any, secrets: Any
) -> None:
    mark = await orders.mark()
    body = b'{"id": 1, "currency": "USD",'
    r = await post_shopify(gw, body, "orders/create", secrets.shopify)
    p = assert_problem(r, 400)
    assert "not valid JSON" in p["detail"]
    surrogate = b'{"id": 1, "currency": "USD", "email": "x\\udc00"}'
    r = await post_shopify(gw, surrogate, "orders/create", secrets.shopify)
    assert "surrogate" in assert_problem(r, 400)["detail"]
    assert await orders.since(mark) == []


async def test_shopify_unreadable_order_is_422_naming_the_field(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    data = json.loads(fixture_bytes("shopify_orders_create.json"))
    data["line_items"][3]["price"] = "159.999"
    body = json.dumps(data).encode()
    mark = await orders.mark()
    r = await post_shopify(gw, body, "orders/paid", secrets.shopify)
    p = assert_problem(r, 422)
    assert p["errors"] == [
        {
            "pointer": "/line_items/3/price",
            "detail": "'159.999' has more decimals than USD allows (2)",
        }
    ]
    assert "/line_items/3/price" in p["detail"]
    assert await orders.since(mark) == []


async def test_shopify_other_topics_are_ignored_but_still_need_a_signature(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    body = fixture_bytes("shopify_orders_create.json")
    mark = await orders.mark()
    r = await post_shopify(gw, body, "orders/updated", secrets.shopify)
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    r = await post_shopify(gw, body, "orders/updated", "wrong")
    assert_problem(r, 401)
    assert await orders.since(mark) == []


async def test_shopify_missing_shop_domain_is_400(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    body = fixture_bytes("shopify_orders_create.json")
    headers = shopify_headers(body, "orders/create", secret=secrets.shopify)
    del headers["X-Shopify-Shop-Domain"]
    mark = await orders.mark()
    p = assert_problem(await gw.post("/v1/webhooks/shopify", content=body, headers=headers), 400)
    assert "X-Shopify-Shop-Domain" in p["detail"]
    assert await orders.since(mark) == []


# --- WooCommerce --------------------------------------------------------------------------------


async def test_woocommerce_created_and_updated(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    mark = await orders.mark()
    for name, topic in (("created", "order.created"), ("updated", "order.updated")):
        body = fixture_bytes(f"woocommerce_order_{name}.json")
        headers = woocommerce_headers(
            body, topic, secret=secrets.woocommerce, delivery_id=f"d-{name}"
        )
        r = await gw.post("/v1/webhooks/woocommerce", content=body, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json()["type"] == "vafa.events.v1.OrderPaid"
        assert r.json()["order_ref"] == "woocommerce:shop.example.com:727"
    records = await orders.since(mark)
    assert [r.key for r in records] == ["woocommerce:shop.example.com:727"] * 2
    statuses = [r.envelope.message.order.financial_status for r in records]
    assert statuses == ["processing", "completed"]
    assert records[0].envelope.message.order.total.amount_minor == 2935


async def test_woocommerce_persian_phone_reaches_kafka_untouched(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    data = json.loads(fixture_bytes("woocommerce_order_created.json"))
    data["status"] = "on-hold"
    data["billing"]["phone"] = "۰۹۱۲ ۳۴۵ ۶۷۸۹"
    data["billing"]["first_name"] = "مریم"
    body = json.dumps(data, ensure_ascii=False).encode()
    mark = await orders.mark()
    r = await gw.post(
        "/v1/webhooks/woocommerce",
        content=body,
        headers=woocommerce_headers(body, secret=secrets.woocommerce, delivery_id="fa-1"),
    )
    assert r.status_code == 202 and r.json()["type"] == "vafa.events.v1.OrderPlaced"
    [record] = await orders.since(mark)
    customer = record.envelope.message.order.customer
    assert customer.phone == "۰۹۱۲ ۳۴۵ ۶۷۸۹" and customer.first_name == "مریم"


async def test_woocommerce_without_delivery_id_dedupes_on_the_fallback(
    gw: httpx.AsyncClient, fixture_bytes: Load, secrets: Any
) -> None:
    body = fixture_bytes("woocommerce_order_updated.json")
    ids = set()
    for _ in range(2):
        headers = woocommerce_headers(
            body, "order.updated", secret=secrets.woocommerce, delivery_id=None
        )
        r = await gw.post("/v1/webhooks/woocommerce", content=body, headers=headers)
        assert r.status_code == 202, r.text
        ids.add(r.json()["event_id"])
    assert len(ids) == 1


async def test_woocommerce_ping_is_200_with_no_effect(gw: httpx.AsyncClient, orders: Any) -> None:
    mark = await orders.mark()
    r = await gw.post(
        "/v1/webhooks/woocommerce",
        content=b"webhook_id=31",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert await orders.since(mark) == []


async def test_woocommerce_unsigned_order_is_401(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    body = fixture_bytes("woocommerce_order_created.json")
    headers = woocommerce_headers(body, secret=secrets.woocommerce)
    del headers["X-WC-Webhook-Signature"]
    mark = await orders.mark()
    assert_problem(await gw.post("/v1/webhooks/woocommerce", content=body, headers=headers), 401)
    assert await orders.since(mark) == []


async def test_woocommerce_draft_is_ignored(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    data = json.loads(fixture_bytes("woocommerce_order_created.json"))
    data["status"] = "checkout-draft"
    body = json.dumps(data).encode()
    mark = await orders.mark()
    r = await gw.post(
        "/v1/webhooks/woocommerce",
        content=body,
        headers=woocommerce_headers(body, secret=secrets.woocommerce),
    )
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    assert "checkout-draft" in r.json()["reason"]
    assert await orders.since(mark) == []


# --- Standard Webhooks --------------------------------------------------------------------------


def standard_order(type_: str = "order.placed", **data: Any) -> bytes:
    payload = {
        "type": type_,
        "timestamp": "2026-11-22T10:00:00Z",
        "data": {
            "shop": "shop.example.ir",
            "order_id": "A-1001",
            "currency": "IRR",
            "total_minor": 12500000,
            "customer": {"phone": "+۹۸ ۹۱۲ ۱۲۳ ۴۵۶۷", "email": "sara@example.ir"},
            "line_items": [
                {
                    "line_id": "1",
                    "sku": "SAFFRON-5G",
                    "quantity": 1,
                    "unit_price_minor": 12500000,
                    "total_minor": 12500000,
                }
            ],
            **data,
        },
    }
    return json.dumps(payload, ensure_ascii=False).encode()


async def test_standard_order_placed(gw: httpx.AsyncClient, orders: Any, secrets: Any) -> None:
    body = standard_order()
    mark = await orders.mark()
    r = await gw.post(
        "/v1/webhooks/standard",
        content=body,
        headers=standard_headers(body, secret=secrets.standard, msg_id="msg_s1"),
    )
    assert r.status_code == 202, r.text
    assert r.json()["order_ref"] == "standard:shop.example.ir:A-1001"
    again = await gw.post(
        "/v1/webhooks/standard",
        content=body,
        headers=standard_headers(body, secret=secrets.standard, msg_id="msg_s1"),
    )
    assert again.json()["event_id"] == r.json()["event_id"]
    records = await orders.since(mark)
    assert len(records) == 2
    order = records[0].envelope.message.order
    assert isinstance(records[0].envelope.message, OrderPlaced)
    assert (order.total.amount_minor, order.currency) == (12500000, "IRR")
    assert order.customer.phone == "+۹۸ ۹۱۲ ۱۲۳ ۴۵۶۷"
    assert records[0].envelope.time.isoformat().startswith("2026-11-22T10:00:00")


async def test_standard_contact_created_fixture_is_ignored(
    gw: httpx.AsyncClient, orders: Any, fixture_bytes: Load, secrets: Any
) -> None:
    body = fixture_bytes("standard_webhooks_contact_created_full.json")
    mark = await orders.mark()
    r = await gw.post(
        "/v1/webhooks/standard",
        content=body,
        headers=standard_headers(body, secret=secrets.standard),
    )
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    assert await orders.since(mark) == []


async def test_standard_expired_timestamp_and_bad_signature_are_401(
    gw: httpx.AsyncClient, orders: Any, secrets: Any
) -> None:
    body = standard_order()
    mark = await orders.mark()
    too_old = standard_headers(body, secret=secrets.standard, at=time.time() - 600)
    too_new = standard_headers(body, secret=secrets.standard, at=time.time() + 600)
    other_key = standard_headers(body, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    malformed = {**standard_headers(body, secret=secrets.standard), "webhook-signature": "garbage"}
    no_id = standard_headers(body, secret=secrets.standard)
    del no_id["webhook-id"]
    for headers in (too_old, too_new, other_key, malformed, no_id):
        assert_problem(await gw.post("/v1/webhooks/standard", content=body, headers=headers), 401)
    assert await orders.since(mark) == []


async def test_standard_invalid_order_is_422_and_writes_nothing(
    gw: httpx.AsyncClient, orders: Any, secrets: Any
) -> None:
    body = standard_order(total_minor=125000.5)
    mark = await orders.mark()
    r = await gw.post(
        "/v1/webhooks/standard",
        content=body,
        headers=standard_headers(body, secret=secrets.standard),
    )
    p = assert_problem(r, 422)
    assert p["errors"][0]["pointer"] == "/data/total_minor"
    body = standard_order("order.refunded")
    r = await gw.post(
        "/v1/webhooks/standard",
        content=body,
        headers=standard_headers(body, secret=secrets.standard),
    )
    assert "refund" in assert_problem(r, 422)["detail"]
    body = b"{not json"
    r = await gw.post(
        "/v1/webhooks/standard",
        content=body,
        headers=standard_headers(body, secret=secrets.standard),
    )
    assert_problem(r, 400)
    assert await orders.since(mark) == []


# --- limits and failure modes -------------------------------------------------------------------


async def test_body_over_the_limit_is_413(gw: httpx.AsyncClient, orders: Any, secrets: Any) -> None:
    body = b'{"pad": "' + b"x" * (1_048_576 + 10) + b'"}'
    mark = await orders.mark()
    r = await post_shopify(gw, body, "orders/create", secrets.shopify)
    assert_problem(r, 413)

    async def chunks() -> Any:  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b"x" * 100_000

    headers = shopify_headers(b"", "orders/create", secret=secrets.shopify)
    r = await gw.post("/v1/webhooks/shopify", content=chunks(), headers=headers)
    assert_problem(r, 413)
    assert await orders.since(mark) == []


async def test_unconfigured_secrets_fail_closed(
    orders: Any, fixture_bytes: Load, secrets: Any, settings_factory: Any, gateway_factory: Any
) -> None:
    settings = settings_factory(
        shopify_webhook_secret="", woocommerce_webhook_secret="", standard_webhook_secret=""
    )
    body = fixture_bytes("shopify_orders_create.json")
    woo = fixture_bytes("woocommerce_order_created.json")
    std = standard_order()
    mark = await orders.mark()
    async with gateway_factory(settings) as client:
        r = await post_shopify(client, body, "orders/create", secrets.shopify)
        assert "VAFA_SHOPIFY_WEBHOOK_SECRET" in assert_problem(r, 503)["detail"]
        r = await client.post(
            "/v1/webhooks/woocommerce",
            content=woo,
            headers=woocommerce_headers(woo, secret=secrets.woocommerce),
        )
        assert_problem(r, 503)
        r = await client.post(
            "/v1/webhooks/standard",
            content=std,
            headers=standard_headers(std, secret=secrets.standard),
        )
        assert_problem(r, 503)
        # The creation ping has no effect, so it is still acknowledged.
        r = await client.post("/v1/webhooks/woocommerce", content=b"webhook_id=7")
        assert r.status_code == 200
    assert await orders.since(mark) == []


async def test_kafka_down_is_503_with_retry_after(
    fixture_bytes: Load, secrets: Any, settings_factory: Any, gateway_factory: Any, kafka: Any
) -> None:
    from vafa.gateway.testing import assert_problem as check

    dead = kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})
    settings = settings_factory(kafka=dead, kafka_send_timeout_seconds=2.0, retry_after_seconds=17)
    body = fixture_bytes("shopify_orders_paid.json")
    async with gateway_factory(settings) as client:
        started = time.monotonic()
        r = await post_shopify(client, body, "orders/paid", secrets.shopify)
        assert time.monotonic() - started < 10
        p = check(r, 503)
        assert r.headers["retry-after"] == "17"
        assert p["type"].endswith("/event-store-unavailable")
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["kafka"] != "ok"
