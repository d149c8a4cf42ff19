"""From a normalised order event to a CloudEvent on `shop.orders.v1`, acknowledged by Kafka."""

from __future__ import annotations

from datetime import datetime

import structlog
from prometheus_client import Counter

from vafa.gateway.config import GatewaySettings
from vafa.gateway.publisher import EventPublisher, PublishError
from vafa.gateway.webhooks.normalise import Normalised
from vafa.gateway.webhooks.schemas import WebhookReceipt
from vafa.kit import cloudevents
from vafa.kit.errors import Problem
from vafa.kit.logs import current_traceparent

TOPIC = "shop.orders.v1"
SOURCE = "/vafa/gateway"

WEBHOOKS = Counter(
    "vafa_gateway_webhooks_total",
    "Webhook deliveries by platform and outcome",
    ["platform", "outcome"],
)

log = structlog.get_logger(__name__)


def event_id(platform: str, shop: str, topic: str, delivery_id: str) -> str:
    """Deterministic: the same delivery (same platform, shop, topic and delivery id) always
    gives the same ce_id, so consumers' inboxes drop a redelivered copy. The topic is part of
    the key so that one platform event fanning out to two topics stays two events."""
    return cloudevents.deterministic_id(platform, shop, topic, delivery_id)


async def publish(
    normalised: Normalised,
    *,
    publisher: EventPublisher,
    settings: GatewaySettings,
    platform: str,
    ce_id: str,
    occurred_at: datetime | None,
) -> WebhookReceipt:
    headers, value = cloudevents.encode(
        normalised.message,
        source=SOURCE,
        subject=normalised.order_ref,
        event_id=ce_id,
        time=occurred_at,
        traceparent=current_traceparent.get(),
    )
    try:
        await publisher.publish(
            settings.kafka.topic(TOPIC),
            key=normalised.order_ref,
            value=value,
            headers=headers,
            timeout=settings.kafka_send_timeout_seconds,
        )
    except PublishError as exc:
        WEBHOOKS.labels(platform, "kafka_unavailable").inc()
        log.error("webhook_not_published", platform=platform, event_id=ce_id, error=str(exc))
        raise Problem(
            503,
            "The event could not be stored right now; nothing was recorded. Retry later.",
            type="event-store-unavailable",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        ) from None
    WEBHOOKS.labels(platform, "accepted").inc()
    log.info(
        "webhook_published",
        platform=platform,
        event_id=ce_id,
        type=normalised.type,
        order_ref=normalised.order_ref,
    )
    return WebhookReceipt(
        status="accepted", event_id=ce_id, type=normalised.type, order_ref=normalised.order_ref
    )
