import asyncio

from vafa.kit.consumer import Consumer
from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import WorkerContext, run_worker
from vafa.loyalty.config import Settings
from vafa.loyalty.events import CUSTOMERS_TOPIC, PURCHASES_TOPIC
from vafa.loyalty.points.handlers import (
    CUSTOMER_TYPES,
    PURCHASE_TYPES,
    customers_handler,
    purchases_handler,
)


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)

    def purchases(ctx: WorkerContext) -> Consumer:
        return Consumer(
            name="loyalty.purchases",
            topics=[PURCHASES_TOPIC],
            batch_handler=purchases_handler(settings),
            batch_types=PURCHASE_TYPES,
            db=ctx.db,
            kafka=settings.kafka,
            producer=ctx.producer,
        )

    def customers(ctx: WorkerContext) -> Consumer:
        return Consumer(
            name="loyalty.customers",
            topics=[CUSTOMERS_TOPIC],
            batch_handler=customers_handler(),
            batch_types=CUSTOMER_TYPES,
            db=ctx.db,
            kafka=settings.kafka,
            producer=ctx.producer,
        )

    await run_worker(settings, consumers=[purchases, customers], stop=stop)
