"""`POST /v1/webhooks/{shopify,woocommerce,standard}`: verify, normalise, publish, answer.

Order of checks, the same for every platform: the receiver is configured (else 503), the
signature over the raw bytes holds (else 401), the headers we need are there (else 400), the
body is JSON (else 400) and can be normalised (else 422). Only then is the event written to
Kafka, and the 202 goes out after Kafka has acknowledged it. Any refusal writes nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from vafa.gateway.config import GatewaySettings
from vafa.gateway.publisher import EventPublisher
from vafa.gateway.webhooks import normalise, service
from vafa.gateway.webhooks.schemas import (
    ORDER_TYPES,
    StandardEnvelope,
    StandardOrderWebhook,
    WebhookReceipt,
)
from vafa.gateway.webhooks.signatures import (
    SignatureError,
    StandardVerifier,
    verify_base64_hmac_sha256,
)
from vafa.kit.errors import Problem

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_WOO_PING = re.compile(rb"webhook_id=[0-9]{1,20}")

_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted and durably written to Kafka, or ignored (see `status`)."},
}


def _raw_body_doc(description: str, schema_ref: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = (
        {"$ref": f"#/components/schemas/{schema_ref}"}
        if schema_ref
        else {"type": "object", "additionalProperties": True}
    )
    return {
        "security": [],
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        },
    }


def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def _publisher(request: Request) -> EventPublisher:
    publisher: EventPublisher = request.app.state.publisher
    return publisher


_DISPLAY = {"shopify": "Shopify", "woocommerce": "WooCommerce", "standard": "Standard Webhooks"}


def _not_configured(platform: str, env: str) -> Problem:
    service.WEBHOOKS.labels(platform, "not_configured").inc()
    return Problem(
        503,
        f"{_DISPLAY[platform]} webhooks are not configured on this gateway ({env} is not set).",
        type="webhook-not-configured",
    )


def _unauthorized(platform: str, exc: SignatureError) -> Problem:
    service.WEBHOOKS.labels(platform, "bad_signature").inc()
    return Problem(
        401,
        f"The webhook signature could not be verified: {exc}.",
        type="invalid-signature",
    )


def _bad_request(platform: str, detail: str, type_: str = "bad-webhook") -> Problem:
    service.WEBHOOKS.labels(platform, "rejected").inc()
    return Problem(400, detail, type=type_)


def _parse(platform: str, raw: bytes) -> Any:
    try:
        return normalise.parse_json(raw)
    except normalise.BadJson as exc:
        raise _bad_request(
            platform, f"The body is not valid JSON: {exc}", "malformed-json"
        ) from None


def _unprocessable(platform: str, errors: list[dict[str, str]]) -> Problem:
    service.WEBHOOKS.labels(platform, "rejected").inc()
    first = errors[0]
    return Problem(
        422,
        f"The body cannot be read as an order: {first['pointer']}: {first['detail']}",
        type="unprocessable-webhook",
        errors=errors,
    )


def _ignored(platform: str, reason: str, status: int = 202) -> JSONResponse:
    service.WEBHOOKS.labels(platform, "ignored").inc()
    receipt = WebhookReceipt(status="ignored", reason=reason)
    return JSONResponse(receipt.model_dump(exclude_none=True), status_code=status)


def _accepted(receipt: WebhookReceipt) -> JSONResponse:
    return JSONResponse(receipt.model_dump(exclude_none=True), status_code=202)


def _iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------


@router.post(
    "/shopify",
    status_code=202,
    response_model=WebhookReceipt,
    response_model_exclude_none=True,
    responses=_RESPONSES,
    summary="Receive a Shopify order or refund webhook",
    description=(
        "Topics orders/create, orders/paid, orders/cancelled and refunds/create become "
        "OrderPlaced, OrderPaid, OrderFulfilled, OrderCancelled and OrderRefunded on `shop.orders.v1`; the event "
        "type comes from `X-Shopify-Topic`, never from the body. Other topics are acknowledged "
        "and ignored. The body is the order (or refund) resource exactly as Shopify sends it. "
        "A refund's amount is the sum of its successful refund transactions; as the refund has "
        "no currency of its own, it is the transactions' currency, else the shop currency of "
        "its `*_set` money objects."
    ),
    openapi_extra=_raw_body_doc("The Shopify resource, signed with X-Shopify-Hmac-Sha256."),
)
async def shopify(
    request: Request,
    x_shopify_hmac_sha256: Annotated[
        str | None, Header(description="Base64 HMAC-SHA256 of the raw body. Required.")
    ] = None,
    x_shopify_topic: Annotated[
        str | None, Header(description="e.g. orders/paid. Required.")
    ] = None,
    x_shopify_shop_domain: Annotated[
        str | None, Header(description="e.g. jsmith.myshopify.com. Required.")
    ] = None,
    x_shopify_event_id: Annotated[str | None, Header(description="Dedupe key.")] = None,
    x_shopify_webhook_id: Annotated[
        str | None, Header(description="Dedupe key when X-Shopify-Event-Id is absent.")
    ] = None,
    x_shopify_triggered_at: Annotated[str | None, Header(description="Event time.")] = None,
) -> JSONResponse:
    platform = "shopify"
    settings = _settings(request)
    secret = settings.shopify_webhook_secret.get_secret_value()
    if not secret:
        raise _not_configured(platform, "VAFA_SHOPIFY_WEBHOOK_SECRET")
    raw = await request.body()
    try:
        verify_base64_hmac_sha256(secret, raw, x_shopify_hmac_sha256)
    except SignatureError as exc:
        raise _unauthorized(platform, exc) from None
    if not x_shopify_topic:
        raise _bad_request(platform, "The X-Shopify-Topic header is missing.")
    try:
        shop = normalise.shop_from_domain(x_shopify_shop_domain)
    except ValueError as exc:
        raise _bad_request(platform, f"X-Shopify-Shop-Domain {exc}.") from None
    delivery_id = x_shopify_event_id or x_shopify_webhook_id
    if not delivery_id:
        raise _bad_request(platform, "Neither X-Shopify-Event-Id nor X-Shopify-Webhook-Id is set.")
    body = _parse(platform, raw)
    try:
        result = normalise.shopify_event(x_shopify_topic, body, shop=shop)
    except normalise.NormaliseError as exc:
        raise _unprocessable(platform, [{"pointer": exc.pointer, "detail": exc.detail}]) from None
    if isinstance(result, normalise.Ignored):
        return _ignored(platform, result.reason)
    topic = x_shopify_topic.strip().lower()
    receipt = await service.publish(
        result,
        publisher=_publisher(request),
        settings=settings,
        platform=platform,
        ce_id=service.event_id(platform, shop, topic, delivery_id),
        occurred_at=_iso(x_shopify_triggered_at),
    )
    return _accepted(receipt)


@router.post(
    "/woocommerce",
    status_code=202,
    response_model=WebhookReceipt,
    response_model_exclude_none=True,
    responses={
        **_RESPONSES,
        200: {"description": "WooCommerce's creation ping (`webhook_id=<id>`), acknowledged."},
    },
    summary="Receive a WooCommerce order webhook",
    description=(
        "Topics order.created and order.updated, mapped by the order's `status`: pending and "
        "on-hold → OrderPlaced, processing and completed → OrderPaid, cancelled and failed → "
        "OrderCancelled, refunded → OrderRefunded (whole order). Other statuses and topics are "
        "acknowledged and ignored. The unsigned creation ping is answered 200 with no effect."
    ),
    openapi_extra=_raw_body_doc("The wc/v3 order, signed with X-WC-Webhook-Signature."),
)
async def woocommerce(
    request: Request,
    x_wc_webhook_signature: Annotated[
        str | None, Header(description="Base64 HMAC-SHA256 of the raw body. Required.")
    ] = None,
    x_wc_webhook_topic: Annotated[str | None, Header(description="e.g. order.updated.")] = None,
    x_wc_webhook_source: Annotated[
        str | None, Header(description="The shop's URL; its host names the shop.")
    ] = None,
    x_wc_webhook_delivery_id: Annotated[str | None, Header(description="Dedupe key.")] = None,
    x_wc_webhook_id: Annotated[str | None, Header(description="The webhook's id.")] = None,
) -> JSONResponse:
    platform = "woocommerce"
    settings = _settings(request)
    raw = await request.body()
    # The ping WooCommerce sends when a webhook is created carries no signature and no data:
    # acknowledging it has no effect, so it needs no secret either.
    is_ping = _WOO_PING.fullmatch(raw.strip()) is not None
    if is_ping and not x_wc_webhook_signature:
        return _ignored(platform, "WooCommerce ping", status=200)
    secret = settings.woocommerce_webhook_secret.get_secret_value()
    if not secret:
        raise _not_configured(platform, "VAFA_WOOCOMMERCE_WEBHOOK_SECRET")
    try:
        verify_base64_hmac_sha256(secret, raw, x_wc_webhook_signature)
    except SignatureError as exc:
        raise _unauthorized(platform, exc) from None
    if is_ping:
        return _ignored(platform, "WooCommerce ping", status=200)
    if not x_wc_webhook_topic:
        raise _bad_request(platform, "The X-WC-Webhook-Topic header is missing.")
    try:
        shop = normalise.shop_from_source(x_wc_webhook_source)
    except ValueError as exc:
        raise _bad_request(platform, f"X-WC-Webhook-Source {exc}.") from None
    body = _parse(platform, raw)
    topic = x_wc_webhook_topic.strip().lower()
    try:
        result = normalise.woocommerce_event(topic, body, shop=shop)
    except normalise.NormaliseError as exc:
        raise _unprocessable(platform, [{"pointer": exc.pointer, "detail": exc.detail}]) from None
    if isinstance(result, normalise.Ignored):
        return _ignored(platform, result.reason)
    delivery_id = x_wc_webhook_delivery_id or normalise.woocommerce_fallback_delivery_id(
        x_wc_webhook_id or "", topic, body
    )
    receipt = await service.publish(
        result,
        publisher=_publisher(request),
        settings=settings,
        platform=platform,
        ce_id=service.event_id(platform, shop, topic, delivery_id),
        occurred_at=None,
    )
    return _accepted(receipt)


def _pydantic_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        pointer = "/" + "/".join(
            str(p).replace("~", "~0").replace("/", "~1") for p in err.get("loc", ())
        )
        out.append({"pointer": pointer, "detail": err.get("msg", "invalid")})
    return out or [{"pointer": "/", "detail": "invalid"}]


@router.post(
    "/standard",
    status_code=202,
    response_model=WebhookReceipt,
    response_model_exclude_none=True,
    responses=_RESPONSES,
    summary="Receive an order as a Standard Webhook",
    description=(
        "For shops without a platform plug-in: a Standard Webhooks message (`webhook-id`, "
        "`webhook-timestamp`, `webhook-signature`; the signature is checked with the reference "
        "library and a message more than 5 minutes old or new is refused). `type` "
        "order.placed | order.paid | order.fulfilled | order.cancelled | order.refunded with `data` in the Vafa "
        "order schema (`VafaOrder`, money in integer minor units). Other types are "
        "acknowledged and ignored."
    ),
    openapi_extra=_raw_body_doc("A signed Standard Webhooks message.", "StandardOrderWebhook"),
)
async def standard(
    request: Request,
    webhook_id: Annotated[str | None, Header(description="Message id; the dedupe key.")] = None,
    webhook_timestamp: Annotated[str | None, Header(description="Unix seconds.")] = None,
    webhook_signature: Annotated[
        str | None, Header(description="Space-separated `v1,<base64>` signatures.")
    ] = None,
) -> JSONResponse:
    platform = "standard"
    settings = _settings(request)
    verifier: StandardVerifier | None = request.app.state.standard_verifier
    if verifier is None:
        raise _not_configured(platform, "VAFA_STANDARD_WEBHOOK_SECRET")
    raw = await request.body()
    headers = {
        "webhook-id": webhook_id or "",
        "webhook-timestamp": webhook_timestamp or "",
        "webhook-signature": webhook_signature or "",
    }
    try:
        verifier.verify(raw, headers)
    except SignatureError as exc:
        raise _unauthorized(platform, exc) from None
    assert webhook_id  # verify() refuses a message without one
    body = _parse(platform, raw)
    try:
        envelope = StandardEnvelope.model_validate(body)
    except ValidationError as exc:
        raise _unprocessable(platform, _pydantic_errors(exc)) from None
    if envelope.type not in ORDER_TYPES:
        return _ignored(platform, f"Standard Webhooks type {envelope.type!r} is not an order event")
    try:
        message = StandardOrderWebhook.model_validate(body)
    except ValidationError as exc:
        raise _unprocessable(platform, _pydantic_errors(exc)) from None
    result = normalise.standard_event(message)
    receipt = await service.publish(
        result,
        publisher=_publisher(request),
        settings=settings,
        platform=platform,
        ce_id=service.event_id(platform, message.data.shop, message.type, webhook_id),
        occurred_at=message.timestamp,
    )
    return _accepted(receipt)
