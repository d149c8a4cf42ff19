"""Thin handlers: the worker applies a polled batch of shop order events set-based (a failed
batch is replayed by the kit one event at a time, through the same code), and the periodic
sweep releases expired holds without any request."""

from collections.abc import Sequence

import structlog
from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import shop_orders_pb2
from vafa.inventory.config import Settings
from vafa.inventory.stock import batch
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler
from vafa.kit.worker import WorkerContext

log = structlog.get_logger(__name__)

ORDER_EVENT_TYPES: Sequence[type[Message]] = (
    shop_orders_pb2.OrderPlaced,
    shop_orders_pb2.OrderPaid,
    shop_orders_pb2.OrderCancelled,
    shop_orders_pb2.OrderRefunded,
)


def order_batch_handler(settings: Settings) -> BatchHandler:
    threshold = settings.default_low_stock_threshold
    hold = settings.reservation_hold_seconds

    async def on_orders(session: AsyncSession, envelopes: list[Envelope]) -> None:
        await batch.apply_order_events(
            session, envelopes, default_threshold=threshold, hold_seconds=hold
        )

    return on_orders


async def sweep_expired_holds(ctx: WorkerContext) -> None:
    """Releases every hold past its expiry, a transaction per `hold_sweep_batch`."""
    settings = ctx.settings
    assert isinstance(settings, Settings)
    total = 0
    while True:
        async with ctx.db.sessionmaker() as session, session.begin():
            n = await batch.expire_holds(
                session,
                default_threshold=settings.default_low_stock_threshold,
                limit=settings.hold_sweep_batch,
            )
        total += n
        if n < settings.hold_sweep_batch:
            break
    if total:
        log.info("holds_expired", count=total)
