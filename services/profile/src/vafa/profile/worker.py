import asyncio

from vafa.kit.consumer import Consumer
from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import WorkerContext, run_worker
from vafa.profile.config import Settings
from vafa.profile.orders.handlers import ORDER_TYPES, order_batch_handler
from vafa.profile.timeline.handlers import LOYALTY_TYPES, on_points_batch


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)

    def orders(ctx: WorkerContext) -> Consumer:
        return Consumer(
            name="profile.orders",
            topics=["shop.orders.v1"],
            batch_handler=order_batch_handler(settings),
            batch_types=ORDER_TYPES,
            db=ctx.db,
            kafka=settings.kafka,
            producer=ctx.producer,
        )

    def loyalty(ctx: WorkerContext) -> Consumer:
        return Consumer(
            name="profile.loyalty",
            topics=["loyalty.events.v1"],
            batch_handler=on_points_batch,
            batch_types=LOYALTY_TYPES,
            db=ctx.db,
            kafka=settings.kafka,
            producer=ctx.producer,
        )

    await run_worker(settings, consumers=[orders, loyalty], stop=stop)
