import asyncio

from vafa.inventory.config import Settings
from vafa.inventory.stock.handlers import order_handlers
from vafa.kit.consumer import Consumer
from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import WorkerContext, run_worker


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)

    def orders(ctx: WorkerContext) -> Consumer:
        return Consumer(
            name="inventory.orders",
            topics=["shop.orders.v1"],
            handlers=order_handlers(settings),
            db=ctx.db,
            kafka=settings.kafka,
            producer=ctx.producer,
        )

    await run_worker(settings, consumers=[orders], stop=stop)
