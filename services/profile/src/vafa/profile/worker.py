import asyncio

from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import Periodic, Subscription, run_worker
from vafa.profile.club.handlers import PURCHASE_TYPES, on_purchases_batch, scrub_sent_codes
from vafa.profile.config import Settings
from vafa.profile.orders.handlers import ORDER_TYPES, order_batch_handler
from vafa.profile.timeline.handlers import LOYALTY_TYPES, on_points_batch


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)
    orders = Subscription(
        "profile.orders",
        ["shop.orders.v1"],
        batch_handler=order_batch_handler(settings),
        types=ORDER_TYPES,
    )
    points = Subscription(
        "profile.loyalty", ["loyalty.events.v1"], batch_handler=on_points_batch, types=LOYALTY_TYPES
    )
    # The retention club: profile's own paid purchases enrol their customers.
    club = Subscription(
        "profile.club",
        ["profile.purchases.v1"],
        batch_handler=on_purchases_batch,
        types=PURCHASE_TYPES,
    )
    periodic = [Periodic("profile.scrub_sent_codes", 5.0, scrub_sent_codes)]
    await run_worker(settings, subscriptions=[orders, points, club], periodic=periodic, stop=stop)
