import asyncio

from vafa.inventory.config import Settings
from vafa.inventory.events import ORDERS_TOPIC
from vafa.inventory.stock.handlers import (
    ORDER_EVENT_TYPES,
    order_batch_handler,
    sweep_expired_holds,
)
from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import Periodic, Subscription, run_worker


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)
    orders = Subscription(
        "inventory.orders",
        [ORDERS_TOPIC],
        batch_handler=order_batch_handler(settings),
        types=ORDER_EVENT_TYPES,
    )
    expiry = Periodic("inventory.hold-expiry", settings.hold_sweep_seconds, sweep_expired_holds)
    await run_worker(settings, subscriptions=[orders], periodic=[expiry], stop=stop)
