"""Thin handlers: decode a shop order event, call the stock service."""

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import shop_orders_pb2
from vafa.inventory.config import Settings
from vafa.inventory.stock import service
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import Handler


def order_handlers(settings: Settings) -> dict[type, Handler]:
    threshold = settings.default_low_stock_threshold

    async def on_sale(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, shop_orders_pb2.OrderPlaced | shop_orders_pb2.OrderPaid)
        await service.record_sale(session, msg.order, default_threshold=threshold)

    async def on_cancelled(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, shop_orders_pb2.OrderCancelled)
        await service.record_cancellation(session, msg.order, default_threshold=threshold)

    async def on_refunded(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, shop_orders_pb2.OrderRefunded)
        await service.record_refund(session, msg.order, msg.refund, default_threshold=threshold)

    return {
        shop_orders_pb2.OrderPlaced: on_sale,
        shop_orders_pb2.OrderPaid: on_sale,
        shop_orders_pb2.OrderCancelled: on_cancelled,
        shop_orders_pb2.OrderRefunded: on_refunded,
    }
