"""The `loyalty.rewards` consumer: a paid order (profile.purchases.v1 PAID) gets the buyer the
after-purchase rewards (the next-purchase discount), once per (order, reward)."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler
from vafa.loyalty.rewards import service

TYPES = [profile_pb2.PurchaseAttributed]


def rewards_handler() -> BatchHandler:
    async def on_purchases(session: AsyncSession, envelopes: list[Envelope]) -> None:
        for env in envelopes:
            msg = env.message
            if not isinstance(msg, profile_pb2.PurchaseAttributed):
                raise TypeError(f"not a PurchaseAttributed: {env.type}")
            if msg.kind != profile_pb2.PURCHASE_KIND_PAID:
                continue
            if not msg.order.order_ref:
                raise ValueError("PurchaseAttributed without an order_ref")
            await service.after_purchase(
                session, customer_id=uuid.UUID(msg.customer_id), order_ref=msg.order.order_ref
            )

    return on_purchases
