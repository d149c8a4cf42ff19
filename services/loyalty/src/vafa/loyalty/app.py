from fastapi import FastAPI

from vafa.kit.app import create_service_app
from vafa.loyalty.config import Settings
from vafa.loyalty.points.router import router as points_router
from vafa.loyalty.referrals.router import router as referrals_router
from vafa.loyalty.rewards.router import router as rewards_router
from vafa.loyalty.rules.router import router as rules_router
from vafa.loyalty.tiers.router import router as tiers_router


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Vafa loyalty",
        description="The club's points ledger: lots earned by paid orders and interactions "
        "under versioned earning rules, pending until paid days pass or fulfilment, spent "
        "soonest-expiry first, reversed per order line, expired on schedule, adjusted by staff; "
        "every balance is the sum of its ledger and of its lots. Tiers (up at once, down at "
        "re-evaluation), a rewards catalogue whose coupons are redeemed atomically and consumed "
        "once at checkout, and referrals.",
        routers=[points_router, rules_router, tiers_router, rewards_router, referrals_router],
    )
