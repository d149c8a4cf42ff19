"""Helpers for tests, the end-to-end suite and the bench: sign webhook deliveries the way the
platforms do, and check problem+json answers."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from vafa.gateway.webhooks.signatures import sign_base64_hmac_sha256


def shopify_headers(
    body: bytes,
    topic: str,
    *,
    secret: str,
    event_id: str = "evt-1",
    shop: str = "jsmith.myshopify.com",
) -> dict[str, str]:
    """The headers of a Shopify delivery (X-Shopify-Hmac-Sha256 over `body`)."""
    return {
        "content-type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign_base64_hmac_sha256(secret, body),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Webhook-Id": f"wh-{event_id}",
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-Triggered-At": "2026-11-22T10:00:00.000000Z",
    }


def woocommerce_headers(
    body: bytes,
    topic: str = "order.created",
    *,
    secret: str,
    delivery_id: str | None = "dlv-1",
    source: str = "https://shop.example.com/",
) -> dict[str, str]:
    """The headers of a WooCommerce delivery (X-WC-Webhook-Signature over `body`)."""
    resource, _, event = topic.partition(".")
    headers = {
        "content-type": "application/json",
        "X-WC-Webhook-Source": source,
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": sign_base64_hmac_sha256(secret, body),
        "X-WC-Webhook-ID": "31",
    }
    if delivery_id is not None:
        headers["X-WC-Webhook-Delivery-ID"] = delivery_id
    return headers


def standard_headers(
    body: bytes, *, secret: str, msg_id: str = "msg_1", at: float | None = None
) -> dict[str, str]:
    """Standard Webhooks headers, signed with the reference library."""
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
    }


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    """Asserts an RFC 9457 answer with this status and returns its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.headers
    body: dict[str, Any] = json.loads(r.content)
    assert body["status"] == status, body
    return body
