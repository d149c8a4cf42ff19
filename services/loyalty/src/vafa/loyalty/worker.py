import asyncio

from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import Subscription, run_worker
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
    purchases = Subscription(
        "loyalty.purchases",
        [PURCHASES_TOPIC],
        batch_handler=purchases_handler(settings),
        types=PURCHASE_TYPES,
    )
    customers = Subscription(
        "loyalty.customers",
        [CUSTOMERS_TOPIC],
        batch_handler=customers_handler(),
        types=CUSTOMER_TYPES,
    )
    await run_worker(settings, subscriptions=[purchases, customers], stop=stop)
