"""Thin handlers: decode shop order events, attribute a polled batch as one unit of work."""

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import shop_orders_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler
from vafa.profile.config import Settings
from vafa.profile.orders import service
from vafa.profile.orders.service import OrderEvent, PurchaseKind

ORDER_TYPES = (
    shop_orders_pb2.OrderPlaced,
    shop_orders_pb2.OrderPaid,
    shop_orders_pb2.OrderCancelled,
    shop_orders_pb2.OrderRefunded,
    shop_orders_pb2.OrderFulfilled,
)


_KINDS = {
    shop_orders_pb2.OrderPlaced: PurchaseKind.placed,
    shop_orders_pb2.OrderPaid: PurchaseKind.paid,
    shop_orders_pb2.OrderCancelled: PurchaseKind.cancelled,
    shop_orders_pb2.OrderRefunded: PurchaseKind.refunded,
    shop_orders_pb2.OrderFulfilled: PurchaseKind.fulfilled,
}


def order_event(env: Envelope) -> OrderEvent:
    msg = env.message
    assert isinstance(msg, ORDER_TYPES), env.type
    return OrderEvent(
        kind=_KINDS[type(msg)],
        order=msg.order,
        event_id=env.id,
        occurred_at=env.time,
        refund=msg.refund if isinstance(msg, shop_orders_pb2.OrderRefunded) else None,
        reason=msg.reason if isinstance(msg, shop_orders_pb2.OrderCancelled) else "",
        traceparent=env.traceparent,
    )


def order_batch_handler(settings: Settings) -> BatchHandler:
    region = settings.default_region

    async def on_orders(session: AsyncSession, envelopes: list[Envelope]) -> None:
        await service.apply_order_events(
            session, [order_event(env) for env in envelopes], default_region=region
        )

    return on_orders
