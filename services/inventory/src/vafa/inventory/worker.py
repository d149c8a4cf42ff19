import asyncio

from vafa.inventory.config import Settings
from vafa.inventory.stock.handlers import ORDER_EVENT_TYPES, order_batch_handler
from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import Subscription, run_worker


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)
    orders = Subscription(
        "inventory.orders",
        ["shop.orders.v1"],
        batch_handler=order_batch_handler(settings),
        types=ORDER_EVENT_TYPES,
    )
    await run_worker(settings, subscriptions=[orders], stop=stop)
