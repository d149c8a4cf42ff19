import asyncio

from vafa.kit.consumer import Consumer
from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import WorkerContext, run_worker
from vafa.loyalty.config import Settings
from vafa.loyalty.events import CUSTOMERS_TOPIC, PURCHASES_TOPIC
from vafa.loyalty.points.handlers import customer_handlers, purchase_handlers


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)

    def purchases(ctx: WorkerContext) -> Consumer:
        return Consumer(
            name="loyalty.purchases",
            topics=[PURCHASES_TOPIC],
            handlers=purchase_handlers(settings),
            db=ctx.db,
            kafka=settings.kafka,
            producer=ctx.producer,
        )

    def customers(ctx: WorkerContext) -> Consumer:
        return Consumer(
            name="loyalty.customers",
            topics=[CUSTOMERS_TOPIC],
            handlers=customer_handlers(),
            db=ctx.db,
            kafka=settings.kafka,
            producer=ctx.producer,
        )

    await run_worker(settings, consumers=[purchases, customers], stop=stop)
