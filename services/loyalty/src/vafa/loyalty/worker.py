import asyncio

from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import Periodic, Subscription, WorkerContext, run_worker
from vafa.loyalty.config import Settings
from vafa.loyalty.events import CATALOG_TOPIC, CUSTOMERS_TOPIC, PURCHASES_TOPIC
from vafa.loyalty.points import jobs
from vafa.loyalty.points.handlers import (
    CUSTOMER_TYPES,
    PURCHASE_TYPES,
    customers_handler,
    purchases_handler,
)
from vafa.loyalty.points.store import Policy
from vafa.loyalty.products.handlers import PRODUCT_TYPES, products_handler


def subscriptions(settings: Settings) -> list[Subscription]:
    return [
        Subscription(
            "loyalty.purchases",
            [PURCHASES_TOPIC],
            batch_handler=purchases_handler(settings),
            types=PURCHASE_TYPES,
        ),
        Subscription(
            "loyalty.customers",
            [CUSTOMERS_TOPIC],
            batch_handler=customers_handler(settings),
            types=CUSTOMER_TYPES,
        ),
        Subscription(
            "loyalty.products",
            [CATALOG_TOPIC],
            batch_handler=products_handler(),
            types=PRODUCT_TYPES,
        ),
    ]


def periodic(settings: Settings) -> list[Periodic]:
    async def expiry(ctx: WorkerContext) -> None:
        await jobs.run_expiry(ctx.db.sessionmaker, warning_days=settings.expiry_warning_days)

    async def birthdays(ctx: WorkerContext) -> None:
        await jobs.grant_birthdays(ctx.db.sessionmaker, policy=Policy.of(settings))

    return [
        Periodic("loyalty.expiry", settings.expiry_every_seconds, expiry),
        Periodic("loyalty.birthdays", settings.birthday_every_seconds, birthdays),
    ]


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)
    await run_worker(
        settings, subscriptions=subscriptions(settings), periodic=periodic(settings), stop=stop
    )
