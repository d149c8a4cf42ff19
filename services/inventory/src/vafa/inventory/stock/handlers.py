"""Thin handler: the worker applies a polled batch of shop order events set-based (a failed
batch is replayed by the kit one event at a time, through the same code)."""

from collections.abc import Sequence

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import shop_orders_pb2
from vafa.inventory.config import Settings
from vafa.inventory.stock import batch
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler

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
