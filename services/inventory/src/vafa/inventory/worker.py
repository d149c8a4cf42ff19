import asyncio

from vafa.inventory.config import Settings
from vafa.inventory.stock.handlers import ORDER_EVENT_TYPES, order_batch_handler
from vafa.kit.consumer import Consumer
from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import WorkerContext, run_worker


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)

    def orders(ctx: WorkerContext) -> Consumer:
        return Consumer(
            name="inventory.orders",
            topics=["shop.orders.v1"],
            batch_handler=order_batch_handler(settings),
            batch_types=ORDER_EVENT_TYPES,
            db=ctx.db,
            kafka=settings.kafka,
            producer=ctx.producer,
        )

    await run_worker(settings, consumers=[orders], stop=stop)
