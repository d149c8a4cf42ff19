"""Thin handlers: decode shop order events, call the stock code.

The worker applies a polled batch set-based (`order_batch_handler`); `order_handlers` applies
one event at a time through the single-movement service, with the same rules.
"""

from collections.abc import Sequence

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import shop_orders_pb2
from vafa.inventory.config import Settings
from vafa.inventory.stock import batch, service
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler, Handler

ORDER_EVENT_TYPES: Sequence[type[Message]] = (
    shop_orders_pb2.OrderPlaced,
    shop_orders_pb2.OrderPaid,
    shop_orders_pb2.OrderCancelled,
    shop_orders_pb2.OrderRefunded,
)


def order_batch_handler(settings: Settings) -> BatchHandler:
    threshold = settings.default_low_stock_threshold

    async def on_orders(session: AsyncSession, envelopes: list[Envelope]) -> None:
        await batch.apply_order_events(session, envelopes, default_threshold=threshold)

    return on_orders


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
