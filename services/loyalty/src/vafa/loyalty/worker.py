import asyncio

from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import Periodic, Subscription, WorkerContext, run_worker
from vafa.loyalty.config import Settings
from vafa.loyalty.events import CATALOG_TOPIC, CUSTOMERS_TOPIC, LOYALTY_TOPIC, PURCHASES_TOPIC
from vafa.loyalty.periods import ShopCalendar
from vafa.loyalty.points import jobs
from vafa.loyalty.points.handlers import (
    CUSTOMER_TYPES,
    PURCHASE_TYPES,
    customers_handler,
    purchases_handler,
)
from vafa.loyalty.points.store import Policy
from vafa.loyalty.products.handlers import PRODUCT_TYPES, products_handler
from vafa.loyalty.referrals.handlers import TYPES as REFERRAL_TYPES
from vafa.loyalty.referrals.handlers import referrals_handler
from vafa.loyalty.rewards.handlers import TYPES as REWARD_TYPES
from vafa.loyalty.rewards.handlers import rewards_handler
from vafa.loyalty.tiers import service as tiers_service
from vafa.loyalty.tiers.handlers import TYPES as TIER_TYPES
from vafa.loyalty.tiers.handlers import tiers_handler


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
        *club_subscriptions(settings),
    ]


def periodic(settings: Settings) -> list[Periodic]:
    async def expiry(ctx: WorkerContext) -> None:
        await jobs.run_expiry(ctx.db.sessionmaker, warning_days=settings.expiry_warning_days)

    async def birthdays(ctx: WorkerContext) -> None:
        await jobs.grant_birthdays(ctx.db.sessionmaker, policy=Policy.of(settings))

    return [
        Periodic("loyalty.expiry", settings.expiry_every_seconds, expiry),
        Periodic("loyalty.birthdays", settings.birthday_every_seconds, birthdays),
        *club_periodic(settings),
    ]


def club_subscriptions(settings: Settings) -> list[Subscription]:
    """Tiers, rewards and referrals: a consumer group each, so one's trouble never holds up
    another (or the ledger)."""
    return [
        Subscription(
            "loyalty.tiers",
            [LOYALTY_TOPIC, PURCHASES_TOPIC],
            batch_handler=tiers_handler(settings),
            types=TIER_TYPES,
        ),
        Subscription(
            "loyalty.rewards",
            [PURCHASES_TOPIC],
            batch_handler=rewards_handler(),
            types=REWARD_TYPES,
        ),
        Subscription(
            "loyalty.referrals",
            [CUSTOMERS_TOPIC, PURCHASES_TOPIC],
            batch_handler=referrals_handler(settings),
            types=REFERRAL_TYPES,
        ),
    ]


def club_periodic(settings: Settings) -> list[Periodic]:
    if not settings.tier_reevaluation_seconds:
        return []

    async def reevaluate(ctx: WorkerContext) -> None:
        await tiers_service.reevaluate_all(ctx.db, cal=ShopCalendar.of(settings))

    return [Periodic("loyalty.tier_reevaluation", settings.tier_reevaluation_seconds, reevaluate)]


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)
    await run_worker(
        settings, subscriptions=subscriptions(settings), periodic=periodic(settings), stop=stop
    )
