"""Thin handlers: decode a shop order event, attribute it."""

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import shop_orders_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import Handler
from vafa.profile.config import Settings
from vafa.profile.orders import service
from vafa.profile.orders.service import PurchaseKind


def order_handlers(settings: Settings) -> dict[type, Handler]:
    region = settings.default_region

    async def on_placed(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, shop_orders_pb2.OrderPlaced)
        await service.record_order_event(
            session,
            kind=PurchaseKind.placed,
            order=msg.order,
            event_id=env.id,
            occurred_at=env.time,
            default_region=region,
        )

    async def on_paid(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, shop_orders_pb2.OrderPaid)
        await service.record_order_event(
            session,
            kind=PurchaseKind.paid,
            order=msg.order,
            event_id=env.id,
            occurred_at=env.time,
            default_region=region,
        )

    async def on_cancelled(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, shop_orders_pb2.OrderCancelled)
        await service.record_order_event(
            session,
            kind=PurchaseKind.cancelled,
            order=msg.order,
            event_id=env.id,
            occurred_at=env.time,
            default_region=region,
            reason=msg.reason,
        )

    async def on_refunded(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, shop_orders_pb2.OrderRefunded)
        await service.record_order_event(
            session,
            kind=PurchaseKind.refunded,
            order=msg.order,
            event_id=env.id,
            occurred_at=env.time,
            default_region=region,
            refund=msg.refund,
        )

    return {
        shop_orders_pb2.OrderPlaced: on_placed,
        shop_orders_pb2.OrderPaid: on_paid,
        shop_orders_pb2.OrderCancelled: on_cancelled,
        shop_orders_pb2.OrderRefunded: on_refunded,
    }
